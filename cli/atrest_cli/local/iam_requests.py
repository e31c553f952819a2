"""What an HTTP request to the emulator asks IAM for: service, actions, resources, context.

`map_request(request, account_id=..., resolver=...)` turns one request (`HttpRequest`:
method, URL, headers, body) into a `MappedRequest`: the signing credential (access key,
region, service), the API operation, and the `Authorization`s (IAM action, resource ARN,
condition context) that must all be allowed. A caller may rely on:

- the credential comes from `Authorization: AWS4-HMAC-SHA256 Credential=...` or, for
  presigned URLs, `X-Amz-Credential` in the query (SigV2 for S3 too: `Authorization: AWS
  <key>:...`, `AWSAccessKeyId` in the query); an unsigned request maps to `credential=None`;
- S3 REST (path-style and virtual-host style buckets): object reads, writes, multipart
  uploads, tagging, copies (PutObject on the target and GetObject on the source),
  DeleteObjects (each key), listings, HeadBucket and the bucket configuration calls,
  with the version-specific actions when a `versionId` is given;
- DynamoDB (every operation as `dynamodb:<Op>` on its table or index; batch and
  transaction operations per table or item as IAM authorizes them; `dynamodb:LeadingKeys`
  when the resolver knows the table's partition key);
- KMS (`kms:<Op>` on the key ARN, whatever form the KeyId takes, through the resolver;
  ReEncrypt as ReEncryptFrom/ReEncryptTo; `kms:EncryptionContext:<k>`,
  `kms:EncryptionContextKeys`, `kms:GrantOperations` and friends);
- SQS (JSON and query protocols; batch calls need the single call's action), STS
  (GetCallerIdentity needs no permission), CloudWatch PutMetricData, EventBridge
  (PutEvents per entry's bus, rule calls), Lambda Invoke/GetFunction, SNS, Step Functions.

Anything else maps to `unknown` (a reason naming the operation): the enforcement denies
it for restricted principals, so a missing mapping shows up as a loud failure rather
than as a silent allow. Global context keys (`aws:PrincipalArn`, ...) are the caller's
to add; this module adds `aws:RequestedRegion` and `aws:SecureTransport` (always
"false": the emulator speaks plain http) and the service keys.
"""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol
from urllib.parse import parse_qs, unquote, urlsplit

# A SigV2 signature names no region; the emulator's default one.
_SIGV2_REGION = "us-east-1"
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/(\d{8})/([^/]+)/([^/]+)/aws4_request")


@dataclass(frozen=True)
class Credential:
    access_key_id: str
    region: str
    service: str  # the signing name: s3, dynamodb, kms, sqs, monitoring, states, ...


@dataclass(frozen=True)
class Authorization:
    """One thing IAM decides: `action` on `resource` given `context`."""

    action: str
    resource: str
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class S3ObjectRead:
    """A GET/HEAD of one object (version): S3 answers 403, not 404, for a missing one
    unless the caller may list the bucket."""

    bucket: str
    key: str
    version_id: str | None


@dataclass(frozen=True)
class MappedRequest:
    credential: Credential | None
    service: str
    operation: str
    authorizations: tuple[Authorization, ...] = ()
    # Set when the request needs no IAM permission at all (sts:GetCallerIdentity).
    always_allowed: bool = False
    # Set when this module cannot say what the request needs: deny, naming the operation.
    unknown: str | None = None
    object_read: S3ObjectRead | None = None


class Resolver(Protocol):
    """What the mapping asks the emulator's state (see `iam_enforcement`)."""

    def kms_key_arn(self, key_id: str, region: str) -> str | None: ...

    def kms_key_arn_from_ciphertext(self, blob: bytes, region: str) -> str | None: ...

    def dynamodb_partition_key(self, table_name: str, region: str) -> str | None: ...


class StaticResolver:
    """A resolver that knows only what a KeyId says by itself (a key id or key ARN);
    aliases map to their alias ARN. For tests and for requests with nothing to resolve."""

    def __init__(self, account_id: str, partition_keys: Mapping[str, str] | None = None) -> None:
        self.account_id = account_id
        self.partition_keys = dict(partition_keys or {})

    def kms_key_arn(self, key_id: str, region: str) -> str | None:
        if key_id.startswith("arn:"):
            return key_id
        if key_id.startswith("alias/"):
            return f"arn:aws:kms:{region}:{self.account_id}:{key_id}"
        return f"arn:aws:kms:{region}:{self.account_id}:key/{key_id}"

    def kms_key_arn_from_ciphertext(self, blob: bytes, region: str) -> str | None:
        return None

    def dynamodb_partition_key(self, table_name: str, region: str) -> str | None:
        return self.partition_keys.get(table_name)


