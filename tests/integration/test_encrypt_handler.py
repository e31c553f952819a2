"""The EncryptObject Lambda handler: batches, bare events, retries, logs."""

from __future__ import annotations

import io
import logging
import uuid
from dataclasses import replace
from datetime import datetime, timezone

import boto3
import pytest

from atrest_cli.demos.samples import chat_transcript, connect_key

from s3_events import object_created, sqs_batch

pytestmark = pytest.mark.local_only("invokes EncryptObjectFunction's handler in this process")

WHEN = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)


def transcript_key(settings):
    return connect_key(settings.connect_prefix, "acme", "ChatTranscripts", str(uuid.uuid4()), WHEN, "json")


def put(settings, key, body):
    return boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=body)["VersionId"]


def test_one_bad_message_fails_alone_and_the_rest_of_the_batch_is_processed(settings, encrypt_handler):
    good_key = transcript_key(settings)
    good = object_created(settings.intake_bucket, good_key, put(settings, good_key, b"{}"))
    excluded_key = f"{settings.connect_prefix}acme/Reports/today.csv"  # a scheduled report: the catalog excludes it
    ignored = object_created(settings.intake_bucket, excluded_key, put(settings, excluded_key, b"x"), size=1)

    response = encrypt_handler(sqs_batch(good, "this is not an event", ignored))

    assert response == {"batchItemFailures": [{"itemIdentifier": "m1"}]}
    versions = boto3.client("s3").list_object_versions(Bucket=settings.intake_bucket, Prefix=good_key).get("Versions", [])
    assert versions == []  # encrypted, then its plaintext removed
    assert boto3.client("s3").list_object_versions(Bucket=settings.intake_bucket, Prefix=excluded_key)["Versions"]


def test_a_bare_eventbridge_event_is_accepted_so_sample_events_replay_directly(settings, encrypt_handler):
    key = transcript_key(settings)
    result = encrypt_handler(object_created(settings.intake_bucket, key, put(settings, key, b"{}")))
    assert result["outcome"] == "encrypted" and result["data_class"] == "chat-transcript"


def test_the_same_event_delivered_twice_encrypts_once(settings, encrypt_handler):
    key = transcript_key(settings)
    event = object_created(settings.intake_bucket, key, put(settings, key, b"{}"))
    first = encrypt_handler(sqs_batch(event))
    second = encrypt_handler(sqs_batch(event))
    assert first == second == {"batchItemFailures": []}
    bare = encrypt_handler(event)
    listing = boto3.client("s3").list_object_versions(Bucket=settings.vault_bucket, Prefix=bare["vault_key"])
    assert len(listing["Versions"]) == 1


# Issue 17: per service at most the S3 Encryption Client's requests per object plus 2
# (S3EC: kms 1, s3 2, dynamodb 0). Counts are behaviour, not timing.
AT_MOST_PER_OBJECT = {"dynamodb": 2, "s3": 4, "kms": 3}


@pytest.mark.parametrize("keep_source", [False, True], ids=["source-deleted", "source-kept"])
def test_one_small_object_through_the_handler_costs_at_most_the_s3ec_requests_plus_two_per_service(
    settings, encrypt_function, encrypt_handler, monkeypatch, keep_source
):
    function = encrypt_function()
    encrypt_handler(sqs_batch(object_created(settings.intake_bucket, key := transcript_key(settings),
                                             put(settings, key, b"{}"))))  # cold start: branch key, key version
    pipeline = function.module.pipeline
    monkeypatch.setattr(pipeline, "settings", replace(pipeline.settings, keep_source=keep_source))
    calls = function.module.clients.calls
    before = dict(calls)
    key = transcript_key(settings)
    response = encrypt_handler(sqs_batch(object_created(settings.intake_bucket, key, put(settings, key, b'{"a": 1}'))))

    assert response == {"batchItemFailures": []}
    used = {service: calls[service] - before.get(service, 0) for service in calls if calls[service] - before.get(service, 0)}
    print(f"requests per object ({'kept' if keep_source else 'deleted'} source): {used}")
    assert {service: n for service, n in used.items() if n > AT_MOST_PER_OBJECT.get(service, 0)} == {}, used
    kept = boto3.client("s3").list_object_versions(Bucket=settings.intake_bucket, Prefix=key).get("Versions", [])
    assert bool(kept) is keep_source


