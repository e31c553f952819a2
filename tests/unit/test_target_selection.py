"""Which stack the integration suites test (tests/targets.py), checked without one: with
ATREST_STACK set, the deployed stack is read from a stubbed CloudFormation, its settings
are those `atrest --stack` builds, AWS is reached without an endpoint override, nothing is
emptied, and only what the tests made is removed. (Not run against AWS here.)"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber

from targets import CreatedResources, Target, deployed_stack_name, recording, selected_target

STACK = "atrest-staging"
ACCOUNT = "210987654321"
STACK_ID = f"arn:aws:cloudformation:eu-west-1:{ACCOUNT}:stack/{STACK}/0a1b2c3d-0000-0000-0000-000000000000"
OUTPUTS = {
    "IntakeBucketName": "staging-intake", "VaultBucketName": "staging-vault", "KeyStoreTableName": "staging-keystore",
    "MetadataTableName": "staging-metadata", "IdempotencyTableName": "staging-idempotency",
    "KmsKeyArn": f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab",
    "AuditTableName": "staging-audit", "EncryptQueueUrl": "https://sqs.eu-west-1.amazonaws.com/q",
}
PARAMETERS = {"ConnectPrefix": "connect/staging/", "FrameLengthBytes": "65536"}


def client(service: str) -> Any:
    return boto3.client(service, region_name="eu-west-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret")


class StubClients:
    """An `AwsClients` stand-in: one stubbed client per service, each expecting its calls in order."""

    def __init__(self) -> None:
        self.clients: dict[str, Any] = {}
        self.stubbers: dict[str, Stubber] = {}

    def client(self, service: str) -> Any:
        if service not in self.clients:
            self.clients[service] = client(service)
            self.stubbers[service] = Stubber(self.clients[service])
            self.stubbers[service].activate()
        return self.clients[service]

    def expect(self, service: str, operation: str, response: dict[str, Any], params: dict[str, Any] | None = None) -> None:
        self.client(service)
        self.stubbers[service].add_response(operation, response, params)

    def assert_all_called(self) -> None:
        for stubber in self.stubbers.values():
            stubber.assert_no_pending_responses()


def described_stack() -> dict[str, Any]:
    return {"Stacks": [{
        "StackName": STACK, "StackId": STACK_ID, "CreationTime": "2026-01-01T00:00:00Z", "StackStatus": "UPDATE_COMPLETE",
        "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in OUTPUTS.items()],
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in PARAMETERS.items()],
    }]}


def no_local_stack() -> Target:
    raise AssertionError("the local stack (and its emulator) was asked for on a deployed target")


@pytest.mark.parametrize(("value", "expected"), [(None, None), ("", None), ("  ", None), (STACK, STACK)])
def test_atrest_stack_names_the_deployed_stack_and_nothing_else_means_the_local_one(value, expected):
    assert deployed_stack_name({} if value is None else {"ATREST_STACK": value}) == expected


def test_without_atrest_stack_the_local_stack_is_the_target_and_the_environment_is_left_alone():
    local = Target("atrest", object(), {})  # type: ignore[arg-type]
    environ = {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}
    with selected_target(lambda: local, environ) as selected:
        assert selected is local
    assert environ == {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}


def test_atrest_stack_reads_the_stacks_outputs_and_parameters_with_describe_stacks_into_the_clis_settings(monkeypatch):
    clients = StubClients()
    clients.expect("cloudformation", "describe_stacks", described_stack(), {"StackName": STACK})
    environ = {"ATREST_STACK": STACK, "AWS_ENDPOINT_URL": "http://127.0.0.1:4566", "ATREST_STATE_FILE": "/tmp/x.json",
               "AWS_REGION": "eu-west-1"}
    emptied: list[Any] = []
    monkeypatch.setattr("atrest_cli.local.stack.empty_stack", lambda *args: emptied.append(args))

    with selected_target(no_local_stack, environ, clients=clients) as selected:
        # Real AWS: no emulator endpoint, no local stack's state file, while the target is in use.
        assert "AWS_ENDPOINT_URL" not in environ and "ATREST_STATE_FILE" not in environ
        assert selected.deployed and selected.name == STACK
        assert selected.empty() is False
        settings = selected.settings
        arguments = selected.cli_arguments(directory=None)  # type: ignore[arg-type]
        environment = selected.cli_environment({"PATH": "/bin"})

    clients.assert_all_called()
    assert emptied == []
    assert (settings.vault_bucket, settings.intake_bucket, settings.keystore_table, settings.metadata_table,
            settings.audit_table, settings.kms_key_arn) == (
        "staging-vault", "staging-intake", "staging-keystore", "staging-metadata", "staging-audit", OUTPUTS["KmsKeyArn"])
    assert settings.account_id == ACCOUNT  # from the stack's id, as the CLI takes it
    assert (settings.connect_prefix, settings.frame_length) == ("connect/staging/", 65536)
    assert arguments == ["--stack", STACK]
    assert environment["ATREST_VAULT_BUCKET"] == "staging-vault" and environment["ATREST_ACCOUNT_ID"] == ACCOUNT
    assert environment["PATH"] == "/bin"
    assert environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"  # the shell's own, back once the session ends


def test_a_deployed_stack_that_cannot_be_read_fails_naming_it_and_restores_the_environment():
    clients = StubClients()
    clients.client("cloudformation")
    clients.stubbers["cloudformation"].add_client_error("describe_stacks", "ValidationError", f"Stack {STACK} does not exist")
    environ = {"ATREST_STACK": STACK, "AWS_ENDPOINT_URL": "http://127.0.0.1:4566"}

    with pytest.raises(Exception, match=STACK):
        with selected_target(no_local_stack, environ, clients=clients):
            pass  # pragma: no cover - never reached

    assert environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:4566"


def test_what_this_process_makes_is_recorded_and_an_item_that_existed_before_is_not():
    s3, dynamodb = client("s3"), client("dynamodb")
    made = CreatedResources(kept_tables=frozenset({"audit"}))
    with Stubber(s3) as s3_stub, Stubber(dynamodb) as ddb_stub, recording(made):
        s3_stub.add_response("put_object", {"VersionId": "v1"}, {"Bucket": "vault", "Key": "a", "Body": ANY})
        s3.put_object(Bucket="vault", Key="a", Body=b"x")
        schema = {"Table": {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}]}}
        ddb_stub.add_response("describe_table", schema, {"TableName": "metadata"})
        ddb_stub.add_response("get_item", {}, {"TableName": "metadata", "Key": {"pk": {"S": "new"}}, "ConsistentRead": True})
        ddb_stub.add_response("put_item", {})
        dynamodb.put_item(TableName="metadata", Item={"pk": {"S": "new"}, "n": {"N": "1"}})
        ddb_stub.add_response("get_item", {"Item": {"pk": {"S": "old"}}})
        ddb_stub.add_response("put_item", {})
        dynamodb.put_item(TableName="metadata", Item={"pk": {"S": "old"}, "n": {"N": "2"}})  # replaces: not the test's
        ddb_stub.add_response("describe_table", schema, {"TableName": "audit"})
        ddb_stub.add_response("get_item", {})
        ddb_stub.add_response("put_item", {})
        dynamodb.put_item(TableName="audit", Item={"pk": {"S": "read"}})  # the audit trail keeps it
        ddb_stub.assert_no_pending_responses()

    assert made.objects == [("vault", "a", "v1")]
    assert made.items == [("metadata", {"pk": {"S": "new"}})]


def test_removing_deletes_exactly_the_recorded_versions_and_items_and_forgets_them():
    clients = StubClients()
    clients.expect("s3", "delete_object", {}, {"Bucket": "vault", "Key": "a", "VersionId": "v1"})
    clients.expect("dynamodb", "delete_item", {}, {"TableName": "metadata", "Key": {"pk": {"S": "new"}}})
    made = CreatedResources(client=clients.client)
    made.object("vault", "a", "v1")
    made.item("metadata", {"pk": {"S": "new"}})

    assert made.remove() == []

    clients.assert_all_called()
    assert made.objects == [] and made.items == []
    assert made.remove() == []  # nothing twice


def test_a_resource_already_gone_is_no_failure_and_any_other_error_is_reported_without_stopping_the_rest():
    clients = StubClients()
    clients.client("s3")
    clients.stubbers["s3"].add_client_error("delete_object", "AccessDenied", "no")
    clients.stubbers["s3"].add_client_error("delete_object", "NoSuchVersion", "gone")
    made = CreatedResources(client=clients.client)
    made.object("vault", "gone", "v0")
    made.object("vault", "denied", "v2")  # removed first: the newest first

    failures = made.remove()

    assert len(failures) == 1 and "s3://vault/denied" in failures[0] and "AccessDenied" in failures[0]
    clients.assert_all_called()
