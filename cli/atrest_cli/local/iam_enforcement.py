"""IAM enforcement in the in-process moto server, and the roles it enforces.

`install(server)` (called by `Emulator.start()`) wraps the moto server's WSGI app in
`IamEnforcement`. A caller may rely on:

- requests signed with an assumed role's credentials (an access key that moto's STS
  handed out: AssumeRole against the emulator) are checked against that role's identity
  policies (inline and attached managed policies, read from moto's IAM in this process)
  with `atrest_cli.local.iam_policies`, and KMS calls against the key policy as KMS does (a
  statement naming the role grants by itself; one naming the account root lets identity
  policies grant; a deny in either wins); what each request needs comes from
  `atrest_cli.local.iam_requests`. A denied request gets AccessDenied in the shape of the
  service's protocol, so boto3 raises `ClientError` with the code AWS uses:
  S3 403 `AccessDenied` (XML), DynamoDB/KMS/EventBridge/Step Functions 400
  `AccessDeniedException` (JSON), SQS 403 `AccessDenied` (JSON with the query-compatible
  header, or XML), STS 403 `AccessDenied`, SNS 403 `AuthorizationError`, Lambda 403
  `AccessDeniedException`, CloudWatch 403 `AccessDenied`.
- a request the mapping does not understand is denied for such a principal, naming the
  operation, and logged (warning) so a gap in the mapping is obvious;
- a GET/HEAD of an object (version) that does not exist answers 403 AccessDenied, not 404,
  unless the role may `s3:ListBucket` on the bucket (S3's documented behaviour);
- every other request (the test credentials "testing", IAM users' keys, unsigned
  requests) passes untouched: they play the deploying administrator.

For a KMS key, its key policy and grants count as KMS counts them (see `_with_key_policy`).

Not enforced: other resource policies (bucket, queue and table policies: they can neither
grant nor deny here), permission boundaries, session policies, SCPs, credential expiry and
the session token's value. `aws:SecureTransport` is always "false" (plain http).

Roles: `create_role(...)` creates or updates a role with its inline and managed policies
(idempotent; the local stack's provisioning uses it), `assumed_role_environment(...)`
assumes it and returns the SDK variables.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import uuid
from typing import Any, Callable, Iterable, Mapping
from urllib.parse import parse_qs, unquote

from atrest_cli.local import iam_policies, iam_requests
from atrest_cli.local.iam_requests import Authorization, HttpRequest

log = logging.getLogger(__name__)

_PARTITION = "aws"
_ADMIN_ACCESS_KEY_IDS = frozenset({"testing"})


class RoleNotProvisioned(LookupError):
    """The role to assume does not exist in the emulator's IAM."""


# -- in-process moto state --------------------------------------------------------------


class _AssumedRole:
    __slots__ = ("role_arn", "principal_arn", "account_id")

    def __init__(self, role_arn: str, principal_arn: str, account_id: str) -> None:
        self.role_arn, self.principal_arn, self.account_id = role_arn, principal_arn, account_id


def _find_assumed_role(access_key_id: str) -> _AssumedRole | None:
    from moto.sts.models import sts_backends

    for account_id in list(sts_backends.keys()):
        backend = sts_backends[account_id].get(_PARTITION) if _PARTITION in sts_backends[account_id] else None
        if backend is None:
            continue
        found = backend.get_assumed_role_from_access_key(access_key_id)
        if found is not None:
            return _AssumedRole(found.role_arn, found.arn, found.account_id)
    return None


