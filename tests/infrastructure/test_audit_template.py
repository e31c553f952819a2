"""Audited reads in template.yaml: the append-only audit table, the ReadObject function URL
and its least privilege, the retrieval bucket and the sweep that bounds plaintext at rest."""

from __future__ import annotations

from typing import Any

import pytest

from atrest_cli.operations.deployment import OUTPUT_VARIABLES, PARAMETER_VARIABLES

from .conftest import Stack, as_list, identity_policy_statements, statements
from .test_template_structure import _actions_by_resource, _keys, bucket_policy_for

AUDIT_TABLE_ARN = {"Fn::GetAtt": ["AuditTable", "Arn"]}


def grants_on(resources: dict[str, Any], resource: Any) -> dict[str, set[str]]:
    """role -> actions its identity policies allow on `resource` (exactly that Resource value)."""
    granted: dict[str, set[str]] = {}
    for where, stmt in identity_policy_statements(resources):
        if stmt.get("Effect") == "Allow" and resource in as_list(stmt["Resource"]):
            granted.setdefault(where.split("/")[0], set()).update(as_list(stmt["Action"]))
    return granted


# --------------------------------------------------------------------------- the audit trail


def test_the_audit_table_is_keyed_for_since_and_contact_queries(resources):
    props = resources["AuditTable"]["Properties"]
    assert _keys(props) == {"HASH": ("pk", "S"), "RANGE": ("sk", "S")}
    (index,) = props["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "by-contact" and index["Projection"]["ProjectionType"] == "ALL"
    assert {k["KeyType"]: k["AttributeName"] for k in index["KeySchema"]} == {"HASH": "gsi1pk", "RANGE": "gsi1sk"}
    assert props["BillingMode"] == "PAY_PER_REQUEST"


def test_the_audit_trail_survives_the_stack_and_is_recoverable(resources):
    table = resources["AuditTable"]
    assert table["DeletionPolicy"] == table["UpdateReplacePolicy"] == "Retain"
    props = table["Properties"]
    assert props["DeletionProtectionEnabled"] is True
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert "TimeToLiveSpecification" not in props, "a TTL would expire audit records"


def test_the_audit_table_policy_denies_every_change_and_removal_to_everyone(resources, stack):
    props = resources["AuditTable"]["Properties"]
    (deny,) = statements(props["ResourcePolicy"]["PolicyDocument"])
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*" and "Condition" not in deny
    assert set(as_list(deny["Action"])) == {
        "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem",
        "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete", "dynamodb:UpdateTimeToLive",
    }
    # The policy cannot GetAtt its own table: it names the ARN the table's own name gives.
    table_name = stack.resolve(props["TableName"])
    assert as_list(stack.resolve(deny["Resource"])) == [f"arn:aws:dynamodb:us-east-1:123456789012:table/{table_name}"]


AUDIT_STREAM_ARN = {"Fn::Sub": "${AuditTable.Arn}/stream/*"}


def test_readers_may_only_append_to_the_audit_trail(resources):
    granted = grants_on(resources, AUDIT_TABLE_ARN)
    assert granted == {"ReadObjectFunctionRole": {"dynamodb:PutItem"}, "WatchAuditTrailFunctionRole": {"dynamodb:PutItem"}}
    named = [r for _, s in identity_policy_statements(resources) for r in as_list(s.get("Resource", [])) if "AuditTable" in repr(r)]
    assert sorted(map(repr, named)) == sorted(map(repr, [AUDIT_TABLE_ARN, AUDIT_TABLE_ARN, AUDIT_STREAM_ARN])), \
        "no role may query or scan the audit table or its index"


# --------------------------------------------------------------------------- changed records


def test_every_change_to_an_audit_record_reaches_the_watch_with_the_record_as_it_was(resources, translated_template):
    # No policy can make a PutItem conditional: the stream is what sees a replaced record.
    assert resources["AuditTable"]["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}
    (mapping,) = [r["Properties"] for r in translated_template["Resources"].values()
                  if r["Type"] == "AWS::Lambda::EventSourceMapping"
                  and r["Properties"]["FunctionName"] == {"Ref": "WatchAuditTrailFunction"}]
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["AuditTable", "StreamArn"]}
    assert mapping["StartingPosition"] == "TRIM_HORIZON"
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # Finite retries (the default, -1, would block the shard for the stream's 24 hours on one
    # bad record), then the batch's position goes to a queue with an alarm.
    assert 0 < mapping["MaximumRetryAttempts"] <= 100
    assert mapping["DestinationConfig"] == {"OnFailure": {"Destination": {"Fn::GetAtt": ["AuditWatchFailureQueue", "Arn"]}}}
    alarm = resources["AuditWatchFailedAlarm"]["Properties"]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["AuditWatchFailureQueue", "QueueName"]}}]


