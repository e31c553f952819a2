"""What template.yaml promises a user, read straight from the template: where data
can go, who can read it, what survives a stack deletion, what the code is told."""

from __future__ import annotations

import re
from typing import Any

import pytest

from atrest.core.settings import DECLARATIONS
from atrest.crypto.keystore_format import BRANCH_KEY_ID, TYPE

from .conftest import ARCHITECTURE_DOC, Stack, as_list, identity_policy_statements, statements

DATA_SERVICES = ("s3", "dynamodb", "kms")

# docs/architecture.md, "Resources (logical IDs in template.yaml)".
CONTRACT_RESOURCES = {
    "AtrestKmsKey": "AWS::KMS::Key",
    "IntakeBucket": "AWS::S3::Bucket",
    "VaultBucket": "AWS::S3::Bucket",
    "KeyStoreTable": "AWS::DynamoDB::Table",
    "MetadataTable": "AWS::DynamoDB::Table",
    "EncryptQueue": "AWS::SQS::Queue",
    "EncryptDeadLetterQueue": "AWS::SQS::Queue",
    "ObjectCreatedRule": "AWS::Events::Rule",
    "AtrestLayer": "AWS::Serverless::LayerVersion",
    "EncryptObjectFunction": "AWS::Serverless::Function",
}