class MotoResolver:
    """`iam_requests.Resolver` reading moto's KMS and DynamoDB backends in this process."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id

    def kms_key_arn(self, key_id: str, region: str) -> str | None:
        from moto.kms.models import kms_backends

        backend = kms_backends[self.account_id][region]
        raw = backend.get_alias_name(key_id)
        if raw.startswith("alias/"):
            # Look the alias up without get_key_id_from_alias, which creates AWS-managed keys.
            for key in backend.keys.values():
                if raw in key.aliases:
                    return key.arn
            return f"arn:aws:kms:{region}:{self.account_id}:{raw}"
        raw = backend.get_key_id(raw)
        key = backend.keys.get(raw)
        return key.arn if key is not None else f"arn:aws:kms:{region}:{self.account_id}:key/{raw}"

    def kms_key_arn_from_ciphertext(self, blob: bytes, region: str) -> str | None:
        from moto.kms.utils import KEY_ID_LEN

        key_id = blob[:KEY_ID_LEN].decode("ascii", "replace")
        return self.kms_key_arn(key_id, region)

    def dynamodb_partition_key(self, table_name: str, region: str) -> str | None:
        from moto.dynamodb.models import dynamodb_backends

        table = dynamodb_backends[self.account_id][region].tables.get(table_name)
        return getattr(table, "hash_key_attr", None) if table is not None else None


def _role_policies(account_id: str, role_arn: str) -> tuple[tuple[Any, ...], Callable[[], list[iam_policies.Policy]]]:
    """A cheap signature of the role's current policies, and how to compile them."""
    from moto.iam.models import iam_backends

    backend = iam_backends[account_id][_PARTITION]
    try:
        role = backend.get_role_by_arn(role_arn)
    except Exception:  # moto's NotFoundException: the role was deleted after AssumeRole
        return ("missing",), list
    inline = tuple(sorted(role.policies.items()))
    managed = tuple((arn, policy.default_version_id, id(policy)) for arn, policy in sorted(role.managed_policies.items()))

    def compile_all() -> list[iam_policies.Policy]:
        compiled = [iam_policies.Policy.parse(unquote(document) if document.startswith("%") else document, name) for name, document in inline]
        for arn, policy in sorted(role.managed_policies.items()):
            version = next((v for v in policy.versions if v.is_default), policy.versions[-1])
            document = version.document
            compiled.append(iam_policies.Policy.parse(document if isinstance(document, (dict, str)) else str(document), arn))
        return compiled

    return (inline, managed), compile_all