class HttpRequest:
    """One request as the emulator received it; `path` is URL-decoded, `query` maps each
    parameter to its values (`keep_blank_values`: `?uploads` is `{"uploads": [""]}`)."""

    __slots__ = ("method", "host", "path", "query", "headers", "body")

    def __init__(self, method: str, host: str, path: str, query: dict[str, list[str]], headers: Mapping[str, str], body: bytes) -> None:
        self.method = method.upper()
        self.host = host
        self.path = path
        self.query = query
        self.headers = {name.lower(): value.decode("latin-1") if isinstance(value, bytes) else value for name, value in headers.items()}
        self.body = body

    @classmethod
    def from_url(cls, method: str, url: str, headers: Mapping[str, str], body: bytes | str | None = None) -> "HttpRequest":
        parts = urlsplit(url)
        host = {k.lower(): v for k, v in headers.items()}.get("host") or parts.netloc
        if isinstance(host, bytes):
            host = host.decode("latin-1")
        if isinstance(body, str):
            body = body.encode("utf-8")
        return cls(method, host, unquote(parts.path), parse_qs(parts.query, keep_blank_values=True), headers, body or b"")

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> dict[str, Any]:
        try:
            value = json.loads(self.body or b"{}")
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def form(self) -> dict[str, str]:
        """Query-protocol parameters: the form body, then the query string."""
        values = {k: v[0] for k, v in self.query.items() if v}
        if self.body and self.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
            values.update({k: v[0] for k, v in parse_qs(self.body.decode("utf-8", "replace"), keep_blank_values=True).items()})
        return values


def credential_of(request: HttpRequest) -> Credential | None:
    """The SigV4 credential the request is signed with (header or presigned query)."""
    authorization = request.headers.get("authorization", "")
    match = _CREDENTIAL.search(authorization)
    if match is None:
        presigned = request.param("X-Amz-Credential")
        if presigned:
            match = _CREDENTIAL.search("Credential=" + presigned)
    if match is not None:
        return Credential(match.group(1), match.group(3), match.group(4))
    # SigV2, which only S3 still takes (boto3 presigns S3 URLs with it by default).
    if authorization.startswith("AWS ") and ":" in authorization:
        return Credential(authorization[4:].split(":", 1)[0].strip(), _SIGV2_REGION, "s3")
    presigned_v2 = request.param("AWSAccessKeyId")
    if presigned_v2:
        return Credential(presigned_v2, _SIGV2_REGION, "s3")
    return None


def map_request(request: HttpRequest, *, account_id: str, resolver: Resolver | None = None) -> MappedRequest:
    """What `request` needs from IAM (see the module docstring)."""
    credential = credential_of(request)
    resolver = resolver or StaticResolver(account_id)
    service = _service_of(request, credential)
    region = credential.region if credential else "us-east-1"
    mapper = _MAPPERS.get(service)
    if mapper is None:
        return MappedRequest(credential, service, "?", unknown=f"no IAM mapping for service {service!r}")
    mapped = mapper(_Call(request, account_id, region, resolver))
    base = {"aws:RequestedRegion": region, "aws:SecureTransport": "false"}
    authorizations = tuple(Authorization(a.action, a.resource, {**base, **a.context}) for a in mapped.authorizations)
    return MappedRequest(credential, service, mapped.operation, authorizations, mapped.always_allowed, mapped.unknown, mapped.object_read)


def _service_of(request: HttpRequest, credential: Credential | None) -> str:
    if credential is not None:
        return {"monitoring": "cloudwatch", "states": "stepfunctions", "eventbridge": "events"}.get(credential.service, credential.service)
    target = request.headers.get("x-amz-target", "")
    return target.split(".", 1)[0].lower() or "s3"


@dataclass
class _Call:
    request: HttpRequest
    account_id: str
    region: str
    resolver: Resolver


@dataclass
class _Mapped:
    operation: str
    authorizations: list[Authorization] = field(default_factory=list)
    always_allowed: bool = False
    unknown: str | None = None
    object_read: S3ObjectRead | None = None


def _target_operation(request: HttpRequest) -> str:
    return request.headers.get("x-amz-target", "").rpartition(".")[2]


# -- S3 ---------------------------------------------------------------------------------

