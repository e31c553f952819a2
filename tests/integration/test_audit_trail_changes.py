"""A concluded audit record replaced by an unconditioned PutItem (finding 4b of the key
review): the table's stream takes the change to WatchAuditTrailFunction, run by the local
runner with its own role, which keeps the original beside it and counts it; `atrest
audit` shows both, marked, and warns.

The PutItem is sent with the ReadObject role's credentials: a role that may append to the
trail (and so, DynamoDB having no condition key for a ConditionExpression, may replace).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from atrest.storage.audit import AuditOutcome, AuditRecord, AuditTrail, Channel
from atrest_cli.local.runner import Runner

from roles import role_clients

pytestmark = pytest.mark.local_only("runs WatchAuditTrailFunction in this process (local runner) and writes with a role's credentials minted by the emulator")

EVENTS = Path(__file__).resolve().parents[2] / "events"


@pytest.fixture
def function_log() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def watch(local_stack: Any, function_log: io.StringIO) -> Runner:
    """The stream's consumer as Lambda runs it: every change since the last test's."""
    runner = Runner(local_stack, functions=["WatchAuditTrailFunction"], retry_delay_seconds=1, function_stdout=function_log)
    runner.drain(timeout=60)
    function_log.seek(0)
    function_log.truncate()
    return runner


def reader_role_dynamodb(state: Any) -> Any:
    """DynamoDB with the ReadObject role's credentials (the emulator enforces its policies)."""
    return role_clients(state, "ReadObjectFunctionRoleArn", "tamper").dynamodb


def concluded_read(trail: AuditTrail, reason: str) -> AuditRecord:
    start = AuditRecord(principal="arn:aws:sts::123456789012:assumed-role/QaReviewer/jane", channel=Channel.API,
                        outcome=AuditOutcome.REQUESTED, reason=reason, requested="contact:x",
                        contact_id=f"changed-{uuid.uuid4()}")
    return trail.conclude(trail.begin(start, timedelta(minutes=15)), AuditOutcome.RELEASED)


def metric_values(log: str, name: str) -> list[float]:
    """The values of metric `name` in the EMF documents Powertools printed."""
    values = []
    for line in log.splitlines():
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and name in document and "_aws" in document:
            values += document[name] if isinstance(document[name], list) else [document[name]]
    return values


def test_appending_reads_changes_nothing(trail, watch, function_log):
    released = concluded_read(trail, "an ordinary read")
    stats = watch.drain(timeout=60)
    assert stats.failed_invocations == 0
    assert [r.state() for r in trail.for_contact(released.contact_id)] == ["RELEASED"]
    assert metric_values(function_log.getvalue(), "AuditRecordsChanged") == []


def test_a_replaced_record_keeps_its_original_and_alarms(trail, watch, function_log, local_stack, settings):
    released = concluded_read(trail, "complaint 4711")
    replaced = released.to_item()
    forged = {**replaced, "outcome": {"S": "DENIED"}, "reason": {"S": "nothing to see"}}
    # The gap itself: IAM lets the reader role replace a record (no condition key forces a
    # ConditionExpression; the table policy denies only UpdateItem, DeleteItem and the like).
    reader_role_dynamodb(local_stack).put_item(TableName=settings.audit_table, Item=forged)

    stats = watch.drain(timeout=60)
    assert stats.failed_invocations == 0, [i.error for i in stats.errors]

    current, original = trail.for_contact(released.contact_id)
    assert current.outcome is AuditOutcome.DENIED and "changed after it was written" in current.state()
    assert original.outcome is AuditOutcome.RELEASED and original.reason == "complaint 4711"
    assert original.replaced_by == "MODIFY" and original.replaced_sk == replaced["sk"]["S"]
    assert metric_values(function_log.getvalue(), "AuditRecordsChanged") == [1.0]
    assert "complaint 4711" not in function_log.getvalue() and "nothing to see" not in function_log.getvalue()

    # Replaced again, the kept original too: each change keeps what it replaced.
    reader_role_dynamodb(local_stack).put_item(TableName=settings.audit_table,
                                               Item={**forged, "reason": {"S": "changed twice"}})
    watch.drain(timeout=60)
    rows = trail.for_contact(released.contact_id)
    assert sorted(r.reason for r in rows) == ["changed twice", "complaint 4711", "nothing to see"]
    kept = [r for r in rows if r.is_kept_original]
    assert sorted(r.reason for r in kept) == ["complaint 4711", "nothing to see"]
    # Both keep the first record's sort key plus their own mark: keys do not grow per change.
    assert {r.replaced_sk for r in kept} == {replaced["sk"]["S"]}
    assert metric_values(function_log.getvalue(), "AuditRecordsChanged") == [1.0, 1.0]


def test_atrest_audit_marks_both_and_tells_the_operator_what_to_do(trail, watch, local_stack, settings, cli_environment,
                                                                    tmp_path):
    released = concluded_read(trail, "legal hold 12")
    reader_role_dynamodb(local_stack).put_item(TableName=settings.audit_table,
                                               Item={**released.to_item(), "reason": {"S": "routine"}})
    watch.drain(timeout=60)
    shown = subprocess.run([sys.executable, "-m", "atrest_cli.main", "audit", "--contact", released.contact_id],
                           env=cli_environment, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert "RELEASED (changed after it was written; original kept)" in shown.stdout
    assert "RELEASED (original; changed" in shown.stdout and "legal hold 12" in shown.stdout
    assert "1 read attempts" in shown.stdout
    assert "WARNING: 1 record(s) were changed or removed after they were written" in shown.stdout
    assert "CloudTrail" in shown.stdout


def test_the_sample_event_keeps_its_original_once(watch, trail):
    event = json.loads((EVENTS / "audit_table_stream-modify.json").read_text())
    old = event["Records"][0]["dynamodb"]["OldImage"]
    first = watch.invoke("WatchAuditTrailFunction", event)
    assert first.succeeded and first.response == {"batchItemFailures": []}
    # Lambda delivers a stream record at least once: a redelivery finds the original kept.
    again = watch.invoke("WatchAuditTrailFunction", event)
    assert again.succeeded and again.response == {"batchItemFailures": []}
    rows = trail.for_contact(old["contact_id"]["S"])
    kept = [r for r in rows if r.is_kept_original]
    assert [(r.outcome, r.reason) for r in kept] == [(AuditOutcome.RELEASED, "QA review of complaint 4711")]
