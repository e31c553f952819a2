"""The `atrest` operator command."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from atrest.errors import AtrestError


def _stack_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", dest="stack_name", help="CloudFormation stack name (default: a running local stack, else 'atrest')")
    parser.add_argument("--state-file", type=Path, help="state file of a local stack (default .atrest/local-stack.json)")


def _parse_s3_uri(uri: str) -> tuple[str, str]:
    if not uri.startswith("s3://") or "/" not in uri[5:]:
        raise AtrestError(f"{uri!r} is not an s3://bucket/key URI")
    bucket, _, key = uri[5:].partition("/")
    if not bucket or not key:
        raise AtrestError(f"{uri!r} is not an s3://bucket/key URI")
    return bucket, key


def run_decrypt(args: argparse.Namespace) -> int:
    from atrest.deployment import resolve
    from atrest.progress import ByteProgress, human_bytes
    from atrest.reader import VaultReader

    bucket, key = _parse_s3_uri(args.uri)
    settings = resolve(args.stack_name, args.state_file)
    reader = VaultReader.from_settings(settings)
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


def _run_demo(args: argparse.Namespace) -> int:
    from atrest.demo import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atrest", description="Encryption at rest for contact-center data on AWS.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    decrypt = commands.add_parser("decrypt", help="decrypt a vault object you are allowed to read")
    decrypt.add_argument("uri", help="s3://<vault-bucket>/<key>")
    decrypt.add_argument("-o", "--output", required=True, type=Path, help="where to write the plaintext")
    _stack_options(decrypt)
    decrypt.set_defaults(run=run_decrypt)

    demo = commands.add_parser("demo", help="run the pipeline end to end on the embedded emulator")
    demo.set_defaults(run=_run_demo)

    try:
        from atrest.local import cli as local_cli
    except ImportError as error:  # the emulator's extras (moto, PyYAML) are not installed
        local = commands.add_parser("local", help="the local emulator (needs: pip install 'atrest[local]')")
        local.set_defaults(run=lambda _args: _missing_local(error))
    else:
        local_cli.register(commands)
    return parser


def _missing_local(error: ImportError) -> int:
    raise AtrestError(f"the local emulator is not installed ({error}); run `pip install 'atrest[local]'` or `make demo`")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args: Any = parser.parse_args(argv)
    # The ESDK logs a traceback of its own when a refused message is closed; atrest says why instead.
    logging.getLogger("aws_encryption_sdk").setLevel(logging.CRITICAL)
    try:
        return int(args.run(args) or 0)
    except AtrestError as error:
        print(f"atrest: error: {error}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as error:
        print(f"atrest: error: AWS refused or could not be reached: {error}. "
              "Check your credentials and region (or that `atrest local up` is running).", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("atrest: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
