"""`atrest status [--json] [--plaintext]`: what is protected, what is not, and under which keys."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from atrest_cli.commands.common import add_stack_options

DEAD_LETTER_OUTPUTS = {
    "EncryptDeadLetterQueue": "EncryptDeadLetterQueueUrl",
    "ContactEventDeadLetterQueue": "ContactEventDeadLetterQueueUrl",
}


def register(subparsers: Any) -> None:
    status = subparsers.add_parser(
        "status", help="every intake object accounted for: encrypted, pending, failed, excluded; key versions; KMS keys",
        description="Account for the objects in the intake bucket (encrypted, pending, failed or excluded, per data "
        "class: the first 10,000 in key order, every one with --survey), and show what the metadata table counts "
        "per data class and key version, the KMS key of each data class and the queues.")
    status.add_argument("--json", action="store_true", help="print the report as JSON (for scripts)")
    status.add_argument("--survey", action="store_true",
                        help="list every object of the intake bucket and every version of the vault bucket (the "
                        "overwritten-vault-object check); without it, status reads the kept counts, the first "
                        "10,000 intake objects and the queues, whatever the size of the archive")
    status.add_argument("--plaintext", action="store_true",
                        help="list every object still in plaintext in the intake, one per line: state, data class or "
                        "exclusion reason, key (with --json: one JSON object per line)")
    add_stack_options(status)
    status.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atrest_cli.operations.deployment import resolve_deployment
    from atrest_cli.progress import ListingProgress
    from atrest_cli.terminal import is_terminal

    deployment = resolve_deployment(args.stack_name, args.state_file)
    queues = {name: deployment.outputs.get(output, "") for name, output in DEAD_LETTER_OUTPUTS.items()}
    # `--plaintext` streams its keys to standard output: on the same terminal, a live bar on
    # stderr would be drawn over by them, so its progress is then plain lines between them.
    shared_terminal = args.plaintext and is_terminal(sys.stdout)
    progress = ListingProgress(sys.stderr, terminal=False if shared_terminal else None)
    try:
        if args.plaintext:
            return _list_plaintext(deployment.settings, queues, args.json, progress)
        from atrest_cli.operations.status import collect_status

        print("reading the counts, the intake bucket, the key store and the queues...", file=sys.stderr, flush=True)
        report = collect_status(deployment.settings, queues, on_progress=progress, survey=args.survey,
                                encrypt_queue=deployment.outputs.get("EncryptQueueUrl") or None)
    finally:
        progress.finish()
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        print(render(report))
    return 0


def _list_plaintext(settings: Any, queues: dict[str, str], as_json: bool, progress: Any) -> int:
    from collections import Counter

    from atrest_cli.operations.status import IntakeState, plaintext_objects

    # Keys are the customer's: whatever they hold must not fail the listing halfway, on
    # a terminal or a pipe that cannot encode it.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    print(f"listing s3://{settings.intake_bucket}...", file=sys.stderr, flush=True)
    states: Counter[str] = Counter()
    for found in plaintext_objects(settings, queues, on_progress=progress):
        label = plaintext_label(found)
        states[label] += 1
        if as_json:
            print(json.dumps({**found.as_dict(), "label": label}))
        else:
            detail = found.reason if found.state is IntakeState.EXCLUDED else found.data_class
            print(f"{label}\t{printable(detail or '-')}\t{printable(found.key)}")
    progress.finish()
    total = sum(states.values())
    parts = ", ".join(f"{states[label]} {label}" for label in PLAINTEXT_LABELS if states[label]) or "none"
    print(f"{total} objects in plaintext in s3://{settings.intake_bucket}: {parts}", file=sys.stderr, flush=True)
    return 0


# The states `--plaintext` prints, in the order its summary names them.
PLAINTEXT_LABELS = ("pending", "failed", "excluded", "kept", "unremoved")


def plaintext_label(found: Any) -> str:
    """pending, failed, excluded; or, of encrypted objects whose plaintext is still there:
    kept (on purpose) or unremoved (its run stopped before deleting it)."""
    from atrest.storage.records import ObjectStatus
    from atrest_cli.operations.status import IntakeState

    if found.state is not IntakeState.ENCRYPTED:
        return found.state.value
    return "kept" if found.record_status is ObjectStatus.SOURCE_KEPT else "unremoved"


def printable(text: str) -> str:
    """`text` on one line, with nothing a terminal would act on or hide: backslash,
    control, format (e.g. bidirectional overrides), separator and unassigned characters
    are written as Python escapes (\\\\, \\t, \\x1b, \\u202e ...); a trailing space as \\x20.
    Printable unicode stays as it is. Exact keys: `--plaintext --json`."""
    from atrest_cli.terminal import safe_text

    # Backslashes doubled first, so that the escapes safe_text writes stay unambiguous.
    escaped = safe_text(text.replace("\\", "\\\\"))
    stripped = escaped.rstrip(" ")
    return stripped + "\\x20" * (len(escaped) - len(stripped))


def render(report: Any) -> str:
    from atrest_cli.progress import human_bytes
    from atrest_cli.terminal import render_table

    parts = [f"objects per data class (intake: s3://{report.bucket})"]
    busy = [c for c in report.classes if c.encrypted or c.in_intake]
    rows = [
        (c.data_class, c.scope, c.encrypted, c.source_deleted, c.source_kept, human_bytes(c.bytes_encrypted),
         c.in_intake, c.pending, c.failed, c.vault_copies, human_bytes(c.bytes_pending), (c.oldest_pending or "-")[:19])
        for c in busy
    ]
    parts.append(render_table(("data class", "scope", "encrypted", "src deleted", "src kept", "bytes", "in intake",
                               "pending", "failed", "vault copies", "pending bytes", "oldest unencrypted"),
                              rows, right=(2, 3, 4, 5, 6, 7, 8, 9, 10)) if rows else "  (no objects yet)")
    if rows:
        parts.append("  encrypted: recorded in the metadata table (src: its plaintext source); in intake: its objects "
                     "in the intake now = encrypted with the plaintext still there + pending + failed + vault copies "
                     "(atrest messages, e.g. a vault object copied back: not plaintext, left alone)")
    idle = sorted({c.data_class for c in report.classes} - {c.data_class for c in busy})
    if idle:
        parts.append(f"  no objects: {', '.join(idle)}")
    parts.append("")
    parts.append("excluded (in the intake, left in plaintext on purpose by the catalog)")
    if report.excluded:
        parts.extend(f"  {count}  {printable(reason)}" for reason, count in report.excluded.items())
    else:
        parts.append("  none")
    parts.append("")
    parts.append("key versions (as `atrest keys list`: expires = rotation due, shred due, or when shredded)")
    version_rows = [
        (v.branch_key_id, v.version[:8], v.state, _when(v.created),
         ("shredded " if v.state == "SHREDDED" else "") + (_when(v.expires) if v.expires else "never"), v.objects)
        for v in report.key_versions
    ]
    parts.append(render_table(("scope", "version", "state", "created", "expires", "objects"), version_rows, right=(5,))
                 if version_rows else "  (no branch keys yet: they are created with the first object)")
    parts.append("")
    parts.extend(vault_integrity(report))
    parts.append("")
    parts.append(f"KMS key (configured): {report.configured_kms_key}")
    if report.service_kms_key:
        parts.append(f"service-owned KMS key (service/ scopes): {report.service_kms_key}")
    parts.append("KMS key per data class (configured)")
    by_key: dict[str, list[str]] = {}
    for name, arn in sorted(report.class_kms_keys.items()):
        by_key.setdefault(arn, []).append(name)
    for arn, names in by_key.items():
        label = (" (the stack's key)" if arn == report.configured_kms_key
                 else " (service-owned)" if arn == report.service_kms_key else "")
        parts.append(f"  {arn}{label}: {', '.join(names)}")
    parts.append("KMS key wrapping each scope's active branch key")
    for scope, arn in sorted(report.kms_keys.items()):
        expected = report.expected_kms_keys.get(scope, report.configured_kms_key)
        note = "" if arn == expected else (f"   <- differs from the configured key {expected}: "
                                           "`atrest rekey --to-kms-key` moves it (docs/byok.md)")
        parts.append(f"  {scope}: {arn}{note}")
    if not report.kms_keys:
        parts.append("  (none yet)")
    parts.append("")
    dead = ", ".join(f"{name}: {count}" for name, count in report.dead_letters.items()) or "none configured"
    parts.append(f"dead-letter queues: {dead}")
    if any(report.dead_letters.values()):
        parts.append("  inspect with `atrest dlq list`; replay after fixing the cause with `atrest dlq redrive`")
    parts.append("")
    parts.extend(summary(report))
    return "\n".join(parts)


def _when(text: str | None) -> str:
    from atrest_cli.commands.keys import _when as keys_when

    return keys_when(text)


def vault_integrity(report: Any) -> list[str]:
    """Vault objects written over since they were recorded: nobody should ever do that."""
    if report.vault_overwritten_checked is not None:
        return [f"vault objects overwritten: not checked ({report.vault_overwritten_checked})"]
    if not report.vault_overwritten:
        return ["vault objects overwritten: none (every vault object is the version its record names)"]
    lines = [f"vault objects overwritten: {len(report.vault_overwritten)}  <- TAMPER SIGNAL: a newer version than "
             "the one recorded; readers get the new bytes. Find who wrote it (CloudTrail), restore the recorded "
             "version (docs/operations.md, VaultObjectOverwritten)"]
    lines.extend(f"  {key}" for key in report.vault_overwritten[:20])
    if len(report.vault_overwritten) > 20:
        lines.append(f"  ... and {len(report.vault_overwritten) - 20} more (`atrest status --json`)")
    return lines


def summary(report: Any) -> list[str]:
    """The closing lines: the intake accounted for, what is encrypted, what to do next."""
    t = report.totals()
    intake = (f"{t['encrypted_in_intake']} encrypted (plaintext kept or not yet removed) + {t['pending']} pending + "
              f"{t['failed']} failed + {t['vault_copies']} vault copies + {t['excluded']} excluded")
    if t["accounted"] == t["listed"] and not report.listing_complete:
        lines = [f"summary: the first {t['listed']} objects of s3://{report.bucket} (in key order; it holds more), all "
                 f"accounted for: {intake}; `atrest status --survey` lists them all"]
    elif t["accounted"] == t["listed"]:
        lines = [f"summary: s3://{report.bucket} holds {t['listed']} objects, all accounted for: {intake}"]
    else:  # a bug if it ever shows: every listed object is given exactly one state
        lines = [f"summary: s3://{report.bucket} holds {t['listed']} objects but only {t['accounted']} are accounted "
                 f"for: {intake}; run `atrest status` again, and report it if it persists"]
    if report.queued:
        lines.append(f"  encrypt queue: {report.queued} object event(s) waiting or in flight")
    if report.uncounted:
        lines.append(f"  {report.uncounted} record(s) written before counts existed were read one by one: run "
                     "`atrest migrate` once to count them")
    lines.append(f"  metadata table: {t['encrypted']} objects encrypted ({t['source_deleted']} with the plaintext "
                 f"deleted, {t['source_kept']} kept, {t['source_not_removed']} not yet removed)")
    if report.dead_letters_elsewhere:
        lines.append(f"  encrypt dead letters naming no plaintext object in the intake (encrypted or deleted since, "
                     f"or malformed): {report.dead_letters_elsewhere}; check them with `atrest dlq list`")
    if t["failed"]:
        lines.append("  failed: see why with `atrest dlq list`, fix the cause, then `atrest dlq redrive --all`")
    if t["pending"] or t["source_not_removed"]:
        lines.append("  pending: new uploads are encrypted as their events arrive; objects older than the stack, or "
                     "whose run stopped, need `atrest backfill`")
    if report.vault_copies_unchecked:
        lines.append(f"  {report.vault_copies_unchecked} unrecorded object(s) counted pending without reading their "
                     "first bytes (only the first 1,000 are checked for vault copies per run)")
    if t["listed"] - t["encrypted_in_intake"] - t["vault_copies"]:
        lines.append("  list the keys still in plaintext: `atrest status --plaintext`")
    return lines
