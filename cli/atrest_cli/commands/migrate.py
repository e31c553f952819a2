"""`atrest migrate`: count and re-index the records an earlier atrest wrote (once, resumable)."""

from __future__ import annotations

import argparse
from typing import Any

from atrest_cli.commands.common import add_stack_options


def register(subparsers: Any) -> None:
    migrate = subparsers.add_parser(
        "migrate", help="once after updating the stack: count and re-index records written by an earlier atrest "
                        "(resumable; the operator views are exact before it, and faster after)")
    add_stack_options(migrate)
    migrate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atrest.core.clients import AwsClients
    from atrest_cli.operations.counts_migration import migrate_counts
    from atrest_cli.operations.deployment import resolve
    from atrest_cli.progress import ListingProgress

    settings = resolve(args.stack_name, args.state_file)
    with ListingProgress() as progress:
        report = migrate_counts(AwsClients().dynamodb, settings.metadata_table,
                                on_progress=lambda read, _done: progress("metadata table items", read))
    where = "carried on from where the last run stopped; " if report.resumed else ""
    print(f"migrated {settings.metadata_table}: {where}read {report.read:,} item(s), counted and re-indexed "
          f"{report.objects:,} object record(s) and {report.contacts:,} contact index item(s) written before counts "
          "existed.")
    if report.left:
        print(f"{report.left:,} record(s) changed every time they were tried (a pipeline was finishing them): "
              "run `atrest migrate` again to count them.")
        return 1
    print("Every record is counted: `atrest status`, `atrest keys list` and the shred reports read the counts.")
    return 0
