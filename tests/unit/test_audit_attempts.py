"""One attempt, one row: how `atrest audit` folds a REQUESTED item and its outcome item."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from atrest.storage.audit import AuditOutcome, AuditRecord, Channel, attempts, summarize


def requested(deadline: str = "2026-01-01T00:15:00.000Z") -> AuditRecord:
    return AuditRecord(principal="arn:aws:sts::123456789012:assumed-role/QaReviewer/jane", channel=Channel.API,
                       outcome=AuditOutcome.REQUESTED, reason="r", requested="object:k", at="2026-01-01T00:00:00.000Z",
                       deadline=deadline)


def stored(record: AuditRecord) -> AuditRecord:
    return AuditRecord.from_item(record.to_item())


def test_a_requested_item_and_its_outcome_are_one_row_with_the_outcome():
    start = requested()
    outcome = start.concluded(AuditOutcome.RELEASED)
    assert outcome.to_item()["sk"]["S"] == start.sort_key + "#outcome"
    (row,) = attempts([stored(start), stored(outcome)])
    assert row.outcome is AuditOutcome.RELEASED and row.decided_at and row.sort_key == start.sort_key


def test_a_requested_item_without_outcome_is_in_progress_then_no_outcome_after_its_deadline():
    (row,) = attempts([stored(requested())])
    assert row.state(datetime(2026, 1, 1, 0, 10, tzinfo=timezone.utc)) == "in progress"
    assert row.state(datetime(2026, 1, 1, 0, 16, tzinfo=timezone.utc)) == "no outcome (crashed?)"
    summary = summarize([row], datetime(2026, 1, 1, 0, 16, tzinfo=timezone.utc))
    assert summary["attempts"] == 1 and summary["no_outcome"] == 1 and summary["released"] == 0


@pytest.mark.parametrize("outcome", [AuditOutcome.REFUSED, AuditOutcome.DENIED, AuditOutcome.NOT_FOUND, AuditOutcome.FAILED])
def test_summaries_count_each_final_outcome_once(outcome):
    start = requested()
    rows = attempts([stored(start), stored(start.concluded(outcome))])
    assert summarize(rows)[outcome.value.lower()] == 1 and summarize(rows)["attempts"] == 1


def test_records_written_before_outcomes_existed_are_counted_apart():
    legacy = AuditRecord(principal="p", channel=Channel.CLI, outcome=AuditOutcome.ALLOWED, reason="r", requested="x")
    assert summarize([stored(legacy)])["allowed_before_outcomes"] == 1
