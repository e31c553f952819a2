"""The backfill state machine: its definition is valid and wired to what the template grants."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

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


def test_results_are_written_where_the_role_may_write_and_no_data_class_matches(definition, machine, resources):
    writer = definition["States"][definition["StartAt"]]["ResultWriter"]["Parameters"]
    prefix = machine["DefinitionSubstitutions"]["ResultsPrefix"]
    assert writer["Prefix"] == prefix and not prefix.startswith(("connect/", "knowledge/"))
    statements = resources["BackfillStateMachineRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
    writes = [s for s in statements if "s3:PutObject" in s["Action"]]
    assert writes and all(prefix in json.dumps(s["Resource"]) for s in writes)
