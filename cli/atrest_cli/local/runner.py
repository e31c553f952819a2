"""`Runner`: the event flow Lambda provides on AWS, for the functions of a local stack.

- SQS event sources: receive up to BatchSize messages (with all attributes), invoke the
  handler with the Lambda SQS event, delete the messages that succeeded. With
  `ReportBatchItemFailures`, the ones listed in `batchItemFailures` stay; a handler that
  raises (or times out, or returns an invalid failure list) leaves the whole batch.
  Messages that stay are made visible again after `retry_delay_seconds` (the queue's
  own visibility timeout is for deployed functions, and far too long to wait for
  locally); the queue's redrive policy moves them to the dead-letter queue after
  maxReceiveCount receives, as SQS does.
- DynamoDB streams: per shard, up to BatchSize records after the mapping's checkpoint
  (`atrest_cli.local.streams`: it outlives the runner; a new mapping starts at its
  StartingPosition), in Lambda's DynamoDB event. Success checkpoints after the batch;
  with `ReportBatchItemFailures` the checkpoint moves to just before the lowest failed
  sequence number and the batch is retried from there; an exception, a timeout or an
  invalid failure list retries it whole. A retry waits `retry_delay_seconds` (the shard
  with it). After MaximumRetryAttempts retries of a batch starting at the same record,
  one message in Lambda's `DDBStreamBatchInfo` shape goes to the OnFailure queue and the
  checkpoint moves past the batch; -1 retries until the runner stops. Not played:
  BisectBatchOnFunctionError, FilterCriteria, ParallelizationFactor, tumbling windows,
  MaximumRecordAgeInSeconds (notes on the function).
- EventBridge rule events: each event the rule's relay queue receives is one
  asynchronous invocation (three attempts, then the relay's dead-letter queue).
- Schedules: moto never fires them. In background mode the runner fires each enabled
  schedule rule of the (translated) template on its own rate, the first time one period
  after `start()`, as EventBridge does, with the target's `Input` or a "Scheduled Event";
  `schedule_every_seconds` replaces every rate with one shorter period (demos), and
  `fire_schedules()` fires every enabled schedule once, now. Disabled rules never fire;
  `cron(...)` rules fire only through `fire_schedules()`.

One worker: functions run one at a time (`os.environ` is process-wide). `drain()` runs
the flow in the calling thread until every mapped queue is empty and every stream
mapping is done with its stream; `start()` runs it in a background thread until `stop()`.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Mapping, TextIO

from atrest_cli.local.emulator import emulator_client, emulator_environment
from atrest_cli.local.lambda_runtime import InProcessFunction, Invocation
from atrest_cli.local.stack import (
    DynamoDbStreamSource,
    EventBridgeSource,
    LocalStackState,
    ScheduleSource,
    SqsEventSource,
    queue_backlog,
)
from atrest_cli.local.streams import StreamMapping, sequence_number

log = logging.getLogger(__name__)

SQS_RECEIVE_LIMIT = 10  # ReceiveMessage returns at most 10 messages


class DrainTimeout(TimeoutError):
    """Queues or streams still held messages or records when `Runner.drain` gave up;
    `backlog` says how many, per queue URL or stream ARN."""

    def __init__(self, backlog: Mapping[str, int], timeout: float):
        self.backlog = dict(backlog)
        waiting = ", ".join(f"{_source_name(key)}: {n}" for key, n in self.backlog.items() if n)
        super().__init__(f"queues or streams not empty after {timeout:.1f} s ({waiting})")


def _source_name(key: str) -> str:
    # A queue URL ends with the queue's name; a stream ARN reads arn:...:table/<name>/stream/<label>.
    if ":table/" in key:
        return f"stream of {key.split(':table/', 1)[1].split('/', 1)[0]}"
    return key.rsplit("/", 1)[-1]


@dataclass
class RunnerStats:
    """Counts since the runner was created."""

    invocations: int = 0
    failed_invocations: int = 0
    messages_deleted: int = 0
    messages_returned: int = 0
    scheduled_invocations: int = 0
    stream_records_processed: int = 0  # records a stream mapping's checkpoint moved past after success
    stream_batches_discarded: int = 0  # stream batches given up after their retries (OnFailure message)
    errors: list[Invocation] = field(default_factory=list)


@dataclass
class _StreamRetry:
    """A stream batch that failed: where it starts, how often a batch starting there was
    invoked, and when the next attempt may be made (monotonic seconds)."""

    start: str
    attempts: int
    due: float


def sqs_record(message: Mapping[str, Any], source: SqsEventSource, region: str) -> dict[str, Any]:
    """One record of the event Lambda gives a function for an SQS message."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes") or {}),
        "messageAttributes": {
            name: _lambda_message_attribute(value) for name, value in (message.get("MessageAttributes") or {}).items()
        },
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": source.queue_arn,
        "awsRegion": region,
    }
    if message.get("MD5OfMessageAttributes"):
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


