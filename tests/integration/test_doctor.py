"""`atrest doctor` against the local stack: what a user sees after their first deploy.

The command runs as an operator runs it (a subprocess reading the stack's state file); the
events it causes are processed by a `Runner` in this process, as `atrest local up` does.
The alarm step is accepted as ok or as "skipped: alarm ... not found": the emulator holds
alarms only when local provisioning creates them. Every other step is asserted strictly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from atrest.storage.audit import AuditTrail
from atrest.storage.record_keys import object_key

PROCESSED_BY_THE_LOCAL_RUNNER = pytest.mark.local_only("the doctor's upload is processed (or, on purpose, not) by the local runner on an emptied stack")

STEPS = ["stack", "encrypt", "decrypt", "alarm", "cleanup"]


def doctor(stack, tmp_path, *args):
    state_file = tmp_path / "local-stack.json"
    state_file.write_text(json.dumps(stack.to_json()))
    # Read the stack as an operator would: from its state file, not from ATREST_* variables.
    env = {name: value for name, value in os.environ.items() if not name.startswith("ATREST_")}
    return subprocess.run([sys.executable, "-m", "atrest_cli.main", "doctor", "--state-file", str(state_file), *args],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)


def versions_of(bucket, key):
    answer = boto3.client("s3").list_object_versions(Bucket=bucket, Prefix=key)
    return answer.get("Versions", []) + answer.get("DeleteMarkers", [])


def assert_alarm_tested_or_skipped_as_not_found(step):
    """Either outcome, depending on whether local provisioning created the stack's alarms."""
    assert step["status"] in ("ok", "warning"), step
    if step["summary"].startswith("skipped: "):
        assert step["status"] == "warning" and step["summary"].startswith("skipped: alarm ") and "not found" in step["summary"]
        return
    alarm = step["details"]["alarm"]
    assert step["summary"].startswith(f"set {alarm} to ALARM (reason 'atrest doctor test')"), step
    # Nothing evaluates alarms locally, so doctor puts the alarm back as it found it.
    state = boto3.client("cloudwatch").describe_alarms(AlarmNames=[alarm])["MetricAlarms"][0]
    assert state["StateValue"] == step["details"]["restored_to"] != "ALARM"
    assert state["StateReason"].startswith("atrest doctor test: restored")


@PROCESSED_BY_THE_LOCAL_RUNNER
def test_doctor_passes_every_step_on_a_healthy_stack_audits_its_read_and_leaves_no_smoke_test_data(
        settings, clean_stack, local_runner, tmp_path):
    started = datetime.now(timezone.utc) - timedelta(seconds=5)
    local_runner.start()

    result = doctor(clean_stack, tmp_path, "--json", "--timeout", "60")

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    steps = {step["name"]: step for step in report["steps"]}
    assert [step["name"] for step in report["steps"]] == STEPS
    for name in ("stack", "encrypt", "decrypt", "cleanup"):
        assert steps[name]["status"] == "ok", steps[name]
    assert_alarm_tested_or_skipped_as_not_found(steps["alarm"])
    assert report["passed"] is True

    smoke = report["smoke_object"]
    assert smoke["data_class"] == "knowledge-document" and smoke["decrypted"] and smoke["source_gone"]
    intake_key = smoke["intake"].split("/", 3)[3]
    vault_key = smoke["vault"].split("/", 3)[3]
    assert intake_key.startswith(f"{settings.knowledge_prefix}atrest-doctor/")

    reads = [r for r in AuditTrail(boto3.client("dynamodb"), settings.audit_table).since(started)
             if r.vault_key == vault_key]
    assert [(r.outcome.value, r.channel.value, r.reason) for r in reads] == [("RELEASED", "cli", "atrest doctor smoke test")]

    assert versions_of(settings.intake_bucket, intake_key) == []
    assert versions_of(settings.vault_bucket, vault_key) == []
    assert "Item" not in boto3.client("dynamodb").get_item(
        TableName=settings.metadata_table, Key=object_key(vault_key))


@PROCESSED_BY_THE_LOCAL_RUNNER
def test_doctor_keeps_the_vault_object_and_record_with_keep(settings, clean_stack, local_runner, tmp_path):
    local_runner.start()

    result = doctor(clean_stack, tmp_path, "--json", "--timeout", "60", "--keep")

    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    cleanup = report["steps"][-1]
    assert cleanup["status"] == "ok" and cleanup["summary"].startswith("kept (--keep)")
    vault_key = report["smoke_object"]["vault"].split("/", 3)[3]
    assert len(versions_of(settings.vault_bucket, vault_key)) == 1
    assert "Item" in boto3.client("dynamodb").get_item(
        TableName=settings.metadata_table, Key=object_key(vault_key))


