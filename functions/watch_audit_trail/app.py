"""WatchAuditTrail: keep the original of every audit record changed after it was written.

Triggered by the audit table's stream (NEW_AND_OLD_IMAGES). atrest only adds audit
records, so an INSERT is ignored and every MODIFY or REMOVE is tampering by a principal
allowed to PutItem on the table: the old image is appended beside it (atrest.storage.audit_changes)
and counted in AuditRecordsChanged, which raises AuditTrailChangedAlarm. A record that
cannot be kept fails alone (partial batch response) and is retried; after the retries its
batch's position goes to AuditWatchFailureQueue, whose alarm says to look for it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from atrest.core.clients import AwsClients
from atrest.core.clock import to_text
from atrest.core.settings import Settings
from atrest.storage.audit import AuditTrail
from atrest.storage.audit_changes import AuditChange, AuditChangeKeeper

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"atrest"})
tracer = Tracer()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)

settings = Settings.for_function("WatchAuditTrailFunction")
trail = AuditTrail.for_table(AwsClients().dynamodb, settings.audit_table)
keeper = AuditChangeKeeper(trail.dynamodb, trail.table_name)


def keep_original(record: DynamoDBRecord) -> None:
    stream = record.raw_event["dynamodb"]
    change = AuditChange(
        event=str(record.raw_event.get("eventName")),
        old_item=stream.get("OldImage"),
        new_item=stream.get("NewImage"),
        sequence_number=str(stream["SequenceNumber"]),
        changed_at=to_text(datetime.fromtimestamp(float(stream["ApproximateCreationDateTime"]), timezone.utc)),
    )
    if not change.replaces_a_record:
        return
    kept = keeper.keep(change)
    # Keys and the change only: a record's reason is the reader's words and is never logged.
    logger.warning("AuditRecordChanged", extra={"change": change.event, "pk": stream["Keys"]["pk"].get("S"),
                                                "sk": stream["Keys"]["sk"].get("S"), "sequence_number": change.sequence_number,
                                                "original_kept_now": kept})
    if kept:
        metrics.add_metric(name="AuditRecordsChanged", unit=MetricUnit.Count, value=1)


# The event is never logged: its images hold the readers' reasons.
@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=keep_original, processor=processor, context=context)
