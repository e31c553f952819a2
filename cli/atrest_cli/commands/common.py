"""Options and parsing shared by the operator commands."""

from __future__ import annotations

import argparse
from pathlib import Path

from atrest.core.errors import AtrestError


def add_stack_options(parser: argparse.ArgumentParser) -> None:
    """--stack / --state-file: which deployment the command works on (see atrest_cli.operations.deployment)."""
    parser.add_argument("--stack", dest="stack_name", help="CloudFormation stack name (default: a running local stack, else 'atrest')")
    parser.add_argument("--state-file", type=Path, help="state file of a local stack (default .atrest/local-stack.json)")


def parse_s3_uri(uri: str) -> tuple[str, str]:
    bucket, _, key = uri[5:].partition("/") if uri.startswith("s3://") else ("", "", "")
    if not bucket or not key:
        raise AtrestError(f"{uri!r} is not an s3://bucket/key URI")
    return bucket, key