class _PolicyCache:
    """Compiled policies per role and policy signature: a changed policy recompiles."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._compiled: dict[tuple[str, Any], list[iam_policies.Policy]] = {}

    def policies(self, account_id: str, role_arn: str) -> list[iam_policies.Policy]:
        signature, compile_all = _role_policies(account_id, role_arn)
        key = (role_arn, hash(signature))
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = compile_all()
            with self._lock:
                if len(self._compiled) > 1024:
                    self._compiled.clear()
                self._compiled[key] = compiled
        return compiled


# -- the middleware ---------------------------------------------------------------------------


class IamEnforcement:
    """WSGI middleware: enforce identity policies on assumed-role requests (module docstring)."""

    def __init__(self, app: Callable[..., Any], account_id: str) -> None:
        self.app = app
        self.account_id = account_id
        self.resolver = MotoResolver(account_id)
        self._cache = _PolicyCache()
        self._roles: dict[str, _AssumedRole] = {}
        self._key_policies: dict[str, iam_policies.Policy] = {}

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        access_key_id = _access_key_id(environ)
        if access_key_id is None or access_key_id in _ADMIN_ACCESS_KEY_IDS:
            return self.app(environ, start_response)
        role = self._roles.get(access_key_id)
        if role is None:
            role = _find_assumed_role(access_key_id)
            if role is None:
                return self.app(environ, start_response)
            self._roles[access_key_id] = role
        try:
            denial = self._check(environ, role)
        except Exception:  # a bug here must not look like a permission problem
            log.exception("IAM enforcement failed on %s %s; denying", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            denial = _Denial("?", "*", "the emulator's IAM check failed (see the log)")
        if denial is None:
            return self.app(environ, start_response)
        request = _http_request(environ, read_body=False)
        return _deny(request, iam_requests.credential_of(request), role, denial, start_response)

    def _check(self, environ: dict[str, Any], role: _AssumedRole) -> "_Denial | None":
        request = _http_request(environ, read_body=_needs_body(environ))
        mapped = iam_requests.map_request(request, account_id=role.account_id, resolver=self.resolver)
        if mapped.always_allowed:
            return None
        if mapped.unknown is not None:
            log.warning("IAM: denied %s for %s: %s (the emulator cannot tell which permission it needs; "
                        "extend atrest_cli.local.iam_requests)", mapped.operation, role.principal_arn, mapped.unknown)
            return _Denial(f"{mapped.service}:{mapped.operation}", "*", f"the emulator has no IAM mapping for this request ({mapped.unknown})")
        policies = self._cache.policies(role.account_id, role.role_arn)
        principal = {"aws:PrincipalArn": role.role_arn, "aws:PrincipalAccount": role.account_id,
                     "aws:PrincipalType": "AssumedRole", "aws:userid": role.principal_arn.rpartition("/")[2]}
        for authorization in mapped.authorizations:
            context = {**principal, **authorization.context}
            decision = iam_policies.evaluate(policies, authorization.action, authorization.resource, context)
            if authorization.resource.startswith("arn:aws:kms:") and ":key/" in authorization.resource:
                decision = self._with_key_policy(decision, role, authorization, context)
            if not decision.allowed:
                log.info("IAM: denied %s on %s for %s (%s)", authorization.action, authorization.resource, role.principal_arn, decision.reason)
                return _Denial.of(authorization, decision)
        if mapped.object_read is not None and not _object_exists(role.account_id, mapped.object_read):
            listing = Authorization("s3:ListBucket", f"arn:aws:s3:::{mapped.object_read.bucket}", mapped.authorizations[0].context)
            decision = iam_policies.evaluate(policies, listing.action, listing.resource, {**principal, **listing.context})
            if not decision.allowed:
                return _Denial.of(listing, decision)
        return None


    def _with_key_policy(self, identity: iam_policies.Decision, role: _AssumedRole, authorization: Authorization,
                         context: Mapping[str, Any]) -> iam_policies.Decision:
        # KMS: the key policy decides. A statement naming the role (or its session) grants
        # by itself; one naming the account root lets identity policies grant; a deny in
        # either wins (AWS's KMS authorization within one account).
        key_policy = self._key_policy(role.account_id, authorization.resource)
        if key_policy is None:
            return identity
        account = (f"arn:aws:iam::{role.account_id}:root", role.account_id)
        evaluate = iam_policies.evaluate_resource_policy
        everyone = evaluate(key_policy, authorization.action, authorization.resource, context, (role.role_arn, role.principal_arn, *account))
        if everyone.explicit_deny or identity.explicit_deny:
            return everyone if everyone.explicit_deny else identity
        direct = evaluate(key_policy, authorization.action, authorization.resource, context, (role.role_arn, role.principal_arn))
        if direct.allowed:
            return direct
        if _granted(role, authorization, context):
            return iam_policies.Decision(True, "allowed", "kms-grant")
        delegated = evaluate(key_policy, authorization.action, authorization.resource, context, account)
        if delegated.allowed and identity.allowed:
            return identity
        return iam_policies.Decision(False, "implicit_deny")

    def _key_policy(self, account_id: str, key_arn: str) -> iam_policies.Policy | None:
        from moto.kms.models import kms_backends

        region = key_arn.split(":")[3]
        key = kms_backends[account_id][region].keys.get(key_arn.rpartition("/")[2])
        document = getattr(key, "policy", None) if key is not None else None
        if not document:
            return None
        compiled = self._key_policies.get(document)
        if compiled is None:
            compiled = iam_policies.Policy.parse(document, key_arn)
            if len(self._key_policies) > 1024:
                self._key_policies.clear()
            self._key_policies[document] = compiled
        return compiled


_EC_PREFIX = "kms:EncryptionContext:"


def _granted(role: _AssumedRole, authorization: Authorization, context: Mapping[str, Any]) -> bool:
    """Whether a KMS grant on the key gives the role this operation: its grantee is the role,
    its operations name the operation, and its constraints hold for the request's encryption
    context (EncryptionContextSubset: each pair present; EncryptionContextEquals: exactly these).
    Grants need no policy: that is what lets a rekey's bridge grants work before the deploy."""
    from moto.kms.models import kms_backends

    key_arn = authorization.resource
    region = key_arn.split(":")[3]
    key = kms_backends[role.account_id][region].keys.get(key_arn.rpartition("/")[2])
    if key is None:
        return False
    operation = authorization.action.partition(":")[2]
    request_context = {name[len(_EC_PREFIX):]: value for name, value in context.items() if name.startswith(_EC_PREFIX)}
    for grant in getattr(key, "grants", {}).values():
        if grant.grantee_principal not in (role.role_arn, role.principal_arn) or operation not in grant.operations:
            continue
        constraints = grant.constraints or {}
        subset = constraints.get("EncryptionContextSubset")
        equals = constraints.get("EncryptionContextEquals")
        if subset is not None and any(request_context.get(k) != v for k, v in subset.items()):
            continue
        if equals is not None and request_context != dict(equals):
            continue
        return True
    return False


def install(server: Any, account_id: str) -> IamEnforcement:
    """Wrap the running `ThreadedMotoServer`'s WSGI app (werkzeug reads `server.app` on
    every request, so this takes effect at once)."""
    wsgi_server = server._server
    enforcement = IamEnforcement(wsgi_server.app, account_id)
    wsgi_server.app = enforcement
    return enforcement