def test_the_watch_reads_the_stream_and_may_only_append(resources):
    granted = _actions_by_resource(resources, "WatchAuditTrailFunctionRole")
    data = {resource: actions for resource, actions in granted.items()
            if any(a.split(":")[0] in ("s3", "dynamodb", "sqs", "kms") for a in actions)}
    assert data == {
        repr(AUDIT_STREAM_ARN): {"dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator",
                                 "dynamodb:ListStreams"},
        repr(AUDIT_TABLE_ARN): {"dynamodb:PutItem"},
        repr({"Fn::GetAtt": ["AuditWatchFailureQueue", "Arn"]}): {"sqs:SendMessage"},
    }
    assert {"Ref": "WatchAuditTrailFunctionRole"} in resources["KmsKeyFencePolicy"]["Properties"]["Roles"]


def test_a_kept_original_raises_an_alarm(resources, translated_template):
    alarm = resources["AuditTrailChangedAlarm"]["Properties"]
    # Powertools' EMF metrics carry the service dimension.
    assert (alarm["Namespace"], alarm["MetricName"]) == ("Atrest", "AuditRecordsChanged")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "atrest"}]
    assert alarm["Threshold"] == 0 and alarm["ComparisonOperator"] == "GreaterThanThreshold"
    assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    # As deployed: the service name comes from Globals, merged in by SAM.
    env = translated_template["Resources"]["WatchAuditTrailFunction"]["Properties"]["Environment"]["Variables"]
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Atrest" and env["POWERTOOLS_SERVICE_NAME"] == "atrest"


# --------------------------------------------------------------------------- ReadObject


def test_read_object_is_a_function_url_with_iam_auth(resources, translated_template):
    props = resources["ReadObjectFunction"]["Properties"]
    assert props["FunctionUrlConfig"] == {"AuthType": "AWS_IAM", "InvokeMode": "BUFFERED"}
    assert props["Role"] == {"Fn::GetAtt": ["ReadObjectFunctionRole", "Arn"]}
    assert props["EphemeralStorage"]["Size"] >= 1024 and props["Timeout"] <= 900
    url = translated_template["Resources"]["ReadObjectFunctionUrl"]
    assert url["Type"] == "AWS::Lambda::Url" and url["Properties"]["AuthType"] == "AWS_IAM"
    # No permission opens the URL to anyone (SAM adds one only for AuthType NONE).
    public = [r for r in translated_template["Resources"].values() if r["Type"] == "AWS::Lambda::Permission"
              and r["Properties"].get("FunctionName") == {"Ref": "ReadObjectFunction"}]
    assert public == []


def test_read_object_is_told_where_to_audit_and_stage(resources, stack):
    env = resources["ReadObjectFunction"]["Properties"]["Environment"]["Variables"]
    assert env["ATREST_AUDIT_TABLE"] == {"Ref": "AuditTable"}
    assert env["ATREST_RETRIEVAL_BUCKET"] == {"Ref": "RetrievalBucket"}
    assert env["ATREST_RETRIEVAL_LIFETIME_MINUTES"] == {"Ref": "RetrievalLifetimeMinutes"}
    token = stack.parameters["AWS::StackId"].split("/")[2].split("-")[0]
    assert stack.resolve(env["ATREST_RETRIEVAL_BUCKET"]) == f"atrest-retrieval-{token}-123456789012-us-east-1"


def test_read_object_reads_the_vault_and_records_but_writes_only_copies_and_audit_records(resources):
    granted = _actions_by_resource(resources, "ReadObjectFunctionRole")
    data = {resource: actions for resource, actions in granted.items()
            if any(a.split(":")[0] in ("s3", "dynamodb") for a in actions)}
    assert data == {
        repr({"Fn::Sub": "${VaultBucket.Arn}/*"}): {"s3:GetObject", "s3:GetObjectVersion"},
        # Listing only so that a missing object or version answers 404, not 403.
        repr({"Fn::GetAtt": ["VaultBucket", "Arn"]}): {"s3:ListBucket", "s3:ListBucketVersions"},
        repr({"Fn::GetAtt": ["RetrievalBucket", "Arn"]}): {"s3:ListBucket"},
        repr({"Fn::GetAtt": ["MetadataTable", "Arn"]}): {"dynamodb:GetItem", "dynamodb:Query"},
        repr({"Fn::Sub": "${MetadataTable.Arn}/index/by-contact"}): {"dynamodb:GetItem", "dynamodb:Query"},
        repr({"Fn::GetAtt": ["KeyStoreTable", "Arn"]}): {"dynamodb:GetItem"},
        repr({"Fn::GetAtt": ["ServiceKeyStoreTable", "Arn"]}): {"dynamodb:GetItem"},
        repr({"Fn::Sub": "${RetrievalBucket.Arn}/*"}): {"s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject"},
        repr(AUDIT_TABLE_ARN): {"dynamodb:PutItem"},
    }


