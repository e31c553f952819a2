"""`atrest status [--json]`: what is protected, what is not, and under which keys."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence

from atrest.commands.common import add_stack_options

DEAD_LETTER_OUTPUTS = {
    "EncryptDeadLetterQueue": "EncryptDeadLetterQueueUrl",
    "ContactEventDeadLetterQueue": "ContactEventDeadLetterQueueUrl",
}


def register(subparsers: Any) -> None:
    status = subparsers.add_parser("status", help="objects encrypted, pending and failed; key versions; KMS key; DLQ depth")
    status.add_argument("--json", action="store_true", help="print the report as JSON (for scripts)")
    add_stack_options(status)
    status.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atrest.deployment import resolve_deployment
    from atrest.status import collect_status

    deployment = resolve_deployment(args.stack_name, args.state_file)
    print("reading the metadata table, the intake bucket, the key store and the queues...", file=sys.stderr, flush=True)
    queues = {name: deployment.outputs.get(output, "") for name, output in DEAD_LETTER_OUTPUTS.items()}
    report = collect_status(deployment.settings, queues)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        print(render(report))
    return 0


def table(header: Sequence[str], rows: list[Sequence[Any]], right: Sequence[int] = ()) -> str:
    cells = [[str(c) for c in header]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def render(report: Any) -> str:
    from atrest.progress import human_bytes

    parts = ["objects"]
    rows = [
        (c.data_class, c.scope, c.encrypted, human_bytes(c.bytes_encrypted), c.pending, human_bytes(c.bytes_pending),
         c.failed, c.oldest_pending or "-")
        for c in report.classes
    ]
    parts.append(table(("data class", "scope", "encrypted", "bytes", "pending", "pending bytes", "failed", "oldest unencrypted"),
                       rows, right=(2, 3, 4, 5, 6)) if rows else "  (no objects yet)")
    parts.append(f"left alone (under a watched prefix, no data class): {report.skipped}")
    parts.append("")
    parts.append("key versions")
    version_rows = [
        (v.branch_key_id, v.version[:8], v.state.value, v.created_at[:19], (v.expires_at or "-")[:19],
         report.objects_per_key_version.get(f"{v.branch_key_id}#{v.version}", 0))
        for v in report.key_versions
    ]
    parts.append(table(("scope", "version", "state", "created", "expires", "objects"), version_rows, right=(5,))
                 if version_rows else "  (no branch keys yet: they are created with the first object)")
    parts.append("")
    parts.append(f"KMS key (configured): {report.configured_kms_key}")
    if report.service_kms_key:
        parts.append(f"service-owned KMS key (service/ scopes): {report.service_kms_key}")
    for scope, arn in sorted(report.kms_keys.items()):
        expected = report.service_kms_key if scope.startswith("service/") else report.configured_kms_key
        note = "" if arn == expected else "   <- differs from the configured key"
        parts.append(f"  {scope}: {arn}{note}")
    parts.append("")
    dead = ", ".join(f"{name}: {count}" for name, count in report.dead_letters.items()) or "none configured"
    parts.append(f"dead-letter queues: {dead}")
    if any(report.dead_letters.values()):
        parts.append("  inspect with `atrest dlq list`; replay after fixing the cause with `atrest dlq redrive`")
    return "\n".join(parts)
