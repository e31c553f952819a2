"""Audit records changed after they were written: the original kept beside them
(atrest.storage.audit_changes), and how `atrest audit` shows both."""

from __future__ import annotations

from typing import Any

import pytest

from atrest.storage.audit import AuditOutcome, AuditRecord, Channel, attempts, summarize
from atrest.storage.audit_changes import REPLACED_MARK, AuditChange
from atrest_cli.commands.audit import summary_line


def started() -> AuditRecord:
    return AuditRecord(principal="arn:aws:sts::123456789012:assumed-role/QaReviewer/jane", channel=Channel.API,
                        outcome=AuditOutcome.REQUESTED, reason="complaint 4711", requested="contact:c-1",
                        at="2026-01-01T00:00:00.000Z", contact_id="c-1", deadline="2026-01-01T00:15:00.000Z",
                        record_id="5f0c")


def released() -> AuditRecord:
    return started().concluded(AuditOutcome.RELEASED)


def queried(*items: dict[str, Any]) -> list[AuditRecord]:
    """`items` as a Query returns them: in sort key order."""
    return attempts([AuditRecord.from_item(item) for item in sorted(items, key=lambda i: i["sk"]["S"])])


def forged(item: dict[str, Any]) -> dict[str, Any]:
    """What an unconditioned PutItem over `item` leaves: same keys, a harmless-looking story."""
    return {**item, "outcome": {"S": "DENIED"}, "reason": {"S": "nothing to see"}}


def change(event: str, old: dict[str, Any] | None, new: dict[str, Any] | None, sequence: str = "100") -> AuditChange:
    return AuditChange(event=event, old_item=old, new_item=new, sequence_number=sequence,
                       changed_at="2026-01-02T08:00:00.000Z")


def test_only_a_change_of_an_existing_record_is_kept():
    item = released().to_item()
    assert not change("INSERT", None, item).replaces_a_record
    # AWS writes no stream record for a PutItem that changes nothing; the emulator does.
    assert not change("MODIFY", item, dict(item)).replaces_a_record
    assert change("MODIFY", item, forged(item)).replaces_a_record
    assert change("REMOVE", item, None).replaces_a_record


def test_the_original_is_kept_under_its_own_key_marked_in_both_partitions():
    item = released().to_item()
    kept = change("MODIFY", item, forged(item), "4242").original()
    assert kept["pk"] == item["pk"]
    assert kept["sk"]["S"] == item["sk"]["S"] + REPLACED_MARK + "4242"
    assert kept["gsi1pk"] == item["gsi1pk"] and kept["gsi1sk"] == kept["sk"]
    assert kept["outcome"] == {"S": "RELEASED"} and kept["reason"] == {"S": "complaint 4711"}
    assert (kept["replaced_by"], kept["replaced_sk"]) == ({"S": "MODIFY"}, item["sk"])


def test_a_change_of_a_kept_original_does_not_grow_its_key():
    item = released().to_item()
    kept = change("MODIFY", item, forged(item), "1").original()
    again = change("MODIFY", kept, forged(kept), "2").original()
    assert again["sk"]["S"] == item["sk"]["S"] + REPLACED_MARK + "2"


def test_an_old_image_without_the_keys_is_a_clear_error():
    with pytest.raises(Exception, match="NEW_AND_OLD_IMAGES"):
        change("MODIFY", {"pk": {"S": "day#x"}}, None).original()


def test_audit_shows_the_original_beside_the_changed_record_and_warns():
    item = released().to_item()
    kept = change("MODIFY", item, forged(item)).original()
    rows = queried(started().to_item(), forged(item), kept)
    current, original = rows
    assert current.outcome is AuditOutcome.DENIED and "changed after it was written" in current.state()
    assert original.outcome is AuditOutcome.RELEASED and original.reason == "complaint 4711"
    assert original.state().startswith("RELEASED (original; changed 2026-01-02 08:00:00")
    summary = summarize(rows)
    assert summary["attempts"] == 1 and summary["denied"] == 1 and summary["changed_records"] == 1
    assert summary["released"] == 0  # the original is shown, not counted as another attempt
    assert "WARNING: 1 record(s) were changed or removed" in summary_line(summary, "since x")


def test_a_removed_record_is_shown_from_its_original():
    item = released().to_item()
    current, original = queried(started().to_item(), change("REMOVE", item, None).original())
    assert current.state() == "no outcome (crashed?)" and "(original; removed" in original.state()


def test_an_item_that_is_no_atrest_record_is_shown_not_fatal():
    planted = {"pk": {"S": "day#2026-01-01"}, "sk": {"S": "2026-01-01T00:00:01.000Z#x"}, "outcome": {"S": "BOGUS"}}
    good = released().to_item()
    rows = attempts([AuditRecord.from_item(planted), AuditRecord.from_item(good)])
    assert [r.outcome for r in rows] == [AuditOutcome.UNREADABLE, AuditOutcome.RELEASED]
    assert "not an atrest audit record" in (rows[0].detail or "")
    summary = summarize(rows)
    assert summary["unreadable"] == 1 and summary["released"] == 1
    assert "1 item(s) are not atrest records" in summary_line(summary, "since x")


def test_an_unchanged_trail_prints_no_warning():
    rows = attempts([AuditRecord.from_item(released().to_item())])
    assert "WARNING" not in summary_line(summarize(rows), "since x")
