"""Provisioning template.yaml into the emulator: what a user of `atrest local up` gets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import boto3
import pytest

from atrest.crypto.keystore_format import BRANCH_KEY_ID, TYPE
from atrest.storage.record_keys import UNFINISHED_INDEX, UNFINISHED_PROJECTION
from atrest_cli.local.stack import LocalStackState, provision
from atrest_cli.local.template import StackTemplate, TemplateEvaluator, load_template

pytestmark = pytest.mark.local_only("tests local provisioning into the emulator")

REPO_ROOT = Path(__file__).resolve().parents[3]
TEMPLATE = load_template(REPO_ROOT / "template.yaml")


def template_properties(logical_id: str) -> dict:
    return TEMPLATE["Resources"][logical_id]["Properties"]


def by_name(items: list[dict], key: str) -> dict:
    return {item[key]: item for item in items}


@pytest.mark.parametrize("logical_id", ["KeyStoreTable", "MetadataTable"])
def test_tables_have_the_key_schema_and_indexes_the_template_declares(local_stack, logical_id):
    declared = template_properties(logical_id)
    table = boto3.client("dynamodb").describe_table(TableName=local_stack.physical_id(logical_id))["Table"]

    assert table["KeySchema"] == declared["KeySchema"]
    assert by_name(table["AttributeDefinitions"], "AttributeName") == by_name(declared["AttributeDefinitions"], "AttributeName")
    assert table["BillingModeSummary"]["BillingMode"] == declared["BillingMode"]
    indexes = {
        index["IndexName"]: (index["KeySchema"], index["Projection"])
        for index in table.get("GlobalSecondaryIndexes", [])
    }
    assert indexes == {
        index["IndexName"]: (index["KeySchema"], index["Projection"])
        for index in declared.get("GlobalSecondaryIndexes", [])
    }


def test_tables_match_the_contract_in_the_architecture_doc(local_stack):
    dynamodb = boto3.client("dynamodb")
    keystore = dynamodb.describe_table(TableName=local_stack.physical_id("KeyStoreTable"))["Table"]
    metadata = dynamodb.describe_table(TableName=local_stack.physical_id("MetadataTable"))["Table"]

    assert [(k["AttributeName"], k["KeyType"]) for k in keystore["KeySchema"]] == [(BRANCH_KEY_ID, "HASH"), (TYPE, "RANGE")]
    assert [(k["AttributeName"], k["KeyType"]) for k in metadata["KeySchema"]] == [("pk", "HASH"), ("sk", "RANGE")]
    indexes = {index["IndexName"]: ([k["AttributeName"] for k in index["KeySchema"]], index["Projection"]["ProjectionType"])
               for index in metadata["GlobalSecondaryIndexes"]}
    assert indexes == {"by-key-version": (["gsi1pk", "gsi1sk"], "ALL"), "by-contact": (["gsi2pk", "gsi2sk"], "ALL"),
                       "by-source": (["gsi3pk", "gsi3sk"], "KEYS_ONLY"), "unfinished": (["gsi4pk", "gsi4sk"], "INCLUDE")}
    unfinished = next(i for i in metadata["GlobalSecondaryIndexes"] if i["IndexName"] == UNFINISHED_INDEX)
    # What `atrest backfill` reads from the index is what the index carries.
    assert sorted(unfinished["Projection"]["NonKeyAttributes"]) == sorted(UNFINISHED_PROJECTION)
    backups = dynamodb.describe_continuous_backups(TableName=local_stack.physical_id("MetadataTable"))
    assert backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]["PointInTimeRecoveryStatus"] == "ENABLED"


def test_the_encrypt_queue_dead_letters_after_max_receive_count(local_stack):
    attributes = boto3.client("sqs").get_queue_attributes(
        QueueUrl=local_stack.physical_id("EncryptQueue"), AttributeNames=["All"]
    )["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])

    assert redrive == {
        "deadLetterTargetArn": local_stack.attribute("EncryptDeadLetterQueue", "Arn"),
        "maxReceiveCount": int(local_stack.parameters["MaxReceiveCount"]),
    }
    assert attributes["VisibilityTimeout"] == str(template_properties("EncryptQueue")["VisibilityTimeout"])
    assert json.loads(attributes["Policy"])["Statement"][0]["Condition"]["ArnEquals"]["aws:SourceArn"] == local_stack.attribute(
        "ObjectCreatedRule", "Arn"
    )


def test_buckets_are_versioned_private_and_named_from_the_stack_id_account_and_region(local_stack):
    s3 = boto3.client("s3")
    for logical_id in ("IntakeBucket", "VaultBucket"):
        bucket = local_stack.physical_id(logical_id)
        assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
        assert all(s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"].values())
        assert s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    # A lowercase token of the stack id, not the stack name: any valid stack name makes valid bucket names.
    token = local_stack.physical_id("IntakeBucket").split("-")[2]
    assert re.fullmatch("[0-9a-f]{8}", token)
    assert local_stack.physical_id("IntakeBucket") == f"atrest-intake-{token}-123456789012-us-east-1"
    assert local_stack.physical_id("VaultBucket") == f"atrest-vault-{token}-123456789012-us-east-1"


def test_bucket_policies_with_deny_statements_are_recorded_not_applied(local_stack):
    # moto would apply their Deny statements unconditionally (it ignores aws:SecureTransport and
    # ArnNotEquals conditions) and refuse every object request the stack itself makes.
    for logical_id in ("IntakeBucketPolicy", "VaultBucketPolicy"):
        record = local_stack.resources[logical_id]
        assert (record.status, "Deny statements" in record.note) == ("recorded", True)
    bucket = local_stack.physical_id("VaultBucket")
    boto3.client("s3").put_object(Bucket=bucket, Key="probe/allowed", Body=b"x")
    assert boto3.client("s3").get_object(Bucket=bucket, Key="probe/allowed")["Body"].read() == b"x"
    boto3.client("s3").delete_object(Bucket=bucket, Key="probe/allowed")


def test_the_kms_key_rotates_and_its_alias_points_at_it(local_stack):
    kms = boto3.client("kms")
    key_id = local_stack.physical_id("AtrestKmsKey")

    assert kms.get_key_rotation_status(KeyId=key_id)["KeyRotationEnabled"] is True
    assert local_stack.attribute("AtrestKmsKey", "Arn") == f"arn:aws:kms:us-east-1:123456789012:key/{key_id}"
    aliases = by_name(kms.list_aliases(KeyId=key_id)["Aliases"], "AliasName")
    assert local_stack.physical_id("AtrestKmsKeyAlias") in aliases


def test_the_object_created_rule_matches_every_intake_object_and_leaves_classes_to_the_catalog(local_stack):
    rule = boto3.client("events").describe_rule(Name=local_stack.physical_id("ObjectCreatedRule"))
    pattern = json.loads(rule["EventPattern"])

    assert pattern["detail"]["bucket"]["name"] == [local_stack.physical_id("IntakeBucket")]
    # No key filter: adding a data class to the catalog needs no template change.
    assert "object" not in pattern["detail"]


def test_the_encrypt_function_gets_the_contract_environment_and_its_queue(local_stack):
    function = local_stack.function("EncryptObjectFunction")

    assert function.environment["ATREST_INTAKE_BUCKET"] == local_stack.physical_id("IntakeBucket")
    assert function.environment["ATREST_VAULT_BUCKET"] == local_stack.physical_id("VaultBucket")
    assert function.environment["ATREST_KEYSTORE_TABLE"] == local_stack.physical_id("KeyStoreTable")
    assert function.environment["ATREST_METADATA_TABLE"] == local_stack.physical_id("MetadataTable")
    assert "ATREST_IDEMPOTENCY_TABLE" not in function.environment  # the record's condition guards duplicates
    assert function.environment["ATREST_KMS_KEY_ARN"] == local_stack.attribute("AtrestKmsKey", "Arn")
    assert function.environment["ATREST_ACCOUNT_ID"] == "123456789012"
    assert function.environment["POWERTOOLS_METRICS_NAMESPACE"] == "Atrest"
    assert Path(function.code_dir) == REPO_ROOT / "functions" / "encrypt_object"
    assert function.handler == "app.lambda_handler"
    assert function.layer_dirs == [str(REPO_ROOT / "layers" / "atrest")]
    [source] = function.sqs_sources
    assert (source.queue_logical_id, source.queue_url, source.batch_size, source.report_batch_item_failures) == (
        "EncryptQueue", local_stack.physical_id("EncryptQueue"), 10, True,
    )


def test_outputs_are_evaluated(local_stack):
    assert local_stack.outputs["IntakeBucketName"] == local_stack.physical_id("IntakeBucket")
    assert local_stack.outputs["EncryptQueueUrl"] == local_stack.physical_id("EncryptQueue")
    assert local_stack.outputs["KmsKeyArn"] == local_stack.attribute("AtrestKmsKey", "Arn")


def test_what_the_emulator_cannot_hold_is_recorded_with_a_reason(local_stack):
    assert local_stack.resources["EncryptObjectFunction"].status == "recorded"
    assert local_stack.resources["EncryptObjectFunctionRole"].attributes["Arn"].startswith("arn:aws:iam::123456789012:role/")
    assert local_stack.resources["ExpireKeysFunctionExpiryPermission"].status == "recorded"
    assert any("ExpireKeysFunctionExpiryPermission" in note for note in local_stack.notes)


def test_every_resource_sams_translation_deploys_is_created_or_listed_with_a_reason(local_stack):
    template = StackTemplate.load(REPO_ROOT / "template.yaml", stack_name="atrest")
    evaluator = TemplateEvaluator(template, stack_name="atrest", region="us-east-1", account_id="123456789012")
    deployed = {logical_id for logical_id in template.resources if evaluator.is_active(logical_id)}

    # SAM's generated resources (event source mapping, schedule rules, permissions, URL) are among them.
    assert {"EncryptObjectFunctionEncryptQueueMessages", "ExpireKeysFunctionExpiry", "ReadObjectFunctionUrl"} <= deployed
    assert deployed <= set(local_stack.resources)
    silent = [lid for lid in deployed if local_stack.resources[lid].status != "created" and not local_stack.resources[lid].note]
    assert silent == []
    assert local_stack.resources["EncryptDeadLetterQueueAlarm"].status == "created"


def test_provisioning_again_finds_the_same_resources(local_stack, emulator):
    keys_before = boto3.client("kms").list_keys()["Keys"]

    again = provision(REPO_ROOT / "template.yaml", emulator, stack_name="atrest")

    assert again.to_json() == local_stack.to_json()
    assert boto3.client("kms").list_keys()["Keys"] == keys_before


def test_the_state_survives_a_round_trip_through_its_file(local_stack, tmp_path):
    path = local_stack.write(tmp_path / ".atrest" / "local-stack.json")

    assert LocalStackState.read(path) == local_stack
    assert json.loads(path.read_text())["format"] == "atrest-local-stack/1"


def test_a_customer_managed_key_replaces_the_stacks_own(emulator):
    # A key that exists: provisioning runs KmsGrants, which takes grants on it as on AWS.
    byok = boto3.client("kms").create_key(Description="atrest test: a key the customer brings")["KeyMetadata"]["Arn"]
    state = provision(REPO_ROOT / "template.yaml", emulator, stack_name="byok", parameters={"CustomerManagedKeyArn": byok})

    assert "AtrestKmsKey" not in state.resources and "AtrestKmsKeyAlias" not in state.resources
    assert state.resources["KmsGrants"].attributes["GrantCount"] == "4"
    assert state.function("EncryptObjectFunction").environment["ATREST_KMS_KEY_ARN"] == byok
    assert state.outputs["KmsKeyArn"] == byok


def test_a_recording_under_the_connect_prefix_reaches_the_encrypt_queue_with_its_key_encoded(clean_stack):
    key = "connect/acme/CallRecordings/2026/11/30/call 1:2+3.wav"
    boto3.client("s3").put_object(Bucket=clean_stack.physical_id("IntakeBucket"), Key=key, Body=b"RIFF")

    messages = boto3.client("sqs").receive_message(
        QueueUrl=clean_stack.physical_id("EncryptQueue"), MaxNumberOfMessages=10
    ).get("Messages", [])

    assert [json.loads(m["Body"])["detail"]["object"]["key"] for m in messages] == [
        "connect/acme/CallRecordings/2026/11/30/call+1%3A2%2B3.wav"
    ]
