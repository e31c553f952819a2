"""Bring your own key: the KmsGrants custom resource and `atrest grants list` (docs/byok.md).

The custom resource handler runs on the emulator's KMS; CloudFormation's side is played
by its response bucket on the emulator's S3 (`cloudformation-custom-resource-response-useast1`,
versioned here so that every answer PUT to one pre-signed URL is kept, in order).
(The local stack runs the same handler with its own role when it provisions a stack with
keys it does not own: tests/integration/test_class_kms_keys.py.)
"""

from __future__ import annotations

import importlib.util
import json
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from atrest.crypto.grants import READ_WRITE_OPERATIONS, ROTATE_OPERATIONS, list_grants
from atrest.crypto.keystore_format import TABLE_NAME_CONTEXT
from atrest_cli.local.lambda_runtime import LocalLambdaContext
from atrest_cli.main import main

pytestmark = pytest.mark.local_only("runs the KmsGrants custom resource's handler in this process against the emulator's KMS and response bucket")

APP = Path(__file__).resolve().parents[2] / "functions" / "kms_grant" / "app.py"
ROLE = "arn:aws:iam::123456789012:role/atrest-EncryptObjectFunctionRole-ABC"
EXPIRE_ROLE = "arn:aws:iam::123456789012:role/atrest-ExpireKeysFunctionRole-DEF"
GRANT_ROLE = "arn:aws:iam::123456789012:role/atrest-KmsGrantFunctionRole-GHI"
OUTSIDER = "arn:aws:iam::999999999999:role/outsider"
RESPONSE_BUCKET = "cloudformation-custom-resource-response-useast1"


