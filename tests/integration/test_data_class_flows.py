"""Every data class of the catalog end to end on the emulator, each under its own scope,
the catch-all and the exclusions (fail closed), and the service-owned key surviving a
customer key switch (docs/data-classes.md)."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest

from atrest.core.clients import AwsClients
from atrest.crypto.keystore_format import KMS_ARN, items_of
from atrest.flows.decrypt_object import VaultReader
from atrest.flows.encrypt_object import EncryptPipeline, Outcome
from atrest.flows.protect_contact import ContactReader
from atrest.storage.record_keys import contact_key
from atrest.storage.records import MetadataTable, ObjectStatus
from atrest_cli.demos.demo import put_contact_event
from atrest_cli.operations import rekey
from atrest_cli.demos.samples import (
    call_recording_wav, chat_transcript, connect_key, contact_event, contact_lens_key, contact_lens_voice_analysis,
)
from atrest.storage.intake import SourceObject
from atrest.storage.vault_keys import VaultKey

pytestmark = pytest.mark.local_only("runs the functions in this process (local runner, in-process handler) and clones stack tables")

WHEN = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)


def _uploads(settings: Any, contact: str) -> dict[str, tuple[str, str, bytes]]:
    """key -> (data class, branch key id, plaintext): one object of every S3 class."""
    account = f"account/{settings.account_id}"
    return {
        connect_key(settings.connect_prefix, "acme", "CallRecordings", contact, WHEN, "wav"):
            ("call-recording", account, call_recording_wav(1)),
        connect_key(settings.connect_prefix, "acme", "ChatTranscripts", contact, WHEN, "json"):
            ("chat-transcript", account, chat_transcript(settings.account_id, "i-1", contact)),
        f"{settings.knowledge_prefix}returns/policy-{contact}.md": ("knowledge-document", account, b"# Returns\n"),
        f"integrations/crm/{contact}.json": ("integration-configuration", f"{account}/integration-configuration",
                                             json.dumps({"endpoint": "https://crm.example.com", "token": "t0"}).encode()),
        f"voiceprints/{contact}.bin": ("voiceprint", "service/voiceprint", bytes(range(256)) * 8),
    }


def _encrypt_in_process(settings: Any, *classes: str) -> dict[str, bytes]:
    """One object of each of `classes` through the pipeline of `settings` (not the stack's
    functions: these tests use key stores of their own). Returns vault key -> plaintext;
    the source versions are removed afterwards."""
    s3 = boto3.client("s3")
    pipeline = EncryptPipeline.from_settings(replace(settings, keep_source=True))
    encrypted = {}
    for key, (data_class, _, body) in _uploads(settings, str(uuid.uuid4())).items():
        if data_class in classes:
            version = s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=body)["VersionId"]
            encrypted[pipeline.encrypt(SourceObject(settings.intake_bucket, key, version)).vault_key] = body
            s3.delete_object(Bucket=settings.intake_bucket, Key=key, VersionId=version)
    return encrypted


def _kms_arn_of(table: str, branch_key_id: str) -> set[str]:
    items = boto3.client("dynamodb").query(
        TableName=table, **items_of(branch_key_id), ConsistentRead=True)["Items"]
    return {item[KMS_ARN]["S"] for item in items}


def test_every_s3_class_is_encrypted_end_to_end_under_its_own_scope(settings, local_runner, tmp_path):
    s3 = boto3.client("s3")
    contact = str(uuid.uuid4())
    uploads = _uploads(settings, contact)
    versions = {key: s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=body)["VersionId"]
                for key, (_, _, body) in uploads.items()}

    stats = local_runner.drain(timeout=60)

    assert stats.failed_invocations == 0
    table = MetadataTable(boto3.client("dynamodb"), settings.metadata_table)
    reader = VaultReader.from_settings(settings)
    for key, (data_class, branch_key_id, body) in uploads.items():
        record = table.get_object(VaultKey.of_source(data_class, settings.intake_bucket, key, versions[key]))
        assert record is not None, key
        assert (record.data_class, record.scope, record.branch_key_id) == (data_class, branch_key_id, branch_key_id)
        assert data_class in record.encryption_context.values()  # bound into every message
        assert record.status is ObjectStatus.SOURCE_DELETED
        out = tmp_path / uuid.uuid4().hex
        reader.decrypt_to_file(settings.vault_bucket, record.vault_key, out)
        assert out.read_bytes() == body
    assert s3.list_object_versions(Bucket=settings.intake_bucket).get("Versions", []) == []

    # The voiceprint's branch key lives only in the service key store, under the service key.
    assert _kms_arn_of(settings.service_keystore_table, "service/voiceprint") == {settings.service_kms_key_arn}
    assert _kms_arn_of(settings.keystore_table, "service/voiceprint") == set()
    assert _kms_arn_of(settings.keystore_table, f"account/{settings.account_id}/integration-configuration") == {
        settings.kms_key_arn}


def test_contact_pii_is_encrypted_under_its_instance_key(settings, local_runner):
    instance_id, contact = str(uuid.uuid4()), str(uuid.uuid4())
    put_contact_event(contact_event(settings.account_id, "us-east-1", instance_id, contact, "CONNECTED_TO_AGENT",
                                    phone="+12065550100"))

    stats = local_runner.drain(timeout=60)

    assert stats.failed_invocations == 0
    view = ContactReader.from_settings(settings).reveal(instance_id, contact)
    assert "+12065550100" in json.dumps(view.pii)
    item = boto3.client("dynamodb").get_item(TableName=settings.metadata_table, Key=contact_key(instance_id, contact),
                                             ConsistentRead=True)["Item"]
    assert "+12065550100" not in json.dumps(item, default=str)  # stored encrypted ...
    versions = set(view.key_versions.values())  # ... under the instance's own branch key
    assert versions == {MetadataTable(boto3.client("dynamodb"), settings.metadata_table)
                        .key_versions(f"instance/{instance_id}")[0].version}


def test_a_class_that_keeps_its_source_leaves_the_plaintext_and_records_that(settings, tmp_path):
    catalog = tmp_path / "classes.json"
    catalog.write_text(json.dumps({"schema": 1, "classes": [
        {"name": "quality-evaluation", "source": "s3", "prefix": "evaluations/", "scope": "account",
         "key": "evaluations", "lifetime": {"rotate_every": "7d", "retain_for": "30d", "shred": True},
         "source_removal": "keep"},
        {"name": "unclassified", "source": "s3", "catch_all": True, "scope": "account"},
    ]}))
    ours = replace(settings, data_classes_file=str(catalog))
    key = f"evaluations/{uuid.uuid4()}.pdf"
    version = boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=b"%PDF")["VersionId"]

    outcome = EncryptPipeline.from_settings(ours).encrypt(SourceObject(settings.intake_bucket, key, version))

    assert (outcome.outcome, outcome.data_class, outcome.scope) == (
        Outcome.ENCRYPTED, "quality-evaluation", f"account/{settings.account_id}/evaluations")
    assert outcome.source_status == ObjectStatus.SOURCE_KEPT.value
    assert boto3.client("s3").get_object(Bucket=settings.intake_bucket, Key=key)["Body"].read() == b"%PDF"


def _object_created(bucket: str, key: str, version_id: str, size: int) -> dict[str, Any]:
    """The SQS message body EventBridge delivers for an S3 "Object Created" event (key URL-encoded)."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
            "account": "123456789012", "time": "2026-12-01T10:00:00Z", "region": "us-east-1",
            "resources": [f"arn:aws:s3:::{bucket}"],
            "detail": {"version": "0", "bucket": {"name": bucket},
                       "object": {"key": quote_plus(key, safe="/"), "size": size, "version-id": version_id,
                                  "sequencer": "0"},
                       "request-id": "R", "requester": "123456789012", "reason": "PutObject"}}


