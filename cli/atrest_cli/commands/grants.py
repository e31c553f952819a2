"""`atrest grants list [--key ARN]`: the KMS grants this stack holds on the keys it is
configured with, the stack's key and each data class's own key (DataClassKmsKeys), or on
another key, such as a rekey's target."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from atrest_cli.commands.common import add_stack_options


def register(subparsers: Any) -> None:
    grants = subparsers.add_parser("grants", help="KMS grants the stack holds on keys you brought (CustomerManagedKeyArn, "
                                   "DataClassKmsKeys)")
    actions = grants.add_subparsers(dest="grants_command", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="grant id, role, operations and encryption context constraint")
    listing.add_argument("--all", action="store_true", help="every grant on the key, not only this stack's")
    listing.add_argument("--key", metavar="ARN", help="list grants on this KMS key instead of the configured one (e.g. "
                         "the target of a rekey, to see its bridge grants before `sam deploy`)")
    add_stack_options(listing)
    listing.set_defaults(run=run_list)


def _stack_name(args: argparse.Namespace) -> str:
    from atrest_cli.operations.deployment import DEFAULT_STACK, find_local_state_file

    if args.stack_name:
        return str(args.stack_name)
    path = find_local_state_file(args.state_file).found
    if not os.environ.get("ATREST_VAULT_BUCKET") and path is not None and path.exists():
        return str(json.loads(path.read_text()).get("stack_name") or DEFAULT_STACK)
    return DEFAULT_STACK


def keys_to_list(settings: Any, key: str | None = None) -> list[tuple[str, str]]:
    """(what the key protects, key ARN) for each key `grants list` shows: `key` alone when
    given, else the stack's configured key, then each data class's own key (classes sharing
    a key are listed together)."""
    if key:
        return [("", key)]
    by_key: dict[str, list[str]] = {}
    for data_class, arn in sorted(settings.data_class_kms_keys.items()):
        by_key.setdefault(arn, []).append(data_class)
    listed = [("every branch key" + (" but the data classes' below" if by_key else ""), settings.kms_key_arn)]
    for arn, classes in by_key.items():
        if arn == settings.kms_key_arn:
            listed[0] = (listed[0][0] + f" (and data class(es) {', '.join(classes)})", arn)
        else:
            listed.append((f"data class {', '.join(classes)}", arn))
    return listed


def run_list(args: argparse.Namespace) -> int:
    from atrest.core.clients import AwsClients
    from atrest.crypto.grants import list_grants, stack_grant_prefix
    from atrest_cli.operations.deployment import resolve_deployment
    from atrest_cli.terminal import render_table

    deployment = resolve_deployment(args.stack_name, args.state_file)
    prefix = "" if args.all else stack_grant_prefix(_stack_name(args))
    kms = AwsClients().kms
    for number, (protects, key_arn) in enumerate(keys_to_list(deployment.settings, args.key)):
        if number:
            print()
        print(f"KMS key: {key_arn}" + (f"  ({protects})" if protects else ""))
        grants = list_grants(kms, key_arn, prefix)
        if not grants:
            print("  no grants" + ("" if args.all else f" named {prefix}*") + " (a key the stack creates needs none: "
                  "its key policy names the roles; see docs/byok.md)")
            continue
        rows = [(g.grant_id[:16], g.name, g.grantee, ",".join(g.operations),
                 ",".join(f"{k}={v}" for k, v in sorted(g.encryption_context.items())) or "-", g.created[:19])
                for g in grants]
        print(render_table(("grant", "name", "grantee", "operations", "context", "created"), rows))
    return 0