# Bucket subresource -> IAM action for GET, PUT, DELETE (None: not an S3 call).
_BUCKET_SUBRESOURCES: dict[str, tuple[str | None, str | None, str | None]] = {
    "versioning": ("GetBucketVersioning", "PutBucketVersioning", None),
    "tagging": ("GetBucketTagging", "PutBucketTagging", "PutBucketTagging"),
    "notification": ("GetBucketNotification", "PutBucketNotification", None),
    "lifecycle": ("GetLifecycleConfiguration", "PutLifecycleConfiguration", "PutLifecycleConfiguration"),
    "encryption": ("GetEncryptionConfiguration", "PutEncryptionConfiguration", "PutEncryptionConfiguration"),
    "publicAccessBlock": ("GetBucketPublicAccessBlock", "PutBucketPublicAccessBlock", "PutBucketPublicAccessBlock"),
    "ownershipControls": ("GetBucketOwnershipControls", "PutBucketOwnershipControls", "PutBucketOwnershipControls"),
    "policy": ("GetBucketPolicy", "PutBucketPolicy", "DeleteBucketPolicy"),
    "location": ("GetBucketLocation", None, None),
    "acl": ("GetBucketAcl", "PutBucketAcl", None),
    "cors": ("GetBucketCORS", "PutBucketCORS", "PutBucketCORS"),
    "logging": ("GetBucketLogging", "PutBucketLogging", None),
    "object-lock": ("GetBucketObjectLockConfiguration", "PutBucketObjectLockConfiguration", None),
    "replication": ("GetReplicationConfiguration", "PutReplicationConfiguration", "PutReplicationConfiguration"),
    "website": ("GetBucketWebsite", "PutBucketWebsite", "DeleteBucketWebsite"),
    "policyStatus": ("GetBucketPolicyStatus", None, None),
}


def _s3_bucket_and_key(request: HttpRequest) -> tuple[str, str]:
    host = request.host.rsplit(":", 1)[0] if not request.host.startswith("[") else request.host
    bucket = ""
    if ".s3." in host or host.endswith(".s3.amazonaws.com"):
        bucket = host.split(".s3.", 1)[0]
    elif host.endswith(".localhost"):
        bucket = host[: -len(".localhost")]
    path = request.path.lstrip("/")
    if bucket:
        return bucket, path
    bucket, _, key = path.partition("/")
    return bucket, key


def _s3_context(request: HttpRequest) -> dict[str, Any]:
    sigv2 = request.param("AWSAccessKeyId") is not None or request.headers.get("authorization", "").startswith("AWS ")
    presigned = request.param("X-Amz-Credential") is not None or request.param("AWSAccessKeyId") is not None
    context: dict[str, Any] = {
        "s3:signatureversion": "AWS" if sigv2 else "AWS4-HMAC-SHA256",
        "s3:authType": "REST-QUERY-STRING" if presigned else "REST-HEADER",
    }
    for header in ("x-amz-server-side-encryption", "x-amz-server-side-encryption-aws-kms-key-id", "x-amz-acl",
                   "x-amz-copy-source", "x-amz-metadata-directive", "x-amz-storage-class"):
        if header in request.headers:
            context[f"s3:{header}"] = request.headers[header]
    return context


def _map_s3(call: _Call) -> _Mapped:
    request = call.request
    bucket, key = _s3_bucket_and_key(request)
    context = _s3_context(request)
    if not bucket:
        if request.method == "GET":
            return _Mapped("ListBuckets", [Authorization("s3:ListAllMyBuckets", "*", context)])
        return _Mapped(f"{request.method} /", unknown="S3 service-level request other than ListBuckets")
    if key:
        return _map_s3_object(call, bucket, key, context)
    return _map_s3_bucket(call, bucket, context)


def _s3_object_arn(bucket: str, key: str) -> str:
    return f"arn:aws:s3:::{bucket}/{key}"


