"""SweepRetrievals: on a schedule, delete ReadObject's plaintext copies once older than their lifetime."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from atrest.core.clients import AwsClients
from atrest.core.settings import Settings
from atrest.storage.retrieval import RetrievalStore

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"atrest"})
tracer = Tracer()
metrics = Metrics()

settings = Settings.for_function("SweepRetrievalsFunction")
sweeper = RetrievalStore.from_settings(settings, AwsClients())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The event (a Scheduled Event) carries nothing the work needs: age is S3's LastModified
    # against the sweeper's clock. A failed sweep raises, so the Errors alarm sees it.
    report = sweeper.sweep()
    metrics.add_metric(name="RetrievalsDeleted", unit=MetricUnit.Count, value=report.deleted)
    metrics.add_metric(name="RetrievalsKept", unit=MetricUnit.Count, value=report.kept)
    logger.info("sweep summary", extra=report.as_dict())
    return report.as_dict()
