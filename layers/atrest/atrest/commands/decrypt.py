"""`atrest decrypt s3://<vault-bucket>/<key> -o FILE`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from atrest.commands.common import add_stack_options, parse_s3_uri


def register(subparsers: Any) -> None:
    decrypt = subparsers.add_parser("decrypt", help="decrypt a vault object you are allowed to read")
    decrypt.add_argument("uri", help="s3://<vault-bucket>/<key>")
    decrypt.add_argument("-o", "--output", required=True, type=Path, help="where to write the plaintext")
    add_stack_options(decrypt)
    decrypt.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atrest.deployment import resolve
    from atrest.progress import ByteProgress, human_bytes
    from atrest.reader import VaultReader

    bucket, key = parse_s3_uri(args.uri)
    reader = VaultReader.from_settings(resolve(args.stack_name, args.state_file))
    record = reader.record_for(bucket, key)
    progress = ByteProgress(f"decrypting {args.uri}", record.plaintext_size)
    result = reader.decrypt_to_file(bucket, key, args.output, progress=progress)
    progress.finish()
    print(
        f"decrypted {args.uri} -> {result.output} ({human_bytes(result.plaintext_size)}; "
        f"{record.data_class} from s3://{record.source_bucket}/{record.source_key}; "
        f"key {record.branch_key_id} version {record.branch_key_version})"
    )
    return 0
