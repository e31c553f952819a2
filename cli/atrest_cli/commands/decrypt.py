"""`atrest decrypt s3://<bucket>/<key> -o FILE --reason "..."`: an audited read.

One attempt, one outcome in the audit trail (docs/audit.md), as the caller STS names:
NOT_FOUND when the object has no record, REFUSED (with the reason) when the key was
shredded, the record disagrees with the verified message header or the ciphertext does
not verify; otherwise a REQUESTED item before any plaintext exists, concluded by RELEASED
or FAILED. The output (and `--metadata-file`) is checked before anything is read, so a
bad `-o` is neither decrypted nor audited. With no audit table, nothing is read.

The object's Content-Type and user metadata (atrest.crypto.object_metadata) are printed after the
summary, to the messages stream, and written as JSON with `--metadata-file`: they are for
the operator's terminal, never for the log.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from atrest.core.errors import AtrestError, OutputPathError
from atrest.storage.vault_keys import VaultKey
from atrest_cli.commands.common import add_stack_options

STDOUT = "-"

DESCRIPTION = """\
Decrypt one vault object into a file (or standard output with -o -), after checking that
its record agrees with the verified message header, and record the attempt in the audit
trail with your identity and --reason.

Name the object by its vault location, s3://<vault bucket>/<vault key>, or by where it came
from, s3://<intake bucket>/<key>, optionally with ?versionId=<id> or --version-id <id>
(without a version, the one encrypted object from that key is found; if several versions
were encrypted, they are listed and you name one; objects encrypted before the metadata
table's by-source index existed are found only with their version).

The original Content-Type and user metadata (x-amz-meta-*) are printed after the summary;
--metadata-file writes them as JSON ({"ContentType": ..., "Metadata": {...}}) to restore the
object with `aws s3 cp --content-type ... --metadata ...`.

Your role must be one of the stack's decryptor roles (DecryptorRoleArns) and may need
dynamodb:PutItem on the audit table. See docs/audit.md.
"""

EXAMPLES = f"""\
examples:
  atrest decrypt s3://atrest-vault-.../{VaultKey.example("call-recording")} -o call.wav --reason "legal hold LH-7"
  atrest decrypt "s3://atrest-intake-.../connect/acme/CallRecordings/2026/11/30/c1.wav?versionId=3HL4kq" \\
      -o - --reason "QA ticket 4711" | ffplay -
  atrest decrypt s3://atrest-intake-.../integrations/crm.json -o crm.json --metadata-file crm.meta.json \\
      --reason "restore INC-88"
"""

# How long an attempt may take before its REQUESTED row reads "no outcome (crashed?)":
# a quarter hour plus the time to decrypt at a slow 5 MiB/s.
BASE_ALLOWANCE = timedelta(minutes=15)
SLOW_BYTES_PER_SECOND = 5 * 1024 * 1024


def register(subparsers: Any) -> None:
    decrypt = subparsers.add_parser(
        "decrypt", help="decrypt a vault object you are allowed to read (audited)", description=DESCRIPTION,
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    decrypt.add_argument("uri", help="s3://<vault-bucket>/<vault key>, or s3://<intake-bucket>/<key>[?versionId=ID]")
    decrypt.add_argument("-o", "--output", required=True,
                         help="file to write the plaintext to (its directory must exist); - writes to standard output")
    decrypt.add_argument("--force", action="store_true", help="replace the output file if it exists")
    decrypt.add_argument("--metadata-file", metavar="PATH",
                         help="also write the original Content-Type and user metadata as JSON to PATH "
                              "(not replaced if it exists, unless --force)")
    decrypt.add_argument("--version-id", metavar="ID", help="the source version, with an intake bucket URI")
    decrypt.add_argument("--reason", required=True,
                         help="why you need the plaintext (required; kept in the audit trail with your identity)")
    add_stack_options(decrypt)
    decrypt.set_defaults(run=run)


def check_output(output: str, force: bool) -> Path | None:
    """The file to write, or None for standard output. Raises `OutputPathError` saying what to
    do when plaintext cannot or must not go there; called before anything is read."""
    if output == STDOUT:
        return None
    target = Path(output)
    if target.is_dir():
        raise OutputPathError(f"-o {output} is a directory; name a file in it, e.g. -o {target / 'plaintext'}")
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OutputPathError(f"-o {output}: directory {parent} does not exist; create it first (mkdir -p {parent})")
    if not os.access(parent, os.W_OK):
        raise OutputPathError(f"-o {output}: directory {parent} is not writable")
    if target.exists() and not force:
        raise OutputPathError(f"-o {output} exists; nothing was read (use --force to replace it)")
    return target


def check_metadata_file(path: str | None, output: Path | None, force: bool) -> Path | None:
    """The file to write the Content-Type and metadata to (same rules as -o), or None."""
    if path is None:
        return None
    if path == STDOUT:
        raise OutputPathError("--metadata-file - : name a file (standard output is only for the plaintext, -o -)")
    target = check_output(path, force)
    if output is not None and target is not None and target.resolve() == output.resolve():
        raise OutputPathError(f"--metadata-file {path} is the -o file; name another")
    return target


def parse_location(uri: str, version_option: str | None) -> tuple[str, str, str | None]:
    """Bucket, key and source version of `s3://bucket/key[?versionId=...]`."""
    from atrest_cli.commands.common import parse_s3_uri

    path, _, query = uri.partition("?")
    bucket, key = parse_s3_uri(path)
    versions = parse_qs(query).get("versionId", []) if query else []
    if query and not versions:
        raise AtrestError(f"{uri!r}: the only query an s3:// URI takes here is ?versionId=<id>")
    version = versions[0] if versions else None
    if version and version_option and version != version_option:
        raise AtrestError(f"{uri!r} names version {version} and --version-id names {version_option}; give one")
    return bucket, key, version or version_option


def run(args: argparse.Namespace) -> int:
    from atrest.catalog.data_classes import DataClassifier
    from atrest.core.clients import AwsClients
    from atrest.core.errors import DecryptRefusedError, RecordNotFoundError
    from atrest.flows.decrypt_object import VaultReader, source_record
    from atrest.storage.audit import AuditOutcome, AuditRecord, AuditTrail, Channel, caller_arn, check_reason
    from atrest_cli.operations.deployment import resolve
    from atrest_cli.progress import ByteProgress, human_bytes

    # `atrest doctor` calls this with a Namespace of its own, without the newer options.
    force, version_option = getattr(args, "force", False), getattr(args, "version_id", None)
    reason = check_reason(args.reason)
    target = check_output(str(args.output), force)
    metadata_target = check_metadata_file(getattr(args, "metadata_file", None), target, force)
    bucket, key, version_id = parse_location(args.uri, version_option)
    settings = resolve(args.stack_name, args.state_file)
    clients = AwsClients()
    trail = AuditTrail.for_table(clients.dynamodb, settings.audit_table)
    principal = caller_arn(clients)
    reader = VaultReader.from_settings(settings, clients)
    messages = sys.stderr if target is None else sys.stdout  # standard output carries the plaintext

    def entry(outcome: AuditOutcome, record: Any = None, detail: str | None = None, truth: Any = None) -> AuditRecord:
        return AuditRecord.of_read(principal, Channel.CLI, outcome, reason, f"object:{args.uri}", record, detail,
                                   truth=truth)

    try:
        if bucket == settings.intake_bucket:
            classifier = DataClassifier(reader.catalog, settings.account_id)
            record = source_record(reader.records, clients.s3, classifier, settings.vault_bucket, bucket, key, version_id)
        else:
            if version_id:
                raise AtrestError("--version-id and ?versionId= name a source version: use them with an intake "
                                  f"bucket URI (s3://{settings.intake_bucket}/<key>)")
            record = reader.record_for(bucket, key)
    except RecordNotFoundError as error:
        trail.record(entry(AuditOutcome.NOT_FOUND, detail=str(error)))
        raise
    try:
        reader.refuse_if_shredded(record)
    except DecryptRefusedError as error:
        trail.record(entry(AuditOutcome.REFUSED, record, str(error)))
        raise
    vault_uri = f"s3://{record.vault_bucket}/{record.vault_key}"
    newer = reader.newer_versions(record)
    if newer:
        print(f"atrest: warning: {vault_uri} has {len(newer)} version(s) newer than the one its record names "
              f"({', '.join(newer)}); nothing but the pipeline writes the vault, so treat this as tampering and "
              f"tell your security team. Decrypting the recorded version {record.vault_version_id} only.",
              file=sys.stderr)
    overwritten = f"vault key overwritten after encryption: newer versions {', '.join(newer)}" if newer else None

    requested: list[AuditRecord] = []

    def begin(truth: Any) -> None:
        # Recorded before any plaintext exists: a read that cannot be recorded does not happen.
        allowance = BASE_ALLOWANCE + timedelta(seconds=record.plaintext_size / SLOW_BYTES_PER_SECOND)
        requested.append(trail.begin(entry(AuditOutcome.REQUESTED, record, truth=truth), allowance))

    progress = ByteProgress(f"decrypting {vault_uri}", record.plaintext_size)
    try:
        result = _decrypt(reader, record, target, progress, begin, force)
    except DecryptRefusedError as error:
        if requested:
            trail.conclude(requested[0], AuditOutcome.REFUSED, str(error))
        else:
            trail.record(entry(AuditOutcome.REFUSED, record, str(error), truth=getattr(error, "truth", None)))
        raise
    except BaseException as error:
        if requested:
            trail.conclude(requested[0], AuditOutcome.FAILED, f"{type(error).__name__}: {error}"[:300])
        raise
    finally:
        progress.finish()  # a live bar must stop before an error, or the summary, is printed
    trail.conclude(requested[0], AuditOutcome.RELEASED, overwritten)
    truth = result.truth
    source = f"s3://{truth.source_bucket}/{truth.source_key}" + (f"?versionId={truth.source_version_id}"
                                                                   if truth.source_version_id else "")
    print(f"decrypted {vault_uri} -> {'standard output' if target is None else target} "
          f"({human_bytes(result.plaintext_size)}; {truth.data_class} from {source}; "
          f"key {record.branch_key_id} version {record.branch_key_version})", file=messages)
    for line in described_lines(result.described):
        print(line, file=messages)
    if metadata_target is not None:
        write_private(metadata_target, json.dumps(result.described.as_dict(), indent=2, ensure_ascii=False) + "\n",
                      force)
        print(f"Content-Type and metadata written to {metadata_target}", file=messages)
    print(f"recorded in the audit trail ({settings.audit_table}) as {principal}", file=messages)
    return 0


def described_lines(described: Any) -> list[str]:
    """The Content-Type and user metadata for the operator's terminal (control characters
    shown as '?'). Printed, never logged: metadata can hold customer data."""
    from atrest.storage.audit import printable

    if described.content_type is None and not described.metadata:
        # A record from before atrest kept them, or a Content-Type that was no valid header.
        return ["content type and metadata: not recorded"]
    lines = [f"content type: {printable(described.content_type) if described.content_type else 'not recorded'}"]
    if not described.metadata:
        return lines + ["metadata: none"]
    return lines + ["metadata:"] + [f"  {printable(k)}={printable(v)}" for k, v in sorted(described.metadata.items())]


def write_private(target: Path, text: str, overwrite: bool) -> None:
    """`text` into `target`, readable by its owner only (it can hold customer data); an
    existing file is replaced only with `overwrite` (checked again here, atomically)."""
    from atrest.flows.decrypt_object import move_into_place

    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as sink:
            sink.write(text)
        move_into_place(temporary, target, overwrite)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _decrypt(reader: Any, record: Any, target: Path | None, progress: Any, begin: Any, force: bool) -> Any:
    """Into `target`, or through a private temporary file to standard output: the plaintext
    reaches stdout only once the whole message has verified."""
    if target is not None:
        return reader.decrypt_record(record, target, progress=progress, before_plaintext=begin, overwrite=force)
    staging = Path(tempfile.mkdtemp(prefix="atrest-decrypt-"))
    try:
        result = reader.decrypt_record(record, staging / "plaintext", progress=progress, before_plaintext=begin)
        with open(result.output, "rb") as plaintext:
            shutil.copyfileobj(plaintext, sys.stdout.buffer, 1024 * 1024)
        sys.stdout.buffer.flush()
        return result
    finally:
        shutil.rmtree(staging, ignore_errors=True)
