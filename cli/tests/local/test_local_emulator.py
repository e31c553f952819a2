"""The embedded emulator: S3 -> EventBridge -> SQS events with the shape AWS gives them."""

from __future__ import annotations

import json
import uuid

import boto3
import pytest

from atrest_cli.local.emulator import Emulator, EmulatorError

pytestmark = pytest.mark.local_only("tests the embedded emulator itself")


@pytest.fixture
def watched_bucket(emulator):
    """A versioned bucket with EventBridge on, and a rule sending its Object Created events
    under `watched/` to a queue; yields (bucket, queue_url)."""
    suffix = uuid.uuid4().hex[:10]
    s3, sqs, events = boto3.client("s3"), boto3.client("sqs"), boto3.client("events")
    bucket = f"watched-{suffix}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"EventBridgeConfiguration": {}})
    queue_url = sqs.create_queue(QueueName=f"watched-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    # A schedule rule with a Lambda target first: unpatched moto 5.2.5 stops delivering at it.
    events.put_rule(Name=f"nightly-{suffix}", ScheduleExpression="rate(1 day)")
    events.put_targets(Rule=f"nightly-{suffix}", Targets=[{"Id": "fn", "Arn": "arn:aws:lambda:us-east-1:123456789012:function:nightly"}])
    pattern = {"source": ["aws.s3"], "detail-type": ["Object Created"], "detail": {"bucket": {"name": [bucket]}, "object": {"key": [{"prefix": "watched/"}]}}}
    events.put_rule(Name=f"created-{suffix}", EventPattern=json.dumps(pattern))
    events.put_targets(Rule=f"created-{suffix}", Targets=[{"Id": "queue", "Arn": queue_arn}])
    yield bucket, queue_url
    for rule in (f"nightly-{suffix}", f"created-{suffix}"):
        events.remove_targets(Rule=rule, Ids=[t["Id"] for t in events.list_targets_by_rule(Rule=rule)["Targets"]])
        events.delete_rule(Name=rule)


def received_events(queue_url: str) -> list[dict]:
    messages = boto3.client("sqs").receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(message["Body"]) for message in messages]


def test_an_object_created_event_carries_the_url_encoded_key_as_s3_sends_it(watched_bucket):
    bucket, queue_url = watched_bucket
    key = "watched/2026/11/30/agent: call+transfer 1.wav"
    put = boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=b"RIFF")

    [event] = received_events(queue_url)

    assert event["detail"]["object"]["key"] == "watched/2026/11/30/agent%3A+call%2Btransfer+1.wav"
    assert event["detail"]["object"]["etag"] == put["ETag"].strip('"')
    assert event["detail"]["object"]["version-id"] == put["VersionId"]
    assert event["detail"]["object"]["size"] == 4
    assert "eTag" not in event["detail"]["object"]
    assert event["detail"]["reason"] == "PutObject"
    assert event["detail"]["event-version"] == "1.0"
    assert event["detail"]["requester"] == "123456789012"
    assert {k: event[k] for k in ("version", "detail-type", "source", "account", "region", "resources")} == {
        "version": "0", "detail-type": "Object Created", "source": "aws.s3", "account": "123456789012",
        "region": "us-east-1", "resources": [f"arn:aws:s3:::{bucket}"],
    }
    assert event["time"].endswith("Z") and "T" in event["time"]


def test_every_event_has_its_own_id_and_a_growing_sequencer(watched_bucket):
    bucket, queue_url = watched_bucket
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key="watched/a", Body=b"1")
    s3.put_object(Bucket=bucket, Key="watched/a", Body=b"2")

    first, second = sorted(received_events(queue_url), key=lambda e: e["detail"]["object"]["sequencer"])

    assert first["id"] != second["id"]
    assert first["detail"]["object"]["sequencer"] < second["detail"]["object"]["sequencer"]


def test_copy_and_multipart_uploads_say_which_call_created_the_object(watched_bucket):
    bucket, queue_url = watched_bucket
    s3 = boto3.client("s3")
    s3.put_object(Bucket=bucket, Key="elsewhere/original", Body=b"x")
    s3.copy_object(Bucket=bucket, Key="watched/copy", CopySource={"Bucket": bucket, "Key": "elsewhere/original"})
    upload = s3.create_multipart_upload(Bucket=bucket, Key="watched/multipart")
    part = s3.upload_part(Bucket=bucket, Key="watched/multipart", UploadId=upload["UploadId"], PartNumber=1, Body=b"y" * 10)
    s3.complete_multipart_upload(Bucket=bucket, Key="watched/multipart", UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})

    reasons = {e["detail"]["object"]["key"]: e["detail"]["reason"] for e in received_events(queue_url)}

    assert reasons == {"watched/copy": "CopyObject", "watched/multipart": "CompleteMultipartUpload"}


