"""Upload -> S3 -> EventBridge -> SQS -> EncryptObjectFunction -> vault + record, as deployed."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone

import boto3
import pytest

from atrest.flows.decrypt_object import VaultReader
from atrest.storage.records import MetadataTable, ObjectStatus
from atrest.storage.vault_keys import VaultKey
from atrest_cli.demos.samples import call_recording_wav, chat_transcript, connect_key

pytestmark = pytest.mark.local_only("processes the queues with the local runner on an emptied stack")

WHEN = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)


def test_uploads_flow_through_events_to_verified_vault_objects_and_the_plaintext_goes(settings, local_runner, tmp_path):
    s3 = boto3.client("s3")
    contact = str(uuid.uuid4())
    uploads = {
        connect_key(settings.connect_prefix, "acme", "CallRecordings", contact, WHEN, "wav"): ("call-recording", call_recording_wav(1)),
        connect_key(settings.connect_prefix, "acme", "ChatTranscripts", contact, WHEN, "json"):
            ("chat-transcript", chat_transcript(settings.account_id, "i-1", contact)),
        f"{settings.knowledge_prefix}Política + anexo 5:00.pdf": ("knowledge-document", b"%PDF-1.7"),
    }
    versions = {key: s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=body)["VersionId"]
                for key, (_, body) in uploads.items()}

    stats = local_runner.drain(timeout=60)

    assert stats.failed_invocations == 0
    table = MetadataTable(boto3.client("dynamodb"), settings.metadata_table)
    reader = VaultReader.from_settings(settings)
    for key, (data_class, body) in uploads.items():
        record = table.get_object(VaultKey.of_source(data_class, settings.intake_bucket, key, versions[key]))
        assert record is not None, key
        assert record.status is ObjectStatus.SOURCE_DELETED
        assert record.source_key == key
        out = tmp_path / uuid.uuid4().hex
        reader.decrypt_to_file(settings.vault_bucket, record.vault_key, out)
        assert out.read_bytes() == body
    assert s3.list_object_versions(Bucket=settings.intake_bucket).get("Versions", []) == []


def test_objects_the_catalog_excludes_are_skipped_and_stay(settings, local_runner):
    s3 = boto3.client("s3")
    report = f"{settings.connect_prefix}acme/Reports/agents.csv"  # a scheduled report: no customer content
    s3.put_object(Bucket=settings.intake_bucket, Key=report, Body=b"name\n")
    stats = local_runner.drain(timeout=10)
    assert stats.invocations == 1 and not stats.errors  # delivered, excluded by the catalog, left alone
    assert boto3.client("s3").list_objects_v2(Bucket=settings.vault_bucket).get("KeyCount", 0) == 0
    assert [v["Key"] for v in s3.list_object_versions(Bucket=settings.intake_bucket)["Versions"]] == [report]


def test_a_malformed_message_ends_in_the_dead_letter_queue_without_blocking_its_batch(settings, clean_stack, local_runner):
    sqs = boto3.client("sqs")
    queue_url = clean_stack.outputs["EncryptQueueUrl"]
    dlq_url = clean_stack.outputs["EncryptDeadLetterQueueUrl"]
    key = connect_key(settings.connect_prefix, "acme", "ChatTranscripts", str(uuid.uuid4()), WHEN, "json")
    sqs.send_message(QueueUrl=queue_url, MessageBody='{"detail-type": "Object Created", "source": "aws.s3"}')
    boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=b"{}")

    stats = local_runner.drain(timeout=60)

    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, AttributeNames=["All"]).get("Messages", [])
    assert [json.loads(m["Body"]).get("detail-type") for m in dead] == ["Object Created"]
    assert int(dead[0]["Attributes"]["ApproximateReceiveCount"]) >= int(clean_stack.parameters["MaxReceiveCount"])
    assert stats.invocations >= int(clean_stack.parameters["MaxReceiveCount"])
    # The good object in the same flow was encrypted.
    assert boto3.client("s3").list_object_versions(Bucket=settings.intake_bucket, Prefix=key).get("Versions", []) == []