def _map_s3_object(call: _Call, bucket: str, key: str, context: dict[str, Any]) -> _Mapped:
    request, method, query = call.request, call.request.method, call.request.query
    arn = _s3_object_arn(bucket, key)
    version = request.param("versionId")
    if version:
        context = {**context, "s3:versionid": version}

    def one(operation: str, action: str) -> _Mapped:
        return _Mapped(operation, [Authorization(f"s3:{action}", arn, context)])

    def versioned(operation: str, action: str, version_action: str) -> _Mapped:
        return one(operation, version_action if version else action)

    if method in ("GET", "HEAD"):
        if "tagging" in query:
            return versioned("GetObjectTagging", "GetObjectTagging", "GetObjectVersionTagging")
        if "acl" in query:
            return versioned("GetObjectAcl", "GetObjectAcl", "GetObjectVersionAcl")
        if "attributes" in query:
            return versioned("GetObjectAttributes", "GetObjectAttributes", "GetObjectVersionAttributes")
        if "retention" in query:
            return one("GetObjectRetention", "GetObjectRetention")
        if "legal-hold" in query:
            return one("GetObjectLegalHold", "GetObjectLegalHold")
        if "uploadId" in query:
            return one("ListParts", "ListMultipartUploadParts")
        mapped = versioned("HeadObject" if method == "HEAD" else "GetObject", "GetObject", "GetObjectVersion")
        mapped.object_read = S3ObjectRead(bucket, key, version)
        return mapped
    if method == "PUT":
        if "tagging" in query:
            return versioned("PutObjectTagging", "PutObjectTagging", "PutObjectVersionTagging")
        if "acl" in query:
            return versioned("PutObjectAcl", "PutObjectAcl", "PutObjectVersionAcl")
        if "retention" in query:
            return one("PutObjectRetention", "PutObjectRetention")
        if "legal-hold" in query:
            return one("PutObjectLegalHold", "PutObjectLegalHold")
        operation = "UploadPart" if "uploadId" in query else "PutObject"
        mapped = one(operation, "PutObject")
        source = request.headers.get("x-amz-copy-source")
        if source:
            mapped.operation = "UploadPartCopy" if "uploadId" in query else "CopyObject"
            mapped.authorizations.append(_s3_copy_source(source, context))
        return mapped
    if method == "POST":
        if "uploads" in query:
            return one("CreateMultipartUpload", "PutObject")
        if "uploadId" in query:
            return one("CompleteMultipartUpload", "PutObject")
        if "restore" in query:
            return one("RestoreObject", "RestoreObject")
        if "select" in query:
            return one("SelectObjectContent", "GetObject")
        return _Mapped("POST object", unknown=f"S3 POST on an object with query {sorted(query)}")
    if method == "DELETE":
        if "uploadId" in query:
            return one("AbortMultipartUpload", "AbortMultipartUpload")
        if "tagging" in query:
            return versioned("DeleteObjectTagging", "DeleteObjectTagging", "DeleteObjectVersionTagging")
        return versioned("DeleteObject", "DeleteObject", "DeleteObjectVersion")
    return _Mapped(f"{method} object", unknown=f"S3 {method} on an object")


def _s3_copy_source(source: str, context: dict[str, Any]) -> Authorization:
    # x-amz-copy-source: "bucket/key" or "/bucket/key", URL-encoded, "?versionId=..." optional.
    path, _, query = source.partition("?")
    path = unquote(path).lstrip("/")
    version = parse_qs(query).get("versionId", [None])[0]
    action = "s3:GetObjectVersion" if version else "s3:GetObject"
    return Authorization(action, f"arn:aws:s3:::{path}", context)


def _map_s3_bucket(call: _Call, bucket: str, context: dict[str, Any]) -> _Mapped:
    request, method, query = call.request, call.request.method, call.request.query
    arn = f"arn:aws:s3:::{bucket}"

    def one(operation: str, action: str, extra: Mapping[str, Any] | None = None) -> _Mapped:
        return _Mapped(operation, [Authorization(f"s3:{action}", arn, {**context, **(extra or {})})])

    for name, actions in _BUCKET_SUBRESOURCES.items():
        if name in query:
            action = {"GET": actions[0], "PUT": actions[1], "DELETE": actions[2]}.get(method)
            if action is None:
                return _Mapped(f"{method} ?{name}", unknown=f"S3 {method} on bucket subresource {name!r}")
            return one(action, action)
    if method == "POST" and "delete" in query:
        return _map_s3_delete_objects(request, bucket, context)
    listing = {k: request.param(p) for k, p in (("s3:prefix", "prefix"), ("s3:delimiter", "delimiter"), ("s3:max-keys", "max-keys"))}
    listing = {k: v for k, v in listing.items() if v is not None}
    if method == "GET":
        if "versions" in query:
            return one("ListObjectVersions", "ListBucketVersions", listing)
        if "uploads" in query:
            return one("ListMultipartUploads", "ListBucketMultipartUploads", listing)
        unknown = set(query) - {"list-type", "prefix", "delimiter", "max-keys", "continuation-token", "start-after",
                                "fetch-owner", "encoding-type", "marker", "X-Amz-Algorithm", "X-Amz-Credential",
                                "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "X-Amz-Signature",
                                "X-Amz-Security-Token", "optional-object-attributes", "AWSAccessKeyId", "Signature",
                                "Expires", "x-amz-security-token"}
        if unknown:
            return _Mapped(f"GET bucket ?{sorted(unknown)}", unknown=f"S3 GET on bucket with subresource {sorted(unknown)}")
        return one("ListObjectsV2" if request.param("list-type") == "2" else "ListObjects", "ListBucket", listing)
    if method == "HEAD":
        return one("HeadBucket", "ListBucket")
    if method == "PUT" and not query:
        return one("CreateBucket", "CreateBucket")
    if method == "DELETE" and not query:
        return one("DeleteBucket", "DeleteBucket")
    return _Mapped(f"{method} bucket", unknown=f"S3 {method} on bucket with query {sorted(query)}")


