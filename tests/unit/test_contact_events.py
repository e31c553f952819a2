"""Amazon Connect contact events, in both spellings seen in the wild, become ContactEvents;
anything else is refused naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atrest.core.errors import MalformedEventError
from atrest.events.shapes import contact_event_from_eventbridge

REPO = Path(__file__).resolve().parents[2]


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", sorted(REPO.glob("events/connect-contact-*.json")) + [
    REPO / "tests" / "fixtures" / "connect-contact-event.disconnected.json"], ids=lambda p: p.name)
def test_every_sample_contact_event_names_its_instance_and_contact(path):
    event = load(path)
    contact = contact_event_from_eventbridge(event)
    arn = event["detail"].get("instanceArn") or event["detail"]["instanceARN"]
    assert contact.instance_id == arn.rsplit("/", 1)[1]
    assert contact.contact_id == event["detail"]["contactId"]
    assert contact.event_type == event["detail"]["eventType"]
    assert contact.account_id == event["account"]


def test_the_documentation_spelling_instanceARN_is_accepted_like_the_real_one():
    event = load(REPO / "events" / "connect-contact-disconnected-doc-spelling.json")
    assert "instanceARN" in event["detail"]
    assert contact_event_from_eventbridge(event).instance_id == "f75946c0-bc38-4252-8174-468f6ac2543d"


@pytest.mark.parametrize(("change", "named"), [
    (lambda e: e.update(source="aws.s3"), "aws.connect"),
    (lambda e: e["detail"].pop("instanceArn"), "instanceArn"),
    (lambda e: e["detail"].update(instanceArn="arn:aws:s3:::bucket"), "instanceArn"),
    (lambda e: e["detail"].pop("contactId"), "contactId"),
    (lambda e: e.update(detail="nope"), "detail"),
])
def test_a_malformed_contact_event_is_refused_naming_what_is_wrong(change, named):
    event = load(REPO / "events" / "connect-contact-initiated.json")
    change(event)
    with pytest.raises(MalformedEventError, match=named):
        contact_event_from_eventbridge(event)
