"""Which IAM permissions a request needs (atrest_cli.local.iam_requests), from requests that
botocore prepares exactly as it sends them to the emulator."""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.config import Config

from atrest_cli.local.iam_requests import HttpRequest, MappedRequest, StaticResolver, map_request

ACCOUNT = "123456789012"
ENDPOINT = "http://127.0.0.1:4566"
KEY_ID = "1234abcd-12ab-34cd-56ef-1234567890ab"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/{KEY_ID}"


class _Captured(Exception):
    def __init__(self, request: Any) -> None:
        self.request = request


def _capture(request: Any, **_: Any) -> None:
    raise _Captured(request)


_plain_clients: dict[str, Any] = {}


def client(service: str, **config: Any) -> Any:
    """A client whose requests are captured before they are sent (built once per service
    when no configuration is given: building one takes ~0.1 s)."""
    cacheable = not config
    if cacheable and service in _plain_clients:
        return _plain_clients[service]
    session = boto3.session.Session(aws_access_key_id="ASIAEXAMPLE", aws_secret_access_key="secret",
                                    aws_session_token="token", region_name="us-east-1")
    made = session.client(service, endpoint_url=config.pop("endpoint_url", ENDPOINT),
                          config=Config(retries={"max_attempts": 1}, **config))
    made.meta.events.register("before-send", _capture)
    if cacheable:
        _plain_clients[service] = made
    return made


def http_request(service_client: Any, operation: str, **params: Any) -> HttpRequest:
    with pytest.raises(_Captured) as captured:
        getattr(service_client, operation)(**params)
    prepared = captured.value.request
    body = prepared.body
    if hasattr(body, "read"):
        body = body.read()
    return HttpRequest.from_url(prepared.method, prepared.url, dict(prepared.headers), body)


def mapped(service: str, operation: str, resolver: Any = None, **params: Any) -> MappedRequest:
    return map_request(http_request(client(service), operation, **params), account_id=ACCOUNT, resolver=resolver)


def needs(result: MappedRequest) -> list[tuple[str, str]]:
    assert result.unknown is None, result.unknown
    return [(a.action, a.resource) for a in result.authorizations]


# -- credentials -----------------------------------------------------------------------------


def test_header_signature_gives_access_key_region_and_service() -> None:
    result = mapped("dynamodb", "get_item", TableName="T", Key={"pk": {"S": "a"}})
    assert (result.credential.access_key_id, result.credential.region, result.credential.service) == ("ASIAEXAMPLE", "us-east-1", "dynamodb")


def test_presigned_urls_carry_the_credential_in_the_query() -> None:
    for signature_version in ("s3v4", "s3"):
        s3 = client("s3", signature_version=signature_version)
        url = s3.generate_presigned_url("get_object", Params={"Bucket": "b", "Key": "k"})
        result = map_request(HttpRequest.from_url("GET", url, {}), account_id=ACCOUNT)
        assert result.credential.access_key_id == "ASIAEXAMPLE", signature_version
        assert needs(result) == [("s3:GetObject", "arn:aws:s3:::b/k")]
        assert result.authorizations[0].context["s3:authType"] == "REST-QUERY-STRING"


def test_every_authorization_carries_region_and_plain_http() -> None:
    context = mapped("s3", "get_object", Bucket="b", Key="k").authorizations[0].context
    assert context["aws:RequestedRegion"] == "us-east-1" and context["aws:SecureTransport"] == "false"


