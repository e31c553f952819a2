"""`atrest rekey --to-kms-key ARN [--data-class NAME] [--dry-run]`: switch the KMS key that
wraps the branch key versions, of the whole stack or of one data class with a branch key of
its own, without rewriting any object (docs/byok.md)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from atrest.core.settings import REKEY_KMS_KEY_PARAMETER, REKEY_KMS_KEY_VARIABLE
from atrest_cli.commands.common import add_stack_options


def register(subparsers: Any) -> None:
    rekey = subparsers.add_parser(
        "rekey", help="re-wrap every branch key version under another KMS key (no object is rewritten)")
    rekey.add_argument("--to-kms-key", required=True, metavar="ARN", help="full ARN of the symmetric KMS key to switch to")
    rekey.add_argument("--data-class", metavar="NAME",
                       help="move only this data class's own branch key (an account-scoped S3 class with a \"key\" in "
                            "the catalog), then set DataClassKmsKeys; without it, every branch key but those of classes "
                            "on keys of their own")
    rekey.add_argument("--dry-run", action="store_true", help="validate the key and print the plan; change nothing")
    add_stack_options(rekey)
    rekey.set_defaults(run=run)


def _local_state_path(args: argparse.Namespace) -> Path | None:
    """The local stack state file `resolve_deployment` uses for these arguments, if any."""
    from atrest_cli.operations.deployment import find_local_state_file

    if args.stack_name is not None or os.environ.get("ATREST_VAULT_BUCKET"):
        return None
    return find_local_state_file(args.state_file).found


def _declare_other_key(state: dict[str, Any], other_kms_key_arn: str | None) -> None:
    """`RekeyKmsKeyArn` and every function's ATREST_REKEY_KMS_KEY_ARN (the fence's other key)."""
    state.setdefault("parameters", {})[REKEY_KMS_KEY_PARAMETER] = other_kms_key_arn or ""
    for function in (state.get("functions") or {}).values():
        environment = function.get("environment") or {}
        if REKEY_KMS_KEY_VARIABLE in environment:
            environment[REKEY_KMS_KEY_VARIABLE] = other_kms_key_arn or ""


def switch_local_configuration(state_path: Path, kms_key_arn: str, other_kms_key_arn: str | None = None) -> None:
    """Point a local stack's configuration at `kms_key_arn`, as `sam deploy
    --parameter-overrides CustomerManagedKeyArn=... RekeyKmsKeyArn=<previous>` does on AWS:
    the parameters, the `KmsKeyArn` output and every function's ATREST_KMS_KEY_ARN and
    ATREST_REKEY_KMS_KEY_ARN (`other_kms_key_arn`: after a rekey, the key moved from, which
    stays inside the fence until the rekey's last run has moved what was made under it
    meanwhile; None leaves the declared key as it is)."""
    state = json.loads(state_path.read_text(encoding="utf-8"))
    if other_kms_key_arn is not None:
        _declare_other_key(state, other_kms_key_arn if other_kms_key_arn != kms_key_arn else None)
    state.setdefault("parameters", {})["CustomerManagedKeyArn"] = kms_key_arn
    state.setdefault("outputs", {})["KmsKeyArn"] = kms_key_arn
    for function in (state.get("functions") or {}).values():
        environment = function.get("environment") or {}
        if "ATREST_KMS_KEY_ARN" in environment:
            environment["ATREST_KMS_KEY_ARN"] = kms_key_arn
    partial = state_path.with_name(state_path.name + f".{os.getpid()}.partial")
    partial.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    partial.replace(state_path)


def class_kms_keys_after(settings: Any, data_class: str, kms_key_arn: str) -> dict[str, str]:
    """`DataClassKmsKeys` once `data_class` is on `kms_key_arn`: the class dropped when that is
    the stack's own key (it rejoins the stack's key), every other class as configured."""
    keys = {name: arn for name, arn in settings.data_class_kms_keys.items() if name != data_class}
    if kms_key_arn != settings.kms_key_arn:
        keys[data_class] = kms_key_arn
    return dict(sorted(keys.items()))


def class_kms_keys_text(keys: dict[str, str]) -> str:
    return ",".join(f"{name}={arn}" for name, arn in keys.items())


def switch_local_class_configuration(state_path: Path, keys: dict[str, str], previous_kms_key_arn: str | None = None) -> None:
    """Point a local stack's configuration at these class keys, as `sam deploy
    --parameter-overrides DataClassKmsKeys=... RekeyKmsKeyArn=<previous>` does on AWS: the
    parameters and every function's ATREST_DATA_CLASS_KMS_KEYS (functions that read no key
    store have none) and ATREST_REKEY_KMS_KEY_ARN."""
    state = json.loads(state_path.read_text(encoding="utf-8"))
    if previous_kms_key_arn is not None:
        _declare_other_key(state, previous_kms_key_arn)
    state.setdefault("parameters", {})["DataClassKmsKeys"] = [f"{name}={arn}" for name, arn in keys.items()]
    for function in (state.get("functions") or {}).values():
        environment = function.get("environment") or {}
        if "ATREST_DATA_CLASS_KMS_KEYS" in environment:
            environment["ATREST_DATA_CLASS_KMS_KEYS"] = class_kms_keys_text(keys)
    partial = state_path.with_name(state_path.name + f".{os.getpid()}.partial")
    partial.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
    partial.replace(state_path)


def _stack_name(args: argparse.Namespace, deployment: Any) -> str | None:
    """The stack whose bridge grants this run takes or retires: None with ATREST_* variables,
    which name no stack (and no function role)."""
    from atrest_cli.operations.deployment import DEFAULT_STACK

    if deployment.on_aws:
        return str(args.stack_name or DEFAULT_STACK)
    state_path = _local_state_path(args)
    if state_path is None:
        return None
    return str(json.loads(state_path.read_text(encoding="utf-8")).get("stack_name") or DEFAULT_STACK)


def _print_bridge(bridge: Any) -> None:
    print(f"bridge grants on {bridge.key_arn} for the function roles (until the stack update gives them their own):")
    for label, views in (("took", bridge.taken), ("kept", bridge.kept)):
        for view in views:
            context = ",".join(f"{k}={v}" for k, v in sorted(view.encryption_context.items()))
            print(f"  {label} {view.name}: {','.join(view.operations)} with {context}"
                  + ("  (from an earlier run)" if label == "kept" else ""))


def _take_bridge_grants(kms: Any, target: str, deployment: Any, stack: str | None) -> None:
    """Let the function roles use `target` before any item moves to it (docs/byok.md)."""
    from atrest_cli.operations.rekey import BRIDGE_ROLE_OUTPUTS, bridge_grantees, take_bridge_grants

    grantees, missing = bridge_grantees(deployment.outputs)
    if stack is None or not grantees:
        print(f"no bridge grants taken: this configuration does not name the function roles (stack outputs "
              f"{', '.join(BRIDGE_ROLE_OUTPUTS)}). Until the functions are configured with {target}, those that must "
              "fetch a branch key can use it only if their roles may already (key policy or grants)")
        return
    if missing:
        print(f"  no bridge grant for the role(s) of {', '.join(missing)}: the stack outputs lack them")
    _print_bridge(take_bridge_grants(kms, target, grantees, deployment.settings.keystore_name, stack))


def _retire_bridge_grants(kms: Any, key_arn: str, stack: str | None) -> None:
    """The stack is configured with `key_arn` now: its roles use it through the deploy's own
    grants (KmsGrants) or key policy, so the bridge is no longer needed."""
    from atrest_cli.operations.rekey import retire_bridge_grants

    if stack is None:
        return
    retired = retire_bridge_grants(kms, key_arn, stack)
    if retired:
        print(f"retired {len(retired)} bridge grant(s) on {key_arn}: the stack is configured with it, and its roles "
              "use it through the stack's own grants or key policy")
        for view in retired:
            print(f"  retired {view.name}")


def _print_left_out(plan: Any) -> None:
    if plan.excluded:
        classes = ", ".join(sorted(set(plan.excluded.values())))
        print(f"  left where they are: {plan.left_out} item(s) of data class(es) {classes}, on KMS keys of their own "
              "(move one with `atrest rekey --data-class NAME`)")


def _print_next_steps(args: argparse.Namespace, deployment: Any, target: str, data_class: str | None) -> None:
    """What switches the functions' configuration to the new key, as the last step of a rekey:
    on AWS, the `sam deploy` to run; locally, the local stack's configuration switched; else
    the variable to set."""
    previous = deployment.settings.data_class_kms_keys.get(data_class, deployment.settings.kms_key_arn) \
        if data_class else deployment.settings.kms_key_arn
    if data_class:
        keys = class_kms_keys_after(deployment.settings, data_class, target)
        text = class_kms_keys_text(keys)
        override = f"'DataClassKmsKeys=\"{text}\"'"
        switched_to, variable = f"DataClassKmsKeys={text or '(none)'}", f"ATREST_DATA_CLASS_KMS_KEYS={text}"
        what, again = f"{data_class}'s branch key is", f"`atrest rekey --data-class {data_class} --to-kms-key {target}`"
    else:
        override, switched_to, variable = f"CustomerManagedKeyArn={target}", target, f"ATREST_KMS_KEY_ARN={target}"
        what, again = "every branch key is", f"`atrest rekey --to-kms-key {target}`"
    state_path = _local_state_path(args)
    if deployment.on_aws:
        stack = args.stack_name or "atrest"
        print("the functions keep working: they read each branch key with the KMS key its items name, and the bridge "
              f"grants let their roles use the new key. Now switch their configuration, so that {what} rotated under "
              "it and the stack takes its own grants on it (docs/byok.md):")
        print(f"  sam deploy --stack-name {stack} --parameter-overrides {override} {REKEY_KMS_KEY_PARAMETER}={previous}")
        print(f"then run {again} once more: it moves any branch key version made under the old key meanwhile and "
              f"retires the bridge grants; last, `sam deploy ... {REKEY_KMS_KEY_PARAMETER}=\"\"` takes the old key out of "
              "the functions' KMS fence. Disable the old key when you are ready")
    elif state_path is not None:
        if data_class:
            switch_local_class_configuration(state_path, class_kms_keys_after(deployment.settings, data_class, target),
                                             previous)
        else:
            switch_local_configuration(state_path, target, previous)
        print(f"local stack configuration switched to {switched_to} ({state_path}); restart `atrest local up` to use "
              "it, then run the rekey once more to retire the bridge grants")
    else:
        print(f"set {variable} where the functions read their configuration")


