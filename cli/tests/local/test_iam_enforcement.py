"""The emulator holds assumed roles to their identity policies, as AWS does, and leaves
the administrator's test credentials alone (atrest_cli.local.iam_enforcement)."""

from __future__ import annotations

import json
import uuid
from typing import Any, Callable

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from atrest_cli.local.iam_enforcement import RoleNotProvisioned, assumed_role_environment, create_role

pytestmark = pytest.mark.local_only("tests the emulator's IAM enforcement")

TRUST = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


def _error_code(call: Callable[[], Any]) -> tuple[str, int]:
    with pytest.raises(ClientError) as raised:
        call()
    return raised.value.response["Error"]["Code"], raised.value.response["ResponseMetadata"]["HTTPStatusCode"]


class Scenario:
    """Bucket A (allowed), bucket B (not), table T, a KMS key, and a role allowed s3:GetObject
    on A, dynamodb:PutItem on T and kms:Decrypt when the encryption context names T."""

    def __init__(self, emulator: Any) -> None:
        suffix = uuid.uuid4().hex[:10]
        self.emulator = emulator
        self.bucket_a, self.bucket_b, self.table = f"iam-a-{suffix}", f"iam-b-{suffix}", f"iam-t-{suffix}"
        s3, dynamodb, kms = emulator.client("s3"), emulator.client("dynamodb"), emulator.client("kms")
        for bucket in (self.bucket_a, self.bucket_b):
            s3.create_bucket(Bucket=bucket)
            s3.put_object(Bucket=bucket, Key="present", Body=b"data")
        dynamodb.create_table(TableName=self.table, KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}], BillingMode="PAY_PER_REQUEST")
        self.key_id = kms.create_key()["KeyMetadata"]["KeyId"]
        self.alias = f"alias/iam-{suffix}"
        kms.create_alias(AliasName=self.alias, TargetKeyId=self.key_id)
        self.ciphertext = kms.encrypt(KeyId=self.key_id, Plaintext=b"secret", EncryptionContext={"tablename": self.table})["CiphertextBlob"]
        self.other_ciphertext = kms.encrypt(KeyId=self.key_id, Plaintext=b"secret", EncryptionContext={"tablename": "other"})["CiphertextBlob"]
        self.role_name = f"atrest-EncryptObjectFunctionRole-{suffix.upper()}"
        self.statements: list[dict[str, Any]] = [
            {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{self.bucket_a}/*"},
            {"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": f"arn:aws:dynamodb:*:*:table/{self.table}"},
            {"Effect": "Allow", "Action": "kms:Decrypt", "Resource": f"arn:aws:kms:*:*:key/{self.key_id}",
             "Condition": {"StringEquals": {"kms:EncryptionContext:tablename": self.table}}},
        ]
        self.role_arn = self.set_policy(self.statements)

    def set_policy(self, statements: list[dict[str, Any]]) -> str:
        return create_role(self.emulator.client("iam"), self.role_name, "/", TRUST,
                           {"function": {"Version": "2012-10-17", "Statement": statements}}, [])["Arn"]

    def role_client(self, service: str) -> Any:
        credentials = assumed_role_environment(self.emulator.endpoint, self.emulator.region, self.role_arn, "EncryptObject")
        session = boto3.session.Session(
            aws_access_key_id=credentials["AWS_ACCESS_KEY_ID"], aws_secret_access_key=credentials["AWS_SECRET_ACCESS_KEY"],
            aws_session_token=credentials["AWS_SESSION_TOKEN"], region_name=self.emulator.region,
        )
        return session.client(service, endpoint_url=self.emulator.endpoint, config=Config(retries={"max_attempts": 1}))


@pytest.fixture(scope="module")
def scenario(emulator: Any) -> Scenario:
    return Scenario(emulator)


def test_assumed_role_credentials_are_temporary_and_name_the_role(scenario: Scenario) -> None:
    credentials = assumed_role_environment(scenario.emulator.endpoint, scenario.emulator.region, scenario.role_arn, "EncryptObject")
    assert credentials["AWS_ACCESS_KEY_ID"].startswith("ASIA") and credentials["AWS_SESSION_TOKEN"]
    identity = scenario.role_client("sts").get_caller_identity()
    assert identity["Arn"].endswith(f":assumed-role/{scenario.role_name}/EncryptObject")


def test_assuming_a_role_missing_from_the_emulator_names_it(emulator: Any) -> None:
    missing = f"arn:aws:iam::{emulator.account_id}:role/atrest-NoSuchRole-X"
    with pytest.raises(RoleNotProvisioned, match="atrest-NoSuchRole-X"):
        assumed_role_environment(emulator.endpoint, emulator.region, missing, "f")


def test_allowed_calls_succeed(scenario: Scenario) -> None:
    assert scenario.role_client("s3").get_object(Bucket=scenario.bucket_a, Key="present")["Body"].read() == b"data"
    scenario.role_client("dynamodb").put_item(TableName=scenario.table, Item={"pk": {"S": "allowed"}})
    kms = scenario.role_client("kms")
    assert kms.decrypt(CiphertextBlob=scenario.ciphertext, EncryptionContext={"tablename": scenario.table})["Plaintext"] == b"secret"
    assert kms.decrypt(CiphertextBlob=scenario.ciphertext, KeyId=scenario.alias,
                       EncryptionContext={"tablename": scenario.table})["Plaintext"] == b"secret"


def test_s3_object_in_another_bucket_is_access_denied_403(scenario: Scenario) -> None:
    s3 = scenario.role_client("s3")
    assert _error_code(lambda: s3.get_object(Bucket=scenario.bucket_b, Key="present")) == ("AccessDenied", 403)
    assert _error_code(lambda: s3.put_object(Bucket=scenario.bucket_a, Key="new", Body=b"x")) == ("AccessDenied", 403)
    assert _error_code(lambda: s3.head_object(Bucket=scenario.bucket_b, Key="present"))[1] == 403


def test_denial_message_names_principal_action_and_resource_as_aws_does(scenario: Scenario) -> None:
    with pytest.raises(ClientError) as raised:
        scenario.role_client("s3").get_object(Bucket=scenario.bucket_b, Key="present")
    assert raised.value.response["Error"]["Message"] == (
        f"User: arn:aws:sts::{scenario.emulator.account_id}:assumed-role/{scenario.role_name}/EncryptObject is not "
        f"authorized to perform: s3:GetObject on resource: arn:aws:s3:::{scenario.bucket_b}/present because no "
        "identity-based policy allows the s3:GetObject action"
    )


def test_presigned_url_is_checked_with_the_signers_role(scenario: Scenario) -> None:
    s3 = scenario.role_client("s3")
    allowed = s3.generate_presigned_url("get_object", Params={"Bucket": scenario.bucket_a, "Key": "present"})
    denied = s3.generate_presigned_url("get_object", Params={"Bucket": scenario.bucket_b, "Key": "present"})
    assert requests.get(allowed, timeout=10).status_code == 200
    response = requests.get(denied, timeout=10)
    assert response.status_code == 403 and b"<Code>AccessDenied</Code>" in response.content


def test_dynamodb_other_action_or_table_is_access_denied_exception(scenario: Scenario) -> None:
    dynamodb = scenario.role_client("dynamodb")
    assert _error_code(lambda: dynamodb.get_item(TableName=scenario.table, Key={"pk": {"S": "allowed"}})) == ("AccessDeniedException", 400)
    assert _error_code(lambda: dynamodb.put_item(TableName="elsewhere", Item={"pk": {"S": "x"}})) == ("AccessDeniedException", 400)


def test_kms_decrypt_with_another_encryption_context_is_access_denied(scenario: Scenario) -> None:
    kms = scenario.role_client("kms")
    assert _error_code(lambda: kms.decrypt(CiphertextBlob=scenario.other_ciphertext, EncryptionContext={"tablename": "other"})) == (
        "AccessDeniedException", 400)
    assert _error_code(lambda: kms.encrypt(KeyId=scenario.key_id, Plaintext=b"x", EncryptionContext={"tablename": scenario.table})) == (
        "AccessDeniedException", 400)


def test_sqs_and_sts_denials_use_their_protocols_codes(scenario: Scenario) -> None:
    queue_url = scenario.emulator.client("sqs").create_queue(QueueName=f"iam-q-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    assert _error_code(lambda: scenario.role_client("sqs").send_message(QueueUrl=queue_url, MessageBody="x")) == ("AccessDenied", 403)
    other_role = f"arn:aws:iam::{scenario.emulator.account_id}:role/{scenario.role_name}"
    assert _error_code(lambda: scenario.role_client("sts").assume_role(RoleArn=other_role, RoleSessionName="again")) == ("AccessDenied", 403)


def test_unmapped_operation_is_denied_naming_it(scenario: Scenario) -> None:
    with pytest.raises(ClientError) as raised:
        scenario.role_client("iam").list_roles()
    assert raised.value.response["Error"]["Code"] == "AccessDenied"
    assert "no IAM mapping" in raised.value.response["Error"]["Message"]


def test_missing_object_is_403_without_list_bucket_and_404_with_it(scenario: Scenario) -> None:
    s3 = scenario.role_client("s3")
    assert _error_code(lambda: s3.get_object(Bucket=scenario.bucket_a, Key="missing")) == ("AccessDenied", 403)
    assert _error_code(lambda: s3.head_object(Bucket=scenario.bucket_a, Key="missing"))[1] == 403
    scenario.set_policy([*scenario.statements,
                         {"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{scenario.bucket_a}"}])
    try:
        assert _error_code(lambda: s3.get_object(Bucket=scenario.bucket_a, Key="missing")) == ("NoSuchKey", 404)
        assert _error_code(lambda: s3.head_object(Bucket=scenario.bucket_a, Key="missing"))[1] == 404
    finally:
        scenario.set_policy(scenario.statements)


def test_explicit_deny_wins_over_an_allow(scenario: Scenario) -> None:
    scenario.set_policy([*scenario.statements,
                         {"Effect": "Deny", "Action": "s3:*", "Resource": f"arn:aws:s3:::{scenario.bucket_a}/present"}])
    try:
        with pytest.raises(ClientError) as raised:
            scenario.role_client("s3").get_object(Bucket=scenario.bucket_a, Key="present")
        assert raised.value.response["Error"]["Code"] == "AccessDenied"
        assert raised.value.response["Error"]["Message"].endswith("with an explicit deny in an identity-based policy")
    finally:
        scenario.set_policy(scenario.statements)


def test_role_policy_changes_apply_to_the_next_request(scenario: Scenario) -> None:
    s3 = scenario.role_client("s3")
    scenario.set_policy([*scenario.statements, {"Effect": "Allow", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{scenario.bucket_b}/*"}])
    try:
        assert s3.get_object(Bucket=scenario.bucket_b, Key="present")["Body"].read() == b"data"
    finally:
        scenario.set_policy(scenario.statements)
    assert _error_code(lambda: s3.get_object(Bucket=scenario.bucket_b, Key="present")) == ("AccessDenied", 403)


def test_create_role_is_idempotent_and_loads_aws_managed_policies(emulator: Any) -> None:
    iam = emulator.client("iam")
    name = f"atrest-IdempotentRole-{uuid.uuid4().hex[:12].upper()}"
    basic = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    def policy(action: str) -> dict[str, Any]:
        return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]}

    first = create_role(iam, name, "/", TRUST, {"a": policy("sqs:*"), "b": policy("sns:*")}, [basic])
    assert [p["PolicyArn"] for p in iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]] == [basic]
    second = create_role(iam, name, "/", TRUST, {"b": policy("s3:*")}, [])
    assert (first["Arn"], first["RoleId"]) == (second["Arn"], second["RoleId"])  # the same role, updated
    assert iam.list_role_policies(RoleName=name)["PolicyNames"] == ["b"]
    assert iam.get_role_policy(RoleName=name, PolicyName="b")["PolicyDocument"]["Statement"][0]["Action"] == "s3:*"
    assert iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"] == []


def test_admin_test_credentials_are_not_restricted(scenario: Scenario) -> None:
    s3 = scenario.emulator.client("s3")
    assert s3.get_object(Bucket=scenario.bucket_b, Key="present")["Body"].read() == b"data"
    assert _error_code(lambda: s3.get_object(Bucket=scenario.bucket_a, Key="missing")) == ("NoSuchKey", 404)
    scenario.emulator.client("dynamodb").get_item(TableName=scenario.table, Key={"pk": {"S": "allowed"}})


def test_in_process_function_runs_with_its_role(scenario: Scenario, emulator: Any, tmp_path: Any) -> None:
    from atrest_cli.local.lambda_runtime import InProcessFunction
    from atrest_cli.local.stack import LocalFunction

    (tmp_path / "app.py").write_text(
        "import boto3\n"
        "def handler(event, context):\n"
        "    s3 = boto3.client('s3')\n"
        "    who = boto3.client('sts').get_caller_identity()['Arn']\n"
        "    try:\n"
        "        s3.get_object(Bucket=event['bucket'], Key='present')\n"
        "        return {'who': who, 'read': 'ok'}\n"
        "    except Exception as error:\n"
        "        return {'who': who, 'read': error.response['Error']['Code']}\n"
    )
    function = LocalFunction(**_local_function_fields(tmp_path, scenario.role_arn))
    as_role = InProcessFunction(function, emulator.environment())
    allowed, denied = as_role.invoke({"bucket": scenario.bucket_a}), as_role.invoke({"bucket": scenario.bucket_b})
    assert allowed.response["read"] == "ok" and denied.response["read"] == "AccessDenied"
    assert ":assumed-role/" in allowed.response["who"]
    as_admin = InProcessFunction(function, emulator.environment(), enforce_iam=False)
    assert as_admin.invoke({"bucket": scenario.bucket_b}).response["read"] == "ok"


def _local_function_fields(code_dir: Any, role_arn: str) -> dict[str, Any]:
    import dataclasses

    from atrest_cli.local.stack import LocalFunction

    values: dict[str, Any] = {"logical_id": "IamProbeFunction", "function_name": "atrest-IamProbeFunction-TEST",
                              "code_dir": str(code_dir), "handler": "app.handler", "role_arn": role_arn}
    for field in dataclasses.fields(LocalFunction):
        if field.name not in values and field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            values[field.name] = {"environment": {}, "layer_dirs": [], "memory_size": 128, "timeout": 30, "runtime": "python3.12",
                                  "log_group_name": "/aws/lambda/probe", "arn": "arn:aws:lambda:us-east-1:123456789012:function:probe"}.get(field.name, "")
    return values


def test_kms_key_policy_naming_the_role_grants_without_an_identity_policy(scenario: Scenario, emulator: Any) -> None:
    kms = emulator.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{emulator.account_id}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": scenario.role_arn}, "Action": "kms:Encrypt", "Resource": "*"},
    ]}))
    role_kms = scenario.role_client("kms")
    assert role_kms.encrypt(KeyId=key_id, Plaintext=b"x")["KeyId"].endswith(key_id)
    assert _error_code(lambda: role_kms.generate_data_key(KeyId=key_id, KeySpec="AES_256")) == ("AccessDeniedException", 400)


def test_a_kms_grant_gives_the_role_its_operations_where_its_constraints_hold(scenario: Scenario, emulator: Any) -> None:
    # A rekey's bridge grants must work with no policy naming the role (docs/byok.md).
    kms = emulator.client("kms")
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]  # default key policy: the account root only
    role_kms = scenario.role_client("kms")
    context = {"tablename": "granted-keystore"}
    assert _error_code(lambda: role_kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext=context)) == (
        "AccessDeniedException", 400)

    kms.create_grant(KeyId=key_id, GranteePrincipal=scenario.role_arn, Operations=["Encrypt"],
                     Constraints={"EncryptionContextSubset": context})

    assert role_kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext=context)["KeyId"].endswith(key_id)
    assert _error_code(lambda: role_kms.encrypt(KeyId=key_id, Plaintext=b"x", EncryptionContext={"tablename": "other"})) == (
        "AccessDeniedException", 400)
    assert _error_code(lambda: role_kms.generate_data_key(KeyId=key_id, KeySpec="AES_256", EncryptionContext=context)) == (
        "AccessDeniedException", 400)


def test_an_explicit_deny_on_every_key_but_the_stacks_overrides_a_grant_and_a_key_policy_naming_the_role(
        emulator: Any) -> None:
    """The KMS fence (template.yaml, KmsKeyFencePolicy): a key's owner can give these role
    ARNs use of their key by a grant or key policy, with no identity policy; an explicit
    Deny with NotResource in the role's own policy wins over both, as on AWS (issue 15)."""
    probe = Scenario(emulator)  # a role of its own: the module's scenario keeps its policy
    kms = emulator.client("kms")
    own = kms.create_key(Description="the stack's key")["KeyMetadata"]["Arn"]
    foreign = kms.create_key(Description="a planter's key")["KeyMetadata"]
    kms.put_key_policy(KeyId=foreign["KeyId"], PolicyName="default", Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"AWS": f"arn:aws:iam::{emulator.account_id}:root"}, "Action": "kms:*", "Resource": "*"},
        {"Effect": "Allow", "Principal": {"AWS": probe.role_arn}, "Action": "kms:Encrypt", "Resource": "*"},
    ]}))
    kms.create_grant(KeyId=foreign["KeyId"], GranteePrincipal=probe.role_arn, Operations=["Decrypt", "GenerateDataKey"])
    allow_own = {"Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt"], "Resource": own}
    # As in template.yaml: the calls the role makes to KMS itself (no kms:ViaService).
    fence = {"Sid": "DenyKmsKeysOutsideTheStack", "Effect": "Deny", "Action": "kms:*", "NotResource": [own],
             "Condition": {"Null": {"kms:ViaService": "true"}}}
    probe.set_policy([allow_own])
    role_kms = probe.role_client("kms")
    # Without the fence, the planter's key policy and grant let the role use the planter's key.
    blob = role_kms.encrypt(KeyId=foreign["Arn"], Plaintext=b"branch key")["CiphertextBlob"]
    assert role_kms.decrypt(CiphertextBlob=blob)["Plaintext"] == b"branch key"
    assert role_kms.generate_data_key(KeyId=foreign["Arn"], KeySpec="AES_256")["KeyId"].endswith(foreign["KeyId"])

    probe.set_policy([allow_own, fence])

    for call in (lambda: role_kms.encrypt(KeyId=foreign["Arn"], Plaintext=b"x"),
                 lambda: role_kms.decrypt(CiphertextBlob=blob),
                 lambda: role_kms.generate_data_key(KeyId=foreign["Arn"], KeySpec="AES_256")):
        with pytest.raises(ClientError) as denied:
            call()
        assert denied.value.response["Error"]["Code"] == "AccessDeniedException"
        assert "explicit deny" in denied.value.response["Error"]["Message"]
    # The stack's own key is outside the Deny: the role keeps what its Allow gives it.
    assert role_kms.decrypt(CiphertextBlob=role_kms.encrypt(KeyId=own, Plaintext=b"ok")["CiphertextBlob"])["Plaintext"] == b"ok"


def test_another_thread_keeps_its_own_credentials_while_a_function_runs_with_its_role(
    scenario: Scenario, emulator: Any, tmp_path: Any,
) -> None:
    # The runner invokes functions on a background thread while tests and the CLI make
    # their own calls: the role must not leak to them (nor theirs to the function).
    import threading

    import boto3

    from atrest_cli.local.lambda_runtime import InProcessFunction
    from atrest_cli.local.stack import LocalFunction

    (tmp_path / "app.py").write_text(
        "import boto3\n"
        "def handler(event, context):\n"
        "    import builtins\n"
        "    gate = builtins._atrest_test_gate\n"
        "    gate['inside'].set()\n"
        "    assert gate['outside_done'].wait(10)\n"
        "    return {'who': boto3.client('sts').get_caller_identity()['Arn']}\n"
    )
    import builtins

    gate = {"inside": threading.Event(), "outside_done": threading.Event()}
    builtins._atrest_test_gate = gate  # type: ignore[attr-defined]
    function = InProcessFunction(LocalFunction(**_local_function_fields(tmp_path, scenario.role_arn)), emulator.environment())
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(invocation=function.invoke({})))
    worker.start()
    try:
        assert gate["inside"].wait(10)
        outside = boto3.client("sts").get_caller_identity()["Arn"]
    finally:
        gate["outside_done"].set()
        worker.join(20)
        del builtins._atrest_test_gate  # type: ignore[attr-defined]

    assert ":assumed-role/" not in outside
    assert ":assumed-role/" in result["invocation"].response["who"]