def test_url_encoded_keys_with_unicode_and_plus_are_found_and_encrypted(settings, encrypt_handler):
    key = f"{settings.knowledge_prefix}FAQ + réponses 5:00.md"
    event = object_created(settings.intake_bucket, key, put(settings, key, b"# FAQ"))
    assert "%3A" in event["detail"]["object"]["key"] and "+%2B+" in event["detail"]["object"]["key"]
    result = encrypt_handler(event)
    assert result["outcome"] == "encrypted" and result["source"]["key"] == key


def test_a_deleted_source_is_skipped_and_not_retried(settings, encrypt_handler):
    key = transcript_key(settings)
    version = put(settings, key, b"{}")
    boto3.client("s3").delete_object(Bucket=settings.intake_bucket, Key=key, VersionId=version)
    response = encrypt_handler(sqs_batch(object_created(settings.intake_bucket, key, version)))
    assert response == {"batchItemFailures": []}


def test_logs_carry_no_transcript_text_or_phone_numbers(settings, encrypt_handler):
    transcript = chat_transcript(settings.account_id, "instance-1", "contact-1")
    key = transcript_key(settings)
    handler = logging.getLogger("atrest").handlers[0]  # Powertools' handler: what Lambda would ship to CloudWatch
    captured = io.StringIO()
    previous = handler.setStream(captured)
    try:
        encrypt_handler(sqs_batch(object_created(settings.intake_bucket, key, put(settings, key, transcript))))
    finally:
        handler.setStream(previous)
    logs = captured.getvalue()
    assert "object encrypted" in logs  # the handler did log, and to where we looked
    for secret in ("+1 206 555 0100", "update the card", "phone number on file"):
        assert secret not in logs


def test_a_backfill_batch_from_the_state_machine_encrypts_its_listed_objects(settings, encrypt_handler):
    s3 = boto3.client("s3")
    keys = [transcript_key(settings) for _ in range(3)]
    for key in keys:
        put(settings, key, b'{"Transcript": []}')
    listing = s3.list_objects_v2(Bucket=settings.intake_bucket, Prefix=settings.connect_prefix)["Contents"]
    items = [{"Key": o["Key"], "Etag": o["ETag"], "Size": o["Size"], "LastModified": o["LastModified"].isoformat()}
             for o in listing if o["Key"] in keys]
    items.append({"Key": f"{settings.connect_prefix}acme/Reports/not-ours.csv", "Etag": '"0"', "Size": 1,
                  "LastModified": "2026-01-01T00:00:00Z"})  # a scheduled report: the catalog excludes it

    result = encrypt_handler({"Items": items, "BatchInput": {"bucket": settings.intake_bucket, "since": ""}})

    assert result == {"objects": 4, "outcomes": {"encrypted": 3, "excluded": 1}}
    for key in keys:
        assert s3.list_object_versions(Bucket=settings.intake_bucket, Prefix=key).get("Versions", []) == []


def test_a_backfill_batch_passes_over_objects_older_than_since(settings, encrypt_handler):
    key = transcript_key(settings)
    put(settings, key, b"{}")
    items = [{"Key": key, "Etag": '"x"', "Size": 2, "LastModified": "2020-01-01T00:00:00.000Z"}]
    result = encrypt_handler({"Items": items, "BatchInput": {"bucket": settings.intake_bucket, "since": "2021-01-01T00:00:00Z"}})
    assert result == {"objects": 0, "outcomes": {}}


def test_open_uploads_are_looked_for_only_when_the_message_was_received_before(settings, cold_function):
    """An SQS message received for the first time follows no attempt that could have died
    mid-upload: no ListMultipartUploads for it. A message received again (a retry) looks."""
    made: list[str] = []
    cold_function.module.pipelines.each(
        lambda pipeline: pipeline.clients.s3.meta.events.register("before-call.s3", lambda model, **_: made.append(model.name)))
    receive_counts = {}
    for receive_count in ("1", "2"):
        key = transcript_key(settings)
        body = b"{" + b" " * (settings.part_size + 1) + b"}"  # above one part: a multipart upload
        batch = sqs_batch(object_created(settings.intake_bucket, key, put(settings, key, body), size=len(body)))
        batch["Records"][0]["attributes"]["ApproximateReceiveCount"] = receive_count
        made.clear()
        invocation = cold_function.invoke(batch)
        assert invocation.succeeded and invocation.response == {"batchItemFailures": []}, invocation.error
        receive_counts[receive_count] = list(made)

    assert "CompleteMultipartUpload" in receive_counts["1"] and "ListMultipartUploads" not in receive_counts["1"]
    assert "ListMultipartUploads" in receive_counts["2"]
