"""ExpireKeys: on a schedule, rotate expired branch keys, retire old versions, shred those past retention."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from atrest.core.clients import AwsClients
from atrest.core.settings import Settings
from atrest.flows.expire_keys import KeyLifecycle

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"atrest"})
tracer = Tracer()
metrics = Metrics()

settings = Settings.for_function("ExpireKeysFunction")
expiry = KeyLifecycle.from_settings(settings, AwsClients())


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # The event (a Scheduled Event) carries nothing the work needs: "now" is the clock's.
    report = expiry.run()
    metrics.add_metric(name="BranchKeysChecked", unit=MetricUnit.Count, value=report.keys_checked)
    metrics.add_metric(name="BranchKeysRotated", unit=MetricUnit.Count, value=len(report.rotated))
    metrics.add_metric(name="KeyVersionsRetired", unit=MetricUnit.Count, value=len(report.retired))
    metrics.add_metric(name="KeyVersionsShredded", unit=MetricUnit.Count, value=len(report.shredded))
    metrics.add_metric(name="ObjectsMadeUnreadable", unit=MetricUnit.Count,
                       value=sum(s.objects_unreadable for s in report.shredded))
    logger.info("expiry summary", extra={"rotated": len(report.rotated), "retired": len(report.retired),
                                         "shredded": len(report.shredded), "busy": len(report.busy),
                                         "waiting": len(report.waiting),
                                         "keys_checked": report.keys_checked})
    return report.as_dict()
