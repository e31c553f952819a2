"""`atrest decrypt s3://<vault-bucket>/<key> -o FILE --reason "..."`: an audited read.

Every run appends to the audit trail (docs/audit.md) as the caller STS names: ALLOWED
before any plaintext is written, DENIED when the object has no record, REFUSED when the
key was shredded or the ciphertext does not verify. With no audit table, nothing is read.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from atrest.commands.common import add_stack_options, parse_s3_uri


def register(subparsers: Any) -> None:
    decrypt = subparsers.add_parser("decrypt", help="decrypt a vault object you are allowed to read (audited)")
    decrypt.add_argument("uri", help="s3://<vault-bucket>/<key>")
    decrypt.add_argument("-o", "--output", required=True, type=Path, help="where to write the plaintext")
    decrypt.add_argument("--reason", required=True,
                         help="why you need the plaintext (required; kept in the audit trail with your identity)")
    add_stack_options(decrypt)
    decrypt.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atrest.audit import AuditOutcome, AuditRecord, AuditTrail, Channel, caller_arn, check_reason
    from atrest.clients import AwsClients
    from atrest.deployment import resolve
    from atrest.errors import DecryptRefusedError, RecordNotFoundError
    from atrest.progress import ByteProgress, human_bytes
    from atrest.reader import VaultReader

    reason = check_reason(args.reason)
    bucket, key = parse_s3_uri(args.uri)
    settings = resolve(args.stack_name, args.state_file)
    clients = AwsClients()
    trail = AuditTrail.for_table(clients.dynamodb, settings.audit_table)
    principal = caller_arn(clients)
    reader = VaultReader.from_settings(settings, clients)

    def audit(outcome: AuditOutcome, record: Any = None, detail: str | None = None) -> None:
        trail.record(AuditRecord.of_read(principal, Channel.CLI, outcome, reason, f"object:{args.uri}", record, detail))

    try:
        record = reader.record_for(bucket, key)
    except RecordNotFoundError:
        audit(AuditOutcome.DENIED, detail="no such object")
        raise
    try:
        reader.refuse_if_shredded(record)
    except DecryptRefusedError as error:
        audit(AuditOutcome.REFUSED, record, str(error))
        raise
    # Recorded before any plaintext exists: a read that cannot be recorded does not happen.
    audit(AuditOutcome.ALLOWED, record)
    progress = ByteProgress(f"decrypting {args.uri}", record.plaintext_size)
    try:
        result = reader.decrypt_record(record, args.output, progress=progress)
    except DecryptRefusedError as error:
        audit(AuditOutcome.REFUSED, record, str(error))
        raise
    progress.finish()
    print(
        f"decrypted {args.uri} -> {result.output} ({human_bytes(result.plaintext_size)}; "
        f"{record.data_class} from s3://{record.source_bucket}/{record.source_key}; "
        f"key {record.branch_key_id} version {record.branch_key_version})"
    )
    print(f"recorded in the audit trail ({settings.audit_table}) as {principal}")
    return 0
