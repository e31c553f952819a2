"""events/*.json are real-shaped and agree with template.yaml: the bucket names the
local stack `atrest` gets, keys URL-encoded the way S3 sends them, and the rule
picking exactly the objects it should."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import unquote_plus

import pytest

from .conftest import ACCOUNT_ID, EVENTS, REGION

EVENTBRIDGE_EVENTS = {
    "s3-object-created-recording.json": True,
    "s3-object-created-transcript.json": True,
    "s3-object-created-multipart.json": True,
    # Delivered too: the rule takes every intake object and the function skips what the
    # catalog excludes (the catalog, not the template, decides what is data).
    "s3-object-created-ignored.json": True,
}
SQS_BATCH = "sqs-batch-object-created.json"


def load(name: str) -> Any:
    return json.loads((EVENTS / name).read_text(encoding="utf-8"))


def matches(pattern: Any, event: Any) -> bool:
    """EventBridge matching for what ObjectCreatedRule uses: exact values and prefixes."""
    if isinstance(pattern, dict):
        return isinstance(event, dict) and all(k in event and matches(v, event[k]) for k, v in pattern.items())
    return any(
        (event.startswith(p["prefix"]) if isinstance(p, dict) and isinstance(event, str) else event == p)
        for p in pattern
    )


@pytest.fixture(scope="module")
def rule_pattern(stack, resources) -> dict[str, Any]:
    return stack.resolve(resources["ObjectCreatedRule"]["Properties"]["EventPattern"])


def test_every_event_file_is_covered_and_documented():
    files = {p.name for p in EVENTS.glob("*.json")}
    assert files >= set(EVENTBRIDGE_EVENTS) | {SQS_BATCH}
    readme = (EVENTS / "README.md").read_text(encoding="utf-8")
    for name in files:
        assert name in readme, f"events/README.md does not describe {name}"


@pytest.mark.parametrize("name", sorted(EVENTBRIDGE_EVENTS))
def test_eventbridge_events_have_the_s3_shape(name, stack):
    event = load(name)
    assert {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"} <= set(event)
    detail = event["detail"]
    assert {"bucket", "object", "request-id", "requester", "reason"} <= set(detail)
    assert {"key", "size", "etag", "version-id", "sequencer"} <= set(detail["object"])
    assert event["account"] == ACCOUNT_ID and event["region"] == REGION
    bucket = stack.resolve({"Ref": "IntakeBucket"})
    assert detail["bucket"]["name"] == bucket
    assert event["resources"] == [f"arn:aws:s3:::{bucket}"]
    key = detail["object"]["key"]
    assert " " not in key and ":" not in key, "S3 sends keys URL-encoded (space as '+', ':' as %3A)"


def test_event_version_appears_in_some_events():
    versions = {load(name)["detail"].get("event-version") for name in EVENTBRIDGE_EVENTS}
    assert None in versions and versions - {None}, "keep samples both with and without detail.event-version"


@pytest.mark.parametrize(("name", "expected"), sorted(EVENTBRIDGE_EVENTS.items()))
def test_rule_selects_every_object_created_in_the_intake_bucket(rule_pattern, name, expected):
    assert matches(rule_pattern, load(name)) is expected


def test_multipart_sample_exercises_the_awkward_cases():
    detail = load("s3-object-created-multipart.json")["detail"]
    assert detail["reason"] == "CompleteMultipartUpload"
    assert detail["object"]["etag"].endswith("-12")
    key = unquote_plus(detail["object"]["key"])
    assert "+" in key and " " in key and any(ord(ch) > 127 for ch in key), key


def test_recording_key_decodes_to_the_connect_layout():
    key = unquote_plus(load("s3-object-created-recording.json")["detail"]["object"]["key"])
    assert key == "connect/example-alias/CallRecordings/2026/11/30/58092a11-6075-4025-a57d-6ada88b26d5b_20261130T05:00_UTC.wav"


def test_sqs_batch_wraps_the_eventbridge_events_as_lambda_receives_them(rule_pattern):
    records = load(SQS_BATCH)["Records"]
    assert 1 < len(records) <= 10  # EncryptQueueMessages BatchSize
    assert len({r["messageId"] for r in records}) == len(records)
    for record in records:
        assert record["eventSource"] == "aws:sqs" and record["awsRegion"] == REGION
        assert record["eventSourceARN"].startswith(f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:atrest-EncryptQueue-")
        assert int(record["attributes"]["ApproximateReceiveCount"]) >= 1
        assert record["md5OfBody"] == hashlib.md5(record["body"].encode("utf-8")).hexdigest()
        body = json.loads(record["body"])
        assert matches(rule_pattern, body), "only events the rule matches reach the queue"
    assert any(int(r["attributes"]["ApproximateReceiveCount"]) > 1 for r in records), "include a redelivery"


BACKFILL_BATCH = "backfill-batch.json"


def test_backfill_batch_has_the_shape_a_distributed_map_over_list_objects_v2_sends(stack, resources):
    """ItemBatcher's {"Items", "BatchInput"}; each item as the ItemReader documents it:
    Key (not URL-encoded), quoted Etag, LastModified in epoch seconds, Size, StorageClass."""
    event = load(BACKFILL_BATCH)
    assert set(event) == {"Items", "BatchInput"}
    batch_input = event["BatchInput"]
    assert batch_input["bucket"] == stack.resolve({"Ref": "IntakeBucket"})
    assert set(batch_input) == {"bucket", "since"}  # the state machine's ItemBatcher.BatchInput
    items = event["Items"]
    assert 1 < len(items) <= resources["BackfillStateMachine"]["Properties"]["DefinitionSubstitutions"]["ItemsPerBatch"]
    for item in items:
        assert set(item) == {"Etag", "Key", "LastModified", "Size", "StorageClass"}
        assert item["Etag"].startswith('"') and item["Etag"].endswith('"')
        assert isinstance(item["LastModified"], int) and isinstance(item["Size"], int)
        assert "%" not in item["Key"], "ListObjectsV2 keys are not URL-encoded"
