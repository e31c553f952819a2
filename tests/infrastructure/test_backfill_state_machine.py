"""The backfill state machine: its definition is valid and wired to what the template grants."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from .conftest import as_list

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def machine(resources):
    return resources["BackfillStateMachine"]["Properties"]


@pytest.fixture(scope="module")
def definition(machine):
    text = (ROOT / machine["DefinitionUri"]).read_text()
    names = set(re.findall(r"\$\{(\w+)\}", text))
    missing = names - set(machine["DefinitionSubstitutions"])
    assert not missing, f"definition uses substitutions the template does not define: {missing}"
    for name in names:  # numbers stay numbers; anything else becomes a plausible string
        value = machine["DefinitionSubstitutions"][name]
        text = text.replace("${%s}" % name, str(value) if isinstance(value, int) else ("7" if isinstance(value, dict) else str(value)))
    return json.loads(text)


def test_the_definition_is_a_distributed_map_over_the_bucket_listing(definition):
    state = definition["States"][definition["StartAt"]]
    assert state["Type"] == "Map"
    assert state["ItemReader"]["Resource"] == "arn:aws:states:::s3:listObjectsV2"
    assert state["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert "MaxConcurrency" in state and "ToleratedFailurePercentage" in state


def test_batches_go_to_the_encrypt_function_with_retries(definition, machine):
    processor = definition["States"][definition["StartAt"]]["ItemProcessor"]
    task = processor["States"][processor["StartAt"]]
    assert task["Resource"] == "arn:aws:states:::lambda:invoke"
    assert machine["DefinitionSubstitutions"]["EncryptObjectFunctionArn"] == {"Fn::GetAtt": ["EncryptObjectFunction", "Arn"]}
    assert any("Lambda.TooManyRequestsException" in retry["ErrorEquals"] for retry in task["Retry"])


def test_concurrency_and_failure_threshold_are_parameters(machine):
    substitutions = machine["DefinitionSubstitutions"]
    assert substitutions["MaxConcurrency"] == {"Ref": "BackfillMaxConcurrency"}
    assert substitutions["ToleratedFailurePercentage"] == {"Ref": "BackfillToleratedFailurePercentage"}


def _role_statements(resources):
    return resources["BackfillStateMachineRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]


def test_results_are_written_where_the_role_may_write_and_no_data_class_matches(definition, machine, resources):
    writer = definition["States"][definition["StartAt"]]["ResultWriter"]["Parameters"]
    prefix = machine["DefinitionSubstitutions"]["ResultsPrefix"]
    assert writer["Prefix"] == prefix and not prefix.startswith(("connect/", "knowledge/"))
    writes = [s for s in _role_statements(resources) if "s3:PutObject" in as_list(s["Action"])]
    assert writes and all(prefix in json.dumps(s["Resource"]) for s in writes)


def test_results_go_to_their_own_bucket_not_the_intake_where_every_object_is_encrypted(machine, resources):
    """ObjectCreatedRule takes every object of the intake bucket: results written there go
    through EncryptObject, and they stop the bucket's deletion."""
    assert machine["DefinitionSubstitutions"]["ResultsBucket"] == {"Ref": "BackfillResultsBucket"}
    writes = [s for s in _role_statements(resources) if "s3:PutObject" in as_list(s["Action"])]
    assert writes and all("${BackfillResultsBucket.Arn}/" in json.dumps(s["Resource"]) for s in writes)
    assert not [s for s in _role_statements(resources)
                if "IntakeBucket" in json.dumps(s["Resource"]) and set(as_list(s["Action"])) - {"s3:ListBucket"}], (
        "the backfill may only list the intake bucket"
    )


def test_the_results_bucket_is_private_encrypted_and_expires_results(resources, template):
    bucket = resources["BackfillResultsBucket"]
    assert bucket["DeletionPolicy"] == "Delete"
    props = bucket["Properties"]
    assert props["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True, "BlockPublicPolicy": True, "IgnorePublicAcls": True, "RestrictPublicBuckets": True,
    }
    (sse,) = props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert props["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    rules = props["LifecycleConfiguration"]["Rules"]
    assert any(r["Status"] == "Enabled" and 0 < r.get("ExpirationInDays", 0) <= 90 for r in rules), rules
    assert template["Outputs"]["BackfillResultsBucketName"]["Value"] == {"Ref": "BackfillResultsBucket"}


def test_the_traced_state_machine_may_send_traces(machine, resources):
    assert machine["Tracing"] == {"Enabled": True}
    xray = {a for s in _role_statements(resources) if s["Resource"] == "*" for a in as_list(s["Action"])}
    assert xray >= {"xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules",
                    "xray:GetSamplingTargets"}, "tracing is on but the role may not send traces"

