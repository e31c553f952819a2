"""`atrest keys list|rotate|expire|shred`: branch key versions and their lifetimes (docs/keys.md)."""

from __future__ import annotations

import argparse
from typing import Any

from atrest.core.errors import AtrestError, ShredTooEarlyError
from atrest_cli.commands.common import add_stack_options


# Every form of a scope (atrest.catalog.scopes.BranchKeyScope), named in each command that takes one.
SCOPE_HELP = ("a branch key scope: account/<account-id> (recordings, transcripts, knowledge documents), "
              "account/<account-id>/<key> (an account data class with a key of its own, e.g. integration "
              "configuration), instance/<instance-id> (contact PII of one Amazon Connect instance) or service/<key> "
              "(service-owned, e.g. voiceprints); `atrest keys list` shows every one the stack has")


def register(subparsers: Any) -> None:
    keys = subparsers.add_parser(
        "keys", help="list, rotate, expire and shred branch key versions",
        description="Branch key versions and their lifetimes (docs/keys.md): list them, rotate a key now, run the "
        "ExpireKeys schedule's work once, or shred retired versions.")
    actions = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    listing = actions.add_parser(
        "list", help="every branch key version: state, created, expires, objects under it",
        description="Every branch key version of the stack (or of one scope): its state, when it was created, when it "
        "expires (ACTIVE: rotation due; RETIRED: shred due; SHREDDED: when it was shredded) and the objects under it.")
    listing.add_argument("--scope", help=f"only this branch key (default: every key in the stores); {SCOPE_HELP}")
    add_stack_options(listing)
    listing.set_defaults(run=run_list)

    rotate = actions.add_parser(
        "rotate", help="rotate a branch key now (new data uses a new version; old data still decrypts)",
        description="Rotate one branch key now, whatever its age: new data is encrypted under a new version, data "
        "under the old one still decrypts. Fails, changing nothing, for a scope that has no branch key.")
    rotate.add_argument("scope", help=SCOPE_HELP)
    add_stack_options(rotate)
    rotate.set_defaults(run=run_rotate)

    expire = actions.add_parser(
        "expire", help="run the ExpireKeys schedule's work once",
        description="Run the ExpireKeys schedule's work once: rotate expired keys, retire their old versions and "
        "shred retired versions whose retention is over.")
    expire.add_argument("--now", action="store_true", help="required: run it now, as the schedule would")
    add_stack_options(expire)
    expire.set_defaults(run=run_expire)

    shred = actions.add_parser(
        "shred", help="shred retired versions now: data under them becomes unreadable",
        description="Shred RETIRED versions of one branch key now, before their retention ends: what they protect "
        "becomes unreadable for good. Without --yes it only shows what would become unreadable. Fails, changing "
        "nothing, for a scope that has no branch key.")
    shred.add_argument("scope", help=SCOPE_HELP)
    shred.add_argument("--version", help="one retired version (default: every RETIRED version of the key)")
    shred.add_argument("--yes", action="store_true", help="really shred (without it: only show what would become unreadable)")
    add_stack_options(shred)
    shred.set_defaults(run=run_shred)


def _expiry(args: argparse.Namespace) -> Any:
    from atrest.flows.expire_keys import KeyLifecycle
    from atrest_cli.operations.deployment import resolve

    return KeyLifecycle.from_settings(resolve(args.stack_name, args.state_file))


def _scope(text: str) -> str:
    from atrest.catalog.scopes import BranchKeyScope

    return BranchKeyScope.parse(text).branch_key_id


def _when(text: str | None) -> str:
    return "-" if not text else text[:16].replace("T", " ") + "Z"


def render_versions(views: list[Any]) -> str:
    from atrest_cli.terminal import render_table

    header = ("scope", "version", "state", "created", "expires", "objects")
    rows = [(v.branch_key_id, v.version, v.state, _when(v.created),
             ("shredded " if v.state == "SHREDDED" else "") + (_when(v.expires) if v.expires else "never"), str(v.objects))
            for v in views]
    return render_table(header, rows, right=(5,), rule=False)  # header, then a line per version, as it always was