def _map_s3_delete_objects(request: HttpRequest, bucket: str, context: dict[str, Any]) -> _Mapped:
    # DeleteObjects is authorized key by key, as s3:DeleteObject(Version).
    mapped = _Mapped("DeleteObjects")
    try:
        root = ElementTree.fromstring(request.body or b"<Delete/>")
    except ElementTree.ParseError:
        return _Mapped("DeleteObjects", unknown="S3 DeleteObjects with a body that is not XML")
    for element in root.iter():
        if not element.tag.endswith("Object"):
            continue
        key = version = None
        for child in element:
            if child.tag.endswith("Key"):
                key = child.text or ""
            elif child.tag.endswith("VersionId"):
                version = child.text
        if key is None:
            continue
        extra = {"s3:versionid": version} if version else {}
        action = "s3:DeleteObjectVersion" if version else "s3:DeleteObject"
        mapped.authorizations.append(Authorization(action, _s3_object_arn(bucket, key), {**context, **extra}))
    return mapped


# -- DynamoDB -----------------------------------------------------------------------------


def _table_arn(call: _Call, table: str) -> str:
    if table.startswith("arn:"):
        return table
    return f"arn:aws:dynamodb:{call.region}:{call.account_id}:table/{table}"


def _leading_keys(call: _Call, table: str, key_or_item: Any) -> dict[str, Any]:
    if not isinstance(key_or_item, dict):
        return {}
    name = table.rpartition("/")[2] if table.startswith("arn:") else table
    partition_key = call.resolver.dynamodb_partition_key(name, call.region)
    attribute = key_or_item.get(partition_key) if partition_key else None
    if not isinstance(attribute, dict) or not attribute:
        return {}
    value = next(iter(attribute.values()))
    return {"dynamodb:LeadingKeys": [str(value)]}


_DYNAMODB_GLOBAL = {"ListTables", "DescribeLimits", "DescribeEndpoints", "ListBackups", "ListGlobalTables", "ListImports", "ListExports"}


def _map_dynamodb(call: _Call) -> _Mapped:
    operation = _target_operation(call.request)
    body = call.request.json()
    mapped = _Mapped(operation)
    add = mapped.authorizations.append
    if operation in _DYNAMODB_GLOBAL:
        add(Authorization(f"dynamodb:{operation}", "*"))
    elif operation in ("BatchGetItem", "BatchWriteItem"):
        for table in (body.get("RequestItems") or {}):
            add(Authorization(f"dynamodb:{operation}", _table_arn(call, table)))
    elif operation == "TransactWriteItems":
        actions = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem", "ConditionCheck": "ConditionCheckItem"}
        for item in body.get("TransactItems") or []:
            for kind, request in item.items():
                table = request.get("TableName", "")
                context = _leading_keys(call, table, request.get("Key") or request.get("Item"))
                add(Authorization(f"dynamodb:{actions.get(kind, kind)}", _table_arn(call, table), context))
    elif operation == "TransactGetItems":
        for item in body.get("TransactItems") or []:
            request = item.get("Get") or {}
            table = request.get("TableName", "")
            add(Authorization("dynamodb:GetItem", _table_arn(call, table), _leading_keys(call, table, request.get("Key"))))
    elif operation in ("TagResource", "UntagResource", "ListTagsOfResource"):
        add(Authorization(f"dynamodb:{operation}", body.get("ResourceArn", "*")))
    elif "TableName" in body:
        table = body["TableName"]
        arn = _table_arn(call, table)
        if body.get("IndexName") and operation in ("Query", "Scan"):
            arn = f"{arn}/index/{body['IndexName']}"
        context = _leading_keys(call, table, body.get("Key") or body.get("Item"))
        if operation == "Query":
            context.update(_query_leading_keys(call, table, body))
        for name, key in (("Select", "dynamodb:Select"), ("ReturnValues", "dynamodb:ReturnValues")):
            if body.get(name):
                context[key] = body[name]
        add(Authorization(f"dynamodb:{operation}", arn, context))
    else:
        mapped.unknown = f"DynamoDB {operation} without a TableName"
    return mapped


