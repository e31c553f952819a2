"""What SAM generates from template.yaml (aws-sam-translator, in-process): the resources
CloudFormation really creates, judged where SAM's translation could change the meaning
of what the template says."""

from __future__ import annotations

from typing import Any

import pytest

from .conftest import Stack


def _generated_rule(translated: dict[str, Any], source: str) -> dict[str, Any]:
    """The AWS::Events::Rule SAM generated for a Schedule event of `source`."""
    rules = {
        logical_id: resource for logical_id, resource in translated["Resources"].items()
        if resource["Type"] == "AWS::Events::Rule" and logical_id.startswith(source)
    }
    assert len(rules) == 1, f"expected one rule generated for {source}, found {sorted(rules)}"
    return next(iter(rules.values()))


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [("", "DISABLED"), ("rate(1 day)", "ENABLED"), ("cron(0 3 ? * SUN *)", "ENABLED")],
)
def test_the_backfill_runs_on_a_schedule_only_when_backfill_schedule_is_set(translated_template, schedule, expected):
    """An empty BackfillSchedule must leave the generated rule DISABLED. (SAM turns any
    `Enabled` that is not literally false, an !If object included, into State ENABLED.)"""
    rule = _generated_rule(translated_template, "BackfillStateMachine")
    state = rule["Properties"].get("State", "ENABLED")  # EventBridge's default when State is absent
    rendered = Stack.with_defaults(translated_template, BackfillSchedule=schedule).resolve(state)
    assert rendered == expected, (
        f"BackfillSchedule={schedule!r}: the generated rule's State {state!r} renders as {rendered!r}, not {expected}"
    )


def test_the_backfill_rule_state_check_sees_what_sam_makes_of_enabled(translated_template):
    """The check above would catch the old `Enabled: !If [...]`: SAM makes that ENABLED."""
    from atrest_cli.local.template import translate_sam

    template = {
        "Transform": "AWS::Serverless-2016-10-31",
        "Parameters": {"BackfillSchedule": {"Type": "String", "Default": ""}},
        "Conditions": {"HasBackfillSchedule": {"Fn::Not": [{"Fn::Equals": [{"Ref": "BackfillSchedule"}, ""]}]}},
        "Resources": {"Machine": {"Type": "AWS::Serverless::StateMachine", "Properties": {
            "Definition": {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}},
            "Policies": [],
            "Events": {"Scheduled": {"Type": "Schedule", "Properties": {
                "Schedule": "rate(1 day)", "Enabled": {"Fn::If": ["HasBackfillSchedule", True, False]}}}},
        }}},
    }
    translated, _ = translate_sam(template, stack_name="atrest", region="us-east-1", account_id="123456789012")
    state = _generated_rule(translated, "Machine")["Properties"].get("State", "ENABLED")
    assert Stack.with_defaults(translated, BackfillSchedule="").resolve(state) == "ENABLED"
