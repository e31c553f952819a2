"""KmsGrants custom resource: KMS grants for the function roles on a key the customer brings.

Create: one grant per role, limited to the key store's operations and its encryption
context. Update: new grants (on the new key when it was switched); CloudFormation then
sends Delete for the old ones. Delete: retire them. Whatever happens, CloudFormation gets
an answer (SUCCESS or FAILED with the reason): a custom resource that never answers
holds the stack for an hour.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from aws_lambda_powertools import Logger

from atrest.clients import AwsClients
from atrest.grants import create_grants, parse_grantees, retire_grants

logger = Logger()
_SEPARATOR = "|"


def _physical_id(key_arn: str, grant_ids: list[str]) -> str:
    return key_arn + _SEPARATOR + ",".join(grant_ids)


def _parse_physical_id(physical_id: str) -> tuple[str, list[str]]:
    key_arn, _, ids = (physical_id or "").partition(_SEPARATOR)
    return (key_arn, [i for i in ids.split(",") if i]) if key_arn.startswith("arn:") else ("", [])


def apply(event: dict[str, Any], kms: Any) -> tuple[str, dict[str, Any]]:
    """Do what the request asks. Returns (physical resource id, data)."""
    request = event["RequestType"]
    if request == "Delete":
        key_arn, grant_ids = _parse_physical_id(event.get("PhysicalResourceId", ""))
        retired = retire_grants(kms, key_arn, grant_ids) if key_arn else []
        return event.get("PhysicalResourceId", "none"), {"Retired": ",".join(retired)}
    properties = event["ResourceProperties"]
    key_arn = properties["KeyArn"]
    grant_ids = create_grants(
        kms, key_arn, parse_grantees(properties.get("Grantees") or []), properties["KeyStoreName"],
        properties["NamePrefix"], retiring_principal=properties.get("RetiringPrincipal") or None,
        generation=event["RequestId"][:8],
    )
    return _physical_id(key_arn, grant_ids), {"GrantIds": ",".join(grant_ids), "KeyArn": key_arn}


def respond(event: dict[str, Any], status: str, physical_id: str, data: dict[str, Any], reason: str = "") -> None:
    body = json.dumps({
        "Status": status,
        "Reason": (reason or "see the function's log")[:3000],
        "PhysicalResourceId": physical_id,
        "StackId": event["StackId"],
        "RequestId": event["RequestId"],
        "LogicalResourceId": event["LogicalResourceId"],
        "Data": data,
    }).encode()
    request = urllib.request.Request(event["ResponseURL"], data=body, method="PUT",
                                     headers={"Content-Type": "", "Content-Length": str(len(body))})
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - the pre-signed S3 URL CloudFormation gave
        response.read()


@logger.inject_lambda_context
def lambda_handler(event: dict[str, Any], context: Any) -> None:
    # A failed Create has no physical id yet; Delete of it must still succeed.
    physical_id = event.get("PhysicalResourceId") or f"failed-{event.get('RequestId', 'unknown')}"
    try:
        physical_id, data = apply(event, AwsClients().kms)
    except Exception as error:  # answer FAILED, never leave CloudFormation waiting
        logger.exception("KMS grant request failed", extra={"request_type": event.get("RequestType")})
        respond(event, "FAILED", physical_id, {}, f"{type(error).__name__}: {error}")
        return
    logger.info("KMS grants", extra={"request_type": event["RequestType"], "physical_id": physical_id, **data})
    respond(event, "SUCCESS", physical_id, data)
