"""`atrest keys ...` and `atrest forget-instance`: what an operator sees and may do."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

from atrest.core.clock import ManualClock
from atrest.events.shapes import contact_event_from_eventbridge
from atrest.flows.expire_keys import KeyLifecycle
from atrest.flows.protect_contact import ContactProtector
from atrest_cli.demos.samples import contact_event

FAKES_TIME_ON_AN_EMPTIED_STACK = pytest.mark.local_only("rotates under a fake clock (ManualClock) on an emptied stack; `keys expire --now` takes every key of the stack")


@pytest.fixture
def instance_with_two_versions(settings, clean_stack):
    """An instance whose first version protects one contact and was rotated an hour ago
    (long enough for every writer's cache to have let the old version go)."""
    instance = str(uuid.uuid4())
    event = contact_event(settings.account_id, "us-east-1", instance, str(uuid.uuid4()))
    first = ContactProtector.from_settings(settings).protect(contact_event_from_eventbridge(event)).branch_key_version
    an_hour_ago = ManualClock(datetime.now(timezone.utc) - timedelta(hours=1))
    KeyLifecycle.from_settings(settings, clock=an_hour_ago).rotate(f"instance/{instance}")
    return instance, first


@pytest.fixture
def instance_rotated_just_now(settings, clean_stack):
    instance = str(uuid.uuid4())
    event = contact_event(settings.account_id, "us-east-1", instance, str(uuid.uuid4()))
    first = ContactProtector.from_settings(settings).protect(contact_event_from_eventbridge(event)).branch_key_version
    KeyLifecycle.from_settings(settings).rotate(f"instance/{instance}")
    return instance, first


@FAKES_TIME_ON_AN_EMPTIED_STACK
def test_keys_list_shows_each_version_with_state_created_expires_and_objects(atrest, instance_with_two_versions):
    instance, first = instance_with_two_versions

    code, out, _ = atrest("keys", "list", "--scope", f"instance/{instance}")

    assert code == 0
    header, *rows = out.splitlines()
    assert header.split() == ["scope", "version", "state", "created", "expires", "objects"]
    (old,) = [row for row in rows if first in row]
    assert old.split()[2] == "RETIRED" and old.split()[-1] == "1"
    (new,) = [row for row in rows if first not in row]
    assert new.split()[2] == "ACTIVE" and new.split()[-1] == "0"


@FAKES_TIME_ON_AN_EMPTIED_STACK
def test_keys_shred_without_yes_shows_what_would_become_unreadable_and_shreds_nothing(atrest, instance_with_two_versions):
    instance, first = instance_with_two_versions

    code, out, _ = atrest("keys", "shred", f"instance/{instance}")

    assert code == 1
    assert f"{first}  1 object(s)" in out and "--yes" in out
    assert "RETIRED" in atrest("keys", "list", "--scope", f"instance/{instance}")[1]


@FAKES_TIME_ON_AN_EMPTIED_STACK
def test_keys_shred_with_yes_shreds_the_retired_version_and_the_list_says_when(atrest, instance_with_two_versions):
    instance, first = instance_with_two_versions

    code, out, _ = atrest("keys", "shred", f"instance/{instance}", "--version", first, "--yes")

    assert code == 0 and f"shredded instance/{instance} version {first}: 1 object(s) unreadable" in out
    assert "cache" in out  # the completeness bound is stated
    (row,) = [r for r in atrest("keys", "list", "--scope", f"instance/{instance}")[1].splitlines() if first in r]
    assert "SHREDDED" in row and "shredded 20" in row


@FAKES_TIME_ON_AN_EMPTIED_STACK
def test_keys_shred_refuses_a_version_retired_within_the_writers_cache_ttl_and_says_when(
        atrest, settings, instance_rotated_just_now):
    instance, first = instance_rotated_just_now

    named = atrest("keys", "shred", f"instance/{instance}", "--version", first, "--yes")
    every = atrest("keys", "shred", f"instance/{instance}", "--yes")

    assert named[0] == 1 and "cannot be shredded before" in named[2] and "BranchKeyCacheTtlSeconds" in named[2]
    assert every[0] == 1 and "shreddable after" in every[1] and "no version" in every[2] and "after" in every[2]
    listing = atrest("keys", "list", "--scope", f"instance/{instance}")[1]
    assert "SHREDDED" not in listing and first in listing


@FAKES_TIME_ON_AN_EMPTIED_STACK
def test_keys_shred_refuses_the_active_version_and_says_to_rotate_first(atrest, settings, instance_with_two_versions):
    instance, _ = instance_with_two_versions
    active = KeyLifecycle.from_settings(settings).keystore.describe_active(f"instance/{instance}").version

    code, _, err = atrest("keys", "shred", f"instance/{instance}", "--version", active, "--yes")

    assert code == 1 and "active version" in err and "atrest keys rotate" in err


@FAKES_TIME_ON_AN_EMPTIED_STACK
def test_keys_rotate_then_expire_now_reports_what_it_did(atrest, instance_with_two_versions):
    instance, _ = instance_with_two_versions

    rotated = atrest("keys", "rotate", f"instance/{instance}")
    refused = atrest("keys", "expire")
    expired = atrest("keys", "expire", "--now")

    assert rotated[0] == 0 and "RETIRED" in rotated[1] and "ACTIVE" in rotated[1]
    assert refused[0] == 1 and "--now" in refused[2]
    assert expired[0] == 0 and "checked" in expired[1] and "0 rotated" in expired[1]


@FAKES_TIME_ON_AN_EMPTIED_STACK
def test_forget_instance_asks_for_yes_then_shreds_every_version(atrest, instance_with_two_versions):
    instance, first = instance_with_two_versions

    asked = atrest("forget-instance", instance)
    forgotten = atrest("forget-instance", instance, "--yes")

    assert asked[0] == 1 and first in asked[1] and "--yes" in asked[1]
    assert forgotten[0] == 0 and "2 version(s) shredded" in forgotten[1]
    listing = atrest("keys", "list", "--scope", f"instance/{instance}")[1]
    assert listing.count("SHREDDED") == 2 and "ACTIVE" not in listing


def test_keys_shred_rotate_and_list_of_a_scope_without_a_branch_key_fail_and_say_where_to_look(atrest, clean_stack):
    unknown = f"instance/{uuid.uuid4()}"

    for command in (("shred", unknown), ("shred", unknown, "--yes"), ("shred", unknown, "--version", "v1", "--yes"),
                    ("rotate", unknown), ("list", "--scope", unknown)):
        code, out, err = atrest("keys", *command)

        assert code == 1, (command, out)
        assert f"{unknown} has no branch key" in err and "nothing was changed" in err, (command, err)
        assert "atrest keys list" in err and "service/<key>" in err, (command, err)
    assert unknown not in atrest("keys", "list")[1]


def test_keys_rotate_and_shred_help_name_every_scope_form(capsys, monkeypatch):
    from atrest_cli.main import main

    monkeypatch.setenv("COLUMNS", "1000")  # argparse wraps at hyphens, which would split the forms
    for action in ("rotate", "shred", "list"):
        with pytest.raises(SystemExit):
            main(["keys", action, "--help"])
        text = capsys.readouterr().out
        for form in ("account/<account-id>", "account/<account-id>/<key>", "instance/<instance-id>", "service/<key>"):
            assert form in text, (action, form, text)
