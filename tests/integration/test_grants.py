"""Bring your own key: the KmsGrants custom resource and `atrest grants list` (docs/byok.md).

The custom resource handler runs on the emulator's KMS; CloudFormation's side is played
by a local HTTP server that receives the response PUT, as the pre-signed S3 URL would.
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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/response", responses
    server.shutdown()
    server.server_close()


def _context() -> LocalLambdaContext:
    return LocalLambdaContext("kms-grant", "$LATEST", "arn:aws:lambda:us-east-1:123456789012:function:kms-grant", 128,
                              str(uuid.uuid4()), "/aws/lambda/kms-grant", "stream", time.monotonic() + 60)


def _event(url: str, request: str, key_arn: str, physical_id: str | None = None, **extra: Any) -> dict[str, Any]:
    event = {
        "RequestType": request, "ResponseURL": url, "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/atrest/x",
        "RequestId": str(uuid.uuid4()), "LogicalResourceId": "KmsGrants", "ResourceType": "Custom::KmsGrants",
        "ResourceProperties": {
            "KeyArn": key_arn, "KeyStoreName": "atrest-KeyStoreTable-1", "NamePrefix": "atrest-atrest-",
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

    grant_function.lambda_handler(_event(url, "Create", key), _context())

    (response,) = responses
    assert response["Status"] == "SUCCESS", response["Reason"]
    grants = list_grants(boto3.client("kms"), key, "atrest-atrest-")
    assert {g.grantee: set(g.operations) for g in grants} == {ROLE: set(READ_WRITE_OPERATIONS),
                                                              EXPIRE_ROLE: set(ROTATE_OPERATIONS)}
    assert all(g.encryption_context == {"tablename": "atrest-KeyStoreTable-1"} for g in grants)
    assert sorted(response["Data"]["GrantIds"].split(",")) == sorted(g.grant_id for g in grants)
    assert response["PhysicalResourceId"].startswith(key + "|")


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
