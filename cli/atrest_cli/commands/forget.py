"""`atrest forget-instance INSTANCE_ID --yes`: shred every key version of a Connect instance."""

from __future__ import annotations

import argparse
from typing import Any

from atrest_cli.commands.common import add_stack_options


def register(subparsers: Any) -> None:
    forget = subparsers.add_parser(
        "forget-instance", help="right to be forgotten: shred every key version of an instance (its contact PII becomes unreadable)"
    )
    forget.add_argument("instance_id", help="the Amazon Connect instance id (the last part of its ARN)")
    forget.add_argument("--yes", action="store_true", help="really shred (without it: only show what would become unreadable)")
    add_stack_options(forget)
    forget.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atrest.catalog.scopes import BranchKeyScope
    from atrest.flows.expire_keys import KeyLifecycle
    from atrest_cli.operations.deployment import resolve

    expiry = KeyLifecycle.from_settings(resolve(args.stack_name, args.state_file))
    scope = BranchKeyScope.instance(args.instance_id).branch_key_id
    plan = expiry.plan_forget(scope)
    if not plan:
        print(f"{scope} has no key versions left to shred (never used, or already forgotten)")
        return 0
    print(f"forgetting instance {args.instance_id} shreds every version of {scope}, the active one included; "
          "all its contact PII stored so far becomes unreadable, for good (counted now):")
    for version, objects in plan:
        print(f"  {version}  {objects} object(s)")
    if not args.yes:
        print("nothing shredded: re-run with --yes to forget the instance", flush=True)
        return 1
    shreds = expiry.forget(scope)
    print(f"forgot instance {args.instance_id}: {len(shreds)} version(s) shredded, "
          f"{sum(s.objects_unreadable for s in shreds)} object(s) unreadable (counted after the versions were marked, "
          "just before their keys were deleted). Contact events of the instance from now on are stored under a new "
          "key, never under the forgotten one. Reads are refused at once; a process that cached the key can decrypt "
          f"with it until its branch key cache expires ({expiry.keystore.cache_ttl_seconds} s).")
    return 0
