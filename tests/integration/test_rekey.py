"""`atrest rekey`: switching the KMS key on existing data without rewriting it (docs/byok.md).

Each test gets its own key store and metadata tables (the stack's schema, new names) and
its own KMS key, so re-wrapping never touches the branch keys other tests share. moto
does not enforce KMS key state, so "decrypts without the old key" is shown by recording
every KMS call after the rekey and finding none that names the old key. Nor does it
enforce grants: the bridge grants are checked by listing them on the new key.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from typing import Any

import boto3
import pytest

from atrest.catalog.scopes import BranchKeyScope
from atrest.core.clients import AwsClients
from atrest.crypto.envelope import encryption_client
from atrest.crypto.keystore import BranchKeyStore
from atrest.crypto.keystore_format import (
    ACTIVE_TYPE,
    BRANCH_KEY_ID,
    CREATE_TIME,
    ENC,
    HIERARCHY_VERSION_ATTRIBUTE,
    KMS_ARN,
    TABLE_NAME_CONTEXT,
    TYPE,
    VERSION,
    item_key,
    version_type,
)
from atrest_cli.main import main
from atrest_cli.operations import rekey

pytestmark = pytest.mark.local_only("switches the stack's KMS key and re-wraps its branch keys (on AWS that is an operator's change, not a test's)")


class KmsRecorder:
    """Every KMS request a client makes (operation and parameters) and the key each
    Decrypt/ReEncrypt response says it used; can crash the Nth call of an operation."""

    def __init__(self, clients: AwsClients) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.response_keys: list[str] = []
        self.crash_on: tuple[str, int] | None = None
        events = clients.kms.meta.events
        events.register("before-parameter-build.kms", self._before)
        events.register("after-call.kms", self._after)

    def _before(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))
        if self.crash_on and model.name == self.crash_on[0] and self.count(model.name) == self.crash_on[1]:
            raise KeyboardInterrupt(f"injected crash at {model.name} #{self.crash_on[1]}")

    def _after(self, parsed: dict[str, Any], model: Any, **_: Any) -> None:
        for field in ("KeyId", "SourceKeyId"):
            if parsed.get(field):
                self.response_keys.append(parsed[field])

    def count(self, operation: str) -> int:
        return sum(1 for name, _ in self.calls if name == operation)

    def naming(self, key_arn: str) -> list[str]:
        key_id = key_arn.rsplit("/", 1)[1]
        named = [f"{name} {field}={params[field]}" for name, params in self.calls
                 for field in ("KeyId", "SourceKeyId", "DestinationKeyId")
                 if params.get(field) and key_id in str(params[field])]
        return named + [f"response key {key}" for key in self.response_keys if key_id in key]


@pytest.fixture
def isolated(settings, local_stack, tmp_path, key_tables):
    """A stack of our own: fresh key store and metadata tables, an old and a new KMS key,
    and a local state file naming them (as `atrest local up` writes it)."""
    dynamodb, kms = boto3.client("dynamodb"), boto3.client("kms")
    keystore, metadata = key_tables("rekey")
    old = kms.create_key(Description="atrest rekey test: old")["KeyMetadata"]["Arn"]
    new = kms.create_key(Description="atrest rekey test: new")["KeyMetadata"]["Arn"]
    # The new key is declared as the switch's other key first (RekeyKmsKeyArn), as docs/byok.md orders it.
    ours = replace(settings, keystore_table=keystore, keystore_name=keystore, metadata_table=metadata, kms_key_arn=old,
                   rekey_kms_key_arn=new)
    state = json.loads(json.dumps(local_stack.to_json()))  # a copy: to_json shares the session stack's dicts
    state["outputs"].update(KeyStoreTableName=keystore, MetadataTableName=metadata, KmsKeyArn=old)
    state.setdefault("parameters", {})["RekeyKmsKeyArn"] = new
    state_file = tmp_path / "local-stack.json"
    state_file.write_text(json.dumps(state))
    yield type("Isolated", (), {"settings": ours, "old": old, "new": new, "state_file": state_file})
    dynamodb.delete_table(TableName=keystore)
    dynamodb.delete_table(TableName=metadata)


@pytest.fixture
def atrest(isolated, capsys):
    def run(*args: str):
        code = main([*args, "--state-file", str(isolated.state_file)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def _messages(settings: Any) -> list[tuple[str, bytes, bytes]]:
    """Objects under an account key and an instance key rotated twice (three versions):
    (branch key id, plaintext, ESDK message)."""
    store = BranchKeyStore(AwsClients(), settings.keystore_table, settings.keystore_name, settings.kms_key_arn, 300)
    client = encryption_client()
    account = BranchKeyScope.parse(f"account/{settings.account_id}")
    instance = BranchKeyScope.parse(f"instance/{uuid.uuid4()}")
    out = []
    for scope in (account, instance):
        store.ensure(scope)
    for n in range(3):
        for scope in (account, instance):
            plaintext = f"{scope.branch_key_id} object {n}".encode()
            message, _ = client.encrypt(source=plaintext, keyring=store.keyring(scope.branch_key_id),
                                        encryption_context={"n": str(n)})
            out.append((scope.branch_key_id, plaintext, message))
        if n < 2:
            store.rotate(instance.branch_key_id)
    return out


def _items(settings: Any) -> dict[tuple[str, str], dict[str, Any]]:
    items = boto3.client("dynamodb").scan(TableName=settings.keystore_table, ConsistentRead=True)["Items"]
    return {(i[BRANCH_KEY_ID]["S"], i[TYPE]["S"]): i for i in items}


def test_after_rekey_every_object_decrypts_and_no_kms_call_names_the_old_key(isolated, atrest):
    messages = _messages(isolated.settings)
    items_before = _items(isolated.settings)

    code, out, err = atrest("rekey", "--to-kms-key", isolated.new)

    assert code == 0, err
    assert f"re-wrapped {len(items_before)} item(s) with {len(items_before)} KMS ReEncrypt call(s)" in out
    assert f"{len(items_before)}/{len(items_before)}" in err  # the progress bar reached the end
    assert {i[KMS_ARN]["S"] for i in _items(isolated.settings).values()} == {isolated.new}
    # A function configured with the new key (as after the stack update) reads old and new data.
    clients = AwsClients()
    recorder = KmsRecorder(clients)
    store = BranchKeyStore(clients, isolated.settings.keystore_table, isolated.settings.keystore_name, isolated.new, 300)
    client = encryption_client()
    for branch_key_id, plaintext, message in messages:
        assert client.decrypt(source=message, keyring=store.keyring(branch_key_id))[0] == plaintext
    fresh, _ = client.encrypt(source=b"after the rekey", keyring=store.keyring(messages[0][0]))
    assert client.decrypt(source=fresh, keyring=store.keyring(messages[0][0]))[0] == b"after the rekey"
    store.rotate(messages[1][0])  # rotation after the switch writes under the new key
    assert recorder.calls, "the recorder saw no KMS call"
    assert recorder.naming(isolated.old) == []


def test_rekey_makes_one_kms_call_per_key_store_item_and_rewrites_no_object(isolated):
    messages = _messages(isolated.settings)  # 6 objects, 2 scopes, 4 versions
    clients = AwsClients()
    recorder = KmsRecorder(clients)
    plan = rekey.plan_rekey(clients.dynamodb, isolated.settings, isolated.new)

    report = rekey.execute(plan, clients.kms, clients.dynamodb, isolated.settings)

    assert len(messages) == 6 and plan.total == 2 * 2 + 4  # ACTIVE + beacon per scope, one item per version
    assert recorder.count("ReEncrypt") == plan.total == report.kms_calls
    assert [name for name, _ in recorder.calls if name != "ReEncrypt"] == []
    assert clients.calls.get("s3", 0) == 0


def test_interrupted_rekey_finishes_on_a_second_run_without_redoing_what_was_done(isolated):
    _messages(isolated.settings)
    clients = AwsClients()
    recorder = KmsRecorder(clients)
    recorder.crash_on = ("ReEncrypt", 4)
    plan = rekey.plan_rekey(clients.dynamodb, isolated.settings, isolated.new)

    with pytest.raises(KeyboardInterrupt):
        rekey.execute(plan, clients.kms, clients.dynamodb, isolated.settings)

    halfway = _items(isolated.settings)
    moved = {key: item[ENC]["B"] for key, item in halfway.items() if item[KMS_ARN]["S"] == isolated.new}
    assert len(moved) == 3 and all(i[KMS_ARN]["S"] in (isolated.old, isolated.new) for i in halfway.values())
    # Second run (a new process): plans only what is left, touches nothing already moved.
    clients = AwsClients()
    recorder = KmsRecorder(clients)
    resumed = rekey.plan_rekey(clients.dynamodb, isolated.settings, isolated.new)
    assert len(resumed.pending) == plan.total - 3 and len(resumed.done) == 3

    rekey.execute(resumed, clients.kms, clients.dynamodb, isolated.settings)

    after = _items(isolated.settings)
    assert recorder.count("ReEncrypt") == plan.total - 3
    assert {key: after[key][ENC]["B"] for key in moved} == moved
    assert {i[KMS_ARN]["S"] for i in after.values()} == {isolated.new}
    assert rekey.recorded_kms_key(clients.dynamodb, isolated.settings) == isolated.new


def test_rekey_to_the_key_already_in_use_changes_nothing_and_says_so(isolated, atrest):
    _messages(isolated.settings)
    assert atrest("rekey", "--to-kms-key", isolated.new)[0] == 0
    items = _items(isolated.settings)

    code, out, _ = atrest("rekey", "--to-kms-key", isolated.new)

    assert code == 0 and "nothing to do" in out and "already wrapped by" in out
    assert _items(isolated.settings) == items


def test_dry_run_prints_the_plan_and_changes_nothing(isolated, atrest):
    _messages(isolated.settings)
    items = _items(isolated.settings)

    code, out, _ = atrest("rekey", "--to-kms-key", isolated.new, "--dry-run")

    assert code == 0 and f"{len(items)} key store item(s) to re-wrap" in out and "dry run: nothing changed" in out
    assert _items(isolated.settings) == items
    assert json.loads(isolated.state_file.read_text())["outputs"]["KmsKeyArn"] == isolated.old


def _bad_targets(isolated: Any) -> dict[str, tuple[str, str]]:
    kms = boto3.client("kms")
    region = isolated.new.split(":")[3]
    asymmetric = kms.create_key(KeySpec="RSA_2048", KeyUsage="ENCRYPT_DECRYPT")["KeyMetadata"]["Arn"]
    disabled = kms.create_key()["KeyMetadata"]
    kms.disable_key(KeyId=disabled["KeyId"])  # moto refuses a full ARN here
    return {
        "missing": (isolated.new.rsplit("/", 1)[0] + f"/{uuid.uuid4()}", "does not exist"),
        "other region": (isolated.new.replace(f":{region}:", ":eu-west-3:"), "region eu-west-3"),
        "asymmetric": (asymmetric, "symmetric encryption key"),
        "disabled": (disabled["Arn"], "Disabled"),
        "alias": ("alias/atrest-new", "not a KMS key ARN"),
    }


def test_rekey_refuses_a_key_that_is_missing_elsewhere_asymmetric_disabled_or_an_alias_before_changing_anything(
        isolated, atrest):
    _messages(isolated.settings)
    items = _items(isolated.settings)

    for why, (target, reason) in _bad_targets(isolated).items():
        code, out, err = atrest("rekey", "--to-kms-key", target)
        assert code == 1, why
        assert reason in err and "nothing was changed" in err, (why, err)
        assert _items(isolated.settings) == items, why
    assert json.loads(isolated.state_file.read_text())["outputs"]["KmsKeyArn"] == isolated.old


def test_rekey_switches_the_local_stack_configuration_and_status_shows_the_new_key_per_scope(isolated, atrest):
    messages = _messages(isolated.settings)

    assert atrest("rekey", "--to-kms-key", isolated.new)[0] == 0

    state = json.loads(isolated.state_file.read_text())
    assert state["outputs"]["KmsKeyArn"] == state["parameters"]["CustomerManagedKeyArn"] == isolated.new
    assert {f["environment"]["ATREST_KMS_KEY_ARN"] for f in state["functions"].values()
            if "ATREST_KMS_KEY_ARN" in f["environment"]} == {isolated.new}
    code, out, err = atrest("status")
    assert code == 0, err
    assert f"KMS key (configured): {isolated.new}" in out
    for branch_key_id in {m[0] for m in messages}:
        assert f"{branch_key_id}: {isolated.new}" in out
    assert "differs from the configured key" not in out


def _stale_store(settings: Any, clients: AwsClients | None = None) -> BranchKeyStore:
    """A function not yet redeployed: its key store is still configured with the old key."""
    return BranchKeyStore(clients or AwsClients(), settings.keystore_table, settings.keystore_name,
                          settings.kms_key_arn, 300, allowed_kms_keys=settings.fenced_kms_keys())


def _rekey(settings: Any, target: str) -> None:
    clients = AwsClients()
    rekey.execute(rekey.plan_rekey(clients.dynamodb, settings, target), clients.kms, clients.dynamodb, settings)


def test_a_function_still_configured_with_the_old_key_keeps_encrypting_and_decrypting_without_calling_it(isolated):
    """The window is closed: its discovery reader unwraps each branch key with the KMS key
    the item names (the new one), so it never needs the old key again."""
    messages = _messages(isolated.settings)
    _rekey(isolated.settings, isolated.new)
    clients = AwsClients()
    recorder = KmsRecorder(clients)
    stale = _stale_store(isolated.settings, clients)
    client = encryption_client()

    for branch_key_id, plaintext, message in messages:
        assert client.decrypt(source=message, keyring=stale.keyring(branch_key_id))[0] == plaintext
    for branch_key_id in {m[0] for m in messages}:
        fresh, _ = client.encrypt(source=b"a recording after the rekey", keyring=stale.keyring(branch_key_id))
        # Read back by a function configured with the new key, as after the stack update.
        switched = BranchKeyStore(AwsClients(), isolated.settings.keystore_table, isolated.settings.keystore_name,
                                  isolated.new, 300)
        assert client.decrypt(source=fresh, keyring=switched.keyring(branch_key_id))[0] == b"a recording after the rekey"

    assert recorder.count("Decrypt") >= 2, recorder.calls  # it did fetch branch keys, not only use a cache
    assert recorder.naming(isolated.old) == []
    assert {params["KeyId"] for _, params in recorder.calls if params.get("KeyId")} == {isolated.new}


def test_a_writer_still_configured_with_the_old_key_is_refused_when_it_versions_a_rewrapped_branch_key(isolated):
    """The limitation that remains until the stack update: ExpireKeys' VersionKey (the MPL
    writer, one fixed KMS key) refuses a branch key now on another key, loudly, changing
    nothing; its next scheduled run, configured with the new key, rotates it."""
    messages = _messages(isolated.settings)
    _rekey(isolated.settings, isolated.new)
    items = _items(isolated.settings)

    with pytest.raises(Exception, match="does not match Key Store's configured KMS Key ARN"):
        _stale_store(isolated.settings).rotate(messages[1][0])

    assert _items(isolated.settings) == items


def _bridge_grants(isolated: Any) -> set[tuple[str, str, frozenset[str], tuple[tuple[str, str], ...]]]:
    """(name, grantee, operations, constraint) of every grant on the new key."""
    grants = boto3.client("kms").list_grants(KeyId=isolated.new)["Grants"]
    return {(g.get("Name", ""), g["GranteePrincipal"], frozenset(g["Operations"]),
             tuple(sorted(g.get("Constraints", {}).get("EncryptionContextSubset", {}).items()))) for g in grants}


def _expected_bridge_grants(isolated: Any, local_stack: Any) -> set[Any]:
    """What the template's KmsGrants give each function role (rekey.BRIDGE_ROLE_OUTPUTS, kept
    equal to it by tests/infrastructure/test_kms_fence.py), named as bridges."""
    table = ((TABLE_NAME_CONTEXT, isolated.settings.keystore_name),)
    roles = [(local_stack.outputs[output], frozenset(operations)) for output, operations in rekey.BRIDGE_ROLE_OUTPUTS.items()]
    assert {"EncryptObjectFunctionRoleArn", "ProtectContactFunctionRoleArn", "ExpireKeysFunctionRoleArn"} <= set(
        rekey.BRIDGE_ROLE_OUTPUTS)
    return {(f"atrest-atrest-bridge:{arn.rsplit('/', 1)[1]}", arn, operations, table) for arn, operations in roles}


def _configure(isolated: Any, kms_key_arn: str) -> None:
    """What `sam deploy --parameter-overrides CustomerManagedKeyArn=... RekeyKmsKeyArn=<the other>`
    does to the configuration: the other key of the switch stays declared (docs/byok.md)."""
    from atrest_cli.commands.rekey import switch_local_configuration

    other = isolated.new if kms_key_arn == isolated.old else isolated.old
    switch_local_configuration(isolated.state_file, kms_key_arn, other)


def test_rekey_takes_bridge_grants_for_the_function_roles_once_and_retires_them_after_the_switch(
        isolated, atrest, local_stack):
    _messages(isolated.settings)
    expected = _expected_bridge_grants(isolated, local_stack)

    roles = len(expected)
    code, out, _ = atrest("rekey", "--to-kms-key", isolated.new, "--dry-run")
    assert code == 0 and f"a run would take {roles} bridge grant(s)" in out
    assert _bridge_grants(isolated) == set()

    code, out, err = atrest("rekey", "--to-kms-key", isolated.new)
    assert code == 0, err
    assert _bridge_grants(isolated) == expected
    assert out.count("  took atrest-atrest-bridge:") == roles
    assert out.index("bridge grants on") < out.index("re-wrapped")  # before any item moved (stderr has the bar)
    code, listed, _ = atrest("grants", "list", "--key", isolated.new)  # visible before the configuration switch
    assert code == 0 and listed.count("-bridge:") == roles

    # On AWS the configuration stays on the old key until `sam deploy`: a second run then
    # (or a resumed one) finds the grants and takes none again.
    _configure(isolated, isolated.old)
    code, out, err = atrest("rekey", "--to-kms-key", isolated.new)
    assert code == 0, err
    assert out.count("  kept atrest-atrest-bridge:") == roles and "took" not in out
    assert _bridge_grants(isolated) == expected

    # After the switch the stack's own grants (KmsGrants) cover the roles: the next run retires the bridges.
    _configure(isolated, isolated.new)
    code, out, err = atrest("rekey", "--to-kms-key", isolated.new)
    assert code == 0, err
    assert "nothing to do" in out and f"retired {roles} bridge grant(s)" in out
    assert _bridge_grants(isolated) == set()


def test_a_branch_key_created_under_the_old_key_during_the_window_is_moved_by_the_run_after_the_switch(
        isolated, atrest):
    _messages(isolated.settings)
    assert atrest("rekey", "--to-kms-key", isolated.new)[0] == 0  # locally, this also switches the configuration
    # Meanwhile a function still configured with the old key meets a new Amazon Connect instance.
    scope = BranchKeyScope.parse(f"instance/{uuid.uuid4()}")
    assert _stale_store(isolated.settings).ensure(scope)
    created = {key: i[KMS_ARN]["S"] for key, i in _items(isolated.settings).items() if key[0] == scope.branch_key_id}
    assert set(created.values()) == {isolated.old} and len(created) == 3

    code, out, err = atrest("rekey", "--to-kms-key", isolated.new)

    assert code == 0, err
    assert "3 key store item(s) to re-wrap" in out and f"retired {len(rekey.BRIDGE_ROLE_OUTPUTS)} bridge grant(s)" in out
    assert {i[KMS_ARN]["S"] for i in _items(isolated.settings).values()} == {isolated.new}
    assert _bridge_grants(isolated) == set()


def test_rekey_configured_by_atrest_variables_takes_no_bridge_grant_and_says_why(isolated, monkeypatch, capsys):
    _messages(isolated.settings)
    settings = isolated.settings
    for name, value in {"ATREST_ACCOUNT_ID": settings.account_id, "ATREST_INTAKE_BUCKET": settings.intake_bucket,
                        "ATREST_VAULT_BUCKET": settings.vault_bucket, "ATREST_KEYSTORE_TABLE": settings.keystore_table,
                        "ATREST_KEYSTORE_NAME": settings.keystore_name, "ATREST_METADATA_TABLE": settings.metadata_table,
                        "ATREST_KMS_KEY_ARN": isolated.old}.items():
        monkeypatch.setenv(name, value)

    code = main(["rekey", "--to-kms-key", isolated.new])

    out = capsys.readouterr().out
    assert code == 0
    assert "no bridge grants taken: this configuration does not name the function roles" in out
    assert f"set ATREST_KMS_KEY_ARN={isolated.new}" in out
    assert _bridge_grants(isolated) == set()
    assert {i[KMS_ARN]["S"] for i in _items(isolated.settings).values()} == {isolated.new}


def test_make_demo_rekey_bridges_the_switch_and_decrypts_every_object_without_the_old_one(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "ATREST_"))}
    # Its own emulator in its own process (one moto per process), as `make demo-rekey` runs it.
    result = subprocess.run([sys.executable, "-m", "atrest_cli.demos.rekey"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=300)

    assert result.returncode == 0, result.stdout + result.stderr
    # Piped, the progress is plain lines, the last one when every item is done.
    assert re.search(r"^re-wrapping branch keys: (\d+)/\1 items", result.stderr, re.M), result.stderr
    assert "0 naming the old key" in result.stdout and "0 vault object(s)" in result.stdout
    roles = len(rekey.BRIDGE_ROLE_OUTPUTS)
    assert result.stdout.count("  took atrest-atrest-bridge:") == roles
    # A function still configured with the old key encrypted a recording without it.
    assert "encrypted  1 new recording with" in result.stdout and "KMS call(s), 0 naming the old key" in result.stdout
    assert "decrypted  4 of 4 object(s)" in result.stdout
    assert "nothing to do" in result.stdout and f"retired {roles} bridge grant(s)" in result.stdout


def test_rekey_refuses_a_key_store_in_a_format_it_does_not_know_before_changing_anything(isolated, atrest):
    _messages(isolated.settings)
    boto3.client("dynamodb").put_item(TableName=isolated.settings.keystore_table, Item={
        **item_key("account/999999999999", ACTIVE_TYPE), HIERARCHY_VERSION_ATTRIBUTE: {"N": "2"},
        CREATE_TIME: {"S": "2027-01-01T00:00:00Z"}, KMS_ARN: {"S": isolated.old}, ENC: {"B": b"x"},
        VERSION: {"S": version_type("1")}, "kms-configuration": {"S": "future"},  # an attribute the format lacks
    })
    items = _items(isolated.settings)

    code, _, err = atrest("rekey", "--to-kms-key", isolated.new)

    assert code == 1 and "not in the MPL key store format" in err and "hierarchy-version 2" in err
    assert "nothing was changed" in err and _items(isolated.settings) == items


def test_rekey_refuses_the_stacks_service_owned_key_for_the_customers_branch_keys_before_changing_anything(
        isolated, atrest):
    """AtrestServiceKmsKey wraps only the service's own branch keys (voiceprints): moving the
    customer's branch keys, all or one data class's, under it is refused, in a dry run too."""
    _messages(isolated.settings)
    service_key = isolated.settings.service_kms_key_arn
    assert service_key
    items = _items(isolated.settings)

    for args in (("--dry-run",), (), ("--data-class", "integration-configuration"),
                 ("--data-class", "integration-configuration", "--dry-run")):
        code, out, err = atrest("rekey", "--to-kms-key", service_key, *args)

        assert code == 1, (args, out)
        assert "service-owned KMS key (AtrestServiceKmsKey)" in err and "voiceprints" in err, (args, err)
        assert "nothing was changed" in err and "plan" not in out and "re-wrap" not in out, (args, out)
        assert _items(isolated.settings) == items, args
    assert _bridge_grants_on(service_key) == set()
    assert json.loads(isolated.state_file.read_text())["outputs"]["KmsKeyArn"] == isolated.old


def _bridge_grants_on(key_arn: str) -> set[str]:
    return {g.get("Name", "") for g in boto3.client("kms").list_grants(KeyId=key_arn)["Grants"]
            if "-bridge:" in g.get("Name", "")}


def test_rekey_to_a_key_the_stack_has_not_declared_is_refused_before_any_change(isolated, atrest):
    """Every function role denies KMS keys outside its fence (issue 15): moving branch keys to
    an undeclared key would lock every function out of them. The dry run says so too."""
    _messages(isolated.settings)
    state = json.loads(isolated.state_file.read_text())
    state["parameters"]["RekeyKmsKeyArn"] = ""
    isolated.state_file.write_text(json.dumps(state))
    items = _items(isolated.settings)

    code, out, _ = atrest("rekey", "--to-kms-key", isolated.new, "--dry-run")
    assert code == 0 and "not declared to the stack: a run would refuse" in out

    code, out, err = atrest("rekey", "--to-kms-key", isolated.new)

    assert code == 1 and "is not declared to the stack" in err and f"RekeyKmsKeyArn={isolated.new}" in err
    assert "nothing was changed" in err
    assert _items(isolated.settings) == items
    assert _bridge_grants(isolated) == set()