def _query_leading_keys(call: _Call, table: str, body: dict[str, Any]) -> dict[str, Any]:
    # Query: the partition key value is the ExpressionAttributeValue compared with it.
    partition_key = call.resolver.dynamodb_partition_key(table, call.region)
    expression = body.get("KeyConditionExpression") or ""
    if not partition_key or body.get("IndexName"):
        return {}
    names = {v: k for k, v in (body.get("ExpressionAttributeNames") or {}).items()}
    alias = names.get(partition_key, partition_key)
    match = re.search(rf"(?<![\w#]){re.escape(alias)}\s*=\s*(:\w+)", expression)
    value = (body.get("ExpressionAttributeValues") or {}).get(match.group(1)) if match else None
    if not isinstance(value, dict) or not value:
        return {}
    return {"dynamodb:LeadingKeys": [str(next(iter(value.values())))]}


# -- KMS -------------------------------------------------------------------------------------

_KMS_GLOBAL = {"CreateKey", "ListKeys", "ListAliases", "GenerateRandom", "ListRetirableGrants", "CreateCustomKeyStore",
               "DescribeCustomKeyStores", "ConnectCustomKeyStore", "DisconnectCustomKeyStore", "DeleteCustomKeyStore",
               "UpdateCustomKeyStore"}


def _kms_key(call: _Call, key_id: str) -> str:
    return call.resolver.kms_key_arn(key_id, call.region) or f"arn:aws:kms:{call.region}:{call.account_id}:key/{key_id}"


def _alias_arn(call: _Call, alias: str) -> str:
    return alias if alias.startswith("arn:") else f"arn:aws:kms:{call.region}:{call.account_id}:{alias}"


def _kms_context(call: _Call, body: dict[str, Any]) -> dict[str, Any]:
    context: dict[str, Any] = {"kms:CallerAccount": call.account_id}
    encryption_context = body.get("EncryptionContext")
    constraints = body.get("Constraints") or {}
    encryption_context = encryption_context or constraints.get("EncryptionContextEquals") or constraints.get("EncryptionContextSubset")
    if isinstance(encryption_context, dict) and encryption_context:
        for key, value in encryption_context.items():
            context[f"kms:EncryptionContext:{key}"] = str(value)
        context["kms:EncryptionContextKeys"] = sorted(encryption_context)
    if constraints.get("EncryptionContextEquals"):
        context["kms:GrantConstraintType"] = "EncryptionContextEquals"
    elif constraints.get("EncryptionContextSubset"):
        context["kms:GrantConstraintType"] = "EncryptionContextSubset"
    if body.get("Operations"):
        context["kms:GrantOperations"] = list(body["Operations"])
    for name in ("GranteePrincipal", "RetiringPrincipal", "EncryptionAlgorithm", "KeySpec", "KeyUsage", "NumberOfBytes"):
        if body.get(name) is not None:
            context[f"kms:{name}"] = str(body[name])
    key_id = str(body.get("KeyId") or "")
    if key_id.startswith("alias/") or ":alias/" in key_id:
        context["kms:RequestAlias"] = "alias/" + key_id.split("alias/", 1)[1]
    return context


def _kms_ciphertext_key(call: _Call, body: dict[str, Any]) -> str | None:
    blob = body.get("CiphertextBlob")
    if not blob:
        return None
    try:
        return call.resolver.kms_key_arn_from_ciphertext(base64.b64decode(blob), call.region)
    except (ValueError, TypeError):
        return None


