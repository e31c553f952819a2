"""ReadObject: an audited read of a contact's recordings and transcripts, through a function URL.

The URL's AuthType is AWS_IAM: Lambda has authenticated the caller (SigV4) and checked
lambda:InvokeFunctionUrl and lambda:InvokeFunction (with lambda:InvokedViaFunctionUrl
"true"; both are required of URLs created since October 2025) before this runs, and names the caller in
requestContext.authorizer.iam.userArn. The domain code (atrest.flows.read_object) authorizes that
principal against the data class's decryptors, audits, decrypts and answers with
presigned URLs. Locally SigV4 is not checked: the event says who the caller is.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import LambdaFunctionUrlEvent, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from atrest.core.clients import AwsClients
from atrest.core.settings import Settings
from atrest.events.read_requests import ApiResponse
from atrest.flows.read_object import ReadObjectService
from atrest.storage.audit import AuditOutcome

logger = Logger()
copy_config_to_registered_loggers(source_logger=logger, include={"atrest"})
tracer = Tracer()
metrics = Metrics()

settings = Settings.for_function("ReadObjectFunction")
service = ReadObjectService.from_settings(settings, AwsClients())

# RELEASED keeps the metric name ReadsAllowed, which the stack's dashboard charts.
_METRICS = {AuditOutcome.RELEASED: "ReadsAllowed", AuditOutcome.DENIED: "ReadsDenied",
            AuditOutcome.REFUSED: "ReadsRefused", AuditOutcome.NOT_FOUND: "ReadsNotFound",
            AuditOutcome.FAILED: "ReadsFailed"}


# The event is never logged: its body holds the caller's reason.
@logger.inject_lambda_context(log_event=False)
@tracer.capture_lambda_handler(capture_response=False)  # the response holds presigned URLs
@metrics.log_metrics
@event_source(data_class=LambdaFunctionUrlEvent)
def lambda_handler(event: LambdaFunctionUrlEvent, context: LambdaContext) -> dict[str, Any]:
    request_id = context.aws_request_id
    if event.request_context.http.method != "POST":
        metrics.add_metric(name="ReadsNotPost", unit=MetricUnit.Count, value=1)
        return ApiResponse(405, {"message": "use POST with a JSON body"}).for_function_url()
    caller = event.request_context.authorizer.iam.user_arn
    try:
        response = service.read(caller, event.body, request_id, is_base64=event.is_base64_encoded)
    except Exception:
        metrics.add_metric(name="ReadErrors", unit=MetricUnit.Count, value=1)
        logger.exception("read failed", extra={"principal": caller, "request_id": request_id})
        return ApiResponse(500, {"message": f"internal error; quote request {request_id} to the stack's operators"}).for_function_url()
    for outcome, count in response.outcomes.items():
        metrics.add_metric(name=_METRICS[outcome], unit=MetricUnit.Count, value=count)
    if response.overwritten:
        metrics.add_metric(name="VaultObjectOverwritten", unit=MetricUnit.Count, value=response.overwritten)
    return response.for_function_url()
