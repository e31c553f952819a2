"""KmsGrants custom resource: KMS grants for the function roles on the keys the customer brings.

The keys are `CustomerManagedKeyArn` (when set) and each data class's own key
(`DataClassKmsKeys`). Create: one grant per role on each key, limited to the key store's
operations and its encryption context. Update: new grants (on the new keys when they were
switched); CloudFormation then sends Delete for the old ones. Delete: retire them.
Whatever happens, CloudFormation gets an answer (SUCCESS or FAILED with the reason): a
custom resource that never answers holds the stack for an hour.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

from aws_lambda_powertools import Logger

from atrest.clients import AwsClients
from atrest.grants import grant_keys, parse_grantees, retire_generation, retire_grants, take_grants
from atrest.settings import KMS_KEY_ARN, parse_data_class_kms_keys

logger = Logger()
clients = AwsClients()  # at cold start: a session and client per invocation would cost more than the work
_SEPARATOR = "|"
_GENERATION_MARK = "kms-grants:"


def _generation_id(prefix: str, generation: str) -> str:
    # The grants are found again by name (prefix, role, generation): the physical id needs
    # only the generation, and stays far below CloudFormation's 1 KB whatever the key count.
    return f"{prefix}{_GENERATION_MARK}{generation}"


def _keys(properties: dict[str, Any], account_id: str, region: str, strict: bool) -> list[str]:
    """The keys to grant on. `strict` (Create, Update) refuses what the functions would refuse at
    start, and keys elsewhere than the stack: the deploy then fails and rolls back, naming it."""
    pairs = properties.get("DataClassKmsKeys") or []
    text = ",".join(pairs) if isinstance(pairs, list) else str(pairs)
    class_keys, problems = parse_data_class_kms_keys(text, account_id)
    keys = grant_keys(properties.get("KeyArn") or None, class_keys)
    if strict:
        for key_arn in keys:
            match = KMS_KEY_ARN.match(key_arn)
            if match is not None and match["region"] != region:
                problems.append(f"KMS key {key_arn} is in region {match['region']}, not the stack's region {region} "
                                "(the key store calls KMS in its own region)")
        if problems:
            raise ValueError("; ".join(problems))
    return keys


def apply(event: dict[str, Any], kms: Any) -> tuple[str, dict[str, Any]]:
    """Do what the request asks. Returns (physical resource id, data)."""
    request = event["RequestType"]
    properties = event.get("ResourceProperties") or {}
    account_id, region = event["StackId"].split(":")[4], event["StackId"].split(":")[3]
    if request == "Delete":
        physical_id = event.get("PhysicalResourceId", "")
        key_arn, _, ids = physical_id.partition(_SEPARATOR)
        if key_arn.startswith("arn:"):  # a resource created before per-class keys: key|grant ids
            retired = retire_grants(kms, key_arn, [i for i in ids.split(",") if i])
            return physical_id, {"Retired": str(len(retired))}
        prefix, mark, generation = physical_id.rpartition(_GENERATION_MARK)
        if not mark:  # a Create that failed (and cleaned up after itself) made no grant
            return physical_id or "none", {"Retired": "0"}
        retired_by_key = retire_generation(kms, _keys(properties, account_id, region, strict=False),
                                           parse_grantees(properties.get("Grantees") or []), prefix, generation)
        return physical_id, {"Retired": str(sum(len(ids) for ids in retired_by_key.values()))}
    keys = _keys(properties, account_id, region, strict=True)
    generation = event["RequestId"][:8]
    grants = take_grants(
        kms, keys, parse_grantees(properties.get("Grantees") or []), properties["KeyStoreName"],
        properties["NamePrefix"], retiring_principal=properties.get("RetiringPrincipal") or None,
        generation=generation,
    )
    # Counts only: CloudFormation's whole response must stay under 4 KB.
    return _generation_id(properties["NamePrefix"], generation), {
        "KeyCount": str(len(keys)), "GrantCount": str(sum(len(ids) for ids in grants.values()))}


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
        physical_id, data = apply(event, clients.kms)
    except Exception as error:  # answer FAILED, never leave CloudFormation waiting
        logger.exception("KMS grant request failed", extra={"request_type": event.get("RequestType")})
        respond(event, "FAILED", physical_id, {}, f"{type(error).__name__}: {error}")
        return
    logger.info("KMS grants", extra={"request_type": event["RequestType"], "physical_id": physical_id, **data})
    respond(event, "SUCCESS", physical_id, data)