def contract_environment_variables() -> set[str]:
    """The ATREST_* names in the "Function environment" table of docs/architecture.md."""
    text = ARCHITECTURE_DOC.read_text(encoding="utf-8")
    section = text.split("## Function environment", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\|\s*`(ATREST_[A-Z0-9_]+)`", section, flags=re.MULTILINE))


def function_setting(template: dict[str, Any], function: str, name: str) -> Any:
    props = template["Resources"][function]["Properties"]
    return props.get(name, template.get("Globals", {}).get("Function", {}).get(name))


def bucket_policy_for(resources: dict[str, Any], bucket: str) -> list[dict[str, Any]]:
    found = [
        r["Properties"]["PolicyDocument"]
        for r in resources.values()
        if r["Type"] == "AWS::S3::BucketPolicy" and r["Properties"]["Bucket"] == {"Ref": bucket}
    ]
    assert len(found) == 1, f"{bucket} should have exactly one bucket policy, found {len(found)}"
    return statements(found[0])


# --------------------------------------------------------------------------- contract


def test_contract_resources_exist_with_their_types(resources):
    actual = {name: resources[name]["Type"] for name in CONTRACT_RESOURCES if name in resources}
    assert actual == CONTRACT_RESOURCES


def test_kms_key_is_created_only_without_a_customer_key(template, resources):
    assert resources["AtrestKmsKey"]["Condition"] == "CreateKmsKey"
    own = Stack.with_defaults(template)
    byo = Stack.with_defaults(template, CustomerManagedKeyArn="arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    assert own.condition("CreateKmsKey") and not byo.condition("CreateKmsKey")
    env = resources["EncryptObjectFunction"]["Properties"]["Environment"]["Variables"]
    assert own.resolve(env["ATREST_KMS_KEY_ARN"]) == "AtrestKmsKey.Arn"
    assert byo.resolve(env["ATREST_KMS_KEY_ARN"]).endswith(":key/1234abcd-12ab-34cd-56ef-1234567890ab")


def test_customer_key_parameter_accepts_empty_or_a_key_arn_only(template):
    pattern = re.compile(template["Parameters"]["CustomerManagedKeyArn"]["AllowedPattern"])
    assert pattern.fullmatch("")
    assert pattern.fullmatch("arn:aws:kms:eu-west-1:123456789012:key/mrk-1234abcd12ab34cd56ef1234567890ab")
    assert pattern.fullmatch("arn:aws-us-gov:kms:us-gov-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab")
    assert not pattern.fullmatch("arn:aws:kms:eu-west-1:123456789012:alias/atrest")
    assert not pattern.fullmatch("1234abcd-12ab-34cd-56ef-1234567890ab")


def test_kms_key_rotates_and_outlives_the_stack(resources):
    key = resources["AtrestKmsKey"]
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain" and key["UpdateReplacePolicy"] == "Retain"
    root = [
        s for s in statements(key["Properties"]["KeyPolicy"])
        if s["Effect"] == "Allow" and "iam::${AWS::AccountId}:root" in str(s["Principal"])
    ]
    assert root, "the key policy must keep the account able to administer the key"


def test_names_derive_from_stack_account_and_region(stack, resources):
    # Buckets take the stack id's first UUID segment (lowercase, unique to the stack), not
    # its name: see test_bucket_names_and_parameters.py.
    token = stack.parameters["AWS::StackId"].split("/")[2].split("-")[0]
    assert stack.resolve({"Ref": "IntakeBucket"}) == f"atrest-intake-{token}-123456789012-us-east-1"
    assert stack.resolve({"Ref": "VaultBucket"}) == f"atrest-vault-{token}-123456789012-us-east-1"
    for table in ("KeyStoreTable", "MetadataTable"):
        name = stack.resolve(resources[table]["Properties"]["TableName"])
        assert name.startswith("atrest-"), name


def test_documented_variables_are_declared_settings_and_the_function_is_told_its_resources(stack, translated_template):
    # Which function gets which variable is test_function_settings.py's; the docs' table must
    # not name a variable no setting declares.
    documented = contract_environment_variables()
    assert len(documented) >= 14, f"could not read the environment table from docs/architecture.md: {documented}"
    declared = {declaration.variable for declaration in DECLARATIONS.values()}
    assert documented <= declared, f"documented but not declared in atrest.core.settings: {sorted(documented - declared)}"
    # As deployed: SAM merges Globals into the function's own variables.
    env = translated_template["Resources"]["EncryptObjectFunction"]["Properties"]["Environment"]["Variables"]
    assert env["POWERTOOLS_SERVICE_NAME"] == "atrest"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "Atrest"
    assert env["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    assert env["ATREST_ACCOUNT_ID"] == {"Ref": "AWS::AccountId"}
    rendered = stack.resolve(env)
    assert rendered["ATREST_INTAKE_BUCKET"] == stack.resolve({"Ref": "IntakeBucket"})
    assert rendered["ATREST_CACHE_TTL_SECONDS"] == 300 and rendered["ATREST_FRAME_LENGTH"] == 1048576
    assert rendered["ATREST_KEEP_SOURCE"] == "false"


def test_logical_key_store_name_is_the_table_and_binds_the_kms_permissions(template, resources):
    """The MPL binds the logical key store name into every branch key (KMS encryption
    context "tablename"); the KMS permissions must be conditioned on that same name.
    (kms:ListGrants, which the grant function needs to find its grants again, reads grant
    metadata, never key material, and KMS evaluates no encryption context for it.)"""
    env = resources["EncryptObjectFunction"]["Properties"]["Environment"]["Variables"]
    assert env["ATREST_KEYSTORE_NAME"] == env["ATREST_KEYSTORE_TABLE"] == {"Ref": "KeyStoreTable"}
    kms_statements = [
        stmt for _, stmt in identity_policy_statements(resources)
        if stmt["Effect"] == "Allow"  # the KMS fence's Deny holds for every context
        and any(str(a).startswith("kms:") for a in as_list(stmt["Action"])) and as_list(stmt["Action"]) != ["kms:ListGrants"]
    ]
    kms_statements += [
        s for s in statements(resources["AtrestKmsKey"]["Properties"]["KeyPolicy"])
        if "root" not in str(s["Principal"])
    ]
    assert kms_statements
    for stmt in kms_statements:
        assert stmt["Condition"]["StringEquals"]["kms:EncryptionContext:tablename"] == env["ATREST_KEYSTORE_NAME"], stmt


# --------------------------------------------------------------------------- IAM


def test_no_identity_policy_grants_data_actions_on_any_resource(resources):
    offenders = []
    for where, stmt in identity_policy_statements(resources):
        if stmt.get("Effect") != "Allow":
            continue
        actions = [str(a) for a in as_list(stmt.get("Action", []))]
        if any(a == "*" or a.split(":")[-1] == "*" and ":" in a for a in actions):
            offenders.append(f"{where}: wildcard action {actions}")
        if "*" in as_list(stmt.get("Resource")):
            data = [a for a in actions if a.split(":")[0] in DATA_SERVICES]
            if data:
                offenders.append(f"{where}: {data} on Resource '*'")
    assert not offenders, "\n".join(offenders)


# Actions with no resource-level permissions in IAM: "*" is the only resource they accept.
UNSCOPABLE_ACTIONS = {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
                      "xray:GetSamplingTargets"}


def test_resource_star_in_identity_policies_is_only_for_actions_that_cannot_be_scoped(resources):
    """KMS key policies are not identity policies: their "*" means the key itself."""
    offenders = [
        f"{where}: {sorted(set(map(str, as_list(stmt['Action']))) - UNSCOPABLE_ACTIONS)}"
        for where, stmt in identity_policy_statements(resources)
        if stmt.get("Effect") == "Allow" and "*" in as_list(stmt.get("Resource"))
        and not set(map(str, as_list(stmt["Action"]))) <= UNSCOPABLE_ACTIONS
    ]
    assert not offenders, "granted on Resource '*' though they can be scoped:\n" + "\n".join(offenders)


def _actions_by_resource(resources, role: str = "EncryptObjectFunctionRole") -> dict[str, set[str]]:
    """What one role's identity policies allow, by resource."""
    granted: dict[str, set[str]] = {}
    for where, stmt in identity_policy_statements(resources):
        if where.split("/")[0] == role and stmt.get("Effect") == "Allow":
            for resource in as_list(stmt["Resource"]):
                granted.setdefault(repr(resource), set()).update(as_list(stmt["Action"]))
    return granted


def test_function_reads_and_deletes_only_intake_object_versions(resources):
    granted = _actions_by_resource(resources)
    intake = {k: v for k, v in granted.items() if "IntakeBucket" in k and "/*" in k}
    # The whole intake bucket's objects: the data class catalog, not the template, says
    # which prefixes hold data; the code deletes only versions it encrypted and recorded.
    assert list(intake) == [repr({"Fn::Sub": "${IntakeBucket.Arn}/*"})]
    for resource, actions in intake.items():
        assert actions <= {"s3:GetObject", "s3:GetObjectVersion", "s3:DeleteObjectVersion"}, actions
    assert not any("s3:DeleteObject" in actions for actions in granted.values()), (
        "DeleteObject (not ...Version) would leave the plaintext behind a delete marker"
    )


def _key_store_actions_by_role(resources) -> dict[str, set[str]]:
    granted: dict[str, set[str]] = {}
    for where, stmt in identity_policy_statements(resources):
        if stmt.get("Effect") == "Allow" and {"Fn::GetAtt": ["KeyStoreTable", "Arn"]} in as_list(stmt["Resource"]):
            granted.setdefault(where.split("/")[0], set()).update(as_list(stmt["Action"]))
    return granted


def test_key_store_access_is_what_the_mpl_needs(resources):
    granted = _key_store_actions_by_role(resources)
    # GetActiveBranchKey/GetBranchKeyVersion: GetItem; CreateKey: TransactWriteItems of Puts.
    assert granted["EncryptObjectFunctionRole"] == {"dynamodb:GetItem", "dynamodb:PutItem"}
    assert granted["ProtectContactFunctionRole"] == {"dynamodb:GetItem", "dynamodb:PutItem"}


def test_only_expire_keys_may_delete_key_store_items(resources):
    granted = _key_store_actions_by_role(resources)
    deleters = {role for role, actions in granted.items() if "dynamodb:DeleteItem" in actions or "dynamodb:*" in actions}
    assert deleters == {"ExpireKeysFunctionRole"}
    # VersionKey: GetItem + TransactWriteItems of Puts; listing versions: Scan/Query; shredding: DeleteItem.
    assert granted["ExpireKeysFunctionRole"] == {
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:DeleteItem",
    }
    (kms,) = [s for where, s in identity_policy_statements(resources) if where == "ExpireKeysKmsPolicy"]
    assert set(as_list(kms["Action"])) == {"kms:GenerateDataKeyWithoutPlaintext", "kms:ReEncrypt*"}


def test_expire_keys_runs_on_a_schedule_from_a_parameter(template, resources):
    (event,) = resources["ExpireKeysFunction"]["Properties"]["Events"].values()
    assert event["Type"] == "Schedule" and event["Properties"]["Schedule"] == {"Ref": "ExpiryScheduleRate"}
    params = template["Parameters"]
    assert params["ExpiryScheduleRate"]["Default"] == "rate(1 hour)"
    assert params["InstanceKeyRotationHours"]["Default"] == 24 and params["AccountKeyRotationDays"]["Default"] == 365
    assert params["InstanceKeyRetentionDays"]["Default"] == 90
    assert params["ShredInstanceKeys"]["Default"] == "true" and params["ShredAccountKeys"]["Default"] == "false"


def test_protect_contact_takes_connect_contact_events_with_a_dead_letter_queue(resources):
    props = resources["ProtectContactFunction"]["Properties"]
    (event,) = props["Events"].values()
    assert event["Type"] == "EventBridgeRule"
    assert event["Properties"]["Pattern"] == {"source": ["aws.connect"], "detail-type": ["Amazon Connect Contact Event"]}
    assert props["DeadLetterQueue"] == {"Type": "SQS", "TargetArn": {"Fn::GetAtt": ["ContactEventDeadLetterQueue", "Arn"]}}


def test_function_role_is_only_assumable_by_lambda(resources):
    role = resources["EncryptObjectFunctionRole"]["Properties"]["AssumeRolePolicyDocument"]
    for stmt in statements(role):
        assert stmt["Principal"] == {"Service": "lambda.amazonaws.com"}
    assert resources["EncryptObjectFunction"]["Properties"]["Role"] == {"Fn::GetAtt": ["EncryptObjectFunctionRole", "Arn"]}


# --------------------------------------------------------------------------- buckets


@pytest.mark.parametrize("bucket", ["IntakeBucket", "VaultBucket"])
def test_bucket_blocks_public_access_is_versioned_and_encrypted(resources, bucket):
    props = resources[bucket]["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
    }
    assert props["VersioningConfiguration"]["Status"] == "Enabled"
    assert props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    rules = props["LifecycleConfiguration"]["Rules"]
    assert any(r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") == 1 for r in rules)


def test_intake_plaintext_versions_never_expire_silently(resources):
    for rule in resources["IntakeBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]:
        assert "NoncurrentVersionExpiration" not in rule and "ExpirationInDays" not in rule, rule


def test_intake_bucket_sends_events_to_eventbridge(resources):
    config = resources["IntakeBucket"]["Properties"]["NotificationConfiguration"]
    assert config["EventBridgeConfiguration"]["EventBridgeEnabled"] is True


@pytest.mark.parametrize("bucket", ["IntakeBucket", "VaultBucket", "BackfillResultsBucket"])
def test_bucket_policy_denies_requests_without_tls(resources, bucket):
    denies = [
        s for s in bucket_policy_for(resources, bucket)
        if s["Effect"] == "Deny" and s["Principal"] == "*"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") in ("false", False)
    ]
    assert denies, f"{bucket}: no deny on aws:SecureTransport=false"
    (deny,) = denies
    assert deny["Action"] in ("s3:*", ["s3:*"])
    covered = as_list(deny["Resource"])
    assert {"Fn::GetAtt": [bucket, "Arn"]} in covered and {"Fn::Sub": f"${{{bucket}.Arn}}/*"} in covered


def _vault_deny(resources, action: str) -> dict[str, Any]:
    (stmt,) = [
        s for s in bucket_policy_for(resources, "VaultBucket")
        if s["Effect"] == "Deny" and action in as_list(s["Action"]) and "ArnNotEquals" in s.get("Condition", {})
    ]
    return stmt


def test_only_the_pipeline_writes_to_the_vault(resources, template):
    stmt = _vault_deny(resources, "s3:PutObject")
    allowed = Stack.with_defaults(template).resolve(stmt["Condition"]["ArnNotEquals"]["aws:PrincipalArn"])
    assert as_list(allowed) == ["EncryptObjectFunctionRole.Arn"]


@pytest.mark.parametrize(
    ("decryptors", "expected"),
    [
        # ReadObject reads for the data classes' decryptors, and records every read (docs/audit.md).
        ("", ["EncryptObjectFunctionRole.Arn", "ReadObjectFunctionRole.Arn"]),
        (
            "arn:aws:iam::123456789012:role/auditor,arn:aws:iam::123456789012:role/legal",
            ["EncryptObjectFunctionRole.Arn", "ReadObjectFunctionRole.Arn", "arn:aws:iam::123456789012:role/auditor",
             "arn:aws:iam::123456789012:role/legal"],
        ),
    ],
)
def test_only_pipeline_and_decryptor_roles_read_the_vault(resources, template, decryptors, expected):
    stmt = _vault_deny(resources, "s3:GetObject*")
    stack = Stack.with_defaults(template, DecryptorRoleArns=decryptors)
    assert as_list(stack.resolve(stmt["Condition"]["ArnNotEquals"]["aws:PrincipalArn"])) == expected
    assert "" not in expected  # the empty default must not become an empty-string ARN


def test_vault_policy_leaves_bucket_management_to_administrators(resources):
    """Object denies only: CloudFormation and admins can still manage the bucket and its policy."""
    for stmt in bucket_policy_for(resources, "VaultBucket"):
        if stmt["Effect"] == "Deny" and "ArnNotEquals" in stmt.get("Condition", {}):
            for action in as_list(stmt["Action"]):
                assert action in ("s3:PutObject", "s3:ReplicateObject") or action.startswith("s3:GetObject"), action


def test_key_policy_grants_decryptors_only_when_given(resources, template):
    policy = resources["AtrestKmsKey"]["Properties"]["KeyPolicy"]
    without = Stack.with_defaults(template).resolve(policy)["Statement"]
    with_roles = Stack.with_defaults(template, DecryptorRoleArns="arn:aws:iam::123456789012:role/auditor").resolve(policy)["Statement"]
    assert len(with_roles) == len(without) + 1
    assert with_roles[-1]["Principal"] == {"AWS": ["arn:aws:iam::123456789012:role/auditor"]}
    assert with_roles[-1]["Action"] == "kms:Decrypt"


# --------------------------------------------------------------------------- tables


@pytest.mark.parametrize("table", ["KeyStoreTable", "MetadataTable"])
def test_tables_have_point_in_time_recovery_and_encryption(resources, table):
    props = resources[table]["Properties"]
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert props["BillingMode"] == "PAY_PER_REQUEST"


@pytest.mark.parametrize("table", ["KeyStoreTable", "MetadataTable"])
def test_key_store_and_metadata_survive_stack_deletion(resources, table):
    resource = resources[table]
    assert resource["DeletionPolicy"] == "Retain" and resource["UpdateReplacePolicy"] == "Retain"
    assert resource["Properties"]["DeletionProtectionEnabled"] is True


def test_vault_survives_stack_deletion(resources):
    assert resources["VaultBucket"]["DeletionPolicy"] == "Retain"
    assert resources["VaultBucket"]["UpdateReplacePolicy"] == "Retain"


def _keys(props: dict[str, Any]) -> dict[str, tuple[str, str]]:
    types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    return {k["KeyType"]: (k["AttributeName"], types[k["AttributeName"]]) for k in props["KeySchema"]}


def test_key_store_has_the_mpl_schema(resources):
    assert _keys(resources["KeyStoreTable"]["Properties"]) == {"HASH": (BRANCH_KEY_ID, "S"), "RANGE": (TYPE, "S")}


def test_metadata_table_schema_and_by_key_version_index(resources):
    props = resources["MetadataTable"]["Properties"]
    assert _keys(props) == {"HASH": ("pk", "S"), "RANGE": ("sk", "S")}
    (index,) = [i for i in props["GlobalSecondaryIndexes"] if i["IndexName"] == "by-key-version"]
    assert {k["KeyType"]: k["AttributeName"] for k in index["KeySchema"]} == {"HASH": "gsi1pk", "RANGE": "gsi1sk"}
    assert index["Projection"]["ProjectionType"] == "ALL"
    types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    assert types["gsi1pk"] == types["gsi1sk"] == "S"


def test_no_idempotency_table_the_metadata_record_s_condition_guards_duplicates(resources):
    # docs/reliability.md, "Duplicates": the pipeline's conditional record write makes a
    # redelivery idempotent, so the stack keeps no second (expiring) record per object.
    tables = {name for name, resource in resources.items() if resource["Type"] == "AWS::DynamoDB::Table"}
    assert not any("idempotency" in name.lower() for name in tables), tables


# --------------------------------------------------------------------------- events, queues, function


def test_queue_redrives_to_the_dead_letter_queue(resources):
    redrive = resources["EncryptQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["EncryptDeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] == {"Ref": "MaxReceiveCount"}
    assert resources["EncryptDeadLetterQueue"]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    for queue in ("EncryptQueue", "EncryptDeadLetterQueue"):
        assert resources[queue]["Properties"]["SqsManagedSseEnabled"] is True


def _queue_policy(resources, queue: str) -> list[dict[str, Any]]:
    found = [
        r["Properties"]["PolicyDocument"] for r in resources.values()
        if r["Type"] == "AWS::SQS::QueuePolicy" and {"Ref": queue} in r["Properties"]["Queues"]
    ]
    assert len(found) == 1, f"{queue} should have exactly one queue policy, found {len(found)}"
    return statements(found[0])


def test_contact_dead_letters_holding_phone_numbers_take_sends_only_from_protect_contact_and_only_tls(resources):
    """Lambda sends a failed asynchronous invocation to the function's DeadLetterConfig
    target with the function's execution role: that role, and nothing else, may send."""
    config = resources["ProtectContactFunction"]["Properties"]["DeadLetterQueue"]
    assert config == {"Type": "SQS", "TargetArn": {"Fn::GetAtt": ["ContactEventDeadLetterQueue", "Arn"]}}
    stmts = _queue_policy(resources, "ContactEventDeadLetterQueue")
    queue_arn = {"Fn::GetAtt": ["ContactEventDeadLetterQueue", "Arn"]}
    assert all(s["Resource"] == queue_arn for s in stmts)
    assert not [s for s in stmts if s["Effect"] == "Allow" and s.get("Principal") in ("*", {"AWS": "*"})]
    (send_fence,) = [s for s in stmts if s["Effect"] == "Deny" and "sqs:SendMessage" in as_list(s["Action"])]
    assert send_fence["Principal"] == "*"
    assert send_fence["Condition"] == {
        "ArnNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": ["ProtectContactFunctionRole", "Arn"]}}}
    assert any(
        s["Effect"] == "Deny" and s["Principal"] == "*" and as_list(s["Action"]) == ["sqs:*"]
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        for s in stmts
    ), "ContactEventDeadLetterQueue accepts requests without TLS"
    role_sends = [s for where, s in identity_policy_statements(resources)
                  if where.startswith("ProtectContactFunctionRole/") and "sqs:SendMessage" in as_list(s["Action"])]
    assert role_sends and all(s["Resource"] == queue_arn for s in role_sends)


def test_queue_visibility_is_at_least_six_function_timeouts(template, resources):
    timeout = function_setting(template, "EncryptObjectFunction", "Timeout")
    assert resources["EncryptQueue"]["Properties"]["VisibilityTimeout"] >= 6 * timeout


def test_dead_letters_raise_an_alarm(resources):
    alarms = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert any(
        a["MetricName"] == "ApproximateNumberOfMessagesVisible" and a["Threshold"] == 0
        and a["ComparisonOperator"] == "GreaterThanThreshold"
        and a["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": ["EncryptDeadLetterQueue", "QueueName"]}}]
        for a in alarms
    )


def test_only_the_rule_may_send_to_the_queue_and_only_over_tls(resources):
    (policy,) = [
        r["Properties"] for r in resources.values()
        if r["Type"] == "AWS::SQS::QueuePolicy" and {"Ref": "EncryptQueue"} in r["Properties"]["Queues"]
    ]
    stmts = statements(policy["PolicyDocument"])
    allows = [s for s in stmts if s["Effect"] == "Allow"]
    assert len(allows) == 1
    (allow,) = allows
    assert allow["Principal"] == {"Service": "events.amazonaws.com"} and allow["Action"] == "sqs:SendMessage"
    assert allow["Condition"] == {"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": ["ObjectCreatedRule", "Arn"]}}}
    assert any(
        s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
        for s in stmts
    )


