"""Bring your own key: the KmsGrants custom resource and `atrest grants list` (docs/byok.md).

The custom resource handler runs on the emulator's KMS; CloudFormation's side is played
by a local HTTP server that receives the response PUT, as the pre-signed S3 URL would.
(The local stack runs the same handler with its own role when it provisions a stack with
keys it does not own: tests/integration/test_class_kms_keys.py.)
"""

from __future__ import annotations

import importlib.util
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from atrest.cli import main
from atrest.grants import READ_WRITE_OPERATIONS, ROTATE_OPERATIONS, list_grants
from atrest.local.lambda_runtime import LocalLambdaContext

APP = Path(__file__).resolve().parents[2] / "functions" / "kms_grant" / "app.py"
ROLE = "arn:aws:iam::123456789012:role/atrest-EncryptObjectFunctionRole-ABC"
EXPIRE_ROLE = "arn:aws:iam::123456789012:role/atrest-ExpireKeysFunctionRole-DEF"


@pytest.fixture(scope="module")
def grant_function(emulator):
    spec = importlib.util.spec_from_file_location("kms_grant_app", APP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cloudformation():
    """A stand-in for the pre-signed response URL: keeps every PUT body."""
    responses: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self):  # noqa: N802 - http.server's naming
            responses.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/response", responses
    server.shutdown()
    server.server_close()


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
            "KeyStoreName": "atrest-KeyStoreTable-1", "NamePrefix": "atrest-atrest-",
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
    assert all(g.encryption_context == {"tablename": "atrest-KeyStoreTable-1"} for g in grants)
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
        assert all(g.encryption_context == {"tablename": "atrest-KeyStoreTable-1"} for g in grants)


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
