"""The local stack holds the functions to their roles: a template missing one statement
fails locally, as the first deploy on AWS would.

Each test provisions a copy of template.yaml with one permission taken out (as its own
stack, beside the shared one), runs the real EncryptObject handler with that stack's
role, and shows the encrypt path is refused with AccessDenied while nothing is lost; the
unmutated stack, same handler, same steps, succeeds. S3's 403 for a missing key without
s3:ListBucket is reproduced too: that is what would dead-letter a deleted source on AWS.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest

from atrest_cli.demos.samples import connect_key
from atrest_cli.local.lambda_runtime import InProcessFunction
from atrest_cli.local.stack import LocalStackState, provision
from atrest_cli.local.template import load_template

from s3_events import object_created  # tests/ is on sys.path (pyproject: pytest pythonpath)

pytestmark = pytest.mark.local_only("provisions mutated copies of the stack into the emulator")

REPO_ROOT = Path(__file__).resolve().parents[3]
WHEN = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)


def without_action(role: str, sid: str, action: str) -> Callable[[dict[str, Any]], None]:
    """An edit of the template document that removes `action` from statement `sid` of `role`'s policy."""

    def edit(document: dict[str, Any]) -> None:
        for policy in document["Resources"][role]["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                if statement.get("Sid") == sid:
                    actions = statement["Action"]
                    assert action in actions, f"{role}/{sid} does not allow {action}: the mutation would prove nothing"
                    actions.remove(action)
                    return
        raise AssertionError(f"no statement {sid} in {role}")

    return edit


def without_policy_action(resource: str, sid: str, action: str) -> Callable[[dict[str, Any]], None]:
    """An edit that removes `action` from statement `sid` of an AWS::IAM::Policy or a KMS key policy."""

    def edit(document: dict[str, Any]) -> None:
        properties = document["Resources"][resource]["Properties"]
        policy = properties.get("PolicyDocument") or properties["KeyPolicy"]
        for statement in policy["Statement"]:
            if isinstance(statement, dict) and statement.get("Sid") == sid:
                assert action in statement["Action"], f"{resource}/{sid} does not allow {action}"
                statement["Action"].remove(action)
                return
        raise AssertionError(f"no statement {sid} in {resource}")

    return edit


def both(*edits: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    def edit(document: dict[str, Any]) -> None:
        for one in edits:
            one(document)

    return edit


def mutant_stack(tmp_path: Path, emulator: Any, edit: Callable[[dict[str, Any]], None]) -> LocalStackState:
    """template.yaml with `edit` applied, provisioned as a stack of its own."""
    document = load_template(REPO_ROOT / "template.yaml")
    edit(document)
    (tmp_path / "template.json").write_text(json.dumps(document))
    for folder in ("functions", "layers", "statemachines"):
        (tmp_path / folder).symlink_to(REPO_ROOT / folder)
    return provision(tmp_path / "template.json", emulator, stack_name=f"mutant-{uuid.uuid4().hex[:8]}")


def upload_recording(state: LocalStackState) -> tuple[str, str]:
    key = connect_key(state.parameters["ConnectPrefix"], "acme", "CallRecordings", str(uuid.uuid4()), WHEN, "wav")
    version = boto3.client("s3").put_object(Bucket=state.physical_id("IntakeBucket"), Key=key, Body=b"RIFF" + bytes(512))
    return key, version["VersionId"]


def encrypt(state: LocalStackState, emulator: Any, key: str, version_id: str) -> Any:
    function = InProcessFunction(state.function("EncryptObjectFunction"), emulator.environment())
    return function.invoke(object_created(state.physical_id("IntakeBucket"), key, version_id))


def intake_versions(state: LocalStackState, key: str) -> list[str]:
    listing = boto3.client("s3").list_object_versions(Bucket=state.physical_id("IntakeBucket"), Prefix=key)
    return [version["VersionId"] for version in listing.get("Versions", [])]


def test_the_unmutated_template_encrypts_under_its_own_role(local_stack, emulator):
    key, version_id = upload_recording(local_stack)

    invocation = encrypt(local_stack, emulator, key, version_id)

    assert invocation.succeeded, invocation.error
    assert invocation.response["outcome"] == "encrypted"
    assert intake_versions(local_stack, key) == []


@pytest.mark.parametrize(
    ("edit", "refused"),
    [
        (without_action("EncryptObjectFunctionRole", "ReadAndDeleteIntakeSources", "s3:DeleteObjectVersion"), "s3:DeleteObjectVersion"),
        (without_action("EncryptObjectFunctionRole", "WriteAndConfirmVaultObjects", "s3:PutObject"), "s3:PutObject"),
        # KMS authorizes through the key policy as well as the role's policy: take it from both.
        (both(without_policy_action("EncryptObjectKmsPolicy", "KeyStoreKmsOperations", "kms:Decrypt"),
              without_policy_action("AtrestKmsKey", "AllowKeyStoreOperationsByPipeline", "kms:Decrypt")), "kms:Decrypt"),
    ],
    ids=["no-delete-of-the-source-version", "no-vault-write", "no-kms-for-the-key-store"],
)
def test_a_template_missing_a_needed_statement_fails_the_encrypt_path_with_access_denied(tmp_path, emulator, edit, refused):
    state = mutant_stack(tmp_path, emulator, edit)
    key, version_id = upload_recording(state)

    invocation = encrypt(state, emulator, key, version_id)

    assert not invocation.succeeded, "the function did its work without the permission the template lost"
    assert "AccessDenied" in json.dumps(invocation.error)
    assert refused in json.dumps(invocation.error)
    assert intake_versions(state, key) == [version_id]  # nothing lost: the plaintext stays for the retry


def test_a_source_deleted_before_it_is_processed_is_skipped_because_the_role_may_list_the_intake(local_stack, emulator):
    key, version_id = upload_recording(local_stack)
    boto3.client("s3").delete_object(Bucket=local_stack.physical_id("IntakeBucket"), Key=key, VersionId=version_id)

    invocation = encrypt(local_stack, emulator, key, version_id)

    assert invocation.succeeded, invocation.error
    assert invocation.response["outcome"] == "skipped"


def test_without_list_bucket_a_deleted_source_is_a_403_and_its_message_would_be_retried_to_the_dead_letter_queue(
    tmp_path, emulator,
):
    state = mutant_stack(tmp_path, emulator, without_action("EncryptObjectFunctionRole", "SeeMissingIntakeSourcesAsMissing", "s3:ListBucket"))
    key, version_id = upload_recording(state)
    boto3.client("s3").delete_object(Bucket=state.physical_id("IntakeBucket"), Key=key, VersionId=version_id)

    invocation = encrypt(state, emulator, key, version_id)

    assert not invocation.succeeded
    assert "AccessDenied" in json.dumps(invocation.error) or "403" in json.dumps(invocation.error)
