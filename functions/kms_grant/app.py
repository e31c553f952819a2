"""KmsGrants custom resource: KMS grants for the function roles on the keys the customer brings.

The keys are `CustomerManagedKeyArn` (when set) and each data class's own key
(`DataClassKmsKeys`). Create: one grant per role on each key, limited to the key store's
operations and its encryption context. Update: new grants (on the new keys when they were
switched); CloudFormation then sends Delete for the old ones. Delete: retire them.
Whatever happens, CloudFormation gets an answer (SUCCESS or FAILED with the reason): a
custom resource that never answers holds the stack for an hour.

Anyone allowed to invoke this function could otherwise make it grant what they like and
PUT where they like, so the event is not trusted (issue 15):
- grantees must be the stack's own function roles and the retiring principal this
  function's role, both given by the template in the environment (ATREST_GRANTEE_ROLE_ARNS,
  ATREST_RETIRING_PRINCIPAL); the role's kms:CreateGrant has the same conditions
  (kms:GranteePrincipal, kms:RetiringPrincipal), so even a changed handler cannot;
- the answer goes only to CloudFormation's response bucket
  (`cloudformation-custom-resource-response-<region without dashes>`, a pre-signed S3 URL)
  in the stack's region, over https; with AWS_ENDPOINT_URL set (the local emulator), to
  that bucket on that endpoint. Any other URL gets no answer and no grant: the request
  fails before any KMS call.
"""

from __future__ import annotations

import json
import os
import urllib.request
from typing import Any
from urllib.parse import unquote, urlsplit

from aws_lambda_powertools import Logger

from atrest.core.clients import AwsClients
from atrest.core.settings import KMS_KEY_ARN, Settings, parse_data_class_kms_keys
from atrest.crypto.grants import grant_keys, parse_grantees, retire_generation, retire_grants, take_grants

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


class RefusedRequest(ValueError):
    """The request asks for a grant or an answer outside the stack: nothing is done."""


def check_principals(properties: dict[str, Any]) -> None:
    """Refuse grantees other than the stack's function roles and a retiring principal other
    than this function's role (both from the template, in the environment). An empty
    allow-list refuses everything: a deployment that forgot it grants nothing."""
    settings = Settings.for_function("KmsGrantFunction")  # at each request (cheap): never a stale allow-list
    roles, retiring = set(settings.grantee_role_arns), {settings.retiring_principal} - {""}
    outside = sorted({str(spec.get("RoleArn", "")) for spec in properties.get("Grantees") or []} - roles)
    if outside:
        raise RefusedRequest(f"grantee(s) {', '.join(outside)} are not this stack's function roles; no grant was taken")
    principal = properties.get("RetiringPrincipal") or ""
    if principal not in retiring:
        raise RefusedRequest(f"retiring principal {principal or '(none)'} is not this function's role; no grant was taken")


_S3_HOSTS = ("s3.amazonaws.com", "s3.{region}.amazonaws.com", "s3-{region}.amazonaws.com",
             "s3.dualstack.{region}.amazonaws.com")


def response_url_allowed(url: str, region: str, endpoint: str | None = None) -> bool:
    """Whether `url` is in CloudFormation's custom resource response bucket for `region`
    (`cloudformation-custom-resource-response-<region without dashes>`, documented for VPC
    endpoint policies), virtual-hosted or path-style, over https on an S3 endpoint of that
    region; or, with `endpoint` (AWS_ENDPOINT_URL), path-style in that bucket there."""
    bucket = f"cloudformation-custom-resource-response-{region.replace('-', '')}"
    parts = urlsplit(url)
    if parts.username or parts.password or "\\" in url:
        return False
    if any(segment in (".", "..") for segment in unquote(parts.path).split("/")):
        return False  # a path that climbs out of the bucket, path-style
    if endpoint:
        base = urlsplit(endpoint)
        return (parts.scheme, parts.netloc) == (base.scheme, base.netloc) and parts.path.startswith(f"/{bucket}/")
    host = (parts.hostname or "").lower()
    if parts.scheme != "https" or parts.port not in (None, 443):
        return False
    suffix = ".cn" if region.startswith("cn-") else ""
    s3_hosts = {pattern.format(region=region) + suffix for pattern in _S3_HOSTS}
    return host in {f"{bucket}.{s3}" for s3 in s3_hosts} or (host in s3_hosts and parts.path.startswith(f"/{bucket}/"))


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def apply(event: dict[str, Any], kms: Any) -> tuple[str, dict[str, Any]]:
    """Do what the request asks. Returns (physical resource id, data). Raises
    `RefusedRequest` for grantees or a retiring principal outside the stack."""
    request = event["RequestType"]
    properties = event.get("ResourceProperties") or {}
    account_id, region = event["StackId"].split(":")[4], event["StackId"].split(":")[3]
    if request != "Delete":
        check_principals(properties)
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
    # The function's own region (a custom resource's function is in its stack's region), not
    # one the event claims: the response bucket is chosen by who runs the function.
    region = os.environ.get("AWS_REGION") or (
        str(event.get("StackId", "")).split(":")[3] if str(event.get("StackId", "")).count(":") >= 4 else "")
    if not region or not response_url_allowed(str(event.get("ResponseURL", "")), region, _endpoint()):
        # No answer and no grant: answering would PUT the stack's data wherever the caller asked.
        logger.error("refused a request whose ResponseURL is not CloudFormation's response bucket",
                     extra={"request_type": event.get("RequestType"), "region": region})
        raise RefusedRequest("ResponseURL is not a pre-signed URL of CloudFormation's custom resource response "
                             f"bucket for region {region or '(unknown)'}; nothing was done")
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
