"""The local runner's DynamoDB stream event sources: records delivered as Lambda delivers
them, checkpoints that outlive a runner, retries, and the OnFailure destination.

Uses the small stack in local_stack_fixture/: WatchChangesFunction (app.record_changes)
gets the stream of ChangesTable, records each event under changes/ in the results bucket,
reports an item with `fail: N` as failed on its first N deliveries and raises for one
with `raise: true`. Its mapping: batches of 10, TRIM_HORIZON, ReportBatchItemFailures,
2 retries, then StreamFailureQueue.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Callable

import boto3
import pytest
from aws_lambda_powertools.utilities.data_classes import DynamoDBStreamEvent
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecordEventName

from atrest_cli.local.runner import DrainTimeout, Runner
from atrest_cli.local.stack import LocalFunction, empty_stack
from atrest_cli.local.streams import StreamMapping

pytestmark = pytest.mark.local_only("tests the local runner's DynamoDB stream sources")

FUNCTION = "WatchChangesFunction"


@pytest.fixture
def runner(stack):
    runner = Runner(stack, retry_delay_seconds=0, functions=[FUNCTION])
    yield runner
    runner.stop()


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def put(stack, pk: str, **attributes: Any) -> None:
    boto3.client("dynamodb").put_item(TableName=stack.physical_id("ChangesTable"), Item={"pk": {"S": pk}, **attributes})


def delete(stack, pk: str) -> None:
    boto3.client("dynamodb").delete_item(TableName=stack.physical_id("ChangesTable"), Key={"pk": {"S": pk}})


def invocations(stack) -> list[list[dict[str, Any]]]:
    """The records of each invocation of WatchChangesFunction, in invocation order."""
    s3 = boto3.client("s3")
    bucket = stack.physical_id("ResultsBucket")
    listing = s3.list_objects_v2(Bucket=bucket, Prefix="changes/").get("Contents", [])
    return [json.loads(s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read())["event"]["Records"]
            for item in sorted(listing, key=lambda item: item["Key"])]


def delivered_keys(stack) -> list[list[str]]:
    return [[record["dynamodb"]["Keys"]["pk"]["S"] for record in records] for records in invocations(stack)]


def failure_messages(stack) -> list[dict[str, Any]]:
    messages = boto3.client("sqs").receive_message(
        QueueUrl=stack.physical_id("StreamFailureQueue"), MaxNumberOfMessages=10, WaitTimeSeconds=0
    ).get("Messages", [])
    return [json.loads(message["Body"]) for message in messages]


def test_the_mapping_is_read_from_the_translated_template(stack):
    function = stack.function(FUNCTION)
    [source] = function.dynamodb_sources

    assert (source.table_logical_id, source.stream_arn) == ("ChangesTable", stack.attribute("ChangesTable", "StreamArn"))
    assert (source.batch_size, source.starting_position, source.maximum_retry_attempts) == (10, "TRIM_HORIZON", 2)
    assert source.report_batch_item_failures and not source.bisect_batch_on_function_error
    assert source.on_failure_queue_url == stack.physical_id("StreamFailureQueue")
    assert LocalFunction.from_json(json.loads(json.dumps(function.to_json()))) == function


def test_changes_arrive_in_order_with_their_images_in_lambdas_dynamodb_event(stack, runner):
    put(stack, "a", colour={"S": "red"}, blob={"B": b"\x00\x01"})
    put(stack, "a", colour={"S": "blue"})
    delete(stack, "a")
    before = time.time()

    stats = runner.drain(timeout=10)

    [records] = invocations(stack)
    assert [record["eventName"] for record in records] == ["INSERT", "MODIFY", "REMOVE"]
    insert, modify, remove = records
    assert set(insert) == {"eventID", "eventName", "eventVersion", "eventSource", "awsRegion", "dynamodb", "eventSourceARN"}
    assert (insert["eventVersion"], insert["eventSource"], insert["awsRegion"], insert["eventSourceARN"]) == (
        "1.1", "aws:dynamodb", "us-east-1", stack.attribute("ChangesTable", "StreamArn"),
    )
    assert set(insert["dynamodb"]) == {
        "ApproximateCreationDateTime", "Keys", "NewImage", "SequenceNumber", "SizeBytes", "StreamViewType",
    }
    assert insert["dynamodb"]["NewImage"] == {"pk": {"S": "a"}, "colour": {"S": "red"}, "blob": {"B": "AAE="}}
    assert (modify["dynamodb"]["OldImage"]["colour"], modify["dynamodb"]["NewImage"]["colour"]) == ({"S": "red"}, {"S": "blue"})
    assert "NewImage" not in remove["dynamodb"] and remove["dynamodb"]["OldImage"]["colour"] == {"S": "blue"}
    assert remove["dynamodb"]["Keys"] == {"pk": {"S": "a"}}
    numbers = [int(record["dynamodb"]["SequenceNumber"]) for record in records]
    assert numbers == sorted(numbers) and len(set(numbers)) == 3
    for record in records:
        created = record["dynamodb"]["ApproximateCreationDateTime"]
        assert isinstance(created, (int, float)) and before - 60 <= created <= before + 1  # epoch seconds, a number
        assert record["dynamodb"]["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert (stats.invocations, stats.stream_records_processed) == (1, 3)
    assert runner.backlog()[stack.attribute("ChangesTable", "StreamArn")] == 0


def test_powertools_parses_the_event(stack, runner):
    put(stack, "p", count={"N": "7"}, tags={"SS": ["x", "y"]})
    delete(stack, "p")
    runner.drain(timeout=10)

    [records] = invocations(stack)
    event = DynamoDBStreamEvent({"Records": records})

    insert, remove = event.records
    assert (insert.event_name, remove.event_name) == (DynamoDBRecordEventName.INSERT, DynamoDBRecordEventName.REMOVE)
    assert insert.dynamodb.new_image == {"pk": "p", "count": 7, "tags": {"x", "y"}}
    assert remove.dynamodb.old_image["count"] == 7 and remove.dynamodb.keys == {"pk": "p"}
    assert isinstance(insert.dynamodb.approximate_creation_date_time, int)
    assert insert.event_source_arn == records[0]["eventSourceARN"]


def test_a_second_runner_resumes_where_the_first_stopped(stack, runner):
    put(stack, "first")
    runner.drain(timeout=10)
    put(stack, "second")

    later = Runner(stack, retry_delay_seconds=0, functions=[FUNCTION])
    stats = later.drain(timeout=10)

    assert delivered_keys(stack) == [["first"], ["second"]]
    assert stats.invocations == 1


def test_a_partial_batch_failure_is_retried_from_the_lowest_failed_record(stack, runner):
    put(stack, "ok")
    put(stack, "once", fail={"N": "1"})
    put(stack, "also-once", fail={"N": "1"})

    stats = runner.drain(timeout=10)

    # The handler lists its failures last first: the retry starts at the lowest, and repeats what follows it.
    assert delivered_keys(stack) == [["ok", "once", "also-once"], ["once", "also-once"]]
    assert (stats.invocations, stats.stream_records_processed, stats.stream_batches_discarded) == (2, 3, 0)
    assert failure_messages(stack) == []


def test_exhausted_retries_send_the_batch_location_to_the_on_failure_queue_and_the_runner_moves_on(stack, runner):
    put(stack, "poison", **{"raise": {"BOOL": True}})
    put(stack, "after-poison")

    stats = runner.drain(timeout=10)

    # A handler error fails the whole batch: the first attempt and MaximumRetryAttempts (2) retries.
    assert delivered_keys(stack) == [["poison", "after-poison"]] * 3
    [message] = failure_messages(stack)
    [records] = invocations(stack)[:1]
    function = stack.function(FUNCTION)
    assert message["requestContext"]["functionArn"] == function.arn
    assert (message["requestContext"]["condition"], message["requestContext"]["approximateInvokeCount"]) == ("RetryAttemptsExhausted", 3)
    assert message["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"}
    assert message["version"] == "1.0"
    datetime.strptime(message["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    info = message["DDBStreamBatchInfo"]
    assert info["shardId"].startswith("shardId-")
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"], info["streamArn"]) == (
        records[0]["dynamodb"]["SequenceNumber"], records[1]["dynamodb"]["SequenceNumber"], 2,
        stack.attribute("ChangesTable", "StreamArn"),
    )
    first_arrival = datetime.strptime(info["approximateArrivalOfFirstRecord"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert first_arrival.timestamp() == int(records[0]["dynamodb"]["ApproximateCreationDateTime"])
    assert "Records" not in json.dumps(message) and "poison" not in json.dumps(message)  # where the records are, not them
    assert (stats.failed_invocations, stats.stream_batches_discarded, stats.stream_records_processed) == (3, 1, 0)

    put(stack, "next")
    runner.drain(timeout=10)
    assert delivered_keys(stack)[-1] == ["next"]


def test_a_reported_failure_that_never_succeeds_is_given_up_with_what_follows_it(stack, runner):
    put(stack, "fine")
    put(stack, "always", fail={"N": "99"})
    put(stack, "behind")

    stats = runner.drain(timeout=10)

    assert delivered_keys(stack) == [["fine", "always", "behind"], ["always", "behind"], ["always", "behind"]]
    [message] = failure_messages(stack)
    assert "functionError" not in message["responseContext"]  # the function answered; it reported failures
    assert (message["DDBStreamBatchInfo"]["batchSize"], message["requestContext"]["approximateInvokeCount"]) == (2, 3)
    assert (stats.stream_records_processed, stats.stream_batches_discarded) == (1, 1)


def test_a_failed_batch_waits_for_the_retry_delay_before_it_is_retried(stack):
    runner = Runner(stack, retry_delay_seconds=1, functions=[FUNCTION])
    put(stack, "slow", fail={"N": "1"})

    assert runner.process_once() == 1
    assert runner.process_once() == 0  # waiting out the delay
    assert wait_for(lambda: runner.process_once(), timeout=5) == 1

    assert delivered_keys(stack) == [["slow"], ["slow"]]


def test_drain_waits_for_a_failed_batch_and_names_the_stream_when_it_gives_up(stack):
    runner = Runner(stack, retry_delay_seconds=30, functions=[FUNCTION])
    put(stack, "stuck", fail={"N": "1"})

    with pytest.raises(DrainTimeout, match="stream of runnertest-ChangesTable") as raised:
        runner.drain(timeout=0.5)

    assert raised.value.backlog[stack.attribute("ChangesTable", "StreamArn")] == 1


def test_the_deletions_of_empty_stack_are_not_delivered(stack, emulator, runner):
    put(stack, "delivered")
    runner.drain(timeout=10)
    put(stack, "never-seen-by-a-runner")

    empty_stack(stack, emulator)  # two REMOVE records, and an INSERT no runner took

    stats = Runner(stack, retry_delay_seconds=0, functions=[FUNCTION]).drain(timeout=10)
    assert stats.invocations == 0
    assert delivered_keys(stack) == []  # empty_stack emptied the results bucket too


def test_drain_returns_only_once_the_background_runner_consumed_the_stream(stack):
    with Runner(stack, retry_delay_seconds=0, functions=[FUNCTION]) as background:
        for n in range(25):  # three batches of at most 10
            put(stack, f"item-{n:02d}")

        background.drain(timeout=10)

        assert sorted(key for keys in delivered_keys(stack) for key in keys) == [f"item-{n:02d}" for n in range(25)]
        assert all(len(keys) <= 10 for keys in delivered_keys(stack))
        assert background.backlog()[stack.attribute("ChangesTable", "StreamArn")] == 0


def test_a_latest_mapping_starts_after_what_the_stream_holds_when_it_is_registered(stack):
    stream_arn = stack.attribute("ChangesTable", "StreamArn")
    put(stack, "before")

    latest = StreamMapping(stack.endpoint, stream_arn, f"latest-{time.time_ns()}", "LATEST")
    horizon = StreamMapping(stack.endpoint, stream_arn, f"horizon-{time.time_ns()}", "TRIM_HORIZON")
    put(stack, "after")

    assert (latest.unread(), horizon.unread()) == (1, 2)  # TRIM_HORIZON: from the last emptying of the table on
    [shard] = latest.readable_shards()
    assert [record["dynamodb"]["Keys"]["pk"]["S"] for record in latest.read(shard, 10)] == ["after"]


def test_a_child_shard_is_read_once_its_closed_parent_is_read_to_its_end(monkeypatch):
    # moto makes one shard per table: a split is played with a stream of two shards.
    from atrest_cli.local import streams

    stream = {
        "parent": [str(n) for n in (100, 200)],
        "child": [str(n) for n in (400, 500)],
    }
    listed = [
        {"ShardId": "parent", "SequenceNumberRange": {"StartingSequenceNumber": "100", "EndingSequenceNumber": "300"}},
        {"ShardId": "child", "ParentShardId": "parent", "SequenceNumberRange": {"StartingSequenceNumber": "400"}},
    ]

    def records_after(endpoint, stream_arn, shard_id, after, limit):
        later = [n for n in stream[shard_id] if after is None or int(n) > int(after)]
        return [{"dynamodb": {"SequenceNumber": n}} for n in later[:limit]]

    monkeypatch.setattr(streams, "shards", lambda endpoint, stream_arn: listed)
    monkeypatch.setattr(streams, "records_after", records_after)
    mapping = StreamMapping("http://split.invalid", "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x", "m", "TRIM_HORIZON")

    [parent] = mapping.readable_shards()
    assert [streams.sequence_number(r) for r in mapping.read(parent, 10)] == ["100", "200"]
    mapping.commit("parent", "200")
    assert [s["ShardId"] for s in mapping.readable_shards()] == ["parent"]  # its range ends at 300: maybe more to come
    assert mapping.unread() == 2

    assert mapping.read(parent, 10) == []  # read to its end: done with its whole range

    [child] = mapping.readable_shards()
    assert child["ShardId"] == "child" and len(mapping.read(child, 10)) == 2


def test_atrest_local_up_lists_the_stream_mapping_with_the_other_event_sources(stack):
    from atrest_cli.local.cli import event_source_lines

    lines = event_source_lines(stack)

    assert f"{FUNCTION} <- DynamoDB stream of ChangesTable (batch 10, TRIM_HORIZON, 2 retries)" in lines
    assert "RecorderFunction <- SQS WorkQueue (batch 5)" in lines