def test_read_object_may_only_unwrap_branch_keys_of_its_own_key_stores(resources, template):
    (kms,) = [s for where, s in identity_policy_statements(resources) if where == "ReadObjectKmsPolicy"]
    assert as_list(kms["Action"]) == ["kms:Decrypt"]
    assert kms["Condition"] == {"StringEquals": {"kms:EncryptionContext:tablename": {"Ref": "KeyStoreTable"}}}
    for key, store in (("AtrestKmsKey", "KeyStoreTable"), ("AtrestServiceKmsKey", "ServiceKeyStoreTable")):
        mine = [s for s in statements(resources[key]["Properties"]["KeyPolicy"])
                if s.get("Principal") == {"AWS": {"Fn::GetAtt": ["ReadObjectFunctionRole", "Arn"]}}]
        assert [(as_list(s["Action"]), s["Condition"]) for s in mine] == [
            (["kms:Decrypt"], {"StringEquals": {"kms:EncryptionContext:tablename": {"Ref": store}}})], key
    (grant,) = [g for g in resources["KmsGrants"]["Properties"]["Grantees"]
                if g["RoleArn"] == {"Fn::GetAtt": ["ReadObjectFunctionRole", "Arn"]}]
    assert grant["Operations"] == ["Decrypt"]


# --------------------------------------------------------------------------- plaintext at rest


def test_the_retrieval_bucket_is_private_encrypted_unversioned_and_expires_copies(resources):
    props = resources["RetrievalBucket"]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    # A deleted copy must be gone, not a noncurrent version.
    assert props.get("VersioningConfiguration", {"Status": "Suspended"})["Status"] != "Enabled"
    rules = props["LifecycleConfiguration"]["Rules"]
    assert any(r.get("ExpirationInDays") == 1 and r["Status"] == "Enabled" and not r.get("Prefix") for r in rules)


def test_only_read_object_writes_and_reads_copies_and_only_over_tls(resources, template):
    policy = bucket_policy_for(resources, "RetrievalBucket")
    tls = [s for s in policy if s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"]
    assert len(tls) == 1 and tls[0]["Effect"] == "Deny" and tls[0]["Action"] == "s3:*"
    (deny,) = [s for s in policy if "ArnNotEquals" in s.get("Condition", {})]
    assert deny["Effect"] == "Deny" and deny["Principal"] == "*"
    assert set(as_list(deny["Action"])) == {"s3:PutObject", "s3:GetObject*"}
    assert deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] == {"Fn::GetAtt": ["ReadObjectFunctionRole", "Arn"]}


def test_the_sweep_runs_every_five_minutes_and_may_only_list_and_delete_copies(resources):
    (event,) = resources["SweepRetrievalsFunction"]["Properties"]["Events"].values()
    assert event["Type"] == "Schedule" and event["Properties"]["Schedule"] == "rate(5 minutes)"
    granted = _actions_by_resource(resources, "SweepRetrievalsFunctionRole")
    data = {resource: actions for resource, actions in granted.items() if any(a.startswith(("s3:", "dynamodb:", "kms:")) for a in actions)}
    assert data == {
        repr({"Fn::GetAtt": ["RetrievalBucket", "Arn"]}): {"s3:ListBucket"},
        repr({"Fn::Sub": "${RetrievalBucket.Arn}/*"}): {"s3:DeleteObject"},
    }


@pytest.mark.parametrize("alarm", ["SweepRetrievalsFailingAlarm", "SweepRetrievalsNotRunAlarm"])
def test_a_failing_or_stopped_sweep_raises_an_alarm(resources, alarm):
    props = resources[alarm]["Properties"]
    assert props["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "SweepRetrievalsFunction"}}]
    assert {"Ref": "AlarmTopic"} in props["AlarmActions"]
    if props["MetricName"] == "Invocations":
        assert props["TreatMissingData"] == "breaching" and props["Period"] * props["EvaluationPeriods"] <= 900


def test_the_retrieval_lifetime_is_a_bounded_parameter(template):
    spec = template["Parameters"]["RetrievalLifetimeMinutes"]
    assert (spec["Default"], spec["MinValue"], spec["MaxValue"]) == (10, 1, 60)
    assert PARAMETER_VARIABLES["RetrievalLifetimeMinutes"] == "ATREST_RETRIEVAL_LIFETIME_MINUTES"


def test_the_cli_finds_the_audit_table_and_retrieval_bucket_in_the_outputs(template):
    outputs = template["Outputs"]
    assert outputs["AuditTableName"]["Value"] == {"Ref": "AuditTable"}
    assert outputs["RetrievalBucketName"]["Value"] == {"Ref": "RetrievalBucket"}
    assert outputs["ReadObjectFunctionUrl"]["Value"] == {"Fn::GetAtt": ["ReadObjectFunctionUrl", "FunctionUrl"]}
    assert OUTPUT_VARIABLES["AuditTableName"] == "ATREST_AUDIT_TABLE"
    assert OUTPUT_VARIABLES["RetrievalBucketName"] == "ATREST_RETRIEVAL_BUCKET"


def test_the_metadata_table_finds_a_contact_s_objects(resources):
    (index,) = [i for i in resources["MetadataTable"]["Properties"]["GlobalSecondaryIndexes"] if i["IndexName"] == "by-contact"]
    assert {k["KeyType"]: k["AttributeName"] for k in index["KeySchema"]} == {"HASH": "gsi2pk", "RANGE": "gsi2sk"}
    assert index["Projection"]["ProjectionType"] == "ALL"


def test_the_defaults_render_for_the_local_stack(template):
    rendered = Stack.with_defaults(template).resolve(template["Resources"]["AuditTable"]["Properties"]["TableName"])
    assert rendered == "atrest-audit"
