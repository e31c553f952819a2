"""Poison messages: a malformed event and an object that always fails end in the dead-letter
queue after MaxReceiveCount receives, each failure logged with its reason as a structured
line, and neither holds up the rest of its batch. (A malformed message alone:
tests/integration/test_end_to_end.py; the handler's partial batch response:
tests/integration/test_encrypt_handler.py.)"""

from __future__ import annotations

import json

import boto3
from botocore.exceptions import ClientError
import pytest

from atrest_cli.local.runner import Runner

from probes import (
    event_key, log_lines, object_created, queue_bodies, record_of, recording_key, source_versions, transcript_key,
    upload, vault_key_of,
)

pytestmark = pytest.mark.local_only("runs the functions with the local runner on an emptied stack")


def test_a_malformed_event_and_an_object_that_always_fails_are_dead_lettered_with_reasons_and_block_nothing(
    settings, clean_stack, function_logs
):
    runner = Runner(clean_stack, retry_delay_seconds=1, function_stdout=function_logs)
    # Load the function (its cold start), then make one object unreadable for it, as a
    # recording written with a KMS key the function may not use would be.
    runner.invoke("EncryptObjectFunction", object_created(settings.intake_bucket, "exports/warm-up.csv", None))
    poison_key = recording_key(settings)

    def access_denied(params, **_):
        if params["Bucket"] == settings.intake_bucket and params["Key"] == poison_key:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "kms:Decrypt denied"}}, "GetObject")

    # Every pipeline of the function (one per message in flight), built now or later.
    runner.function("EncryptObjectFunction").module.pipelines.each(
        lambda pipeline: pipeline.clients.s3.meta.events.register("before-parameter-build.s3.GetObject", access_denied))
    poison = upload(settings, poison_key, b"unreadable for the function")
    good = upload(settings, transcript_key(settings), b'{"Transcript": []}')
    queue_url, dlq_url = clean_stack.outputs["EncryptQueueUrl"], clean_stack.outputs["EncryptDeadLetterQueueUrl"]
    boto3.client("sqs").send_message(QueueUrl=queue_url, MessageBody='{"detail-type": "Object Created"}')

    assert runner.process_once() == 3  # one batch: the poison, the malformed event, the good object
    assert record_of(settings, vault_key_of(good, "chat-transcript")) is not None, "the good object waited for the bad ones"
    runner.drain(timeout=60)

    dead = queue_bodies(dlq_url)
    assert sorted(event_key(b) if "detail" in json.loads(b) else b for b in dead) == sorted(
        [poison_key, '{"detail-type": "Object Created"}'])
    assert source_versions(settings, poison_key) == [poison.version_id], "a dead-lettered object keeps its plaintext"
    receives = int(clean_stack.parameters["MaxReceiveCount"])
    logged = log_lines(function_logs.getvalue())
    failures = [line for line in logged if line.get("key") == poison_key and line.get("level") == "ERROR"]
    assert len(failures) == receives
    assert all("AccessDenied" in line["exception"] and line["version_id"] == poison.version_id for line in failures)
    malformed = [line for line in logged if str(line.get("message")).startswith("malformed event")]
    assert len(malformed) == receives
    assert all("expected source aws.s3" in line["reason"] and line["message_id"] for line in malformed)
