"""Issue 15, finding 1: a key store item planted under someone else's KMS key.

Anyone who may write the key store (the writer roles, operators, CI) can put an ACTIVE item
and a version item there wrapping 32 bytes of their choosing under a KMS key of their own.
The discovery readers would unwrap it with that key and encrypt new data under material the
planter holds; `atrest rekey` would then re-wrap it under the customer's key for good. Here
the planter's key is a second key of the emulator's KMS, and the items are well formed (a
reader that trusts the planter's key uses them: the control case), so every refusal below
is the fence's doing: the reader, the pipeline and `rekey` all refuse, before any KMS call
names the planter's key and before anything changes.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import boto3
import pytest

from atrest.core.clients import AwsClients
from atrest.crypto.envelope import encryption_client
from atrest.crypto.keystore import SCOPE_CONTEXT_KEY, BranchKeyStore, ForeignKmsKeyError, KeyStores
from atrest.crypto.keystore_format import (
    ACTIVE_TYPE,
    CREATE_TIME,
    CUSTOM_CONTEXT_PREFIX,
    ENC,
    HIERARCHY_VERSION,
    HIERARCHY_VERSION_ATTRIBUTE,
    KMS_ARN,
    VERSION,
    VERSION_TYPE_PREFIX,
    item_key,
    kms_encryption_context,
    version_type,
)
from atrest.flows.encrypt_object import EncryptPipeline
from atrest.storage.intake import SourceObject
from atrest_cli.demos.samples import call_recording_wav, connect_key
from atrest_cli.operations import rekey

pytestmark = pytest.mark.local_only("plants key store items under a second KMS key of the emulator")


@pytest.fixture
def planted(settings, key_tables):
    """A key store and metadata table of our own (the stack's schema), the stack's key, and
    a planter's key under which the account branch key's ACTIVE and version items are planted."""
    dynamodb, kms = boto3.client("dynamodb"), boto3.client("kms")
    keystore, metadata = key_tables("planted")
    stack_key = kms.create_key(Description="atrest planted-item test: the stack's key")["KeyMetadata"]["Arn"]
    planter = kms.create_key(Description="atrest planted-item test: the planter's key")["KeyMetadata"]["Arn"]
    ours = replace(settings, keystore_table=keystore, keystore_name=keystore, metadata_table=metadata,
                   kms_key_arn=stack_key, data_class_kms_keys={}, rekey_kms_key_arn=None)
    branch_key_id = f"account/{settings.account_id}"
    version = str(uuid.uuid4())
    material = os.urandom(32)  # the planter knows it
    for item_type in (version_type(version), ACTIVE_TYPE):
        item = {**item_key(branch_key_id, item_type),
                CREATE_TIME: {"S": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")},
                KMS_ARN: {"S": planter}, HIERARCHY_VERSION_ATTRIBUTE: {"N": HIERARCHY_VERSION},
                CUSTOM_CONTEXT_PREFIX + SCOPE_CONTEXT_KEY: {"S": branch_key_id}}
        if item_type == ACTIVE_TYPE:
            item[VERSION] = {"S": version_type(version)}
        item[ENC] = {"B": kms.encrypt(KeyId=planter, Plaintext=material,
                                        EncryptionContext=kms_encryption_context(item, keystore))["CiphertextBlob"]}
        dynamodb.put_item(TableName=keystore, Item=item)
    yield type("Planted", (), {"settings": ours, "stack_key": stack_key, "planter": planter,
                               "branch_key_id": branch_key_id})
    dynamodb.delete_table(TableName=keystore)
    dynamodb.delete_table(TableName=metadata)


def _kms_calls_naming(clients: AwsClients, key_arn: str) -> list[str]:
    named: list[str] = []
    clients.kms.meta.events.register("before-parameter-build.kms", lambda params, model, **_: named.append(
        model.name) if key_arn.rsplit("/", 1)[1] in str(params.get("KeyId", "")) else None)
    return named


def _items(settings: Any) -> list[dict[str, Any]]:
    return boto3.client("dynamodb").scan(TableName=settings.keystore_table, ConsistentRead=True)["Items"]


def _trusting_store(planted: Any) -> BranchKeyStore:
    """A reader that (wrongly) counts the planter's key in: what discovery alone would be."""
    return BranchKeyStore(AwsClients(), planted.settings.keystore_table, planted.settings.keystore_name,
                          planted.stack_key, 60, allowed_kms_keys={planted.planter})


def test_a_reader_that_trusted_the_planters_key_would_encrypt_under_the_planted_material(planted):
    """The control: the planted items are well formed, so only the fence stands in the way."""
    store = _trusting_store(planted)

    message, _ = encryption_client().encrypt(source=b"PII", keyring=store.keyring(planted.branch_key_id))

    assert encryption_client().decrypt(source=message, keyring=store.keyring(planted.branch_key_id))[0] == b"PII"


def test_the_reader_refuses_to_decrypt_with_a_planted_version_before_any_kms_call(planted):
    """The decrypt path reads the version item (GetBranchKeyVersion), not the ACTIVE one."""
    message, _ = encryption_client().encrypt(source=b"PII", keyring=_trusting_store(planted).keyring(planted.branch_key_id))
    clients = AwsClients()
    named = _kms_calls_naming(clients, planted.planter)
    stores = KeyStores.from_settings(planted.settings, clients)

    with pytest.raises(ForeignKmsKeyError) as refused:
        encryption_client().decrypt(source=message, keyring=stores.keyring(planted.branch_key_id))

    assert refused.value.item_type.startswith(VERSION_TYPE_PREFIX) and refused.value.kms_arn == planted.planter
    assert clients.calls["kms"] == 0 and named == []


def test_the_reader_refuses_a_planted_item_naming_it_before_any_kms_call(planted, caplog):
    clients = AwsClients()
    named = _kms_calls_naming(clients, planted.planter)
    stores = KeyStores.from_settings(planted.settings, clients)

    with caplog.at_level(logging.ERROR, logger="atrest.crypto.keystore"), pytest.raises(ForeignKmsKeyError) as refused:
        encryption_client().encrypt(source=b"PII", keyring=stores.keyring(planted.branch_key_id))

    message = str(refused.value)
    assert planted.branch_key_id in message and ACTIVE_TYPE in message and planted.planter in message
    assert clients.calls["kms"] == 0 and named == []
    assert any("KeyStoreItemRefused" in record.getMessage() for record in caplog.records)  # the alarm's metric filter
    assert "PII" not in caplog.text


def test_the_pipeline_refuses_to_encrypt_a_recording_under_a_planted_branch_key(planted, caplog):
    settings = planted.settings
    key = connect_key(settings.connect_prefix, "acme-support", "CallRecordings", str(uuid.uuid4()),
                      datetime.now(timezone.utc), "wav")
    put = boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=call_recording_wav(0.5))
    clients = AwsClients()
    named = _kms_calls_naming(clients, planted.planter)
    pipeline = EncryptPipeline.from_settings(settings, clients)

    with caplog.at_level(logging.ERROR, logger="atrest.crypto.keystore"), pytest.raises(ForeignKmsKeyError, match="refused"):
        pipeline.encrypt(SourceObject(settings.intake_bucket, key, put.get("VersionId")))

    assert named == []
    vault = boto3.client("s3").list_objects_v2(Bucket=settings.vault_bucket, Prefix=key.rsplit("/", 1)[0])
    assert not [o for o in vault.get("Contents", []) if key.rsplit("/", 1)[1].split(".")[0] in o["Key"]]
    assert boto3.client("s3").head_object(Bucket=settings.intake_bucket, Key=key)  # the plaintext stays for a retry