def _access_key_id(environ: Mapping[str, Any]) -> str | None:
    authorization = environ.get("HTTP_AUTHORIZATION")
    if authorization:
        start = authorization.find("Credential=")
        if start >= 0:
            start += len("Credential=")
            end = authorization.find("/", start)
            return authorization[start:end] if end > start else None
        if authorization.startswith("AWS "):  # SigV2 (S3)
            return authorization[4:].split(":", 1)[0].strip() or None
        return None
    query = environ.get("QUERY_STRING") or ""
    if "X-Amz-Credential=" in query:
        credential = parse_qs(query).get("X-Amz-Credential", [""])[0]
        return credential.split("/", 1)[0] or None
    if "AWSAccessKeyId=" in query:  # SigV2 presigned URL (boto3's default for S3)
        return parse_qs(query).get("AWSAccessKeyId", [""])[0] or None
    return None


def _needs_body(environ: Mapping[str, Any]) -> bool:
    # S3 bodies are objects (large, maybe streamed): only DeleteObjects needs its body read.
    authorization = environ.get("HTTP_AUTHORIZATION") or ""
    if "/s3/aws4_request" in authorization or not authorization:
        return environ.get("REQUEST_METHOD") == "POST" and "delete" in parse_qs(environ.get("QUERY_STRING") or "", keep_blank_values=True)
    return True


def _http_request(environ: dict[str, Any], *, read_body: bool) -> HttpRequest:
    body = b""
    if read_body:
        body = _read_body(environ)
    raw_uri = environ.get("RAW_URI") or environ.get("REQUEST_URI")
    if raw_uri:
        path = unquote(raw_uri.split("?", 1)[0])
    else:
        path = environ.get("PATH_INFO", "").encode("latin-1").decode("utf-8", "replace")
    headers = {key[5:].replace("_", "-").lower(): value for key, value in environ.items() if key.startswith("HTTP_")}
    if environ.get("CONTENT_TYPE"):
        headers["content-type"] = environ["CONTENT_TYPE"]
    query = parse_qs(environ.get("QUERY_STRING") or "", keep_blank_values=True)
    return HttpRequest(environ.get("REQUEST_METHOD", "GET"), environ.get("HTTP_HOST", ""), path, query, headers, body)


def _read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length <= 0:
        return b""
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)  # moto reads it again
    return body


def _object_exists(account_id: str, read: iam_requests.S3ObjectRead) -> bool:
    from moto.s3.models import FakeKey, s3_backends

    bucket = s3_backends[account_id][_PARTITION].buckets.get(read.bucket)
    if bucket is None:
        return True  # a missing bucket is NoSuchBucket (404) on AWS too: let moto answer
    if read.version_id is None:
        # The current version; a delete marker counts as missing.
        return isinstance(bucket.keys.get(read.key), FakeKey)
    return any(str(v.version_id) == read.version_id and isinstance(v, FakeKey) for v in bucket.keys.getlist(read.key, default=[]))


# -- AccessDenied in each protocol's shape ------------------------------------------------------


class _Denial:
    __slots__ = ("action", "resource", "because")

    def __init__(self, action: str, resource: str, because: str) -> None:
        self.action, self.resource, self.because = action, resource, because

    @classmethod
    def of(cls, authorization: Authorization, decision: iam_policies.Decision) -> "_Denial":
        if decision.explicit_deny:
            because = "with an explicit deny in an identity-based policy"
        else:
            because = f"because no identity-based policy allows the {authorization.action} action"
        return cls(authorization.action, authorization.resource, because)

    def message(self, principal_arn: str) -> str:
        return f"User: {principal_arn} is not authorized to perform: {self.action} on resource: {self.resource} {self.because}"


def _deny(request: HttpRequest, credential: iam_requests.Credential | None, role: _AssumedRole, denial: _Denial,
          start_response: Callable[..., Any]) -> Iterable[bytes]:
    message = denial.message(role.principal_arn)
    request_id = str(uuid.uuid4())
    service = credential.service if credential else "s3"
    status, headers, body = _error_response(service, request, message, request_id)
    if request.method == "HEAD":
        body = b""
    headers = [*headers, ("x-amzn-RequestId", request_id), ("Content-Length", str(len(body)))]
    start_response(status, headers)
    return [body]


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _query_error(code: str, message: str, request_id: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>'
        f"<Message>{_xml_escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
    ).encode()


