"""The operator's view in the template: dashboard, alarms, and where they notify."""

from __future__ import annotations

import json
import re

import pytest

ALARMS = ("EncryptDeadLetterQueueAlarm", "EncryptErrorRateAlarm", "EncryptQueueAgeAlarm", "ExpiryNotRunAlarm",
          "ContactEventDeadLetterQueueAlarm", "SweepRetrievalsFailingAlarm", "SweepRetrievalsNotRunAlarm",
          "VaultObjectOverwrittenAlarm")


@pytest.fixture(scope="module")
def dashboard(resources):
    body, _ = resources["OperationsDashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    return json.loads(re.sub(r"\$\{[\w:]+\}", "x", body))


@pytest.mark.parametrize("alarm", ALARMS)
def test_every_alarm_notifies_the_alarm_topic(resources, alarm):
    properties = resources[alarm]["Properties"]
    assert {"Ref": "AlarmTopic"} in properties["AlarmActions"]


def test_the_alarm_email_is_a_parameter_and_optional(template, resources):
    assert template["Parameters"]["AlarmEmail"]["Default"] == ""
    subscription = resources["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail"
    assert subscription["Properties"]["Endpoint"] == {"Ref": "AlarmEmail"}


def test_the_expiry_alarm_fires_when_the_job_has_not_run_in_two_intervals(resources):
    alarm = resources["ExpiryNotRunAlarm"]["Properties"]
    assert alarm["MetricName"] == "Invocations" and alarm["EvaluationPeriods"] == 2
    assert alarm["ComparisonOperator"] == "LessThanThreshold" and alarm["TreatMissingData"] == "breaching"


def test_a_read_of_an_overwritten_vault_object_raises_the_tamper_alarm_on_its_first_occurrence(resources):
    alarm = resources["VaultObjectOverwrittenAlarm"]["Properties"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("Atrest", "VaultObjectOverwritten")
    assert alarm["Dimensions"] == [{"Name": "service", "Value": "atrest"}]
    assert alarm["Statistic"] == "Sum" and alarm["Threshold"] == 0 and alarm["EvaluationPeriods"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["TreatMissingData"] == "notBreaching"
    assert {"Ref": "AlarmTopic"} in alarm["OKActions"]


def test_the_dashboard_shows_what_the_runbook_talks_about(dashboard):
    shown = json.dumps(dashboard)
    for metric in ("ObjectsEncrypted", "BytesEncrypted", "EncryptFailures", "ApproximateNumberOfMessagesVisible",
                   "BranchKeysRotated", "KeyVersionsShredded", "KmsCalls", "Duration", "ReadsAllowed", "ReadsDenied",
                   "RetrievalsDeleted"):
        assert metric in shown, metric
    assert '"p50"' in shown and '"p99"' in shown


def test_the_dashboard_charts_every_outcome_of_an_audited_read(dashboard):
    # One metric per audit outcome (functions/read_object/app.py), and the tamper signal:
    # a read that found nothing or failed is as much the operator's business as a denial.
    shown = json.dumps(dashboard)
    for metric in ("ReadsAllowed", "ReadsDenied", "ReadsRefused", "ReadsNotFound", "ReadsFailed",
                   "VaultObjectOverwritten"):
        assert f'"{metric}"' in shown, metric


def test_dashboard_metrics_are_ones_the_functions_emit(dashboard):
    from pathlib import Path

    emitted = set()
    for app in Path(__file__).resolve().parents[2].glob("functions/*/app.py"):
        text = app.read_text()
        emitted |= set(re.findall(r'name="(\w+)"', text))
        # Names looked up from a table (e.g. ReadObject's metric per audit outcome).
        for table in re.findall(r"^_METRICS = \{(.*?)\}$", text, re.M | re.S):
            emitted |= set(re.findall(r'"(\w+)"', table))
    for widget in dashboard["widgets"]:
        namespace = name = None
        for metric in widget["properties"]["metrics"]:
            # CloudWatch shorthand: "." repeats the previous row's value, "..." all of them.
            if metric[0] != "...":
                namespace = namespace if metric[0] == "." else metric[0]
                name = name if metric[1] == "." else metric[1]
            if namespace == "Atrest":
                assert name in emitted, f"dashboard shows {name}, which no function emits"