def test_rule_matches_every_object_created_in_the_intake_bucket(resources):
    rule = resources["ObjectCreatedRule"]["Properties"]
    pattern = rule["EventPattern"]
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created"]
    assert pattern["detail"] == {"bucket": {"name": [{"Ref": "IntakeBucket"}]}}
    assert [t["Arn"] for t in rule["Targets"]] == [{"Fn::GetAtt": ["EncryptQueue", "Arn"]}]


def test_prefix_parameters_have_the_documented_defaults(template):
    params = template["Parameters"]
    assert params["ConnectPrefix"]["Default"] == "connect/"
    assert params["KnowledgeDocumentPrefix"]["Default"] == "knowledge/"
    assert params["BranchKeyCacheTtlSeconds"]["Default"] == 300 and params["BranchKeyCacheTtlSeconds"]["MinValue"] == 60
    assert params["FrameLengthBytes"]["Default"] == 1048576
    assert params["KeepSourceObjects"]["Default"] == "false"
    assert params["MaxReceiveCount"]["Default"] == 5
    assert params["LogLevel"]["Default"] == "INFO"
    for name in ("ConnectPrefix", "KnowledgeDocumentPrefix"):
        pattern = re.compile(params[name]["AllowedPattern"])
        assert pattern.fullmatch(params[name]["Default"])
        assert not pattern.fullmatch("/connect/") and not pattern.fullmatch("") and not pattern.fullmatch("connect")
        assert not pattern.fullmatch("call recordings/"), "a space arrives URL-encoded as '+' and would never match"