def _cbor_text(text: str) -> bytes:
    data = text.encode("utf-8")
    if len(data) < 24:
        return bytes([0x60 | len(data)]) + data
    if len(data) < 256:
        return bytes([0x78, len(data)]) + data
    return bytes([0x79]) + len(data).to_bytes(2, "big") + data


def _cbor_map(values: Mapping[str, str]) -> bytes:
    # Just enough CBOR (RFC 8949) for an error body: a small map of text strings.
    return bytes([0xA0 | len(values)]) + b"".join(_cbor_text(k) + _cbor_text(v) for k, v in values.items())


def _error_response(service: str, request: HttpRequest, message: str, request_id: str) -> tuple[str, list[tuple[str, str]], bytes]:
    forbidden, bad_request = "403 Forbidden", "400 Bad Request"
    json_type = request.headers.get("content-type", "").split(";")[0] or "application/x-amz-json-1.0"
    if service == "s3":
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>AccessDenied</Code><Message>{_xml_escape(message)}</Message>'
            f"<RequestId>{request_id}</RequestId><HostId>{request_id}</HostId></Error>"
        ).encode()
        return forbidden, [("Content-Type", "application/xml")], body
    if service == "dynamodb":
        body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#AccessDeniedException", "Message": message}).encode()
        return bad_request, [("Content-Type", json_type)], body
    if service == "sqs":
        if request.headers.get("x-amz-target"):
            body = json.dumps({"__type": "com.amazon.coral.service#AccessDeniedException", "message": message}).encode()
            return forbidden, [("Content-Type", json_type), ("x-amzn-query-error", "AccessDenied;Sender")], body
        return forbidden, [("Content-Type", "text/xml")], _query_error("AccessDenied", message, request_id)
    if service in ("sts", "iam"):
        return forbidden, [("Content-Type", "text/xml")], _query_error("AccessDenied", message, request_id)
    if service == "sns":
        return forbidden, [("Content-Type", "text/xml")], _query_error("AuthorizationError", message, request_id)
    if service == "lambda":
        body = json.dumps({"Type": "User", "message": message}).encode()
        return forbidden, [("Content-Type", "application/json"), ("x-amzn-ErrorType", "AccessDeniedException")], body
    if service == "monitoring":
        query_error = ("x-amzn-query-error", "AccessDenied;Sender")
        if "cbor" in json_type or "/operation/" in request.path:
            body = _cbor_map({"__type": "com.amazonaws.cloudwatch#AccessDeniedException", "message": message})
            return forbidden, [("Content-Type", "application/cbor"), ("smithy-protocol", "rpc-v2-cbor"), query_error], body
        if request.headers.get("x-amz-target"):
            body = json.dumps({"__type": "AccessDeniedException", "message": message}).encode()
            return forbidden, [("Content-Type", json_type), query_error], body
        return forbidden, [("Content-Type", "text/xml")], _query_error("AccessDenied", message, request_id)
    # KMS, EventBridge, Step Functions and the other JSON protocols.
    body = json.dumps({"__type": "AccessDeniedException", "message": message}).encode()
    return bad_request, [("Content-Type", json_type)], body


# -- roles in the emulator's IAM ------------------------------------------------------------------


def _role_name(role_arn: str) -> str:
    return role_arn.rpartition("/")[2]


def create_role(iam_client: Any, role_name: str, path: str, assume_role_policy: Mapping[str, Any],
                inline_policies: Mapping[str, Mapping[str, Any]], managed_policy_arns: Iterable[str],
                *, keep: Callable[[str], bool] = lambda policy_name: False) -> dict[str, Any]:
    """Create the role, or bring an existing one to exactly these policies (idempotent:
    calling it again with changed policies updates them); inline policies not listed are
    deleted unless `keep(name)`. Returns the role as IAM describes it (`Arn`, `RoleId`, ...).
    AWS-managed policies (`arn:aws:iam::aws:policy/...`) are loaded into the emulator's
    IAM on first use when it runs in this process (moto leaves them out by default)."""
    try:
        role = iam_client.get_role(RoleName=role_name)["Role"]
        iam_client.update_assume_role_policy(RoleName=role_name, PolicyDocument=json.dumps(assume_role_policy))
    except iam_client.exceptions.NoSuchEntityException:
        role = iam_client.create_role(RoleName=role_name, Path=path or "/", AssumeRolePolicyDocument=json.dumps(assume_role_policy))["Role"]
    put_role_policies(iam_client, role_name, inline_policies, keep=keep)
    attach_role_policies(iam_client, role_name, managed_policy_arns)
    return dict(role)