def _lambda_message_attribute(value: Mapping[str, Any]) -> dict[str, Any]:
    # Lambda writes attribute names in camelCase and binary values in base64.
    def encoded(data: Any) -> str:
        return base64.b64encode(data).decode() if isinstance(data, (bytes, bytearray)) else str(data)

    attribute: dict[str, Any] = {
        "stringListValues": list(value.get("StringListValues") or []),
        "binaryListValues": [encoded(item) for item in value.get("BinaryListValues") or []],
        "dataType": value["DataType"],
    }
    if "StringValue" in value:
        attribute["stringValue"] = value["StringValue"]
    if "BinaryValue" in value:
        attribute["binaryValue"] = encoded(value["BinaryValue"])
    return attribute


def dynamodb_record(record: Mapping[str, Any], stream_arn: str, region: str) -> dict[str, Any]:
    """One record of the event Lambda gives a function for a DynamoDB stream record (as
    boto3 returns it: the creation time a datetime, binary values bytes)."""
    stream = record["dynamodb"]
    dynamodb: dict[str, Any] = {
        # Lambda sends epoch seconds, a number, where the API (and boto3) give a timestamp.
        "ApproximateCreationDateTime": int(_epoch_seconds(stream["ApproximateCreationDateTime"])),
        "Keys": _lambda_attribute_values(stream["Keys"]),
    }
    for image in ("NewImage", "OldImage"):
        if image in stream:
            dynamodb[image] = _lambda_attribute_values(stream[image])
    dynamodb.update(SequenceNumber=stream["SequenceNumber"], SizeBytes=stream["SizeBytes"], StreamViewType=stream["StreamViewType"])
    lambda_record: dict[str, Any] = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn,
    }
    if record.get("userIdentity"):  # TTL deletions: {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
        lambda_record["userIdentity"] = dict(record["userIdentity"])
    return lambda_record


def _epoch_seconds(value: Any) -> float:
    return value.timestamp() if isinstance(value, datetime) else float(value)


def _lambda_attribute_values(value: Any) -> Any:
    # DynamoDB JSON as Lambda sends it: binary values (B, BS) in base64, as the wire format has them.
    if isinstance(value, (bytes, bytearray)):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {name: _lambda_attribute_values(item) for name, item in value.items()}
    if isinstance(value, list):
        return [_lambda_attribute_values(item) for item in value]
    return value


def _iso_time(value: Any) -> str:
    return datetime.fromtimestamp(_epoch_seconds(value), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def stream_failure_message(
    function_arn: str, source: DynamoDbStreamSource, shard_id: str, records: list[dict[str, Any]],
    invocation: Invocation, attempts: int, now: datetime | None = None,
) -> dict[str, Any]:
    """What Lambda sends a stream mapping's OnFailure destination for a batch it gives up
    on: where the records are, not the records themselves."""
    now = now or datetime.now(timezone.utc)
    response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if not invocation.succeeded:
        response_context["functionError"] = "Unhandled"
    return {
        "requestContext": {
            "requestId": invocation.request_id,
            "functionArn": function_arn,
            "condition": "RetryAttemptsExhausted",
            "approximateInvokeCount": attempts,
        },
        "responseContext": response_context,
        "version": "1.0",
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z",
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": sequence_number(records[0]),
            "endSequenceNumber": sequence_number(records[-1]),
            "approximateArrivalOfFirstRecord": _iso_time(records[0]["dynamodb"]["ApproximateCreationDateTime"]),
            "approximateArrivalOfLastRecord": _iso_time(records[-1]["dynamodb"]["ApproximateCreationDateTime"]),
            "batchSize": len(records),
            "streamArn": source.stream_arn,
        },
    }


