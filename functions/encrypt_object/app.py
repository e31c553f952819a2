"""EncryptObject: S3 "Object Created" events (via SQS, or bare from EventBridge) -> encrypted vault objects."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from atrest.core.clients import AwsClients
from atrest.events.shapes import (
    is_backfill_batch,
    is_eventbridge_event,
    source_from_object_created,
    source_from_sqs_body,
    sources_from_backfill_batch,
)
from atrest.core.settings import Settings
from atrest.flows.encrypt_object import EncryptPipeline, Outcome
from atrest.storage.intake import SourceObject

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"atrest"})
tracer = Tracer()
metrics = Metrics()

settings = Settings.for_function("EncryptObjectFunction")
clients = AwsClients()
pipeline = EncryptPipeline.from_settings(settings, clients)
processor = BatchProcessor(event_type=EventType.SQS)


# One source object version is one piece of work, however often S3/EventBridge/SQS deliver
# it: the pipeline's conditional record write decides which delivery did the work (a
# duplicate finds the record, or loses the write and discards its copy), so no separate
# idempotency record is kept (docs/reliability.md, "Duplicates").
def encrypt(source: dict[str, Any]) -> dict[str, Any]:
    kms_before = clients.calls["kms"]
    outcome = pipeline.encrypt(SourceObject(**source))
    metrics.add_metric(name="KmsCalls", unit=MetricUnit.Count, value=clients.calls["kms"] - kms_before)
    if outcome.outcome is Outcome.ENCRYPTED and not outcome.repeated:
        metrics.add_metric(name="ObjectsEncrypted", unit=MetricUnit.Count, value=1)
        metrics.add_metric(name="BytesEncrypted", unit=MetricUnit.Bytes, value=outcome.plaintext_size or 0)
    elif outcome.outcome is Outcome.SKIPPED:
        metrics.add_metric(name="ObjectsSkipped", unit=MetricUnit.Count, value=1)
    return outcome.as_dict()


def _encrypt_source(source: SourceObject) -> dict[str, Any]:
    metrics.add_metric(name="EventsReceived", unit=MetricUnit.Count, value=1)
    try:
        return encrypt(source=source.as_dict())
    except Exception:
        metrics.add_metric(name="EncryptFailures", unit=MetricUnit.Count, value=1)
        logger.exception("encryption failed; the message will be retried, then dead-lettered",
                         extra={"bucket": source.bucket, "key": source.key, "version_id": source.version_id})
        raise


def record_handler(record: SQSRecord) -> dict[str, Any]:
    try:
        source = source_from_sqs_body(record.body)
    except Exception as error:
        metrics.add_metric(name="MalformedEvents", unit=MetricUnit.Count, value=1)
        logger.error("malformed event; it will be dead-lettered after its retries",
                     extra={"message_id": record.message_id, "reason": str(error)})
        raise
    return _encrypt_source(source)


def _encrypt_backfill_batch(sources: list[SourceObject]) -> dict[str, Any]:
    """A Distributed Map batch: every object is tried; if any failed, the batch fails so the
    state machine retries it (finished objects are passed over) and counts it against its threshold."""
    outcomes: dict[str, int] = {}
    failed: list[str] = []
    for source in sources:
        try:
            result = _encrypt_source(source)
        except Exception:  # already logged with its reason by _encrypt_source
            failed.append(source.key)
            continue
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
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