def put_role_policies(iam_client: Any, role_name: str, inline_policies: Mapping[str, Mapping[str, Any]],
                      *, keep: Callable[[str], bool] = lambda policy_name: False) -> None:
    """Make the role's inline policies exactly `inline_policies` (name -> document), but for
    the ones `keep` names."""
    existing = set(iam_client.list_role_policies(RoleName=role_name)["PolicyNames"])
    for name in existing - set(inline_policies):
        if not keep(name):
            iam_client.delete_role_policy(RoleName=role_name, PolicyName=name)
    for name, document in inline_policies.items():
        put_role_policy(iam_client, role_name, name, document)


def put_role_policy(iam_client: Any, role_name: str, policy_name: str, document: Mapping[str, Any]) -> None:
    """One inline policy. IAM accepts a document without `Version` (it then means
    2008-10-17, which differs only in policy variables); moto refuses it, and SAM generates
    such documents (a schedule's StartExecution policy), so the version is added."""
    if "Version" not in document:
        document = {"Version": "2012-10-17", **document}
    iam_client.put_role_policy(RoleName=role_name, PolicyName=policy_name, PolicyDocument=json.dumps(document))


def attach_role_policies(iam_client: Any, role_name: str, managed_policy_arns: Iterable[str]) -> None:
    """Make the role's attached managed policies exactly `managed_policy_arns`."""
    wanted = list(dict.fromkeys(managed_policy_arns))
    attached = {p["PolicyArn"] for p in iam_client.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]}
    for arn in attached - set(wanted):
        iam_client.detach_role_policy(RoleName=role_name, PolicyArn=arn)
    for arn in wanted:
        if arn in attached:
            continue
        try:
            iam_client.attach_role_policy(RoleName=role_name, PolicyArn=arn)
        except iam_client.exceptions.NoSuchEntityException:
            if not _load_aws_managed_policy(arn):
                raise
            iam_client.attach_role_policy(RoleName=role_name, PolicyArn=arn)


def _load_aws_managed_policy(arn: str) -> bool:
    """Put one AWS-managed policy into the in-process emulator's IAM (every account);
    False when `arn` is not one moto knows."""
    if not arn.startswith("arn:aws:iam::aws:policy/"):
        return False
    from moto.iam.aws_managed_policies import aws_managed_policies_data
    from moto.iam.models import AWSManagedPolicy, iam_backends

    data = json.loads(aws_managed_policies_data).get(arn.rpartition("/")[2])
    if data is None:
        return False
    for account_id in list(iam_backends.keys()):
        backend = iam_backends[account_id][_PARTITION]
        policy = AWSManagedPolicy.from_data(arn.rpartition("/")[2], account_id, "us-east-1", data)
        if policy.arn == arn:
            backend.managed_policies.setdefault(arn, policy)
    return True


def assumed_role_environment(endpoint: str, region: str, role_arn: str, session_name: str) -> dict[str, str]:
    """AssumeRole `role_arn` on the emulator at `endpoint` (as the administrator) and return
    AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN for the role.
    Raises `RoleNotProvisioned` when the role does not exist in the emulator's IAM."""
    from atrest_cli.local.emulator import emulator_client

    iam = emulator_client("iam", endpoint=endpoint, region=region)
    try:
        iam.get_role(RoleName=_role_name(role_arn))
    except iam.exceptions.NoSuchEntityException:
        raise RoleNotProvisioned(
            f"role {role_arn} does not exist in the emulator's IAM: provisioning must create each function's "
            "execution role (atrest_cli.local.iam_enforcement.create_role) before the function runs with it"
        ) from None
    sts = emulator_client("sts", endpoint=endpoint, region=region)
    credentials = sts.assume_role(RoleArn=role_arn, RoleSessionName=_session_name(session_name))["Credentials"]
    return {
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["SessionToken"],
    }


def _session_name(name: str) -> str:
    # RoleSessionName: 2-64 characters of [\w+=,.@-].
    cleaned = "".join(c if c.isalnum() or c in "_+=,.@-" else "-" for c in name)[:64]
    return cleaned if len(cleaned) >= 2 else f"{cleaned}--"[:2]