def run(args: argparse.Namespace) -> int:
    from atrest.core.clients import AwsClients
    from atrest_cli.operations.deployment import resolve_deployment
    from atrest_cli.operations.rekey import TargetKeyError, bridge_grantees, execute, plan_class_rekey, plan_stack_rekey, validate_target
    from atrest_cli.progress import ItemProgress

    deployment = resolve_deployment(args.stack_name, args.state_file)
    settings = deployment.settings
    clients = AwsClients()
    target = args.to_kms_key.strip()
    stack = _stack_name(args, deployment)
    data_class = args.data_class
    if data_class:
        plan = plan_class_rekey(clients.dynamodb, settings, data_class, target)
        subject = f"data class {data_class} (branch key {next(iter(plan.only or []))})"
    else:
        plan = plan_stack_rekey(clients.dynamodb, settings, target)
        subject = "every branch key" + (" but those of data classes on keys of their own" if plan.excluded else "")
    if plan.is_noop:
        print(f"nothing to do: {subject} ({plan.total} key store item(s)) is already wrapped by {target}, "
              "and the stack is configured with it")
        _print_left_out(plan)
        _retire_bridge_grants(clients.kms, target, stack)
        return 0
    switched = plan.configured_arn == target  # the run after the configuration switch
    validate_target(clients.kms, target, settings, clients.region)
    undeclared = not switched and stack is not None and target not in settings.fenced_kms_keys()
    if undeclared and args.dry_run:
        print(f"  not declared to the stack: a run would refuse until {REKEY_KMS_KEY_PARAMETER}={target} is deployed "
              "(the functions' KMS fence; docs/byok.md)")
    elif undeclared:
        raise TargetKeyError(
            f"{target} is not declared to the stack: every function role denies KMS keys but the stack's (its KMS "
            f"fence), so after this rekey no function could read a branch key. Declare it first, as the other key of "
            f"the switch: `sam deploy --parameter-overrides {REKEY_KMS_KEY_PARAMETER}={target}` (locally, `atrest "
            f"local up --parameter-overrides {REKEY_KMS_KEY_PARAMETER}={target}`), then run the rekey again "
            "(docs/byok.md); nothing was changed")
    print(f"rekey {subject} to {target}")
    print(f"  configured KMS key: {plan.configured_arn}")
    print(f"  {len(plan.pending)} key store item(s) to re-wrap (KMS ReEncrypt each), {len(plan.done)} already on the "
          f"new key, across {len(plan.scopes())} scope(s); no object is rewritten")
    for arn, count in sorted(plan.source_keys().items()):
        print(f"    {count:>4} now under {arn}")
    _print_left_out(plan)
    if args.dry_run:
        bridged = 0 if switched or stack is None else len(bridge_grantees(deployment.outputs)[0])
        print(f"dry run: nothing changed (a run would take {bridged} bridge grant(s) on the new key first)")
        return 0
    if not switched:
        _take_bridge_grants(clients.kms, target, deployment, stack)
    with ItemProgress("re-wrapping branch keys", "items") as bar:
        report = execute(plan, clients.kms, clients.dynamodb, settings, progress=bar)
    print(f"re-wrapped {len(report.rewrapped)} item(s) with {report.kms_calls} KMS ReEncrypt call(s); "
          f"{report.already_done} were already done; {report.versions_recorded} version record(s) updated")
    if switched:
        _retire_bridge_grants(clients.kms, target, stack)
        return 0
    _print_next_steps(args, deployment, target, data_class)
    return 0