def test_contact_lens_output_and_an_object_no_class_names_are_encrypted_and_an_excluded_report_is_not(
        settings, encrypt_handler, tmp_path):
    s3 = boto3.client("s3")
    contact = str(uuid.uuid4())
    report_key = f"{settings.connect_prefix}acme/Reports/agent-performance-{contact}.csv"
    uploads = {
        contact_lens_key("Voice", contact, WHEN): contact_lens_voice_analysis(settings.account_id, "i-1", contact),
        f"uploads/customer-list-{contact}.csv": b"name,phone\nJane Doe,+12065550100\n",
        report_key: b"agent,handled\njdoe,12\n",
    }
    versions = {key: s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=body)["VersionId"]
                for key, body in uploads.items()}

    response = encrypt_handler({"Records": [
        {"messageId": f"m{n}", "receiptHandle": f"h{n}", "eventSource": "aws:sqs", "awsRegion": "us-east-1",
         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "md5OfBody": "", "messageAttributes": {},
         "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0", "SenderId": "x",
                        "ApproximateFirstReceiveTimestamp": "0"},
         "body": json.dumps(_object_created(settings.intake_bucket, key, versions[key], len(body)))}
        for n, (key, body) in enumerate(uploads.items())]})

    assert response == {"batchItemFailures": []}
    table, reader = MetadataTable(boto3.client("dynamodb"), settings.metadata_table), VaultReader.from_settings(settings)
    expected = {contact_lens_key("Voice", contact, WHEN): ("contact-lens-voice-analysis", contact),
                f"uploads/customer-list-{contact}.csv": ("unclassified", None)}
    for key, (data_class, contact_id) in expected.items():
        record = table.get_object(VaultKey.of_source(data_class, settings.intake_bucket, key, versions[key]))
        assert record is not None, key
        assert (record.data_class, record.scope, record.contact_id, record.status) == (
            data_class, f"account/{settings.account_id}", contact_id, ObjectStatus.SOURCE_DELETED)
        out = tmp_path / uuid.uuid4().hex
        reader.decrypt_to_file(settings.vault_bucket, record.vault_key, out)  # the ciphertext is in the vault
        assert out.read_bytes() == uploads[key]
        assert s3.list_object_versions(Bucket=settings.intake_bucket, Prefix=key).get("Versions", []) == []
    # The scheduled report: untouched, unrecorded, in no class's vault space.
    assert [v["VersionId"] for v in s3.list_object_versions(Bucket=settings.intake_bucket, Prefix=report_key)["Versions"]
            ] == [versions[report_key]]
    assert s3.get_object(Bucket=settings.intake_bucket, Key=report_key)["Body"].read() == uploads[report_key]
    assert table.get_object(VaultKey.of_source("unclassified", settings.intake_bucket, report_key, versions[report_key])) is None
    s3.delete_object(Bucket=settings.intake_bucket, Key=report_key, VersionId=versions[report_key])


