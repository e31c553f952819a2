"""The local runner: the event flow Lambda provides on AWS, with handlers run in-process.

Uses the small stack in local_stack_fixture/ (`stack`, conftest.py; not the real encrypt
handler), whose handlers record what they receive in a results bucket and fail on demand.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Callable

import boto3
import pytest

from atrest_cli.local.runner import DrainTimeout, Runner

pytestmark = pytest.mark.local_only("tests the local runner on a stack of its own")


@pytest.fixture
def runner(stack):
    runner = Runner(stack, retry_delay_seconds=0)
    yield runner
    runner.stop()


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def upload(stack, key: str, body: bytes = b"data") -> None:
    boto3.client("s3").put_object(Bucket=stack.physical_id("SourceBucket"), Key=key, Body=body)


def results(stack, prefix: str) -> dict[str, Any]:
    s3 = boto3.client("s3")
    bucket = stack.physical_id("ResultsBucket")
    listing = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {item["Key"]: json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()) for item in listing}


def queue_messages(stack, logical_id: str) -> list[dict]:
    return boto3.client("sqs").receive_message(
        QueueUrl=stack.physical_id(logical_id), MaxNumberOfMessages=10, AttributeNames=["All"]
    ).get("Messages", [])


def test_an_uploaded_object_invokes_the_function_with_the_lambda_sqs_event(stack, runner):
    upload(stack, "incoming/a b:c.txt")

    stats = runner.drain(timeout=10)

    [processed] = results(stack, "processed/").values()
    record = processed["record"]
    assert set(record) == {
        "messageId", "receiptHandle", "body", "attributes", "messageAttributes", "md5OfBody",
        "eventSource", "eventSourceARN", "awsRegion",
    }
    assert {"ApproximateReceiveCount", "SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(record["attributes"])
    assert record["attributes"]["ApproximateReceiveCount"] == "1"
    assert record["md5OfBody"] == hashlib.md5(record["body"].encode()).hexdigest()
    assert (record["eventSource"], record["eventSourceARN"], record["awsRegion"]) == (
        "aws:sqs", stack.attribute("WorkQueue", "Arn"), "us-east-1",
    )
    assert json.loads(record["body"])["detail"]["object"]["key"] == "incoming/a+b%3Ac.txt"
    assert (stats.invocations, stats.messages_deleted, stats.messages_returned) == (1, 1, 0)
    assert queue_messages(stack, "WorkQueue") == []


def test_the_handler_sees_its_environment_and_a_lambda_context(stack, runner):
    upload(stack, "incoming/context.txt")
    runner.drain(timeout=10)

    [processed] = results(stack, "processed/").values()
    invocation = processed["invocation"]
    function = stack.function("RecorderFunction")
    assert invocation["environment"] == {
        "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
        "RESULTS_BUCKET": stack.physical_id("ResultsBucket"),
        "ITEMS_TABLE": stack.physical_id("ItemsTable"),
        "STACK_REGION": "us-east-1",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    assert (invocation["function_name"], invocation["invoked_function_arn"], invocation["memory_limit_in_mb"]) == (
        function.function_name, function.arn, 256,
    )
    assert 0 < invocation["remaining_ms"] <= 30_000


def test_objects_outside_the_watched_prefix_invoke_nothing(stack, runner):
    upload(stack, "elsewhere/skip.txt")

    stats = runner.drain(timeout=5)

    assert stats.invocations == 0
    assert results(stack, "") == {}


def test_a_reported_failure_is_retried_and_then_dead_lettered_while_the_rest_of_the_batch_succeeds(stack, runner):
    upload(stack, "incoming/ok.txt")
    upload(stack, "incoming/fail-this.txt")

    stats = runner.drain(timeout=10)

    assert len(results(stack, "processed/")) == 1
    attempts = sorted(key.rsplit("/", 1)[1] for key in results(stack, "attempts/"))
    max_receive_count = int(stack.parameters["MaxReceiveCount"])
    assert attempts == [str(n) for n in range(1, max_receive_count + 1)]
    [dead] = queue_messages(stack, "DeadLetterQueue")
    assert json.loads(dead["Body"])["detail"]["object"]["key"] == "incoming/fail-this.txt"
    assert queue_messages(stack, "WorkQueue") == []
    assert (stats.messages_deleted, stats.messages_returned) == (1, max_receive_count)


def test_a_handler_that_raises_fails_its_whole_batch(stack, runner):
    upload(stack, "incoming/fine.txt")
    upload(stack, "incoming/raise-now.txt")

    stats = runner.drain(timeout=10)

    dead_keys = sorted(json.loads(m["Body"])["detail"]["object"]["key"] for m in queue_messages(stack, "DeadLetterQueue"))
    assert dead_keys == ["incoming/fine.txt", "incoming/raise-now.txt"]
    assert stats.messages_deleted == 0
    assert stats.failed_invocations == int(stack.parameters["MaxReceiveCount"])
    assert stats.errors[0].error["errorType"] == "RuntimeError"


def test_a_failed_message_waits_for_the_retry_delay_before_it_is_retried(stack):
    runner = Runner(stack, retry_delay_seconds=1)
    upload(stack, "incoming/fail-later.txt")

    assert runner.process_once() == 1
    assert runner.process_once() == 0  # still invisible
    assert wait_for(lambda: runner.process_once(), timeout=5) == 1

    assert len(results(stack, "attempts/")) == 2


def test_drain_gives_up_after_its_timeout_and_says_what_is_left(stack):
    runner = Runner(stack, retry_delay_seconds=30)
    upload(stack, "incoming/fail-slowly.txt")

    with pytest.raises(DrainTimeout) as raised:
        runner.drain(timeout=0.5)

    assert raised.value.backlog[stack.physical_id("WorkQueue")] == 1


def test_messages_with_attributes_arrive_in_lambdas_camel_case_shape(stack, runner):
    body = json.dumps({"detail": {"object": {"key": "incoming/direct.txt"}}})
    boto3.client("sqs").send_message(
        QueueUrl=stack.physical_id("WorkQueue"),
        MessageBody=body,
        MessageAttributes={
            "origin": {"DataType": "String", "StringValue": "backfill"},
            "blob": {"DataType": "Binary", "BinaryValue": b"\x00\x01"},
        },
    )

    runner.drain(timeout=10)

    [processed] = results(stack, "processed/").values()
    attributes = processed["record"]["messageAttributes"]
    assert attributes["origin"] == {"stringValue": "backfill", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
    assert attributes["blob"] == {"binaryValue": "AAE=", "stringListValues": [], "binaryListValues": [], "dataType": "Binary"}


def test_schedules_are_played_with_a_scheduled_event_or_the_targets_input(stack, runner):
    invocations = runner.fire_schedules()

    assert [i.succeeded for i in invocations] == [True, True]
    events = [tick["event"] for tick in results(stack, "ticks/").values()]
    scheduled = next(e for e in events if e.get("detail-type") == "Scheduled Event")
    assert scheduled["source"] == "aws.events"
    [hourly] = [source for source in stack.function("TickFunction").schedule_sources if source.input is None]
    assert scheduled["resources"] == [hourly.rule_arn]
    assert {"from": "NightlyRule"} in events


class MovableClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_schedule_rules_fire_on_their_own_rate_with_what_their_target_sends(stack):
    clock = MovableClock()
    runner = Runner(stack, retry_delay_seconds=0, clock=clock)
    runner.arm_schedules()

    assert runner.fire_due_schedules() == []  # EventBridge fires a rate rule one period after it is created
    clock.now += 3600  # rate(1 hour): TickFunction's Hourly event
    assert [i.succeeded for i in runner.fire_due_schedules()] == [True]
    assert [e["event"]["detail-type"] for e in results(stack, "ticks/").values()] == ["Scheduled Event"]
    clock.now += 1800
    assert runner.fire_due_schedules() == []
    clock.now += 23 * 3600  # a day after the start: NightlyRule (rate(1 day)) fires with its Input, and the hourly one again
    assert len(runner.fire_due_schedules()) == 2
    assert {"from": "NightlyRule"} in [tick["event"] for tick in results(stack, "ticks/").values()]


def test_the_translated_templates_schedules_carry_its_rates_and_states(local_stack):
    expire = local_stack.function("ExpireKeysFunction").schedule_sources
    sweep = local_stack.function("SweepRetrievalsFunction").schedule_sources
    assert [(s.period_seconds, s.enabled) for s in expire] == [(3600.0, True)]  # ExpiryScheduleRate: rate(1 hour)
    assert [(s.period_seconds, s.enabled) for s in sweep] == [(300.0, True)]


@pytest.mark.parametrize("expression", ["rate(1 hours)", "rate(5 minute)", "rate(0 minutes)", "every hour"])
def test_schedule_expressions_eventbridge_refuses_are_refused(expression):
    from atrest_cli.local.stack import rate_seconds

    with pytest.raises(ValueError):
        rate_seconds(expression)


def test_in_the_background_the_runner_processes_uploads_and_plays_schedules(stack):
    with Runner(stack, retry_delay_seconds=0, schedule_every_seconds=0.2) as background:
        upload(stack, "incoming/background.txt")
        assert wait_for(lambda: results(stack, "processed/"))
        assert wait_for(lambda: len(results(stack, "ticks/")) >= 4)  # two schedules, twice
        background.drain(timeout=5)  # with the thread running: only waits for the queues to empty
    assert not background.running


def test_an_eventbridge_rule_event_invokes_its_function_with_the_event(stack, runner):
    boto3.client("events").put_events(
        Entries=[{"Source": "atrest.test", "DetailType": "Contact Event", "Detail": json.dumps({"contactId": "c-1"})}]
    )

    runner.drain(timeout=10)

    [recorded] = results(stack, "contacts/").values()
    assert recorded["event"]["detail"] == {"contactId": "c-1"}
    assert (recorded["event"]["source"], recorded["event"]["account"]) == ("atrest.test", "123456789012")


def test_a_failing_eventbridge_invocation_is_attempted_three_times_then_dead_lettered(stack, runner):
    boto3.client("events").put_events(
        Entries=[{"Source": "atrest.test", "DetailType": "Contact Event", "Detail": json.dumps({"fail": True})}]
    )

    runner.drain(timeout=10)

    assert len(results(stack, "contact-attempts/")) == 3
    [source] = stack.function("ContactEventFunction").eventbridge_sources
    dead = boto3.client("sqs").receive_message(QueueUrl=source.relay_dead_letter_queue_url).get("Messages", [])
    assert json.loads(dead[0]["Body"])["detail"] == {"fail": True}


def test_a_direct_invoke_returns_the_handlers_response(stack, runner):
    invocation = runner.invoke("TickFunction", {"hello": "world"})

    assert invocation.response == {"ticked": True, "event": {"hello": "world"}}


def test_an_unknown_function_is_named_with_the_known_ones(stack, runner):
    with pytest.raises(KeyError, match="ContactEventFunction, RecorderFunction, TickFunction"):
        runner.invoke("NoSuchFunction", {})


def test_template_conditions_and_outputs_are_evaluated_for_the_stack(stack):
    assert stack.outputs == {
        "WorkQueueUrl": stack.physical_id("WorkQueue"),
        "SourceBucketArn": "arn:aws:s3:::runnertest-source-123456789012",
        "KeyAliasName": "alias/runnertest-key",
        "JoinedValues": "b|2-runnertest",
    }
    assert stack.resources["NightlyRule"].status == "recorded"  # a schedule: played by the runner, not created
    table = boto3.client("dynamodb").describe_table(TableName=stack.physical_id("ItemsTable"))["Table"]
    assert table["GlobalSecondaryIndexes"][0]["IndexName"] == "by-type"