def run_list(args: argparse.Namespace) -> int:
    from atrest_cli.operations.key_inventory import key_inventory

    views = key_inventory(_expiry(args), _scope(args.scope) if args.scope else None)
    if not views and args.scope:
        from atrest.flows.expire_keys import UnknownBranchKeyError

        raise UnknownBranchKeyError(_scope(args.scope), "list")
    if not views:
        print("no branch keys yet (a scope's key is created when its first data is encrypted)")
        return 0
    print(render_versions(views))
    return 0


def run_rotate(args: argparse.Namespace) -> int:
    report = _expiry(args).rotate(_scope(args.scope))
    for rotation in report.rotated:
        print(f"rotated {rotation.branch_key_id}: {rotation.retired_version} RETIRED, {rotation.active_version} ACTIVE "
              "(new data uses it; data under the old version still decrypts)")
    return 0


def run_expire(args: argparse.Namespace) -> int:
    if not args.now:
        raise AtrestError("`atrest keys expire` runs the schedule's work (rotations and shredding); pass --now to run it")
    report = _expiry(args).run()
    print(f"checked {report.keys_checked} branch key(s): {len(report.rotated)} rotated, {len(report.retired)} retired, "
          f"{len(report.shredded)} version(s) shredded ({sum(s.objects_unreadable for s in report.shredded)} objects "
          f"made unreadable){'; busy: ' + ', '.join(report.busy) if report.busy else ''}"
          f"{'; waiting for writers to stop: ' + ', '.join(report.waiting) if report.waiting else ''}")
    for rotation in report.rotated:
        print(f"  rotated  {rotation.branch_key_id}  {rotation.retired_version} -> {rotation.active_version}")
    for shred in report.shredded:
        print(f"  shredded {shred.branch_key_id}  {shred.version}  ({shred.objects_unreadable} objects unreadable)")
    return 0


def run_shred(args: argparse.Namespace) -> int:
    expiry = _expiry(args)
    scope = _scope(args.scope)
    plan = expiry.plan_shred(scope, args.version)
    if not plan:
        print(f"{scope} has no RETIRED version to shred (see `atrest keys list --scope {scope}`)")
        return 0
    ready = [p for p in plan if p.shreddable]
    waiting = [p for p in plan if not p.shreddable]
    if ready:
        print(f"shredding deletes these versions of {scope} from the key store; what they protect becomes unreadable, "
              "for good (counted now, including anything stored under them after their retirement):")
        for item in ready:
            print(f"  {item.version}  {item.objects} object(s)")
    if waiting:
        print("not yet shreddable (a warm function may still encrypt new data under them until its branch key cache "
              f"expires: {expiry.keystore.cache_ttl_seconds} s, BranchKeyCacheTtlSeconds, plus a clock-skew margin):")
        for item in waiting:
            print(f"  {item.version}  {item.objects} object(s) so far  shreddable after {_when(item.shreddable_from)}")
    if not ready and args.version:
        raise ShredTooEarlyError(expiry.too_early_message(scope, waiting[0]))
    if not ready:
        raise ShredTooEarlyError(
            f"nothing shredded: no version of {scope} can be shredded yet; run the same command after "
            f"{_when(min(p.shreddable_from for p in waiting))}"
        )
    if not args.yes:
        print("nothing shredded: re-run with --yes to shred", flush=True)
        return 1
    for shred in expiry.shred(scope, args.version):
        print(f"shredded {shred.branch_key_id} version {shred.version}: {shred.objects_unreadable} object(s) unreadable")
    print(f"complete once every reader's branch key cache has expired "
          f"({expiry.keystore.cache_ttl_seconds} s, BranchKeyCacheTtlSeconds)")
    return 0
