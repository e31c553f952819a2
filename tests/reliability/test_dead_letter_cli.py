"""`atrest dlq list` and `atrest dlq redrive`: what an operator sees and what moves."""

from __future__ import annotations

import contextlib
import io
import json
import os

import boto3
import pytest
from botocore.exceptions import ClientError

from atrest.flows.encrypt_object import EncryptPipeline
from atrest_cli.main import main
from atrest_cli.operations.dead_letters import DeadLetterQueue

from probes import object_created, queue_bodies, record_of, recording_key, upload, vault_key_of

pytestmark = pytest.mark.local_only("empties the stack, runs the local runner and redrives its dead-letter queues")


@pytest.fixture
def atrest(clean_stack, tmp_path, monkeypatch):
    """Run the atrest command in this process against the local stack (its state file).

    Output is captured around the command only (not with capsys, whose stream closes after
    the test and would be kept by a function's logger first created while it was in place)."""
    state_file = clean_stack.write(tmp_path / "local-stack.json")
    for name in ("AWS_ENDPOINT_URL", "AWS_DEFAULT_REGION", "AWS_REGION"):  # the CLI sets them from the state file
        monkeypatch.setenv(name, os.environ.get(name, clean_stack.region))

    def run(*args):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*args, "--state-file", str(state_file)])
        return code, out.getvalue(), err.getvalue()

    return run


def dead_letter(queue_url, body, **attributes):
    sqs = boto3.client("sqs")
    return sqs.send_message(QueueUrl=queue_url, MessageBody=body if isinstance(body, str) else json.dumps(body),
                            **attributes)["MessageId"]


def test_dlq_list_shows_first_receipt_receives_decoded_key_and_reason_and_leaves_every_message_queued(
    settings, clean_stack, atrest
):
    dlq = clean_stack.outputs["EncryptDeadLetterQueueUrl"]
    waiting_key = f"{settings.knowledge_prefix}FAQ + réponses 100% 5:00.md"
    waiting = upload(settings, waiting_key, b"# FAQ")
    done = upload(settings, recording_key(settings), b"since encrypted")
    gone = upload(settings, recording_key(settings), b"withdrawn")
    ids = {
        "waiting": dead_letter(dlq, object_created(settings.intake_bucket, waiting_key, waiting.version_id)),
        "done": dead_letter(dlq, object_created(settings.intake_bucket, done.key, done.version_id)),
        "gone": dead_letter(dlq, object_created(settings.intake_bucket, gone.key, gone.version_id)),
        "malformed": dead_letter(dlq, "not an event"),
        "undeliverable": dead_letter(dlq, object_created(settings.intake_bucket, waiting_key, waiting.version_id),
                                     MessageAttributes={"ERROR_CODE": {"DataType": "String", "StringValue": "SQS.AccessDenied"}}),
    }
    EncryptPipeline.from_settings(settings).encrypt(done)
    boto3.client("s3").delete_object(Bucket=gone.bucket, Key=gone.key, VersionId=gone.version_id)
    for _ in range(2):  # two earlier receives of every message (the function's, before dead-lettering)
        queue_bodies(dlq)

    code, out, _ = atrest("dlq", "list", "--json")

    assert code == 0
    listed = {letter["message_id"]: letter for letter in json.loads(out)}
    assert set(listed) == set(ids.values())
    assert {letter["receives"] for letter in listed.values()} == {2}
    assert all(letter["first_received"] for letter in listed.values())
    assert listed[ids["waiting"]]["source"]["key"] == waiting_key  # decoded, as in the bucket
    assert listed[ids["waiting"]]["reason"] is None  # the cause is only in the function's log
    assert listed[ids["done"]]["reason"].startswith("encrypted since (SOURCE_DELETED)")
    assert listed[ids["gone"]]["reason"] == "the source version no longer exists; a redrive skips it"
    assert listed[ids["malformed"]]["reason"].startswith("malformed event: SQS message body is not JSON")
    assert listed[ids["malformed"]]["source"] is None
    assert listed[ids["undeliverable"]]["reason"] == "EventBridge could not deliver it: SQS.AccessDenied"

    code, table, _ = atrest("dlq", "list")
    assert code == 0 and table.splitlines()[0].split() == ["message", "id", "first", "received", "receives", "source", "key", "reason"]
    assert waiting_key in table and "see the function's log" in table
    assert len(queue_bodies(dlq)) == len(ids), "listing must not consume dead letters"


def test_dlq_redrive_moves_the_chosen_dead_letter_back_and_the_pipeline_then_encrypts_it(
    settings, clean_stack, local_runner, atrest
):
    dlq = clean_stack.outputs["EncryptDeadLetterQueueUrl"]
    source = upload(settings, recording_key(settings), b"failed while KMS was throttled")
    boto3.client("sqs").purge_queue(QueueUrl=clean_stack.outputs["EncryptQueueUrl"])  # it failed: only the dead letter is left
    chosen = dead_letter(dlq, object_created(settings.intake_bucket, source.key, source.version_id))
    other = dead_letter(dlq, "not an event")

    code, out, _ = atrest("dlq", "redrive", chosen)

    assert code == 0 and out.startswith("moved 1 message(s) back to EncryptQueue")
    assert queue_bodies(dlq) == ["not an event"]
    local_runner.drain(timeout=30)
    assert record_of(settings, vault_key_of(source)) is not None

    code, out, _ = atrest("dlq", "redrive", "--all")
    assert code == 0 and f"{other} -> " in out
    assert queue_bodies(dlq) == []
    assert queue_bodies(clean_stack.outputs["EncryptQueueUrl"]) == ["not an event"]


def test_dlq_redrive_of_an_unknown_message_id_fails_and_moves_nothing(clean_stack, atrest):
    dlq = clean_stack.outputs["EncryptDeadLetterQueueUrl"]
    dead_letter(dlq, "not an event")

    code, out, err = atrest("dlq", "redrive", "00000000-0000-0000-0000-000000000000")

    assert code == 1 and "not in the dead-letter queue: 00000000-0000-0000-0000-000000000000" in err
    assert out.startswith("moved 0 message(s)")
    assert queue_bodies(dlq) == ["not an event"]


def test_a_redrive_that_cannot_send_keeps_the_dead_letter_visible(clean_stack):
    dlq, queue = clean_stack.outputs["EncryptDeadLetterQueueUrl"], clean_stack.outputs["EncryptQueueUrl"]
    dead_letter(dlq, "keep me")
    sqs = boto3.client("sqs")

    def refuse(**_):
        raise ClientError({"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue", "Message": "gone"}}, "SendMessage")

    sqs.meta.events.register("before-call.sqs.SendMessage", refuse)

    with pytest.raises(ClientError):
        DeadLetterQueue(sqs, dlq, queue).redrive()

    assert queue_bodies(dlq) == ["keep me"]  # still there, and visible at once (not held for HOLD_SECONDS)
    assert queue_bodies(queue) == []