@pytest.fixture
def own_key_stores(settings, clone_table):
    """Key stores and metadata of our own (the stack's schemas), so switching the customer
    key here never touches the branch keys other tests share."""
    dynamodb, kms = boto3.client("dynamodb"), boto3.client("kms")
    suffix = uuid.uuid4().hex[:8]
    names = {"keystore_table": f"dc-keystore-{suffix}", "service_keystore_table": f"dc-service-{suffix}",
             "metadata_table": f"dc-metadata-{suffix}"}
    for field, name in names.items():
        clone_table(dynamodb, getattr(settings, field), name)
    customer = kms.create_key(Description="atrest data class test: customer key")["KeyMetadata"]["Arn"]
    service = kms.create_key(Description="atrest data class test: service key")["KeyMetadata"]["Arn"]
    yield replace(settings, keystore_name=names["keystore_table"], kms_key_arn=customer, service_kms_key_arn=service,
                  **names)
    for name in names.values():
        dynamodb.delete_table(TableName=name)


def test_the_service_owned_key_survives_a_customer_key_switch_untouched(own_key_stores, tmp_path):
    settings = own_key_stores
    dynamodb = boto3.client("dynamodb")
    records = _encrypt_in_process(settings, "voiceprint", "call-recording")
    service_items = dynamodb.scan(TableName=settings.service_keystore_table, ConsistentRead=True)["Items"]
    new_customer_key = boto3.client("kms").create_key(Description="the customer's new key")["KeyMetadata"]["Arn"]

    clients = AwsClients()
    plan = rekey.plan_rekey(clients.dynamodb, settings, new_customer_key)
    rekey.execute(plan, clients.kms, clients.dynamodb, settings)

    # The rekey moved the customer's branch keys and never looked at the service store.
    assert not any(ref.branch_key_id.startswith("service/") for ref in plan.pending + plan.done)
    assert _kms_arn_of(settings.keystore_table, f"account/{settings.account_id}") == {new_customer_key}
    assert dynamodb.scan(TableName=settings.service_keystore_table, ConsistentRead=True)["Items"] == service_items
    # Both still decrypt, after the switch, with the switched configuration; the voiceprint's
    # branch key is unwrapped by the service key alone, never by either customer key.
    switched = replace(settings, kms_key_arn=new_customer_key)
    fresh = AwsClients()
    calls: list[tuple[str, str]] = []
    fresh.kms.meta.events.register("after-call.kms", lambda parsed, model, **_: calls.append((model.name, parsed.get("KeyId", ""))))
    reader = VaultReader.from_settings(switched, fresh)
    used: dict[str, set[str]] = {}
    for vault_key, body in records.items():
        calls.clear()
        out = tmp_path / uuid.uuid4().hex
        result = reader.decrypt_to_file(settings.vault_bucket, vault_key, out)
        assert out.read_bytes() == body
        used[result.record.data_class] = {key for _, key in calls}
    assert used == {"voiceprint": {settings.service_kms_key_arn}, "call-recording": {new_customer_key}}


