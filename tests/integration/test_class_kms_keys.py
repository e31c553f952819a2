"""A KMS key per data class (DataClassKmsKeys, docs/byok.md), on a local stack of its own.

The stack is provisioned with `integration-configuration` on a key the administrator made
(as a customer would), so the local provisioner runs the KmsGrants custom resource through
its real handler, with its own role. The functions then run with their roles' credentials:
the emulator evaluates the class key's policy (KMS's default: only this account's IAM
policies may grant) and its grants, and the roles' identity policies name only the stack's
own key, so whatever a function does with the class key, it does through those grants.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from atrest.catalog.data_classes import DataClassCatalog
from atrest.catalog.scopes import ScopeKind
from atrest.core.clients import AwsClients
from atrest.crypto.envelope import encryption_client
from atrest.crypto.keystore import KeyStores, class_branch_key
from atrest.crypto.keystore_format import (
    ACTIVE_TYPE,
    BRANCH_KEY_ID,
    KMS_ARN,
    TABLE_NAME_CONTEXT,
    TYPE,
    VERSION,
    version_type,
)
from atrest_cli.operations import rekey
from atrest_cli.operations.deployment import settings_from_outputs

from roles import role_clients

pytestmark = pytest.mark.local_only("provisions stacks of its own with KMS keys of the emulator")

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
STACK = "atrest-classkey"
CLASS = "integration-configuration"
OBJECTS = {
    "integrations/crm/connection.json": b'{"endpoint": "https://crm.example.com", "client": "atrest-test"}',
    "knowledge/returns-policy.txt": b"Returns are accepted within 30 days of delivery.",
}


@pytest.fixture(scope="module")
def class_stack(emulator: Any) -> Any:
    from atrest_cli.local.runner import Runner
    from atrest_cli.local.stack import create_data_class_kms_keys, data_class_kms_keys_parameter, provision

    keys = create_data_class_kms_keys(emulator, [CLASS], stack_name=STACK)
    state = provision(TEMPLATE, emulator, stack_name=STACK,
                      parameters={"DataClassKmsKeys": data_class_kms_keys_parameter(keys)})
    settings = settings_from_outputs(state.outputs, state.account_id, state.parameters)
    s3 = boto3.client("s3")
    for key, body in OBJECTS.items():
        s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=body)
    Runner(state, functions=["EncryptObjectFunction"], retry_delay_seconds=1).drain(timeout=60)
    catalog = DataClassCatalog.from_settings(settings)
    return SimpleNamespace(state=state, settings=settings, class_key=keys[CLASS], stack_key=settings.kms_key_arn,
                           catalog=catalog, branch_key_id=class_branch_key(catalog, CLASS, settings.account_id),
                           account_branch_key_id=f"account/{settings.account_id}")


@pytest.fixture
def atrest(class_stack: Any, cli_on: Any) -> Any:
    """The CLI on a copy of the class stack's state file (a rekey switches the copy's configuration)."""
    return cli_on(class_stack.state)


def _items(settings: Any) -> dict[tuple[str, str], dict[str, Any]]:
    items = boto3.client("dynamodb").scan(TableName=settings.keystore_table, ConsistentRead=True)["Items"]
    return {(i[BRANCH_KEY_ID]["S"], i[TYPE]["S"]): i for i in items}


def _kms_keys_by_branch_key(settings: Any) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for (branch_key_id, _), item in _items(settings).items():
        found.setdefault(branch_key_id, set()).add(item[KMS_ARN]["S"])
    return found


def _vault_versions(settings: Any) -> set[tuple[str, str, str]]:
    s3 = boto3.client("s3")
    return {(v["Key"], v["VersionId"], v["ETag"]) for page in s3.get_paginator("list_object_versions").paginate(
        Bucket=settings.vault_bucket) for v in page.get("Versions", [])}


def _vault_object(settings: Any, data_class: str) -> bytes:
    """The one vault object of a class (vault keys start with the class; the rest is a hash)."""
    (key,) = [k for k, _, _ in _vault_versions(settings) if k.startswith(f"{data_class}/")]
    return boto3.client("s3").get_object(Bucket=settings.vault_bucket, Key=key)["Body"].read()


def test_a_class_on_its_own_kms_key_gets_its_branch_key_made_under_it_and_other_classes_do_not(class_stack):
    by_branch_key = _kms_keys_by_branch_key(class_stack.settings)

    assert by_branch_key[class_stack.branch_key_id] == {class_stack.class_key}
    assert by_branch_key[class_stack.account_branch_key_id] == {class_stack.stack_key} != {class_stack.class_key}
    stores = KeyStores.from_settings(class_stack.settings, AwsClients())
    assert stores.kms_key_for(class_stack.branch_key_id) == class_stack.class_key
    assert stores.kms_key_for(class_stack.account_branch_key_id) == class_stack.stack_key
    assert len(_vault_versions(class_stack.settings)) == len(OBJECTS)  # both were encrypted by the pipeline


def test_expire_keys_rotates_a_class_branch_key_under_the_class_key(class_stack):
    settings = class_stack.settings
    before = len([t for b, t in _items(settings) if b == class_stack.branch_key_id])

    stores = KeyStores.from_settings(settings, role_clients(class_stack.state, "ExpireKeysFunctionRoleArn"))
    version = stores.rotate(class_stack.branch_key_id)

    items = {t: i for (b, t), i in _items(settings).items() if b == class_stack.branch_key_id}
    assert len(items) == before + 1 and items[ACTIVE_TYPE][VERSION]["S"] == version_type(version)
    assert {i[KMS_ARN]["S"] for i in items.values()} == {class_stack.class_key}


def test_the_deploy_grants_each_role_its_key_store_operations_on_the_class_key_and_the_roles_use_it_only_so(class_stack):
    state, settings = class_stack.state, class_stack.settings
    kms = boto3.client("kms")
    grants = kms.list_grants(KeyId=class_stack.class_key)["Grants"]
    expected = {state.outputs[output]: set(operations) for output, operations in rekey.BRIDGE_ROLE_OUTPUTS.items()}
    assert {g["GranteePrincipal"]: set(g["Operations"]) for g in grants} == expected
    assert all(g["Constraints"] == {"EncryptionContextSubset": {TABLE_NAME_CONTEXT: settings.keystore_name}} for g in grants)
    assert all(g["Name"].startswith(f"atrest-{STACK}-") for g in grants)

    store_context = {TABLE_NAME_CONTEXT: settings.keystore_name}
    encrypt_role = role_clients(state, "EncryptObjectFunctionRoleArn").kms
    encrypt_role.generate_data_key_without_plaintext(KeyId=class_stack.class_key, NumberOfBytes=32,
                                                     EncryptionContext=store_context)
    refused = {
        "outside the key store's context": (encrypt_role, class_stack.class_key, {TABLE_NAME_CONTEXT: "another-key-store"}),
        "an operation its grant lacks": (role_clients(state, "ReadObjectFunctionRoleArn").kms, class_stack.class_key,
                                         store_context),
        "a key of the account without grants": (encrypt_role, kms.create_key()["KeyMetadata"]["Arn"], store_context),
    }
    for why, (client, key, context) in refused.items():
        with pytest.raises(ClientError, match="AccessDenied"):
            client.generate_data_key_without_plaintext(KeyId=key, NumberOfBytes=32, EncryptionContext=context)
        assert why


def test_grants_list_shows_the_key_of_each_class_and_the_grants_on_it(class_stack, atrest):
    code, out, err = atrest("grants", "list")

    assert code == 0, err
    stack_section, class_section = out.split("\n\n", 1)
    assert stack_section.startswith(f"KMS key: {class_stack.stack_key}") and "no grants" in stack_section
    assert class_section.startswith(f"KMS key: {class_stack.class_key}  (data class {CLASS})")
    for output in rekey.BRIDGE_ROLE_OUTPUTS:
        assert class_stack.state.outputs[output] in class_section


def test_status_shows_the_class_on_its_own_key_and_its_scope_wrapped_by_it(class_stack, atrest):
    code, out, err = atrest("status", "--json")

    assert code == 0, err
    report = json.loads(out)
    assert report["class_kms_keys"][CLASS] == class_stack.class_key
    assert report["class_kms_keys"]["call-recording"] == class_stack.stack_key
    assert report["kms_keys"][class_stack.branch_key_id] == class_stack.class_key  # what wraps it, read from the key store
    assert report["kms_keys"][class_stack.account_branch_key_id] == class_stack.stack_key


def test_a_stack_rekey_leaves_a_class_on_its_own_key_where_it_is(class_stack, atrest):
    class_items = [t for b, t in _items(class_stack.settings) if b == class_stack.branch_key_id]
    new_stack_key = boto3.client("kms").create_key(Description="the stack's next key")["KeyMetadata"]["Arn"]

    code, out, err = atrest("rekey", "--to-kms-key", new_stack_key, "--dry-run")

    assert code == 0, err
    assert f"left where they are: {len(class_items)} item(s) of data class(es) {CLASS}" in out
    plan = rekey.plan_stack_rekey(boto3.client("dynamodb"), class_stack.settings, new_stack_key)
    assert class_stack.account_branch_key_id in plan.scopes()
    assert class_stack.branch_key_id not in plan.scopes() and class_stack.branch_key_id in plan.excluded


def test_rekey_of_one_data_class_moves_only_its_branch_key_and_rewrites_no_vault_object(class_stack, emulator, cli_on):
    from atrest_cli.local.stack import provision

    new_key = boto3.client("kms").create_key(Description="the customer's next key for integration configuration")[
        "KeyMetadata"]["Arn"]
    parameters = {"DataClassKmsKeys": f"{CLASS}={class_stack.class_key}"}
    # Step 1 of docs/byok.md: declare the new key, so the roles' KMS fence lets them use it.
    declared = provision(TEMPLATE, emulator, stack_name=STACK, parameters={**parameters, "RekeyKmsKeyArn": new_key})
    settings = settings_from_outputs(declared.outputs, declared.account_id, declared.parameters)
    atrest = cli_on(declared)
    items_before, vault_before = _items(settings), _vault_versions(settings)
    moved = {k for k in items_before if k[0] == class_stack.branch_key_id}
    try:
        code, out, err = atrest("rekey", "--data-class", CLASS, "--to-kms-key", new_key)

        assert code == 0, err
        assert f"re-wrapped {len(moved)} item(s) with {len(moved)} KMS ReEncrypt call(s)" in out
        items_after = _items(settings)
        assert {items_after[k][KMS_ARN]["S"] for k in moved} == {new_key}
        assert {k: v for k, v in items_after.items() if k not in moved} == {
            k: v for k, v in items_before.items() if k not in moved}
        assert _vault_versions(settings) == vault_before  # no object rewritten: same versions, same ETags
        # The next step, done locally as `sam deploy` would: the configuration names the new key.
        state = json.loads(atrest.state_file.read_text())
        assert state["parameters"]["DataClassKmsKeys"] == [f"{CLASS}={new_key}"]
        assert state["functions"]["EncryptObjectFunction"]["environment"]["ATREST_DATA_CLASS_KMS_KEYS"] == f"{CLASS}={new_key}"
        # ... and keeps the key moved from inside the fence until the last run (RekeyKmsKeyArn = the old key).
        assert state["parameters"]["RekeyKmsKeyArn"] == class_stack.class_key
        assert state["functions"]["EncryptObjectFunction"]["environment"]["ATREST_REKEY_KMS_KEY_ARN"] == class_stack.class_key
        # Functions not redeployed yet (configured with the old class key) read the class's object
        # through the bridge grant on the new key, with their own role.
        reader = KeyStores.from_settings(settings, role_clients(class_stack.state, "ReadObjectFunctionRoleArn"))
        plaintext, _ = encryption_client().decrypt(source=_vault_object(settings, CLASS),
                                                   keyring=reader.keyring(class_stack.branch_key_id))
        assert plaintext == OBJECTS["integrations/crm/connection.json"]

        code, out, err = atrest("rekey", "--data-class", CLASS, "--to-kms-key", new_key)  # after the switch

        assert code == 0, err
        assert "nothing to do" in out and f"retired {len(rekey.BRIDGE_ROLE_OUTPUTS)} bridge grant(s)" in out
    finally:  # the other tests of this module expect the class on the key its functions are configured with
        clients = AwsClients()
        back = rekey.plan_class_rekey(clients.dynamodb, settings, CLASS, class_stack.class_key, class_stack.catalog)
        rekey.execute(back, clients.kms, clients.dynamodb, settings)
        provision(TEMPLATE, emulator, stack_name=STACK, parameters=parameters)  # the fence without the new key


def test_rekey_refuses_a_class_sharing_its_branch_key_before_changing_anything(class_stack, atrest):
    """The other refusals (service, instance, unknown classes) are the same check: tests/unit/test_class_kms_keys.py."""
    shared = next(s.name for s in class_stack.catalog.classes if s.scope_kind is ScopeKind.ACCOUNT and s.key is None)
    items = _items(class_stack.settings)

    code, _, err = atrest("rekey", "--data-class", shared, "--to-kms-key", class_stack.class_key)

    assert code == 1 and "one branch key cannot be wrapped by two KMS keys" in err, err
    assert _items(class_stack.settings) == items


def test_every_function_of_a_stack_with_class_keys_starts_and_protects_a_contact_event(class_stack):
    """A function that starts with DataClassKmsKeys in its environment checks them against the
    catalog, which needs the service key store's settings: ProtectContact (instance keys only)
    does not get the variable, and protects contact events as on any other stack."""
    import uuid

    from atrest.flows.protect_contact import ContactReader
    from atrest_cli.demos.demo import put_contact_event
    from atrest_cli.demos.samples import contact_event
    from atrest_cli.local.runner import Runner

    state, settings = class_stack.state, class_stack.settings
    instance_id, contact = str(uuid.uuid4()), str(uuid.uuid4())
    put_contact_event(contact_event(settings.account_id, state.region, instance_id, contact, "CONNECTED_TO_AGENT",
                                    phone="+12065550142"))
    stats = Runner(state, functions=["ProtectContactFunction"], retry_delay_seconds=1).drain(timeout=60)

    assert stats.failed_invocations == 0, stats.errors
    view = ContactReader.from_settings(settings).reveal(instance_id, contact)
    assert view.pii["customerEndpoint"]["address"] == "+12065550142"
    for function in state.functions.values():  # the others read the catalog: they have what it needs
        if "ATREST_DATA_CLASS_KMS_KEYS" in function.environment:
            assert function.environment.get("ATREST_SERVICE_KEYSTORE_TABLE"), function.logical_id
            assert function.environment.get("ATREST_SERVICE_KMS_KEY_ARN"), function.logical_id