@PROCESSED_BY_THE_LOCAL_RUNNER
def test_doctor_fails_naming_the_dead_letter_queue_and_logs_when_nothing_processes_the_upload(
        settings, clean_stack, tmp_path):
    # No runner: the event waits in EncryptQueue, as it would with a broken event source mapping.
    result = doctor(clean_stack, tmp_path, "--timeout", "3")

    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.splitlines()
    by_step = {line.split()[1]: line for line in lines if line.split()[:1] != ["doctor:"]}
    assert list(by_step) == STEPS
    assert by_step["stack"].startswith("ok ")
    encrypt = by_step["encrypt"]
    assert encrypt.startswith("FAILED ") and "no record" in encrypt and "after 3 s" in encrypt
    assert "atrest dlq list" in encrypt and "logs" in encrypt and "--timeout" in encrypt
    assert by_step["decrypt"].startswith("skipped ")
    assert by_step["alarm"].split()[0] in ("ok", "warning")
    assert by_step["cleanup"].startswith("ok ") and "(plaintext)" in by_step["cleanup"]
    assert lines[-1] == "doctor: 2 step(s) did not pass"
    assert "waiting up to 3 s" in result.stderr  # progress while it polls
    # The plaintext it uploaded is not left behind for the pipeline to find later.
    leftovers = boto3.client("s3").list_object_versions(
        Bucket=settings.intake_bucket, Prefix=f"{settings.knowledge_prefix}atrest-doctor/")
    assert leftovers.get("Versions", []) == []


class _AwsAlarms:
    """CloudWatch and SNS as AWS answers after SetAlarmState (the emulator runs no alarm actions)."""

    def __init__(self, history, subscriptions):
        self.history, self.subscriptions, self.set = history, subscriptions, []

    def client(self, service):
        return self

    def describe_alarms(self, AlarmNames):
        return {"MetricAlarms": [{"AlarmName": AlarmNames[0], "StateValue": "OK",
                                  "AlarmActions": ["arn:aws:sns:us-east-1:123456789012:atrest-AlarmTopic-X"]}]}

    def set_alarm_state(self, **request):
        self.set.append(request)

    def describe_alarm_history(self, **_request):
        return {"AlarmHistoryItems": [{"HistorySummary": self.history}] if self.history else []}

    def list_subscriptions_by_topic(self, TopicArn):
        return {"Subscriptions": [{"SubscriptionArn": arn} for arn in self.subscriptions]}


def _alarm_step_on_aws(settings, aws):
    from atrest_cli.operations.doctor import DoctorContext, send_test_alarm

    ctx = DoctorContext(settings, {}, aws, decrypt=None, physical_id=lambda logical_id: f"atrest-{logical_id}-X",
                        on_aws=True, sleep=lambda _seconds: None)
    return send_test_alarm(ctx, confirm_publish_seconds=0)


def test_on_aws_an_alarm_cloudwatch_could_not_publish_fails_naming_the_topic_key_as_the_cause(settings):
    aws = _AwsAlarms("Failed to execute action arn:aws:sns:us-east-1:123456789012:atrest-AlarmTopic-X. "
                     "Received error: 'CloudWatch Alarms does not have authorization to access the SNS topic "
                     "encryption key.'", ["arn:aws:sns:...:sub"])

    step = _alarm_step_on_aws(settings, aws)

    assert step.status.value == "FAILED"
    assert "could not notify" in step.summary and "cloudwatch.amazonaws.com" in step.next_step
    assert aws.set == [{"AlarmName": "atrest-EncryptDeadLetterQueueAlarm-X", "StateValue": "ALARM",
                        "StateReason": "atrest doctor test"}]  # on AWS the alarm is left to CloudWatch's evaluation


def test_on_aws_a_published_alarm_passes_and_asks_the_user_to_confirm_the_email(settings):
    aws = _AwsAlarms("Successfully executed action arn:aws:sns:us-east-1:123456789012:atrest-AlarmTopic-X",
                     ["arn:aws:sns:...:sub"])

    step = _alarm_step_on_aws(settings, aws)

    assert step.status.value == "ok", step
    assert "confirm the email" in step.summary and "returns to OK by itself" in step.summary


def test_on_aws_an_alarm_topic_with_only_an_unconfirmed_subscription_is_a_warning_saying_to_confirm_it(settings):
    step = _alarm_step_on_aws(settings, _AwsAlarms("Successfully executed action x", ["PendingConfirmation"]))

    assert step.status.value == "warning" and "not confirmed" in step.summary
    assert "Subscription Confirmation" in step.next_step