def test_function_consumes_the_queue_with_partial_batch_failures(template, resources):
    props = resources["EncryptObjectFunction"]["Properties"]
    assert props["CodeUri"] == "functions/encrypt_object"
    assert props["Handler"] == "app.lambda_handler"
    assert function_setting(template, "EncryptObjectFunction", "Runtime") == "python3.12"
    assert function_setting(template, "EncryptObjectFunction", "Tracing") == "Active"
    assert {"Ref": "AtrestLayer"} in function_setting(template, "EncryptObjectFunction", "Layers")
    (event,) = props["Events"].values()
    assert event["Type"] == "SQS"
    assert event["Properties"]["Queue"] == {"Fn::GetAtt": ["EncryptQueue", "Arn"]}
    assert event["Properties"]["BatchSize"] == 10
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


def test_layer_builds_the_atrest_package_for_python312(resources):
    layer = resources["AtrestLayer"]
    assert layer["Properties"]["ContentUri"] == "layers/atrest"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Metadata"]["BuildMethod"] == "python3.12"


def test_outputs_name_every_resource_an_operator_needs(template):
    assert set(template["Outputs"]) >= {
        "IntakeBucketName", "VaultBucketName", "KeyStoreTableName", "MetadataTableName",
        "EncryptQueueUrl", "EncryptDeadLetterQueueUrl", "KmsKeyArn", "EncryptObjectFunctionArn",
    }