def test_a_completed_multipart_upload_answers_with_its_composite_checksum_as_s3_does(watched_bucket):
    bucket, _ = watched_bucket
    s3 = boto3.client("s3")
    upload = s3.create_multipart_upload(Bucket=bucket, Key="elsewhere/parts", ChecksumAlgorithm="SHA256")
    parts = []
    for number, body in enumerate([b"a" * (5 * 1024 * 1024), b"b" * 10], start=1):
        part = s3.upload_part(Bucket=bucket, Key="elsewhere/parts", UploadId=upload["UploadId"], PartNumber=number,
                              Body=body, ChecksumAlgorithm="SHA256")
        parts.append({"PartNumber": number, "ETag": part["ETag"], "ChecksumSHA256": part["ChecksumSHA256"]})
    plain = s3.create_multipart_upload(Bucket=bucket, Key="elsewhere/plain")
    part = s3.upload_part(Bucket=bucket, Key="elsewhere/plain", UploadId=plain["UploadId"], PartNumber=1, Body=b"c")

    done = s3.complete_multipart_upload(Bucket=bucket, Key="elsewhere/parts", UploadId=upload["UploadId"],
                                        MultipartUpload={"Parts": parts})
    without = s3.complete_multipart_upload(Bucket=bucket, Key="elsewhere/plain", UploadId=plain["UploadId"],
                                           MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})

    head = s3.head_object(Bucket=bucket, Key="elsewhere/parts", ChecksumMode="ENABLED")
    assert done["ChecksumSHA256"].endswith("-2") and done["ChecksumType"] == "COMPOSITE"
    assert done["ChecksumSHA256"].split("-")[0] == head["ChecksumSHA256"].split("-")[0]
    assert "ChecksumSHA256" not in without  # no checksum asked for, none answered (as on S3)


def test_a_permanent_deletion_says_so(watched_bucket):
    bucket, queue_url = watched_bucket
    s3, sqs, events = boto3.client("s3"), boto3.client("sqs"), boto3.client("events")
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rule = f"deleted-{bucket}"
    events.put_rule(Name=rule, EventPattern=json.dumps({"source": ["aws.s3"], "detail-type": ["Object Deleted"]}))
    events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": queue_arn}])
    version = s3.put_object(Bucket=bucket, Key="elsewhere/gone soon", Body=b"x")["VersionId"]
    try:
        s3.delete_object(Bucket=bucket, Key="elsewhere/gone soon", VersionId=version)

        [event] = received_events(queue_url)
    finally:
        events.remove_targets(Rule=rule, Ids=["queue"])
        events.delete_rule(Name=rule)

    assert event["detail-type"] == "Object Deleted"
    assert event["detail"]["object"] == {"key": "elsewhere/gone+soon", "version-id": version, "sequencer": event["detail"]["object"]["sequencer"]}
    assert (event["detail"]["reason"], event["detail"]["deletion-type"]) == ("DeleteObject", "Permanently Deleted")


def test_objects_outside_the_rules_prefix_send_nothing(watched_bucket):
    bucket, queue_url = watched_bucket
    boto3.client("s3").put_object(Bucket=bucket, Key="unwatched/report.csv", Body=b"x")

    assert received_events(queue_url) == []


def test_put_events_reach_an_sqs_target_with_the_account(emulator):
    sqs, events = boto3.client("sqs"), boto3.client("events")
    suffix = uuid.uuid4().hex[:10]
    queue_url = sqs.create_queue(QueueName=f"contact-{suffix}")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name=f"contact-{suffix}", EventPattern=json.dumps({"source": [f"test.{suffix}"]}))
    events.put_targets(Rule=f"contact-{suffix}", Targets=[{"Id": "queue", "Arn": queue_arn}])

    events.put_events(Entries=[{"Source": f"test.{suffix}", "DetailType": "Contact Event", "Detail": json.dumps({"n": 1})}])

    [event] = received_events(queue_url)
    assert event["account"] == "123456789012"
    assert event["detail"] == {"n": 1}


def test_a_second_emulator_in_the_same_process_is_refused(emulator):
    with pytest.raises(EmulatorError, match="already runs in this process"):
        Emulator().start()


def test_a_port_in_use_is_reported_instead_of_hanging(emulator):
    with pytest.raises(EmulatorError, match=f"cannot listen on 127.0.0.1:{emulator.port}"):
        Emulator(port=emulator.port).start()


def test_the_emulator_environment_points_standard_sdk_variables_at_it(emulator):
    assert emulator.environment() == {
        "AWS_ENDPOINT_URL": emulator.endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
    assert emulator.endpoint.startswith("http://127.0.0.1:")
