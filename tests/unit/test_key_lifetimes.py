"""Key lifetime policies come from configuration, with the documented defaults, and
bad values are refused naming the variable."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from atrest.catalog.lifetimes import KeyLifetimes
from atrest.core.clock import ManualClock, from_text, to_text
from atrest.core.errors import ConfigurationError
from atrest.core.settings import DEFAULT_CONTACT_CLEAR_FIELDS, Settings
from test_settings import BASE  # the minimal valid environment

T0 = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)


def test_instance_keys_rotate_daily_and_are_shredded_90_days_after_retirement_by_default():
    lifetimes = KeyLifetimes.from_settings(Settings.from_env(BASE))
    instance = lifetimes.for_branch_key("instance/f75946c0-bc38-4252-8174-468f6ac2543d")
    assert instance.expires_at(T0) == T0 + timedelta(hours=24)
    assert instance.shred_after(T0) == T0 + timedelta(days=90)


def test_account_keys_rotate_yearly_and_are_kept_after_retirement_by_default():
    account = KeyLifetimes.from_settings(Settings.from_env(BASE)).for_branch_key("account/111122223333")
    assert account.expires_at(T0) == T0 + timedelta(days=365)
    assert account.shred_after(T0) is None


def test_lifetimes_follow_the_configuration():
    settings = Settings.from_env({**BASE, "ATREST_INSTANCE_KEY_ROTATION_HOURS": "6", "ATREST_INSTANCE_KEY_RETENTION_DAYS": "30",
                                  "ATREST_SHRED_ACCOUNT_KEYS": "true", "ATREST_ACCOUNT_KEY_RETENTION_DAYS": "730"})
    lifetimes = KeyLifetimes.from_settings(settings)
    assert lifetimes.instance.expires_at(T0) == T0 + timedelta(hours=6)
    assert lifetimes.instance.shred_after(T0) == T0 + timedelta(days=30)
    assert lifetimes.account.shred_after(T0) == T0 + timedelta(days=730)


@pytest.mark.parametrize(("name", "value"), [
    ("ATREST_INSTANCE_KEY_ROTATION_HOURS", "0"),
    ("ATREST_INSTANCE_KEY_ROTATION_HOURS", "a day"),
    ("ATREST_ACCOUNT_KEY_ROTATION_DAYS", "0"),
    ("ATREST_INSTANCE_KEY_RETENTION_DAYS", "-1"),
    ("ATREST_SHRED_INSTANCE_KEYS", "maybe"),
    ("ATREST_CONTACT_CLEAR_FIELDS", "contactId,agentInfo.agentArn"),
    ("ATREST_CONTACT_PII_FIELDS", "customerEndpoint"),  # replaced by the allow-list: said, not ignored
])
def test_a_bad_lifetime_setting_is_refused_naming_the_variable(name, value):
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({**BASE, name: value})


def test_contact_clear_fields_are_an_allow_list_of_ids_channel_times_queue_agent_and_instance():
    clear = set(Settings.from_env(BASE).contact_clear_fields)
    assert clear == set(DEFAULT_CONTACT_CLEAR_FIELDS)
    assert {"contactId", "channel", "initiationTimestamp", "queueInfo", "agentInfo", "initiationMethod",
            "instanceArn"} <= clear
    # What carries customer data is not on it, nor what AWS added later.
    assert not clear & {"customerEndpoint", "systemEndpoint", "attributes", "contactDetails", "customerId", "name",
                        "description", "segmentAttributes", "tags", "references"}
    configured = Settings.from_env({**BASE, "ATREST_CONTACT_CLEAR_FIELDS": " contactId, channel ,contactId"})
    assert configured.contact_clear_fields == ("contactId", "channel")

def test_a_manual_clock_moves_only_when_told_and_times_round_trip_as_text():
    clock = ManualClock(T0)
    assert clock.now() == T0
    assert clock.advance(hours=25) == T0 + timedelta(hours=25)
    assert to_text(T0) == "2026-11-30T05:00:00.000Z"
    assert from_text(to_text(clock.now())) == clock.now()
    assert from_text("2026-11-30T05:00:00.123456Z") == T0 + timedelta(microseconds=123456)  # the key store's create-time
