"""ProtectContact: Amazon Connect Contact Events (EventBridge) -> contact records with PII encrypted."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from atrest.core.clients import AwsClients
from atrest.core.settings import Settings
from atrest.events.shapes import contact_event_from_eventbridge
from atrest.flows.protect_contact import ContactProtector

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"atrest"})
tracer = Tracer()
metrics = Metrics()

settings = Settings.for_function("ProtectContactFunction")
protector = ContactProtector.from_settings(settings, AwsClients())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Log the event's id only: its detail carries the customer's phone number and attributes.
    try:
        contact = contact_event_from_eventbridge(event)
    except Exception as error:
        metrics.add_metric(name="MalformedEvents", unit=MetricUnit.Count, value=1)
        logger.error("malformed contact event; after two retries it goes to the dead-letter queue",
                     extra={"event_id": event.get("id") if isinstance(event, dict) else None, "reason": str(error)})
        raise
    outcome = protector.protect(contact)
    metrics.add_metric(name="ContactEventsProtected", unit=MetricUnit.Count, value=1)
    metrics.add_metric(name="PiiFieldsEncrypted", unit=MetricUnit.Count, value=len(outcome.pii_fields))
    return outcome.as_dict()
