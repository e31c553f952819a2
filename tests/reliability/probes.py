"""What the fault suite looks at (buckets, records, queues) and the work its separate
processes do. Functions run in spawned processes live here, importable by name."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote_plus

import boto3

from atrest.core.settings import Settings
from atrest.flows.decrypt_object import VaultReader
from atrest.flows.encrypt_object import EncryptPipeline
from atrest.storage.intake import SourceObject
from atrest.storage.record_keys import is_object_item, objects_only
from atrest.storage.records import MetadataTable, ObjectRecord
from atrest.storage.vault_keys import VaultKey
from atrest_cli.demos.samples import connect_key

WHEN = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- objects


def recording_key(settings: Settings, alias: str = "acme-support") -> str:
    return connect_key(settings.connect_prefix, alias, "CallRecordings", str(uuid.uuid4()), WHEN, "wav")


def transcript_key(settings: Settings, alias: str = "acme-support") -> str:
    return connect_key(settings.connect_prefix, alias, "ChatTranscripts", str(uuid.uuid4()), WHEN, "json")


def upload(settings: Settings, key: str, body: bytes, **extra: Any) -> SourceObject:
    response = boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=body, **extra)
    return SourceObject(settings.intake_bucket, key, response["VersionId"], response["ETag"].strip('"'), len(body))


def vault_key_of(source: SourceObject, data_class: str = "call-recording") -> str:
    return str(VaultKey.of_source(data_class, source.bucket, source.key, source.version_id))


# --------------------------------------------------------------------------- what is stored


def source_versions(settings: Settings, key: str) -> list[str]:
    listing = boto3.client("s3").list_object_versions(Bucket=settings.intake_bucket, Prefix=key)
    return [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == key]


def vault_versions(settings: Settings, vault_key: str) -> list[str]:
    listing = boto3.client("s3").list_object_versions(Bucket=settings.vault_bucket, Prefix=vault_key)
    return [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == vault_key]


def open_uploads(settings: Settings, vault_key: str) -> list[str]:
    listing = boto3.client("s3").list_multipart_uploads(Bucket=settings.vault_bucket, Prefix=vault_key)
    return [u["UploadId"] for u in listing.get("Uploads", []) if u["Key"] == vault_key]


def vault_headers(settings: Settings) -> dict[tuple[str, str], Any]:
    """Every object version in the vault -> its ESDK message header (None: not a message)."""
    from atrest.crypto.envelope import read_header

    s3 = boto3.client("s3")
    headers = {}
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=settings.vault_bucket):
        for version in page.get("Versions", []):
            start = s3.get_object(Bucket=settings.vault_bucket, Key=version["Key"], VersionId=version["VersionId"],
                                  Range="bytes=0-65535")["Body"].read()
            headers[(version["Key"], version["VersionId"])] = read_header(start)
    return headers


def record_of(settings: Settings, vault_key: str | VaultKey) -> ObjectRecord | None:
    return MetadataTable(boto3.client("dynamodb"), settings.metadata_table).get_object(vault_key)


def object_records(settings: Settings) -> list[dict[str, Any]]:
    """Every object item in the metadata table."""
    items = boto3.client("dynamodb").scan(
        TableName=settings.metadata_table, **objects_only())["Items"]
    return items


def decrypt(settings: Settings, vault_key: str, directory: Path) -> bytes:
    out = directory / f"plain-{uuid.uuid4().hex}"
    VaultReader.from_settings(settings).decrypt_to_file(settings.vault_bucket, vault_key, out)
    data = out.read_bytes()
    out.unlink()
    return data


def queue_bodies(queue_url: str) -> list[str]:
    """The bodies of every message in a queue, left in the queue (made visible again)."""
    sqs = boto3.client("sqs")
    messages = []
    while received := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30).get("Messages"):
        messages += received
    for message in messages:
        sqs.change_message_visibility(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
    return [m["Body"] for m in messages]


def event_key(body: str) -> str:
    return unquote_plus(json.loads(body)["detail"]["object"]["key"])


def object_created(bucket: str, key: str, version_id: str | None, size: int = 0) -> dict[str, Any]:
    """An S3 "Object Created" EventBridge event as S3 sends it (key URL-encoded)."""
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2026-11-30T05:00:00Z", "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": quote_plus(key, safe="/"), "size": size, "etag": "0" * 32,
                              "version-id": version_id, "sequencer": "0"},
                   "request-id": "R", "requester": "123456789012", "reason": "PutObject"},
    }


def log_lines(captured: str) -> list[dict[str, Any]]:
    """The JSON log lines (Powertools' structured logs) in captured function output."""
    lines = []
    for line in captured.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
    return lines


# --------------------------------------------------------------------------- in other processes


def encrypt_at(settings: Settings, source: SourceObject, start_at: float) -> dict[str, Any]:
    """Encrypt `source` in this process at wall-clock `start_at`, with a pipeline of its own
    (clients built beforehand, so the processes really start together)."""
    pipeline = EncryptPipeline.from_settings(settings)
    for service in ("s3", "dynamodb", "kms"):
        pipeline.clients.client(service)
    while time.time() < start_at:
        time.sleep(0.001)
    return pipeline.encrypt(source).as_dict()


def invoke_handler_at(function: Any, aws_environment: dict[str, str], event: dict[str, Any], start_at: float) -> Any:
    """Invoke EncryptObjectFunction's handler (as Lambda runs it: its module, its template
    environment, its role) with `event` in this process at wall-clock `start_at`, like one
    warm Lambda instance of its own. Warmed first with an event for another bucket (skipped
    without touching anything), so the instances really start the delivery together."""
    from atrest_cli.local.lambda_runtime import InProcessFunction

    instance = InProcessFunction(function, aws_environment)
    warm_up = instance.invoke(object_created("not-the-intake-bucket", "warm-up", "v"))
    assert warm_up.succeeded, warm_up.error
    while time.time() < start_at:
        time.sleep(0.001)
    invocation = instance.invoke(event)
    assert invocation.succeeded, invocation.error
    return invocation.response


CRASH_EXIT = 137  # what a killed Lambda process reports (SIGKILL)

# Where a delivery dies: (client, botocore event, which matching call). The process exits at
# once (os._exit): no except, finally or __exit__ runs, as when Lambda kills an instance.
CRASH_POINTS: dict[str, tuple[str, str, int]] = {
    # the whole plaintext read and encrypted; nothing stored yet
    "after-read": ("s3", "before-call.s3.PutObject", 1),
    # the first part of a multipart upload stored, the second never sent
    "mid-upload": ("s3", "before-call.s3.UploadPart", 2),
    # the ciphertext stored and confirmed; the object's record not written
    # (the record and its count are one TransactWriteItems)
    "after-upload-before-record": ("dynamodb", "before-parameter-build.dynamodb.TransactWriteItems", 1),
    # the record committed; the plaintext not yet deleted
    "after-record-before-source-delete": ("s3", "before-parameter-build.s3.DeleteObject", 1),
    # S3 deleted the plaintext; the process died before it could mark the record
    "during-source-delete": ("s3", "after-call.s3.DeleteObject", 1),
}


def _concerns_the_source(settings: Settings, point: str, params: dict[str, Any] | None) -> bool:
    if point == "after-upload-before-record":
        puts = [item.get("Put", {}).get("Item", {}) for item in (params or {}).get("TransactItems", [])]
        return any(is_object_item(item) for item in puts)
    if point == "after-record-before-source-delete":
        return (params or {}).get("Bucket") == settings.intake_bucket
    return True


def encrypt_and_die(settings: Settings, source: SourceObject, point: str) -> None:
    """Run one delivery of `source` and kill this process at `point` (exit CRASH_EXIT)."""
    client_name, event, nth = CRASH_POINTS[point]
    pipeline = EncryptPipeline.from_settings(settings)
    matched: list[str] = []

    def die(params: dict[str, Any] | None = None, **_: Any) -> None:
        if _concerns_the_source(settings, point, params):
            matched.append(event)
            if len(matched) == nth:
                os._exit(CRASH_EXIT)

    if point == "during-source-delete":
        # Die after S3 answered the delete of the source (not of a vault version).
        deleting: list[bool] = []
        pipeline.clients.s3.meta.events.register(
            "before-parameter-build.s3.DeleteObject",
            lambda params, **_: deleting.append(params.get("Bucket") == settings.intake_bucket))
        pipeline.clients.s3.meta.events.register(event, lambda **_: deleting and deleting[-1] and os._exit(CRASH_EXIT))
    else:
        pipeline.clients.client(client_name).meta.events.register(event, die)
    pipeline.encrypt(source)
    os._exit(0)  # reaching here means the crash point was never passed: the test fails on it
