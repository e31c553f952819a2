"""ReadObject's request body, `atrest audit --since`, and the audit record's item layout."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest

from atrest.storage.audit import (
    MAX_REASON_LENGTH,
    AuditOutcome,
    AuditRecord,
    Channel,
    check_reason,
    parse_since,
    printable,
)
from atrest.core.errors import AtrestError
from atrest.events.read_requests import BadReadRequest, parse_read_request
from atrest.storage.vault_keys import VaultKey

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)


def body(**fields) -> str:
    return json.dumps(fields)


def test_a_contact_request_with_a_reason():
    request = parse_read_request(body(reason="QA review", contact_id="c0ffee-1", data_class="call-recording"))
    assert (request.reason, request.contact_id, request.data_class) == ("QA review", "c0ffee-1", "call-recording")
    assert request.requested == "contact:c0ffee-1/call-recording"


def test_an_object_request_keeps_the_reason_as_given():
    key = VaultKey.example("call-recording")
    request = parse_read_request(body(reason="  dispute #42\n", object=key))
    assert request.reason == "  dispute #42\n" and request.requested == f"object:{key}"


def test_a_base64_body_is_read_like_a_plain_one():
    encoded = base64.b64encode(body(reason="r", contact_id="c1").encode()).decode()
    assert parse_read_request(encoded, is_base64=True).contact_id == "c1"


@pytest.mark.parametrize(("raw", "says"), [
    (None, "send a JSON body"),
    ("", "send a JSON body"),
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    (body(contact_id="c1"), '"reason" is required'),
    (body(reason="   ", contact_id="c1"), '"reason" is required'),
    (body(reason=7, contact_id="c1"), '"reason" is required'),
    (body(reason="x" * (MAX_REASON_LENGTH + 1), contact_id="c1"), "longer than"),
    (body(reason="r"), "exactly one of"),
    (body(reason="r", contact_id="c1", object="k"), "exactly one of"),
    (body(reason="r", contact_id="c1/../x"), "contact id"),
    (body(reason="r", contact_id="c1", data_class="Call Recording"), "data class name"),
    (body(reason="r", object="k", data_class="call-recording"), "narrows"),
    (body(reason="r", object="s3://vault/k"), "vault key"),
    (body(reason="r", contact_id="c1", expires_in=3600), "unknown field"),
    ("x" * 20000, "larger than"),
])
def test_a_malformed_request_is_refused_with_what_to_send(raw, says):
    with pytest.raises(BadReadRequest, match=None) as refused:
        parse_read_request(raw)
    assert says in str(refused.value)


@pytest.mark.parametrize(("text", "expected"), [
    ("30m", NOW - timedelta(minutes=30)),
    ("24h", NOW - timedelta(hours=24)),
    ("7d", NOW - timedelta(days=7)),
    ("2026-03-01", datetime(2026, 3, 1, tzinfo=timezone.utc)),
    ("2026-03-09T08:30Z", datetime(2026, 3, 9, 8, 30, tzinfo=timezone.utc)),
    ("2026-03-09T10:30+02:00", datetime(2026, 3, 9, 8, 30, tzinfo=timezone.utc)),
])
def test_since_takes_spans_and_iso_times(text, expected):
    assert parse_since(text, now=lambda: NOW) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("yesterday", "is not a span"),
    ("2026-04-01", "in the future"),
    ("400d", "at most 366 days"),
])
def test_since_says_what_it_accepts(text, says):
    with pytest.raises(AtrestError) as refused:
        parse_since(text, now=lambda: NOW)
    assert says in str(refused.value)


def test_the_cli_reason_is_required_and_bounded():
    assert check_reason("ticket 7") == "ticket 7"
    for bad in (None, "", "  "):
        with pytest.raises(AtrestError, match="reason is required"):
            check_reason(bad)
    with pytest.raises(AtrestError, match="longer than"):
        check_reason("x" * (MAX_REASON_LENGTH + 1))


def test_an_audit_item_is_keyed_by_day_and_time_and_indexed_by_contact():
    record = AuditRecord(principal="arn:aws:sts::123456789012:assumed-role/Qa/jane", channel=Channel.API,
                         outcome=AuditOutcome.ALLOWED, reason="QA", requested="contact:c1", contact_id="c1",
                         vault_key=VaultKey.example("call-recording"), at="2026-03-10T12:00:00.000Z", record_id="abc")
    item = record.to_item()
    assert item["pk"] == {"S": "day#2026-03-10"} and item["sk"] == {"S": "2026-03-10T12:00:00.000Z#abc"}
    assert item["gsi1pk"] == {"S": "contact#c1"} and item["gsi1sk"] == item["sk"]
    assert AuditRecord.from_item(item) == record
    no_contact = AuditRecord(principal="p", channel=Channel.CLI, outcome=AuditOutcome.DENIED, reason="r",
                             requested="object:k").to_item()
    assert "gsi1pk" not in no_contact


def test_reasons_are_shown_without_terminal_control_characters():
    assert printable("ok\x1b[2Jgone\n", 40) == "ok?[2Jgone?"
    assert printable("x" * 60, 10) == "xxxxxxx..."