@pytest.fixture(scope="module")
def grant_function(emulator):
    spec = importlib.util.spec_from_file_location("kms_grant_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Answers:
    """Every answer PUT to one pre-signed URL of the response bucket, oldest first."""

    def __init__(self, key: str) -> None:
        self.s3, self.key = boto3.client("s3"), key

    def _bodies(self) -> list[dict[str, Any]]:
        versions = self.s3.list_object_versions(Bucket=RESPONSE_BUCKET, Prefix=self.key).get("Versions", [])
        # Same-second versions: the listing is newest first, so reverse it before the stable sort.
        ordered = sorted(reversed([v for v in versions if v["Key"] == self.key]), key=lambda v: v["LastModified"])
        return [json.loads(self.s3.get_object(Bucket=RESPONSE_BUCKET, Key=self.key, VersionId=v["VersionId"])["Body"].read())
                for v in ordered]

    def __iter__(self):
        return iter(self._bodies())

    def __len__(self) -> int:
        return len(self._bodies())

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self._bodies()[index]

    def clear(self) -> None:
        for v in self.s3.list_object_versions(Bucket=RESPONSE_BUCKET, Prefix=self.key).get("Versions", []):
            self.s3.delete_object(Bucket=RESPONSE_BUCKET, Key=v["Key"], VersionId=v["VersionId"])


@pytest.fixture
def cloudformation(monkeypatch):
    """CloudFormation's side: a pre-signed URL in its response bucket (on the emulator's S3),
    and the answers PUT there; the stack's roles as the template gives them to the function."""
    s3 = boto3.client("s3")
    try:
        s3.create_bucket(Bucket=RESPONSE_BUCKET)
    except s3.exceptions.BucketAlreadyOwnedByYou:
        pass
    s3.put_bucket_versioning(Bucket=RESPONSE_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    key = f"arn%3Aaws%3Acloudformation/{uuid.uuid4()}"
    url = s3.generate_presigned_url("put_object", Params={"Bucket": RESPONSE_BUCKET, "Key": key}, ExpiresIn=600)
    monkeypatch.setenv("ATREST_GRANTEE_ROLE_ARNS", f"{ROLE},{EXPIRE_ROLE}")
    monkeypatch.setenv("ATREST_RETIRING_PRINCIPAL", GRANT_ROLE)
    yield url, Answers(key)


def _context() -> LocalLambdaContext:
    return LocalLambdaContext("kms-grant", "$LATEST", "arn:aws:lambda:us-east-1:123456789012:function:kms-grant", 128,
                              str(uuid.uuid4()), "/aws/lambda/kms-grant", "stream", time.monotonic() + 60)


def _event(url: str, request: str, key_arn: str, physical_id: str | None = None, class_keys: dict[str, str] | None = None,
           **extra: Any) -> dict[str, Any]:
    event = {
        "RequestType": request, "ResponseURL": url, "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/atrest/x",
        "RequestId": str(uuid.uuid4()), "LogicalResourceId": "KmsGrants", "ResourceType": "Custom::KmsGrants",
        "ResourceProperties": {
            # As CloudFormation sends the parameters: an empty list parameter is one empty string.
            "KeyArn": key_arn, "DataClassKmsKeys": [f"{name}={arn}" for name, arn in (class_keys or {}).items()] or [""],
            "KeyStoreName": "atrest-KeyStoreTable-1", "NamePrefix": "atrest-atrest-", "RetiringPrincipal": GRANT_ROLE,
            "Grantees": [{"RoleArn": ROLE, "Operations": list(READ_WRITE_OPERATIONS)},
                         {"RoleArn": EXPIRE_ROLE, "Operations": list(ROTATE_OPERATIONS)}],
        },
    }
    if physical_id:
        event["PhysicalResourceId"] = physical_id
    event.update(extra)
    return event


def _key() -> str:
    return boto3.client("kms").create_key(Description="customer's own key")["KeyMetadata"]["Arn"]


def test_deploying_with_a_customer_key_grants_each_role_only_key_store_operations_in_the_key_store_context(
        grant_function, cloudformation):
    url, responses = cloudformation
    key = _key()
    event = _event(url, "Create", key)

    grant_function.lambda_handler(event, _context())

    (response,) = responses
    assert response["Status"] == "SUCCESS", response["Reason"]
    grants = list_grants(boto3.client("kms"), key, "atrest-atrest-")
    assert {g.grantee: set(g.operations) for g in grants} == {ROLE: set(READ_WRITE_OPERATIONS),
                                                              EXPIRE_ROLE: set(ROTATE_OPERATIONS)}
    assert all(g.encryption_context == {TABLE_NAME_CONTEXT: "atrest-KeyStoreTable-1"} for g in grants)
    assert response["Data"] == {"KeyCount": "1", "GrantCount": "2"}
    # The grants are found again by name, so the physical id stays small whatever the key count.
    assert response["PhysicalResourceId"] == "atrest-atrest-kms-grants:" + event["RequestId"][:8]


def test_deleting_the_stack_retires_its_grants(grant_function, cloudformation):
    url, responses = cloudformation
    key = _key()
    grant_function.lambda_handler(_event(url, "Create", key), _context())

    grant_function.lambda_handler(_event(url, "Delete", key, responses[0]["PhysicalResourceId"]), _context())

    assert responses[1]["Status"] == "SUCCESS"
    assert list_grants(boto3.client("kms"), key, "atrest-atrest-") == []


def test_switching_the_key_grants_on_the_new_key_and_cloudformation_cleanup_retires_the_old(grant_function, cloudformation):
    url, responses = cloudformation
    old, new = _key(), _key()
    grant_function.lambda_handler(_event(url, "Create", old), _context())
    old_id = responses[0]["PhysicalResourceId"]

    grant_function.lambda_handler(_event(url, "Update", new, old_id), _context())
    new_id = responses[1]["PhysicalResourceId"]
    grant_function.lambda_handler(_event(url, "Delete", old, old_id), _context())  # CloudFormation's cleanup

    kms = boto3.client("kms")
    assert new_id != old_id and responses[1]["Status"] == responses[2]["Status"] == "SUCCESS"
    assert list_grants(kms, old, "atrest-atrest-") == []
    assert len(list_grants(kms, new, "atrest-atrest-")) == 2


def test_a_grant_request_that_fails_answers_cloudformation_failed_with_the_reason(grant_function, cloudformation):
    url, responses = cloudformation
    event = _event(url, "Create", _key())
    event["ResourceProperties"]["Grantees"][0]["Operations"] = ["Encrypt", "CreateGrant"]

    grant_function.lambda_handler(event, _context())

    (response,) = responses
    assert response["Status"] == "FAILED" and "not key store operations" in response["Reason"]


def test_deleting_a_grant_resource_whose_create_failed_succeeds(grant_function, cloudformation):
    url, responses = cloudformation

    grant_function.lambda_handler(_event(url, "Delete", _key(), "failed-1234"), _context())

    assert responses[0]["Status"] == "SUCCESS"


def test_grants_list_shows_this_stacks_grants_on_the_configured_key(grant_function, cloudformation, local_stack, tmp_path,
                                                                    capsys):
    url, _ = cloudformation
    key = _key()
    grant_function.lambda_handler(_event(url, "Create", key), _context())
    boto3.client("kms").create_grant(KeyId=key, GranteePrincipal="arn:aws:iam::123456789012:role/someone-else",
                                     Operations=["Decrypt"], Name="not-ours")
    state = json.loads(json.dumps(local_stack.to_json()))  # a copy: to_json shares the session stack's dicts
    state["outputs"]["KmsKeyArn"] = key
    state_file = tmp_path / "local-stack.json"
    state_file.write_text(json.dumps(state))

    code = main(["grants", "list", "--state-file", str(state_file)])

    out = capsys.readouterr().out
    assert code == 0
    assert ROLE in out and EXPIRE_ROLE in out and "tablename=atrest-KeyStoreTable-1" in out
    assert "someone-else" not in out


# --------------------------------------------------------------------------- a KMS key per data class


def test_each_data_class_key_gets_the_same_grants_and_a_key_shared_by_two_classes_gets_them_once(
        grant_function, cloudformation):
    url, responses = cloudformation
    customer, shared, own = _key(), _key(), _key()
    event = _event(url, "Create", customer, class_keys={"integration-configuration": shared, "crm-exports": shared,
                                                        "partner-feeds": own})

    grant_function.lambda_handler(event, _context())

    assert responses[0]["Status"] == "SUCCESS", responses[0]["Reason"]
    assert responses[0]["Data"] == {"KeyCount": "3", "GrantCount": "6"}
    kms = boto3.client("kms")
    for key in (customer, shared, own):
        grants = list_grants(kms, key, "atrest-atrest-")
        assert {g.grantee: set(g.operations) for g in grants} == {ROLE: set(READ_WRITE_OPERATIONS),
                                                                  EXPIRE_ROLE: set(ROTATE_OPERATIONS)}, key
        assert all(g.encryption_context == {TABLE_NAME_CONTEXT: "atrest-KeyStoreTable-1"} for g in grants)


def test_class_keys_without_a_customer_key_are_granted_and_the_stacks_own_key_is_not(grant_function, cloudformation):
    url, responses = cloudformation
    own = _key()

    grant_function.lambda_handler(_event(url, "Create", "", class_keys={"integration-configuration": own}), _context())

    assert responses[0]["Status"] == "SUCCESS" and responses[0]["Data"]["KeyCount"] == "1"
    assert len(list_grants(boto3.client("kms"), own, "atrest-atrest-")) == 2


def test_switching_a_class_key_grants_on_the_new_one_and_the_cleanup_retires_only_the_old_deployments_grants(
        grant_function, cloudformation):
    url, responses = cloudformation
    customer, old, new = _key(), _key(), _key()
    created = _event(url, "Create", customer, class_keys={"integration-configuration": old})
    grant_function.lambda_handler(created, _context())
    old_id = responses[0]["PhysicalResourceId"]

    update = _event(url, "Update", customer, old_id, class_keys={"integration-configuration": new})
    grant_function.lambda_handler(update, _context())
    # CloudFormation's cleanup: Delete of the old physical resource, with its own (old) properties.
    grant_function.lambda_handler({**_event(url, "Delete", customer, old_id), "ResourceProperties": created["ResourceProperties"]},
                                  _context())

    kms = boto3.client("kms")
    assert [r["Status"] for r in responses] == ["SUCCESS"] * 3 and responses[1]["PhysicalResourceId"] != old_id
    assert responses[2]["Data"] == {"Retired": "4"}
    assert list_grants(kms, old, "atrest-atrest-") == []
    assert len(list_grants(kms, new, "atrest-atrest-")) == 2
    # The customer's key keeps the update's grants; the create's are gone.
    assert {g.name.rsplit("-", 1)[1] for g in list_grants(kms, customer, "atrest-atrest-")} == {update["RequestId"][:8]}


def test_a_retried_request_takes_no_grant_twice(grant_function, cloudformation):
    url, responses = cloudformation
    key = _key()
    event = _event(url, "Create", "", class_keys={"integration-configuration": key})

    grant_function.lambda_handler(event, _context())
    grant_function.lambda_handler(event, _context())  # CloudFormation, or the local stack, sending it again

    assert responses[0] == responses[1] and len(list_grants(boto3.client("kms"), key, "atrest-atrest-")) == 2


def test_a_malformed_or_foreign_class_key_fails_the_deploy_naming_it_and_leaves_no_grant(grant_function, cloudformation):
    url, responses = cloudformation
    good = _key()
    foreign_region = good.replace(":us-east-1:", ":eu-west-1:")
    for class_keys, reason in (({"integration-configuration": "alias/crm"}, "'integration-configuration=alias/crm'"),
                               ({"integration-configuration": good, "crm": foreign_region}, "region eu-west-1")):
        responses.clear()

        grant_function.lambda_handler(_event(url, "Create", "", class_keys=class_keys), _context())

        (response,) = responses
        assert response["Status"] == "FAILED" and reason in response["Reason"], response["Reason"]
        assert list_grants(boto3.client("kms"), good, "atrest-atrest-") == []


def test_deleting_a_resource_made_before_class_keys_retires_the_grants_its_id_names(grant_function, cloudformation):
    """Stacks deployed before DataClassKmsKeys have physical id `<key>|<grant id>,...`."""
    url, responses = cloudformation
    key = _key()
    kms = boto3.client("kms")
    ids = [kms.create_grant(KeyId=key, GranteePrincipal=ROLE, Operations=["Decrypt"], Name=f"atrest-atrest-old-{n}")["GrantId"]
           for n in range(2)]

    grant_function.lambda_handler(_event(url, "Delete", key, f"{key}|{','.join(ids)}"), _context())

    assert responses[0]["Status"] == "SUCCESS" and responses[0]["Data"] == {"Retired": "2"}
    assert list_grants(kms, key, "atrest-atrest-") == []


def test_a_grant_for_a_role_outside_the_stack_is_refused_and_no_grant_is_taken(grant_function, cloudformation):
    """Issue 15, finding 2: the event named an outside role, and apply() granted it Decrypt."""
    url, responses = cloudformation
    key = _key()
    event = _event(url, "Create", key)
    event["ResourceProperties"]["Grantees"].append({"RoleArn": OUTSIDER, "Operations": ["Decrypt"]})

    grant_function.lambda_handler(event, _context())

    (response,) = responses
    assert response["Status"] == "FAILED" and OUTSIDER in response["Reason"], response["Reason"]
    assert list_grants(boto3.client("kms"), key) == []


def test_a_retiring_principal_other_than_the_grant_functions_role_is_refused(grant_function, cloudformation):
    url, responses = cloudformation
    key = _key()
    event = _event(url, "Create", key)
    event["ResourceProperties"]["RetiringPrincipal"] = OUTSIDER

    grant_function.lambda_handler(event, _context())

    (response,) = responses
    assert response["Status"] == "FAILED" and "retiring principal" in response["Reason"]
    assert list_grants(boto3.client("kms"), key) == []


def test_a_response_url_outside_cloudformations_response_bucket_gets_no_answer_and_no_grant(grant_function, cloudformation):
    import os

    url, responses = cloudformation
    endpoint = os.environ["AWS_ENDPOINT_URL"]
    key = _key()
    for foreign in (f"{endpoint}/attacker-bucket/x", "https://attacker.example/cfn", f"{endpoint}/{RESPONSE_BUCKET}x/y",
                    url.replace(endpoint, "http://127.0.0.2:1")):
        with pytest.raises(grant_function.RefusedRequest, match="ResponseURL"):
            grant_function.lambda_handler(_event(foreign, "Create", key), _context())

    assert len(responses) == 0 and list_grants(boto3.client("kms"), key) == []


@pytest.mark.parametrize("url, allowed", [
    ("https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/arn%3Aaws/x?X-Amz-Signature=s", True),
    ("https://cloudformation-custom-resource-response-useast1.s3.us-east-1.amazonaws.com/k", True),
    ("https://cloudformation-custom-resource-response-useast1.s3-us-east-1.amazonaws.com/k", True),
    ("https://s3.amazonaws.com/cloudformation-custom-resource-response-useast1/k", True),
    ("http://cloudformation-custom-resource-response-useast1.s3.amazonaws.com/k", False),  # not TLS
    ("https://cloudformation-custom-resource-response-uswest2.s3.amazonaws.com/k", False),  # another region's bucket
    ("https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com.attacker.example/k", False),
    ("https://cloudformation-custom-resource-response-useast1.attacker.example/k", False),
    ("https://s3.amazonaws.com/attacker-bucket/cloudformation-custom-resource-response-useast1/k", False),
    ("https://user@cloudformation-custom-resource-response-useast1.s3.amazonaws.com/k", False),
    ("https://cloudformation-custom-resource-response-useast1.s3.amazonaws.com:8443/k", False),
    ("https://s3.amazonaws.com/cloudformation-custom-resource-response-useast1/../attacker-bucket/k", False),
    ("https://s3.amazonaws.com/cloudformation-custom-resource-response-useast1/%2E%2E/attacker-bucket/k", False),
])
def test_only_cloudformations_response_bucket_in_the_stacks_region_is_an_allowed_response_url(grant_function, url, allowed):
    assert grant_function.response_url_allowed(url, "us-east-1") is allowed