# -- S3 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("operation, params, expected", [
    ("get_object", {"Key": "a/b c"}, [("s3:GetObject", "arn:aws:s3:::bkt/a/b c")]),
    ("get_object", {"Key": "k", "VersionId": "v1"}, [("s3:GetObjectVersion", "arn:aws:s3:::bkt/k")]),
    ("head_object", {"Key": "k"}, [("s3:GetObject", "arn:aws:s3:::bkt/k")]),
    ("head_object", {"Key": "k", "VersionId": "v1"}, [("s3:GetObjectVersion", "arn:aws:s3:::bkt/k")]),
    ("put_object", {"Key": "k", "Body": b"x"}, [("s3:PutObject", "arn:aws:s3:::bkt/k")]),
    ("create_multipart_upload", {"Key": "k"}, [("s3:PutObject", "arn:aws:s3:::bkt/k")]),
    ("upload_part", {"Key": "k", "UploadId": "u", "PartNumber": 1, "Body": b"x"}, [("s3:PutObject", "arn:aws:s3:::bkt/k")]),
    ("complete_multipart_upload", {"Key": "k", "UploadId": "u", "MultipartUpload": {"Parts": [{"ETag": "e", "PartNumber": 1}]}},
     [("s3:PutObject", "arn:aws:s3:::bkt/k")]),
    ("abort_multipart_upload", {"Key": "k", "UploadId": "u"}, [("s3:AbortMultipartUpload", "arn:aws:s3:::bkt/k")]),
    ("list_parts", {"Key": "k", "UploadId": "u"}, [("s3:ListMultipartUploadParts", "arn:aws:s3:::bkt/k")]),
    ("delete_object", {"Key": "k"}, [("s3:DeleteObject", "arn:aws:s3:::bkt/k")]),
    ("delete_object", {"Key": "k", "VersionId": "v1"}, [("s3:DeleteObjectVersion", "arn:aws:s3:::bkt/k")]),
    ("get_object_tagging", {"Key": "k"}, [("s3:GetObjectTagging", "arn:aws:s3:::bkt/k")]),
    ("put_object_tagging", {"Key": "k", "Tagging": {"TagSet": []}}, [("s3:PutObjectTagging", "arn:aws:s3:::bkt/k")]),
    ("copy_object", {"Key": "to", "CopySource": {"Bucket": "src", "Key": "from/x y"}},
     [("s3:PutObject", "arn:aws:s3:::bkt/to"), ("s3:GetObject", "arn:aws:s3:::src/from/x y")]),
    ("copy_object", {"Key": "to", "CopySource": {"Bucket": "src", "Key": "f", "VersionId": "v9"}},
     [("s3:PutObject", "arn:aws:s3:::bkt/to"), ("s3:GetObjectVersion", "arn:aws:s3:::src/f")]),
    ("list_objects_v2", {"Prefix": "p/"}, [("s3:ListBucket", "arn:aws:s3:::bkt")]),
    ("list_objects", {}, [("s3:ListBucket", "arn:aws:s3:::bkt")]),
    ("list_object_versions", {}, [("s3:ListBucketVersions", "arn:aws:s3:::bkt")]),
    ("list_multipart_uploads", {}, [("s3:ListBucketMultipartUploads", "arn:aws:s3:::bkt")]),
    ("head_bucket", {}, [("s3:ListBucket", "arn:aws:s3:::bkt")]),
    ("put_bucket_versioning", {"VersioningConfiguration": {"Status": "Enabled"}}, [("s3:PutBucketVersioning", "arn:aws:s3:::bkt")]),
    ("delete_objects", {"Delete": {"Objects": [{"Key": "a"}, {"Key": "b", "VersionId": "v2"}]}},
     [("s3:DeleteObject", "arn:aws:s3:::bkt/a"), ("s3:DeleteObjectVersion", "arn:aws:s3:::bkt/b")]),
])
def test_s3_operations_need_the_actions_iam_documents(operation: str, params: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    assert needs(mapped("s3", operation, Bucket="bkt", **params)) == expected


def test_s3_list_bucket_context_has_the_prefix() -> None:
    context = mapped("s3", "list_objects_v2", Bucket="bkt", Prefix="home/a/").authorizations[0].context
    assert context["s3:prefix"] == "home/a/"


def test_s3_object_reads_are_flagged_for_the_missing_object_rule() -> None:
    read = mapped("s3", "get_object", Bucket="bkt", Key="k", VersionId="v1").object_read
    assert (read.bucket, read.key, read.version_id) == ("bkt", "k", "v1")
    assert mapped("s3", "put_object", Bucket="bkt", Key="k", Body=b"").object_read is None


def test_s3_virtual_host_style_bucket_comes_from_the_host() -> None:
    s3 = client("s3", endpoint_url="https://s3.us-east-1.amazonaws.com", s3={"addressing_style": "virtual"})
    request = http_request(s3, "get_object", Bucket="vbucket", Key="dir/k")
    assert request.host.startswith("vbucket.s3.")
    assert needs(map_request(request, account_id=ACCOUNT)) == [("s3:GetObject", "arn:aws:s3:::vbucket/dir/k")]


def test_s3_unmapped_bucket_subresource_is_unknown() -> None:
    assert mapped("s3", "get_bucket_accelerate_configuration", Bucket="bkt").unknown


# -- DynamoDB ----------------------------------------------------------------------------------------


def table(name: str) -> str:
    return f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/{name}"


def test_dynamodb_item_calls_are_authorized_on_the_table() -> None:
    assert needs(mapped("dynamodb", "put_item", TableName="T", Item={"pk": {"S": "a"}})) == [("dynamodb:PutItem", table("T"))]
    assert needs(mapped("dynamodb", "describe_table", TableName="T")) == [("dynamodb:DescribeTable", table("T"))]


def test_dynamodb_query_on_an_index_is_authorized_on_the_index() -> None:
    result = mapped("dynamodb", "query", TableName="T", IndexName="by-key", KeyConditionExpression="k = :v",
                    ExpressionAttributeValues={":v": {"S": "x"}})
    assert needs(result) == [("dynamodb:Query", f"{table('T')}/index/by-key")]


def test_dynamodb_leading_keys_come_from_the_partition_key() -> None:
    resolver = StaticResolver(ACCOUNT, {"T": "pk"})
    put = mapped("dynamodb", "put_item", resolver, TableName="T", Item={"pk": {"S": "tenant-1"}, "v": {"N": "1"}})
    assert put.authorizations[0].context["dynamodb:LeadingKeys"] == ["tenant-1"]
    query = mapped("dynamodb", "query", resolver, TableName="T", KeyConditionExpression="#p = :v",
                   ExpressionAttributeNames={"#p": "pk"}, ExpressionAttributeValues={":v": {"S": "tenant-2"}})
    assert query.authorizations[0].context["dynamodb:LeadingKeys"] == ["tenant-2"]


def test_dynamodb_transact_write_authorizes_each_item_as_its_own_action() -> None:
    result = mapped("dynamodb", "transact_write_items", TransactItems=[
        {"Put": {"TableName": "A", "Item": {"pk": {"S": "1"}}}},
        {"Update": {"TableName": "B", "Key": {"pk": {"S": "1"}}, "UpdateExpression": "SET v = :v", "ExpressionAttributeValues": {":v": {"N": "1"}}}},
        {"Delete": {"TableName": "A", "Key": {"pk": {"S": "2"}}}},
        {"ConditionCheck": {"TableName": "C", "Key": {"pk": {"S": "3"}}, "ConditionExpression": "attribute_exists(pk)"}},
    ])
    assert needs(result) == [("dynamodb:PutItem", table("A")), ("dynamodb:UpdateItem", table("B")),
                             ("dynamodb:DeleteItem", table("A")), ("dynamodb:ConditionCheckItem", table("C"))]


def test_dynamodb_batch_and_transact_get_are_authorized_per_table() -> None:
    batch_write = mapped("dynamodb", "batch_write_item", RequestItems={
        "A": [{"PutRequest": {"Item": {"pk": {"S": "1"}}}}], "B": [{"DeleteRequest": {"Key": {"pk": {"S": "1"}}}}]})
    assert needs(batch_write) == [("dynamodb:BatchWriteItem", table("A")), ("dynamodb:BatchWriteItem", table("B"))]
    batch_get = mapped("dynamodb", "batch_get_item", RequestItems={"A": {"Keys": [{"pk": {"S": "1"}}]}})
    assert needs(batch_get) == [("dynamodb:BatchGetItem", table("A"))]
    transact_get = mapped("dynamodb", "transact_get_items", TransactItems=[{"Get": {"TableName": "A", "Key": {"pk": {"S": "1"}}}}])
    assert needs(transact_get) == [("dynamodb:GetItem", table("A"))]


# -- KMS ---------------------------------------------------------------------------------------------


class AliasResolver(StaticResolver):
    def kms_key_arn(self, key_id: str, region: str) -> str | None:
        return KEY_ARN if "alias/" in key_id or KEY_ID in key_id else super().kms_key_arn(key_id, region)

    def kms_key_arn_from_ciphertext(self, blob: bytes, region: str) -> str | None:
        return KEY_ARN


@pytest.mark.parametrize("key_id", [KEY_ID, KEY_ARN, "alias/atrest", f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/atrest"])
def test_kms_key_id_in_any_form_resolves_to_the_key_arn(key_id: str) -> None:
    result = mapped("kms", "generate_data_key", AliasResolver(ACCOUNT), KeyId=key_id, KeySpec="AES_256")
    assert needs(result) == [("kms:GenerateDataKey", KEY_ARN)]


def test_kms_encryption_context_becomes_condition_keys() -> None:
    result = mapped("kms", "decrypt", AliasResolver(ACCOUNT), CiphertextBlob=b"blob", EncryptionContext={"tablename": "T", "b": "2"})
    assert needs(result) == [("kms:Decrypt", KEY_ARN)], "Decrypt without KeyId: the key comes from the ciphertext"
    context = result.authorizations[0].context
    assert context["kms:EncryptionContext:tablename"] == "T"
    assert context["kms:EncryptionContextKeys"] == ["b", "tablename"]


def test_kms_re_encrypt_needs_from_on_the_source_and_to_on_the_destination() -> None:
    destination = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/other"
    result = mapped("kms", "re_encrypt", AliasResolver(ACCOUNT), CiphertextBlob=b"blob", DestinationKeyId=destination,
                    SourceEncryptionContext={"side": "from"}, DestinationEncryptionContext={"side": "to"})
    assert needs(result) == [("kms:ReEncryptFrom", KEY_ARN), ("kms:ReEncryptTo", destination)]
    assert [a.context["kms:EncryptionContext:side"] for a in result.authorizations] == ["from", "to"]


def test_kms_create_grant_context_has_the_operations_and_grantee() -> None:
    result = mapped("kms", "create_grant", AliasResolver(ACCOUNT), KeyId=KEY_ID, GranteePrincipal="arn:aws:iam::1:role/r",
                    Operations=["Decrypt", "Encrypt"], Constraints={"EncryptionContextSubset": {"tablename": "T"}})
    context = result.authorizations[0].context
    assert context["kms:GrantOperations"] == ["Decrypt", "Encrypt"]
    assert context["kms:GranteePrincipal"] == "arn:aws:iam::1:role/r"
    assert context["kms:EncryptionContext:tablename"] == "T"


def test_kms_create_key_is_authorized_on_star() -> None:
    assert needs(mapped("kms", "create_key")) == [("kms:CreateKey", "*")]


# -- SQS, STS, events, Step Functions, Lambda, SNS, CloudWatch ------------------------------------


QUEUE_URL = f"{ENDPOINT}/{ACCOUNT}/jobs"
QUEUE_ARN = f"arn:aws:sqs:us-east-1:{ACCOUNT}:jobs"


def test_sqs_json_protocol_calls_are_authorized_on_the_queue() -> None:
    assert needs(mapped("sqs", "receive_message", QueueUrl=QUEUE_URL)) == [("sqs:ReceiveMessage", QUEUE_ARN)]
    assert needs(mapped("sqs", "get_queue_url", QueueName="jobs")) == [("sqs:GetQueueUrl", QUEUE_ARN)]


def test_sqs_batch_calls_need_the_single_calls_action() -> None:
    result = mapped("sqs", "delete_message_batch", QueueUrl=QUEUE_URL, Entries=[{"Id": "1", "ReceiptHandle": "r"}])
    assert needs(result) == [("sqs:DeleteMessage", QUEUE_ARN)]


def test_sqs_query_protocol_is_understood_too() -> None:
    request = HttpRequest.from_url("POST", f"{ENDPOINT}/", {
        "Authorization": "AWS4-HMAC-SHA256 Credential=ASIAX/20250101/us-east-1/sqs/aws4_request, SignedHeaders=host, Signature=x",
        "Content-Type": "application/x-www-form-urlencoded"}, f"Action=SendMessage&QueueUrl={QUEUE_URL}&MessageBody=x")
    assert needs(map_request(request, account_id=ACCOUNT)) == [("sqs:SendMessage", QUEUE_ARN)]


def test_sts_get_caller_identity_needs_no_permission() -> None:
    assert mapped("sts", "get_caller_identity").always_allowed


def test_eventbridge_put_events_is_authorized_per_entry_bus() -> None:
    result = mapped("events", "put_events", Entries=[
        {"Source": "atrest", "DetailType": "x", "Detail": "{}"},
        {"Source": "atrest", "DetailType": "y", "Detail": "{}", "EventBusName": "audit"}])
    assert needs(result) == [("events:PutEvents", f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/default"),
                             ("events:PutEvents", f"arn:aws:events:us-east-1:{ACCOUNT}:event-bus/audit")]
    assert result.authorizations[0].context["events:source"] == ["atrest"]


def test_step_functions_start_execution_is_authorized_on_the_state_machine() -> None:
    machine = f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:backfill"
    assert needs(mapped("stepfunctions", "start_execution", stateMachineArn=machine)) == [("states:StartExecution", machine)]


def test_lambda_invoke_is_authorized_on_the_function() -> None:
    result = mapped("lambda", "invoke", FunctionName="encrypt")
    assert needs(result) == [("lambda:InvokeFunction", f"arn:aws:lambda:us-east-1:{ACCOUNT}:function:encrypt")]


def test_sns_publish_is_authorized_on_the_topic() -> None:
    topic = f"arn:aws:sns:us-east-1:{ACCOUNT}:alerts"
    assert needs(mapped("sns", "publish", TopicArn=topic, Message="m")) == [("sns:Publish", topic)]


def test_cloudwatch_put_metric_data_is_authorized_on_star() -> None:
    result = mapped("cloudwatch", "put_metric_data", Namespace="atrest", MetricData=[{"MetricName": "m", "Value": 1.0}])
    assert (result.operation, needs(result)) == ("PutMetricData", [("cloudwatch:PutMetricData", "*")])


def test_unknown_services_are_unknown_not_allowed() -> None:
    result = mapped("iam", "list_roles")
    assert result.unknown and not result.authorizations and not result.always_allowed


def test_connect_describe_instance_is_authorized_on_the_instance() -> None:
    result = mapped("connect", "describe_instance", InstanceId="48c64dfb-1111-2222-3333-444455556666")
    assert needs(result) == [
        ("connect:DescribeInstance", f"arn:aws:connect:us-east-1:{ACCOUNT}:instance/48c64dfb-1111-2222-3333-444455556666")
    ]
