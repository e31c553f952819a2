"""`atrest dlq list [--json]` and `atrest dlq redrive (--all | MESSAGE_ID...)`: see atrest_cli.operations.dead_letters."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from atrest.core.errors import AtrestError
from atrest_cli.commands.common import add_stack_options


def register(subparsers: Any) -> None:
    dlq = subparsers.add_parser("dlq", help="inspect and replay events the pipeline could not process",
                                description="Events land in the dead-letter queue after MaxReceiveCount failed "
                                "deliveries (their plaintext stays in the intake bucket). Look, fix the cause, redrive.")
    commands = dlq.add_subparsers(dest="dlq_command", metavar="COMMAND", required=True)

    listing = commands.add_parser("list", help="list dead letters (they stay in the queue)")
    listing.add_argument("--json", action="store_true", help="print a JSON array instead of a table")
    add_stack_options(listing)
    listing.set_defaults(run=run_list)

    redrive = commands.add_parser("redrive", help="move dead letters back to EncryptQueue")
    which = redrive.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every dead letter")
    which.add_argument("message_ids", nargs="*", default=[], metavar="MESSAGE_ID", help="message ids from `atrest dlq list`")
    add_stack_options(redrive)
    redrive.set_defaults(run=run_redrive)


def _queue(args: argparse.Namespace, diagnose: bool) -> Any:
    from atrest.core.clients import AwsClients
    from atrest_cli.operations.dead_letters import DeadLetterQueue, SourceDiagnosis
    from atrest_cli.operations.deployment import resolve_deployment

    deployment = resolve_deployment(args.stack_name, args.state_file)
    urls = [deployment.outputs.get(name) for name in ("EncryptDeadLetterQueueUrl", "EncryptQueueUrl")]
    if not all(urls):
        raise AtrestError("the stack's queue URLs are not known from ATREST_* variables; pass --stack NAME "
                          "(a deployed stack) or --state-file (a local one)")
    clients = AwsClients()
    explain = SourceDiagnosis(deployment.settings, clients) if diagnose else None
    return DeadLetterQueue(clients.client("sqs"), urls[0], urls[1], explain)


def run_list(args: argparse.Namespace) -> int:
    from atrest_cli.operations.dead_letters import dumps, render_table

    letters = _queue(args, diagnose=True).list()
    if args.json:
        print(dumps(letters))
    elif letters:
        print(render_table(letters))
    else:
        print("the dead-letter queue is empty")
    return 0


def run_redrive(args: argparse.Namespace) -> int:
    if not args.all and not args.message_ids:
        raise AtrestError("name the messages to redrive (ids from `atrest dlq list`) or pass --all")
    result = _queue(args, diagnose=False).redrive(None if args.all else args.message_ids)
    print(f"moved {len(result.moved)} message(s) back to EncryptQueue")
    for old, new in result.moved.items():
        print(f"  {old} -> {new}")
    if result.missing:
        print(f"atrest: error: not in the dead-letter queue: {', '.join(result.missing)}", file=sys.stderr)
        return 1
    return 0
