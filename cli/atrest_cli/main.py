"""The `atrest` operator command. Subcommands live in atrest_cli.commands (one module per group)."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from atrest.core.errors import AtrestError
from atrest_cli.commands import COMMAND_MODULES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atrest", description="Encryption at rest for contact-center data on AWS.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(commands)
    try:
        from atrest_cli.local import cli as local_cli
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