# --------------------------------------------------------------------------- bring your own key


def test_a_customer_key_gets_grants_for_each_function_role_limited_to_key_store_operations(resources):
    grants = resources["KmsGrants"]
    assert grants["Condition"] == resources["KmsGrantFunction"]["Condition"] == "TakesKmsGrants"
    props = grants["Properties"]
    assert props["KeyArn"] == {"Fn::If": ["UseCustomerKey", {"Ref": "CustomerManagedKeyArn"}, ""]}
    assert props["DataClassKmsKeys"] == {"Ref": "DataClassKmsKeys"} and props["KeyStoreName"] == {"Ref": "KeyStoreTable"}
    assert props["RetiringPrincipal"] == {"Fn::GetAtt": ["KmsGrantFunctionRole", "Arn"]}
    operations = {g["RoleArn"]["Fn::GetAtt"][0]: set(g["Operations"]) for g in props["Grantees"]}
    read_write = {"Decrypt", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo"}
    assert operations == {"EncryptObjectFunctionRole": read_write, "ProtectContactFunctionRole": read_write,
                          "ExpireKeysFunctionRole": read_write - {"Decrypt"}, "ReadObjectFunctionRole": {"Decrypt"}}


def test_a_grant_handler_that_dies_before_answering_does_not_stall_the_stack_for_an_hour(resources):
    # Without ServiceTimeout CloudFormation waits an hour for a custom resource's answer.
    timeout = resources["KmsGrants"]["Properties"].get("ServiceTimeout")
    assert timeout is not None, "KmsGrants has no ServiceTimeout: a crashed handler stalls the stack for an hour"
    assert int(resources["KmsGrantFunction"]["Properties"]["Timeout"]) < int(timeout) <= 3600


def test_the_grant_function_may_only_create_grants_for_the_function_roles_constrained_to_the_key_store(
        template, resources):
    kms = [s for where, s in identity_policy_statements(resources)
           if where.startswith(("KmsGrantFunctionRole", "KmsGrantPolicy")) and any(str(a).startswith("kms:") for a in as_list(s["Action"]))]
    (create,) = [s for s in kms if as_list(s["Action"]) == ["kms:CreateGrant"]]
    (listing,) = [s for s in kms if as_list(s["Action"]) == ["kms:ListGrants"]]
    assert len(kms) == 2 and listing["Resource"] == create["Resource"]
    assert create["Condition"]["StringEquals"]["kms:EncryptionContext:tablename"] == {"Ref": "KeyStoreTable"}
    assert set(create["Condition"]["ForAllValues:StringEquals"]["kms:GrantOperations"]) == {
        "Decrypt", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo"}
    grantees = {g["RoleArn"]["Fn::GetAtt"][0] for g in resources["KmsGrants"]["Properties"]["Grantees"]}
    assert {g["Fn::GetAtt"][0] for g in create["Condition"]["StringEquals"]["kms:GranteePrincipal"]} == grantees
    # Retirable by the grant function's role alone, which is what KmsGrants names (issue 15).
    assert create["Condition"]["StringEquals"]["kms:RetiringPrincipal"] == {"Fn::GetAtt": ["KmsGrantFunctionRole", "Arn"]}
    assert resources["KmsGrants"]["Properties"]["RetiringPrincipal"] == {"Fn::GetAtt": ["KmsGrantFunctionRole", "Arn"]}
    # The handler's own allow-lists are the same roles, from the template.
    handler_env = resources["KmsGrantFunction"]["Properties"]["Environment"]["Variables"]
    assert {g["Fn::GetAtt"][0] for g in handler_env["ATREST_GRANTEE_ROLE_ARNS"]["Fn::Join"][1]} == grantees
    assert handler_env["ATREST_RETIRING_PRINCIPAL"] == {"Fn::GetAtt": ["KmsGrantFunctionRole", "Arn"]}
    # Only the customer's key, unless data classes have keys of their own: then keys of this
    # account and region (the customer's key too, wherever it is).
    customer = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    class_key = "arn:aws:kms:us-east-1:123456789012:key/5678abcd-12ab-34cd-56ef-1234567890ab"
    byo = Stack.with_defaults(template, CustomerManagedKeyArn=customer)
    assert byo.resolve(create["Resource"]) == customer
    both = Stack.with_defaults(template, CustomerManagedKeyArn=customer, DataClassKmsKeys=f"integration-configuration={class_key}")
    assert both.resolve(create["Resource"]) == ["arn:aws:kms:us-east-1:123456789012:key/*", customer]
    only_classes = Stack.with_defaults(template, DataClassKmsKeys=f"integration-configuration={class_key}")
    assert only_classes.resolve(create["Resource"]) == ["arn:aws:kms:us-east-1:123456789012:key/*"]


def test_grants_are_taken_with_a_customer_key_or_data_class_keys_and_never_on_the_stacks_own_key(template, resources):
    class_key = "arn:aws:kms:us-east-1:123456789012:key/5678abcd-12ab-34cd-56ef-1234567890ab"
    own = Stack.with_defaults(template)
    classes = Stack.with_defaults(template, DataClassKmsKeys=f"integration-configuration={class_key}")
    assert not own.condition("TakesKmsGrants") and classes.condition("TakesKmsGrants")
    assert classes.condition("CreateKmsKey")  # the stack still makes its own key for everything else
    assert classes.resolve(resources["KmsGrants"]["Properties"]["KeyArn"]) == ""
    for function in ("EncryptObjectFunction", "ExpireKeysFunction", "ReadObjectFunction"):
        env = resources[function]["Properties"]["Environment"]["Variables"]
        assert classes.resolve(env["ATREST_DATA_CLASS_KMS_KEYS"]) == f"integration-configuration={class_key}", function
        assert own.resolve(env["ATREST_DATA_CLASS_KMS_KEYS"]) == "", function
        # Checking the pairs reads the catalog, whose service class needs the service key store.
        assert {"ATREST_SERVICE_KEYSTORE_TABLE", "ATREST_SERVICE_KMS_KEY_ARN"} <= set(env), function
    # ProtectContact makes instance branch keys only, which never have a class key of their own.
    assert "ATREST_DATA_CLASS_KMS_KEYS" not in resources["ProtectContactFunction"]["Properties"]["Environment"]["Variables"]