def _map_kms(call: _Call) -> _Mapped:
    operation = _target_operation(call.request)
    body = call.request.json()
    context = _kms_context(call, body)
    mapped = _Mapped(operation)
    add = mapped.authorizations.append
    if operation in _KMS_GLOBAL:
        add(Authorization(f"kms:{operation}", "*", context))
    elif operation == "ReEncrypt":
        source = body.get("SourceKeyId")
        source_arn = _kms_key(call, source) if source else _kms_ciphertext_key(call, body)
        # Each side is authorized with its own encryption context.
        source_context = _kms_context(call, {**body, "EncryptionContext": body.get("SourceEncryptionContext")})
        destination_context = _kms_context(call, {**body, "EncryptionContext": body.get("DestinationEncryptionContext")})
        add(Authorization("kms:ReEncryptFrom", source_arn or "*", source_context))
        add(Authorization("kms:ReEncryptTo", _kms_key(call, body.get("DestinationKeyId", "")), destination_context))
    elif operation in ("CreateAlias", "UpdateAlias"):
        add(Authorization(f"kms:{operation}", _alias_arn(call, body.get("AliasName", "")), context))
        add(Authorization(f"kms:{operation}", _kms_key(call, body.get("TargetKeyId", "")), context))
    elif operation == "DeleteAlias":
        alias = body.get("AliasName", "")
        add(Authorization("kms:DeleteAlias", _alias_arn(call, alias), context))
        target = call.resolver.kms_key_arn(alias, call.region)
        if target and ":key/" in target:
            add(Authorization("kms:DeleteAlias", target, context))
    elif body.get("KeyId"):
        add(Authorization(f"kms:{operation}", _kms_key(call, body["KeyId"]), context))
    elif operation == "Decrypt":
        add(Authorization("kms:Decrypt", _kms_ciphertext_key(call, body) or "*", context))
    elif operation in ("RetireGrant", "ListGrants"):
        add(Authorization(f"kms:{operation}", "*", context))
    else:
        mapped.unknown = f"KMS {operation} without a KeyId"
    return mapped


# -- SQS --------------------------------------------------------------------------------------

# Batch calls are authorized as the single call.
_SQS_ACTIONS = {"SendMessageBatch": "SendMessage", "DeleteMessageBatch": "DeleteMessage",
                "ChangeMessageVisibilityBatch": "ChangeMessageVisibility"}


def _queue_arn(call: _Call, queue_url: str | None, queue_name: str | None, owner: str | None) -> str:
    if queue_url:
        path = urlsplit(queue_url).path.strip("/").split("/")
        if len(path) >= 2:
            return f"arn:aws:sqs:{call.region}:{path[-2]}:{path[-1]}"
        queue_name = path[-1]
    if queue_name:
        return f"arn:aws:sqs:{call.region}:{owner or call.account_id}:{queue_name}"
    return "*"


def _map_sqs(call: _Call) -> _Mapped:
    request = call.request
    if request.headers.get("x-amz-target"):
        operation, parameters = _target_operation(request), request.json()
    else:
        parameters = request.form()
        operation = parameters.get("Action", "")
    if not operation:
        return _Mapped("?", unknown="SQS request without an operation")
    action = f"sqs:{_SQS_ACTIONS.get(operation, operation)}"
    if operation == "ListQueues":
        return _Mapped(operation, [Authorization(action, "*")])
    arn = _queue_arn(call, parameters.get("QueueUrl"), parameters.get("QueueName"), parameters.get("QueueOwnerAWSAccountId"))
    return _Mapped(operation, [Authorization(action, arn)])


# -- STS, SNS, CloudWatch, EventBridge, Step Functions, Lambda -----------------------------------


def _map_sts(call: _Call) -> _Mapped:
    parameters = call.request.form()
    operation = parameters.get("Action", "")
    if operation == "GetCallerIdentity":
        return _Mapped(operation, always_allowed=True)
    if operation in ("AssumeRole", "AssumeRoleWithWebIdentity", "AssumeRoleWithSAML"):
        return _Mapped(operation, [Authorization(f"sts:{operation}", parameters.get("RoleArn", "*"))])
    if operation:
        return _Mapped(operation, [Authorization(f"sts:{operation}", "*")])
    return _Mapped("?", unknown="STS request without an Action")


def _map_sns(call: _Call) -> _Mapped:
    parameters = call.request.form()
    operation = parameters.get("Action", "")
    if not operation:
        return _Mapped("?", unknown="SNS request without an Action")
    action = "sns:Publish" if operation == "PublishBatch" else f"sns:{operation}"
    return _Mapped(operation, [Authorization(action, parameters.get("TopicArn") or parameters.get("ResourceArn") or "*")])


def _map_cloudwatch(call: _Call) -> _Mapped:
    request = call.request
    # rpc-v2-cbor puts the operation in the path; JSON in X-Amz-Target; query in Action.
    match = re.search(r"/service/[^/]+/operation/([^/]+)$", request.path)
    operation = match.group(1) if match else _target_operation(request) or request.form().get("Action", "")
    if not operation:
        return _Mapped("?", unknown="CloudWatch request without an operation")
    if operation == "PutMetricData":
        return _Mapped(operation, [Authorization("cloudwatch:PutMetricData", "*")])
    return _Mapped(operation, unknown=f"CloudWatch {operation}")


