"""`atrest status`: an operator's view of what is protected and what is not."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from datetime import datetime, timezone

import boto3

from atrest.pipeline import EncryptPipeline
from atrest.samples import connect_key
from atrest.source import SourceObject

WHEN = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)


def status(settings, stack, tmp_path, *args):
    env = {
        **os.environ,
        "ATREST_ACCOUNT_ID": settings.account_id, "ATREST_INTAKE_BUCKET": settings.intake_bucket,
        "ATREST_VAULT_BUCKET": settings.vault_bucket, "ATREST_KEYSTORE_TABLE": settings.keystore_table,
        "ATREST_METADATA_TABLE": settings.metadata_table, "ATREST_KMS_KEY_ARN": settings.kms_key_arn,
    }
    state = stack.to_json()
    state_file = tmp_path / "local-stack.json"
    state_file.write_text(json.dumps(state))
    for name in [k for k in env if k.startswith("ATREST_")]:
        env.pop(name)  # read the stack as an operator would: from its state file
    return subprocess.run([sys.executable, "-m", "atrest.cli", "status", "--state-file", str(state_file), *args],
                          env=env, capture_output=True, text=True, timeout=120)


def test_status_counts_encrypted_pending_failed_and_left_alone_objects_per_class(settings, clean_stack, tmp_path):
    s3 = boto3.client("s3")
    pipeline = EncryptPipeline.from_settings(settings)
    for n in range(3):
        key = connect_key(settings.connect_prefix, "acme", "CallRecordings", str(uuid.uuid4()), WHEN, "wav")
        version = s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=b"x" * 100)["VersionId"]
        pipeline.encrypt(SourceObject(settings.intake_bucket, key, version))
    pending_key = connect_key(settings.connect_prefix, "acme", "ChatTranscripts", str(uuid.uuid4()), WHEN, "json")
    s3.put_object(Bucket=settings.intake_bucket, Key=pending_key, Body=b"{}")
    s3.put_object(Bucket=settings.intake_bucket, Key=f"{settings.connect_prefix}acme/Reports/x.csv", Body=b"x")
    sqs = boto3.client("sqs")
    sqs.purge_queue(QueueUrl=clean_stack.outputs["EncryptQueueUrl"])
    failed_key = connect_key(settings.connect_prefix, "acme", "ChatTranscripts", str(uuid.uuid4()), WHEN, "json")
    sqs.send_message(QueueUrl=clean_stack.outputs["EncryptDeadLetterQueueUrl"], MessageBody=json.dumps({
        "source": "aws.s3", "detail-type": "Object Created",
        "detail": {"bucket": {"name": settings.intake_bucket}, "object": {"key": failed_key, "size": 1, "version-id": "v"}}}))

    result = status(settings, clean_stack, tmp_path, "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    classes = {(c["data_class"], c["scope"]): c for c in report["classes"]}
    scope = f"account/{settings.account_id}"
    assert classes[("call-recording", scope)]["encrypted"] == 3
    assert classes[("call-recording", scope)]["bytes_encrypted"] == 300
    assert classes[("chat-transcript", scope)]["pending"] == 1
    assert classes[("chat-transcript", scope)]["oldest_pending"]
    assert classes[("chat-transcript", scope)]["failed"] == 1
    assert report["skipped"] == 1
    assert report["dead_letters"]["EncryptDeadLetterQueue"] == 1
    assert report["kms_keys"][scope] == settings.kms_key_arn
    versions = [v for v in report["key_versions"] if v["branch_key_id"] == scope]
    assert versions and versions[0]["state"] == "ACTIVE" and versions[0]["objects"] == 3


def test_status_renders_readable_tables(settings, clean_stack, tmp_path):
    result = status(settings, clean_stack, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "objects" in result.stdout and "key versions" in result.stdout and "KMS key" in result.stdout
    assert "dead-letter queues" in result.stdout


def test_status_shows_the_service_owned_key_on_service_scopes_apart_from_the_customers(settings, clean_stack, tmp_path):
    s3 = boto3.client("s3")
    pipeline = EncryptPipeline.from_settings(settings)
    key = f"voiceprints/{uuid.uuid4()}.vp"
    version = s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=b"v" * 64)["VersionId"]
    pipeline.encrypt(SourceObject(settings.intake_bucket, key, version))

    report = json.loads(status(settings, clean_stack, tmp_path, "--json").stdout)
    text = status(settings, clean_stack, tmp_path).stdout

    assert report["kms_keys"]["service/voiceprint"] == settings.service_kms_key_arn != settings.kms_key_arn
    assert report["service_kms_key"] == settings.service_kms_key_arn
    assert f"  service/voiceprint: {settings.service_kms_key_arn}\n" in text  # no "differs" warning