def scheduled_event(source: ScheduleSource, account_id: str, region: str, now: datetime | None = None) -> Any:
    """What EventBridge sends a function on a schedule: the configured Input, else a Scheduled Event."""
    if source.input is not None:
        return source.input
    now = now or datetime.now(timezone.utc)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [source.rule_arn],
        "detail": {},
    }


def failed_message_ids(response: Any, message_ids: Iterable[str]) -> set[str] | None:
    """The message ids a ReportBatchItemFailures response marks as failed, or None when the
    response is invalid (then Lambda treats the whole batch as failed)."""
    ids = set(message_ids)
    if response is None:
        return set()
    if not isinstance(response, dict):
        return None
    failures = response.get("batchItemFailures")
    if failures is None:
        return set()
    if not isinstance(failures, list):
        return None
    failed: set[str] = set()
    for failure in failures:
        identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
        if not identifier or identifier not in ids:
            return None
        failed.add(identifier)
    return failed


class Runner:
    """Runs the functions of `state` on the events their sources deliver.

    `aws_environment`: the variables that point the functions' SDK at the emulator
    (default: the state's endpoint with the emulator's test credentials).
    `retry_delay_seconds`: how long a failed message stays invisible, or a failed stream
    batch waits, before its retry.
    `function_stdout`: where function output goes (None: this process's stdout).
    `functions`: the logical ids to run (default: all of them).
    `clock`: monotonic seconds, for schedules (tests pass a clock they move).
    """

    def __init__(
        self,
        state: LocalStackState,
        *,
        aws_environment: Mapping[str, str] | None = None,
        retry_delay_seconds: int = 2,
        idle_poll_seconds: float = 0.1,
        schedule_every_seconds: float | None = None,
        function_stdout: TextIO | None = None,
        functions: Iterable[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.aws_environment = dict(aws_environment) if aws_environment is not None else emulator_environment(state.endpoint, state.region)
        self.retry_delay_seconds = int(retry_delay_seconds)
        self.idle_poll_seconds = idle_poll_seconds
        self.schedule_every_seconds = schedule_every_seconds
        self.stats = RunnerStats()
        selected = set(functions) if functions is not None else set(state.functions)
        unknown = selected - set(state.functions)
        if unknown:
            raise KeyError(f"no function(s) {', '.join(sorted(unknown))}; functions: {', '.join(sorted(state.functions))}")
        self._functions = {
            logical_id: InProcessFunction(function, self.aws_environment, stdout=function_stdout)
            for logical_id, function in state.functions.items()
            if logical_id in selected
        }
        self._sqs = emulator_client("sqs", endpoint=state.endpoint, region=state.region)
        # Registered now: a LATEST mapping starts after what the stream holds when the runner is made.
        self._streams = {
            (logical_id, source.event_id): StreamMapping(state.endpoint, source.stream_arn, source.event_id, source.starting_position)
            for logical_id, runtime in self._functions.items()
            for source in runtime.function.dynamodb_sources
            if source.enabled
        }
        self._stream_retries: dict[tuple[str, str, str], _StreamRetry] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Background polls completed, and messages the last one took: `drain` waits on it.
        self._polls = threading.Condition()
        self._polls_done = 0
        self._last_poll_taken = 0
        self._clock = clock
        self._schedule_due: dict[tuple[str, str], float] | None = None

    # -- what runs --------------------------------------------------------------------

    def function(self, logical_id: str) -> InProcessFunction:
        if logical_id not in self._functions:
            raise KeyError(f"no function {logical_id} in this runner; functions: {', '.join(sorted(self._functions))}")
        return self._functions[logical_id]

    def _sqs_mappings(self) -> list[tuple[InProcessFunction, SqsEventSource]]:
        return [
            (runtime, source)
            for runtime in self._functions.values()
            for source in runtime.function.sqs_sources
            if source.enabled
        ]

    def _eventbridge_mappings(self) -> list[tuple[InProcessFunction, EventBridgeSource]]:
        return [
            (runtime, source)
            for runtime in self._functions.values()
            for source in runtime.function.eventbridge_sources
            if source.relay_queue_url
        ]

    def _stream_mappings(self) -> list[tuple[InProcessFunction, DynamoDbStreamSource, StreamMapping]]:
        return [
            (runtime, source, self._streams[(runtime.function.logical_id, source.event_id)])
            for runtime in self._functions.values()
            for source in runtime.function.dynamodb_sources
            if source.enabled
        ]

    def watched_queue_urls(self) -> list[str]:
        """Every queue the runner takes events from."""
        return [source.queue_url for _, source in self._sqs_mappings()] + [
            source.relay_queue_url for _, source in self._eventbridge_mappings()
        ]

    # -- one round ---------------------------------------------------------------------

    def invoke(self, logical_id: str, event: Any) -> Invocation:
        """Invoke one function directly (as `sam local invoke` / `atrest local invoke` do)."""
        return self._record(self.function(logical_id).invoke(event))

    def _record(self, invocation: Invocation) -> Invocation:
        self.stats.invocations += 1
        if not invocation.succeeded:
            self.stats.failed_invocations += 1
            self.stats.errors.append(invocation)
        return invocation

    def process_once(self) -> int:
        """Take one batch from every event source (from every shard of a stream) and run it;
        returns how many messages and stream records were taken."""
        taken = 0
        for runtime, source in self._sqs_mappings():
            taken += self._process_sqs_batch(runtime, source)
        for runtime, eventbridge_source in self._eventbridge_mappings():
            taken += self._process_relayed_events(runtime, eventbridge_source)
        for runtime, stream_source, mapping in self._stream_mappings():
            taken += self._process_stream(runtime, stream_source, mapping)
        return taken

    def _receive(self, queue_url: str, limit: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        while len(messages) < limit:
            received = self._sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=min(SQS_RECEIVE_LIMIT, limit - len(messages)),
                WaitTimeSeconds=0,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            ).get("Messages", [])
            if not received:
                break
            messages.extend(received)
        return messages

    def _process_sqs_batch(self, runtime: InProcessFunction, source: SqsEventSource) -> int:
        messages = self._receive(source.queue_url, source.batch_size)
        if not messages:
            return 0
        event = {"Records": [sqs_record(message, source, self.state.region) for message in messages]}
        invocation = self._record(runtime.invoke(event))
        by_id = {message["MessageId"]: message for message in messages}
        if not invocation.succeeded:
            failed = set(by_id)
        elif source.report_batch_item_failures:
            reported = failed_message_ids(invocation.response, by_id)
            if reported is None:
                log.warning("%s returned an invalid batchItemFailures response; the whole batch will be retried",
                            runtime.function.logical_id)
                failed = set(by_id)
            else:
                failed = reported
        else:
            failed = set()
        self._settle(source.queue_url, [m for i, m in by_id.items() if i not in failed], [by_id[i] for i in failed])
        return len(messages)

    def _process_relayed_events(self, runtime: InProcessFunction, source: EventBridgeSource) -> int:
        messages = self._receive(source.relay_queue_url, SQS_RECEIVE_LIMIT)
        for message in messages:
            invocation = self._record(runtime.invoke(json.loads(message["Body"])))
            if invocation.succeeded:
                self._settle(source.relay_queue_url, [message], [])
            else:
                self._settle(source.relay_queue_url, [], [message])
        return len(messages)

    def _settle(self, queue_url: str, succeeded: list[dict[str, Any]], failed: list[dict[str, Any]]) -> None:
        for start in range(0, len(succeeded), SQS_RECEIVE_LIMIT):
            chunk = succeeded[start:start + SQS_RECEIVE_LIMIT]
            self._sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)],
            )
        for start in range(0, len(failed), SQS_RECEIVE_LIMIT):
            chunk = failed[start:start + SQS_RECEIVE_LIMIT]
            self._sqs.change_message_visibility_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": self.retry_delay_seconds}
                    for i, m in enumerate(chunk)
                ],
            )
        self.stats.messages_deleted += len(succeeded)
        self.stats.messages_returned += len(failed)

    # -- DynamoDB streams ----------------------------------------------------------------

    def _process_stream(self, runtime: InProcessFunction, source: DynamoDbStreamSource, mapping: StreamMapping) -> int:
        taken = 0
        for shard in mapping.readable_shards():
            retry = self._stream_retries.get((runtime.function.logical_id, source.event_id, shard["ShardId"]))
            if retry is not None and time.monotonic() < retry.due:
                continue  # a failed batch waits out the retry delay; the shard waits with it, as on AWS
            records = mapping.read(shard, source.batch_size)
            if records:
                self._process_stream_batch(runtime, source, mapping, shard["ShardId"], records)
                taken += len(records)
        return taken

    def _process_stream_batch(
        self, runtime: InProcessFunction, source: DynamoDbStreamSource, mapping: StreamMapping,
        shard_id: str, records: list[dict[str, Any]],
    ) -> None:
        event = {"Records": [dynamodb_record(record, source.stream_arn, self.state.region) for record in records]}
        invocation = self._record(runtime.invoke(event))
        failed_from = self._first_failed_record(runtime, source, invocation, records)
        done = records if failed_from is None else records[:failed_from]
        if done:
            mapping.commit(shard_id, sequence_number(done[-1]))
            self.stats.stream_records_processed += len(done)
        key = (runtime.function.logical_id, source.event_id, shard_id)
        if failed_from is None:
            self._stream_retries.pop(key, None)
            return
        failed = records[failed_from:]
        previous = self._stream_retries.get(key)
        start = sequence_number(failed[0])
        # Retries count per batch start: a partial success that moves the checkpoint starts a new count.
        attempts = previous.attempts + 1 if previous is not None and previous.start == start else 1
        if 0 <= source.maximum_retry_attempts < attempts:
            self._discard_stream_batch(runtime, source, shard_id, failed, invocation, attempts)
            mapping.commit(shard_id, sequence_number(records[-1]))
            self._stream_retries.pop(key, None)
        else:
            self._stream_retries[key] = _StreamRetry(start, attempts, time.monotonic() + self.retry_delay_seconds)

    def _first_failed_record(
        self, runtime: InProcessFunction, source: DynamoDbStreamSource, invocation: Invocation, records: list[dict[str, Any]],
    ) -> int | None:
        """Where the batch is to be retried from (an index into `records`), None when it succeeded.
        With ReportBatchItemFailures Lambda retries from the lowest failed sequence number."""
        if not invocation.succeeded:
            return 0
        if not source.report_batch_item_failures:
            return None
        numbers = [sequence_number(record) for record in records]
        failed = failed_message_ids(invocation.response, numbers)
        if failed is None:
            log.warning("%s returned an invalid batchItemFailures response; the whole batch will be retried",
                        runtime.function.logical_id)
            return 0
        return min((numbers.index(number) for number in failed), default=None)

    def _discard_stream_batch(
        self, runtime: InProcessFunction, source: DynamoDbStreamSource, shard_id: str,
        records: list[dict[str, Any]], invocation: Invocation, attempts: int,
    ) -> None:
        self.stats.stream_batches_discarded += 1
        message = stream_failure_message(runtime.function.arn, source, shard_id, records, invocation, attempts)
        if source.on_failure_queue_url:
            self._sqs.send_message(QueueUrl=source.on_failure_queue_url, MessageBody=json.dumps(message))
        else:
            log.warning("%s: gave up on %d stream records of %s after %d attempts; no OnFailure queue to tell",
                        runtime.function.logical_id, len(records), source.table_name, attempts)

    def _schedules(self) -> list[tuple[InProcessFunction, ScheduleSource]]:
        return [
            (runtime, source)
            for runtime in self._functions.values()
            for source in runtime.function.schedule_sources
            if source.enabled
        ]

    def _fire(self, runtime: InProcessFunction, source: ScheduleSource) -> Invocation:
        event = scheduled_event(source, self.state.account_id, self.state.region)
        self.stats.scheduled_invocations += 1
        return self._record(runtime.invoke(event))

    def fire_schedules(self) -> list[Invocation]:
        """Invoke every enabled scheduled function once, now, as its schedule would."""
        return [self._fire(runtime, source) for runtime, source in self._schedules()]

    def _period(self, source: ScheduleSource) -> float | None:
        return float(self.schedule_every_seconds) if self.schedule_every_seconds else source.period_seconds

    def arm_schedules(self) -> None:
        """Start the schedule clocks: each rule first fires one period from now."""
        now = self._clock()
        self._schedule_due = {}
        for runtime, source in self._schedules():
            period = self._period(source)
            if period is None:
                log.info("%s: %s is not fired locally (cron); use fire_schedules()", runtime.function.logical_id, source.expression)
                continue
            self._schedule_due[(runtime.function.logical_id, source.event_id)] = now + period

    def fire_due_schedules(self) -> list[Invocation]:
        """Fire every schedule whose time has come (arming the clocks on first use). A rule
        that missed several periods fires once, as EventBridge does not catch up."""
        if self._schedule_due is None:
            self.arm_schedules()
        assert self._schedule_due is not None
        invocations = []
        for runtime, source in self._schedules():
            key = (runtime.function.logical_id, source.event_id)
            due = self._schedule_due.get(key)
            if due is None or self._clock() < due:
                continue
            invocations.append(self._fire(runtime, source))
            self._schedule_due[key] = self._clock() + float(self._period(source) or 0)
        return invocations

    # -- until the queues are empty ----------------------------------------------------

    def backlog(self) -> dict[str, int]:
        """Messages (visible, in flight, delayed) in every queue the runner takes events from,
        and stream records its mappings have not yet been done with, per stream ARN."""
        backlog = {url: queue_backlog(self._sqs, url) for url in self.watched_queue_urls()}
        for _, source, mapping in self._stream_mappings():
            backlog[source.stream_arn] = backlog.get(source.stream_arn, 0) + mapping.unread()
        return backlog

    def drain(self, timeout: float = 30.0) -> RunnerStats:
        """Run until every watched queue is empty (failed messages retried until they
        succeed or reach their dead-letter queue) and every stream mapping is done with
        every record of its stream (failed batches retried until they succeed or are
        given up). Raises `DrainTimeout` after `timeout` seconds. While the background
        thread runs, only waits for it to empty them.

        An empty reading of the backlog is confirmed by one more poll that takes nothing,
        started after the reading: the emulator computes the three counts of a queue's
        backlog (visible, delayed, not visible) one after another, so a message that
        becomes visible while they are computed is in none of them. Such a message is
        visible from then on, so the confirming poll receives it (or, when its receive
        count already reached maxReceiveCount, its receive moves it to the dead-letter
        queue, which SQS does only on a receive)."""
        deadline = time.monotonic() + timeout
        while True:
            if self._poll(deadline):
                continue
            backlog = self.backlog()
            if not any(backlog.values()):
                if not self._poll(deadline) and not any(self.backlog().values()):
                    return self.stats
                continue
            if time.monotonic() >= deadline:
                raise DrainTimeout(backlog, timeout)
            if not self.running:
                time.sleep(self.idle_poll_seconds)  # nothing visible yet: retries wait out their delay

    def _poll(self, deadline: float) -> int:
        """One poll of every event source, begun now: this thread's own, or, while the
        background thread runs, the next one it completes after this call (one already
        under way may have received before now). Returns the messages it took."""
        if not self.running:
            return self.process_once()
        with self._polls:
            wanted = self._polls_done + 2
            self._polls.wait_for(lambda: self._polls_done >= wanted or not self.running,
                                 timeout=max(0.0, deadline - time.monotonic()))
            return self._last_poll_taken if self._polls_done >= wanted else 0

    # -- in the background -------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> "Runner":
        """Run the event flow and the schedules in a background thread."""
        if self.running:
            return self
        self._stop.clear()
        self.arm_schedules()
        self._thread = threading.Thread(target=self._run, name="atrest-local-runner", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the batch in progress."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> "Runner":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.fire_due_schedules()
                taken = self.process_once()
            except Exception:
                # The emulator may be going away, or answer once with an error: keep polling.
                log.exception("local runner: polling failed")
                taken = 0
            with self._polls:
                self._polls_done += 1
                self._last_poll_taken = taken
                self._polls.notify_all()
            if not taken:
                self._stop.wait(self.idle_poll_seconds)