def _map_events(call: _Call) -> _Mapped:
    operation = _target_operation(call.request)
    body = call.request.json()
    mapped = _Mapped(operation)

    def bus_arn(name: str | None) -> str:
        name = name or "default"
        return name if name.startswith("arn:") else f"arn:aws:events:{call.region}:{call.account_id}:event-bus/{name}"

    if operation == "PutEvents":
        for entry in body.get("Entries") or []:
            context = {"events:source": [entry.get("Source", "")], "events:detail-type": [entry.get("DetailType", "")]}
            mapped.authorizations.append(Authorization("events:PutEvents", bus_arn(entry.get("EventBusName")), context))
    elif "Rule" in body or ("Name" in body and operation.endswith("Rule")):
        name = body.get("Rule") or body.get("Name")
        bus = body.get("EventBusName") or "default"
        bus_name = bus.rpartition("/")[2]
        path = name if bus_name == "default" else f"{bus_name}/{name}"
        mapped.authorizations.append(Authorization(f"events:{operation}", f"arn:aws:events:{call.region}:{call.account_id}:rule/{path}"))
    elif operation in ("DescribeEventBus", "CreateEventBus", "DeleteEventBus"):
        mapped.authorizations.append(Authorization(f"events:{operation}", bus_arn(body.get("Name"))))
    elif operation.startswith("List") or operation.startswith("Describe"):
        mapped.authorizations.append(Authorization(f"events:{operation}", "*"))
    else:
        mapped.unknown = f"EventBridge {operation}"
    return mapped


def _map_stepfunctions(call: _Call) -> _Mapped:
    operation = _target_operation(call.request)
    body = call.request.json()
    resource = body.get("stateMachineArn") or body.get("executionArn") or body.get("resourceArn") or body.get("activityArn")
    if operation in ("SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat", "ListStateMachines", "ListActivities", "CreateStateMachine"):
        resource = resource or "*"
    if not resource:
        return _Mapped(operation, unknown=f"Step Functions {operation} without a resource ARN")
    return _Mapped(operation, [Authorization(f"states:{operation}", resource)])


def _map_lambda(call: _Call) -> _Mapped:
    request = call.request
    match = re.fullmatch(r"/[0-9-]+/functions/([^/]+)(/invocations)?/?", request.path)
    if match is None:
        return _Mapped(f"{request.method} {request.path}", unknown=f"Lambda {request.method} {request.path}")
    name, invoke = match.group(1), match.group(2)
    arn = name if name.startswith("arn:") else f"arn:aws:lambda:{call.region}:{call.account_id}:function:{name}"
    qualifier = request.param("Qualifier")
    if qualifier and arn.count(":") == 6:
        arn = f"{arn}:{qualifier}"
    if invoke and request.method == "POST":
        return _Mapped("Invoke", [Authorization("lambda:InvokeFunction", arn)])
    if not invoke and request.method == "GET":
        return _Mapped("GetFunction", [Authorization("lambda:GetFunction", arn)])
    return _Mapped(f"{request.method} function", unknown=f"Lambda {request.method} {request.path}")


def _map_connect(call: _Call) -> _Mapped:
    # ProtectContact learns an instance's storage prefix: DescribeInstance (GET /instance/{id}).
    request = call.request
    match = re.fullmatch(r"/instance/([^/]+)/?", request.path)
    if match is None or request.method != "GET":
        return _Mapped(f"{request.method} {request.path}", unknown=f"Amazon Connect {request.method} {request.path}")
    instance = match.group(1)
    arn = instance if instance.startswith("arn:") else f"arn:aws:connect:{call.region}:{call.account_id}:instance/{instance}"
    return _Mapped("DescribeInstance", [Authorization("connect:DescribeInstance", arn)])


_MAPPERS: dict[str, Callable[[_Call], _Mapped]] = {
    "s3": _map_s3,
    "dynamodb": _map_dynamodb,
    "kms": _map_kms,
    "sqs": _map_sqs,
    "sts": _map_sts,
    "sns": _map_sns,
    "cloudwatch": _map_cloudwatch,
    "events": _map_events,
    "stepfunctions": _map_stepfunctions,
    "lambda": _map_lambda,
    "connect": _map_connect,
}


def supported_services() -> Iterable[str]:
    return tuple(_MAPPERS)