def test_rekey_refuses_the_whole_run_when_a_planted_item_appears_and_changes_nothing(planted):
    settings = planted.settings
    stores = KeyStores.from_settings(settings, AwsClients())
    instance = f"instance/{uuid.uuid4()}"
    from atrest.catalog.scopes import BranchKeyScope

    stores.ensure(BranchKeyScope.parse(instance))  # a genuine branch key beside the planted one
    target = boto3.client("kms").create_key(Description="atrest planted-item test: rekey target")["KeyMetadata"]["Arn"]
    before = _items(settings)

    with pytest.raises(rekey.PlantedItemsError) as refused:
        rekey.plan_stack_rekey(boto3.client("dynamodb"), settings, target)

    assert planted.branch_key_id in str(refused.value) and planted.planter in str(refused.value)
    assert len(refused.value.items) == 2  # the ACTIVE item and the version item
    assert _items(settings) == before


def test_the_atrest_rekey_command_refuses_and_changes_nothing(planted, local_stack, tmp_path, capsys):
    import json

    from atrest_cli.main import main

    settings = planted.settings
    target = boto3.client("kms").create_key(Description="atrest planted-item test: rekey target")["KeyMetadata"]["Arn"]
    state = json.loads(json.dumps(local_stack.to_json()))
    state["outputs"].update(KeyStoreTableName=settings.keystore_table, MetadataTableName=settings.metadata_table,
                            KmsKeyArn=planted.stack_key)
    state.setdefault("parameters", {})["RekeyKmsKeyArn"] = target
    state_file = tmp_path / "local-stack.json"
    state_file.write_text(json.dumps(state))
    before = _items(settings)

    code = main(["rekey", "--to-kms-key", target, "--state-file", str(state_file)])

    err = capsys.readouterr().err
    assert code != 0 and "never used" in err and planted.planter in err
    assert _items(settings) == before
    assert boto3.client("kms").list_grants(KeyId=target)["Grants"] == []  # not even a bridge grant


def test_a_rotation_of_a_planted_branch_key_is_refused_and_writes_nothing(planted):
    """ExpireKeys' VersionKey reads the ACTIVE item too: it must not make a new version from it."""
    stores = KeyStores.from_settings(planted.settings, AwsClients())
    before = _items(planted.settings)

    with pytest.raises(ForeignKmsKeyError, match=planted.planter):
        stores.rotate(planted.branch_key_id)

    assert _items(planted.settings) == before
    # Listing (raw items, no key material) still shows it, so it can be found and deleted.
    assert stores.describe_active(planted.branch_key_id).kms_arn == planted.planter