def test_each_class_key_expires_on_its_own_lifetime_including_the_service_key(own_key_stores):
    """Integration configuration rotates after 30 days (its own key), the account key after
    the stack's 365, and the service key is rotated by the same run from its own store."""
    from atrest.core.clock import ManualClock
    from atrest.flows.expire_keys import KeyLifecycle

    settings = own_key_stores
    _encrypt_in_process(settings, "knowledge-document", "integration-configuration", "voiceprint")
    clock = ManualClock()
    expiry = KeyLifecycle.from_settings(settings, clock=clock)
    account, integration = f"account/{settings.account_id}", f"account/{settings.account_id}/integration-configuration"

    clock.advance(days=31)
    month = expiry.run()
    clock.advance(days=340)
    year = expiry.run()

    assert month.keys_checked == 3  # both customer keys and the service key
    assert [r.branch_key_id for r in month.rotated] == [integration]
    assert sorted(r.branch_key_id for r in year.rotated) == sorted([account, integration, "service/voiceprint"])
    # The service key's new version is still wrapped by the service key alone.
    assert _kms_arn_of(settings.service_keystore_table, "service/voiceprint") == {settings.service_kms_key_arn}


def test_a_key_that_cannot_be_rotated_does_not_stop_the_others_and_fails_the_run(own_key_stores):
    """After `atrest rekey`, until the stack update, ExpireKeys' writer still names the old
    KMS key and the MPL refuses to version re-wrapped keys: the service key is rotated
    anyway, and the run fails loudly naming the keys it could not settle."""
    from atrest.core.clock import ManualClock
    from atrest.core.errors import AtrestError
    from atrest.flows.expire_keys import KeyLifecycle

    settings = own_key_stores
    _encrypt_in_process(settings, "knowledge-document", "voiceprint")
    clients = AwsClients()
    new_key = boto3.client("kms").create_key(Description="switched to")["KeyMetadata"]["Arn"]
    rekey.execute(rekey.plan_rekey(clients.dynamodb, settings, new_key), clients.kms, clients.dynamodb, settings)
    clock = ManualClock()
    clock.advance(days=400)
    expiry = KeyLifecycle.from_settings(settings, clock=clock)  # still configured with the old key

    with pytest.raises(AtrestError, match=rf"1 key\(s\) not settled \(account/{settings.account_id}: "):
        expiry.run()

    assert len(expiry.keystore.versions("service/voiceprint")) == 2  # rotated anyway
