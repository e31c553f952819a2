"""EncryptObject: S3 "Object Created" events (via SQS, or bare from EventBridge) -> encrypted vault objects."""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import AsyncBatchProcessor, EventType, async_process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from atrest.core.clients import AwsClients
from atrest.core.concurrency import Budget, Pool
from atrest.events.shapes import (
    is_backfill_batch,
    is_eventbridge_event,
    source_from_object_created,
    source_from_sqs_body,
    sources_from_backfill_batch,
)
from atrest.core.settings import Settings
from atrest.crypto.framing import steady_allocator
from atrest.flows.encrypt_object import EncryptOutcome, EncryptPipeline, Outcome
from atrest.storage.intake import SourceObject

# Before any thread of the function allocates: one malloc arena for all the workers below
# (each would keep its own freed buffers: atrest.crypto.framing.steady_allocator).
steady_allocator()

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"atrest"})
tracer = Tracer()
metrics = Metrics()

settings = Settings.for_function("EncryptObjectFunction")
clients = AwsClients()
pipeline = EncryptPipeline.from_settings(settings, clients)
# The messages of one batch are encrypted concurrently, each by a pipeline of its own (own
# boto3 session and clients, own key stores and keyrings: the MPL's KMS components, and
# boto3 sessions, are not thread-safe). The init phase's pipeline is the first, so a lone
# message finds warm caches; the others are built the first time they are needed.
pipelines: Pool[EncryptPipeline] = Pool(lambda: EncryptPipeline.from_settings(settings, AwsClients()),
                                        settings.encrypt_concurrency, first=pipeline)
# Memory: a small object takes one slot; one above a part (or of unknown size) takes them all,
# so ten large recordings stream one after another as before, through ~8 MiB parts each.
budget = Budget(settings.encrypt_concurrency)
workers = ThreadPoolExecutor(max_workers=settings.encrypt_concurrency, thread_name_prefix="encrypt")
processor = AsyncBatchProcessor(event_type=EventType.SQS)


def runs_alone(source: SourceObject) -> bool:
    return source.size is None or source.size > settings.part_size


def _encrypt_in_worker(source: SourceObject, may_be_retry: bool) -> tuple[EncryptOutcome, int]:
    """In a worker thread: the outcome and the KMS calls it took. No metric here: Powertools
    Metrics is not thread-safe, so the caller's thread counts."""
    with budget.hold(whole=runs_alone(source)), pipelines.use() as own:
        kms_before = own.clients.calls["kms"]
        try:
            outcome = own.encrypt(source, may_be_retry=may_be_retry)
        except Exception:
            logger.exception("encryption failed; the message will be retried, then dead-lettered",
                             extra={"bucket": source.bucket, "key": source.key, "version_id": source.version_id})
            raise
        return outcome, own.clients.calls["kms"] - kms_before


def _submit(source: SourceObject, may_be_retry: bool = True) -> Any:
    # The worker runs in this invocation's context (logger keys, tracing), as asyncio.to_thread would.
    return workers.submit(contextvars.copy_context().run, _encrypt_in_worker, source, may_be_retry)


# One source object version is one piece of work, however often S3/EventBridge/SQS deliver
# it: the pipeline's conditional record write decides which delivery did the work (a
# duplicate finds the record, or loses the write and discards its copy), so no separate
# idempotency record is kept (docs/reliability.md, "Duplicates").
def _count(outcome: EncryptOutcome, kms_calls: int) -> dict[str, Any]:
    metrics.add_metric(name="KmsCalls", unit=MetricUnit.Count, value=kms_calls)
    if outcome.outcome is Outcome.ENCRYPTED and not outcome.repeated:
        metrics.add_metric(name="ObjectsEncrypted", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="BytesEncrypted", unit=MetricUnit.Bytes, value=outcome.plaintext_size or 0)
    elif outcome.outcome is Outcome.SKIPPED:
        metrics.add_metric(name="ObjectsSkipped", unit=MetricUnit.Count, value=1)
    return outcome.as_dict()


def _count_failure() -> None:
    metrics.add_metric(name="EncryptFailures", unit=MetricUnit.Count, value=1)


def _encrypt_source(source: SourceObject) -> dict[str, Any]:
    metrics.add_metric(name="EventsReceived", unit=MetricUnit.Count, value=1)
    try:
        return _count(*_submit(source).result())
    except Exception:
        _count_failure()
        raise


async def record_handler(record: SQSRecord) -> dict[str, Any]:
    # Runs on the event loop's thread, so metrics are added from one thread only.
    try:
        source = source_from_sqs_body(record.body)
    except Exception as error:
        metrics.add_metric(name="MalformedEvents", unit=MetricUnit.Count, value=1)
        logger.error("malformed event; it will be dead-lettered after its retries",
                     extra={"message_id": record.message_id, "reason": str(error)})
        raise
    metrics.add_metric(name="EventsReceived", unit=MetricUnit.Count, value=1)
    try:
        # A message received for the first time cannot follow an attempt killed mid-upload:
        # the pipeline then need not look for its open uploads (a LIST request, docs/cost.md).
        first_receive = record.attributes.approximate_receive_count == "1"
        result = await asyncio.wrap_future(_submit(source, may_be_retry=not first_receive))
    except Exception:
        _count_failure()
        raise
    return _count(*result)


def _encrypt_backfill_batch(sources: list[SourceObject]) -> dict[str, Any]:
    """A Distributed Map batch: every object is tried (as many at once as a batch of messages);
    if any failed, the batch fails so the state machine retries it (finished objects are passed
    over) and counts it against its threshold."""
    outcomes: dict[str, int] = {}
    failed: list[str] = []
    for _ in sources:
        metrics.add_metric(name="EventsReceived", unit=MetricUnit.Count, value=1)
    futures = [_submit(source) for source in sources]
    wait(futures)
    for source, future in zip(sources, futures):
        if future.exception() is not None:  # already logged with its reason by the worker
            _count_failure()
            failed.append(source.key)
            continue
        result = _count(*future.result())
        label = result.get("reason") or result["outcome"]
        outcomes[label] = outcomes.get(label, 0) + 1
    if failed:
        raise BackfillBatchError(f"{len(failed)} of {len(sources)} objects failed: {', '.join(failed[:5])}")
    return {"objects": len(sources), "outcomes": outcomes}


class BackfillBatchError(Exception):
    """Some objects of a backfill batch failed (the batch is retried by the state machine)."""


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if is_eventbridge_event(event):
        return _encrypt_source(source_from_object_created(event))
    if is_backfill_batch(event):
        return _encrypt_backfill_batch(sources_from_backfill_batch(event))
    return async_process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                          context=context)
