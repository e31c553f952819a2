"""Time-limited instance keys: after a rotation new contact PII uses the new version and
old PII still decrypts; after a shred, data under that version is refused with the date
it was shredded, while other versions and other instances are unaffected."""

from __future__ import annotations

import time
import uuid

import boto3
import pytest

from atrest.core.clients import AwsClients
from atrest.core.clock import ManualClock
from atrest.core.errors import AtrestError, DecryptRefusedError
from atrest.crypto.envelope import encryption_client
from atrest.crypto.keystore import BranchKeyStore
from atrest.events.shapes import contact_event_from_eventbridge
from atrest.flows.decrypt_object import VaultReader
from atrest.flows.expire_keys import KeyLifecycle
from atrest.flows.protect_contact import ContactProtector, ContactReader, pii_context
from atrest.storage.contact_records import sealed_attribute
from atrest.storage.record_keys import contact_key
from atrest.storage.records import MetadataTable
from atrest.storage.vault_keys import VaultKey
from atrest_cli.demos.samples import call_recording_wav, connect_key, contact_event

pytestmark = pytest.mark.local_only("fakes time (ManualClock) and runs the functions with the local runner on an emptied stack")


def protect(settings, instance_id, phone="+12065550100"):
    """One contact event through a freshly started ProtectContact (a cold start: no cached key)."""
    contact_id = str(uuid.uuid4())
    event = contact_event(settings.account_id, "us-east-1", instance_id, contact_id, phone=phone)
    outcome = ContactProtector.from_settings(settings).protect(contact_event_from_eventbridge(event))
    return contact_id, outcome.branch_key_version


def reveal_phone(settings, instance_id, contact_id, clients=None):
    view = ContactReader.from_settings(settings, clients).reveal(instance_id, contact_id)
    return view.pii["customerEndpoint"]["address"]


@pytest.fixture
def clock():
    return ManualClock()


def test_pii_after_a_rotation_uses_the_new_version_and_older_pii_still_decrypts(settings, clean_stack, clock):
    instance = str(uuid.uuid4())
    before, v1 = protect(settings, instance, "+12065550001")
    clock.advance(hours=25)
    (rotation,) = KeyLifecycle.from_settings(settings, clock=clock).run().rotated

    after, v2 = protect(settings, instance, "+12065550002")

    assert rotation.retired_version == v1 and rotation.active_version == v2 != v1
    assert reveal_phone(settings, instance, before) == "+12065550001"
    assert reveal_phone(settings, instance, after) == "+12065550002"


def test_pii_under_a_shredded_version_is_refused_with_the_shred_date_and_nothing_else_is(settings, clean_stack, clock):
    instance, other_instance = str(uuid.uuid4()), str(uuid.uuid4())
    old, _ = protect(settings, instance, "+12065550001")
    clock.advance(hours=25)
    KeyLifecycle.from_settings(settings, clock=clock).run()
    newer, _ = protect(settings, instance, "+12065550002")
    elsewhere, _ = protect(settings, other_instance, "+12065550003")
    clock.advance(days=91)
    report = KeyLifecycle.from_settings(settings, clock=clock).run()
    (shred,) = [s for s in report.shredded if s.branch_key_id == f"instance/{instance}"]
    assert shred.objects_unreadable == 1

    clients = AwsClients()
    with pytest.raises(DecryptRefusedError, match=rf"shredded on {clock.now():%Y-%m-%d}") as refused:
        reveal_phone(settings, instance, old, clients)

    assert "Traceback" not in str(refused.value) and "permanently unreadable" in str(refused.value)
    assert clients.calls["kms"] == 0, "the refusal must come from the metadata, not from a failed key store read"
    assert reveal_phone(settings, instance, newer) == "+12065550002"
    assert reveal_phone(settings, other_instance, elsewhere) == "+12065550003"


def test_a_vault_object_under_a_shredded_version_is_refused_before_the_key_store_is_asked(
        settings, local_runner, tmp_path, clock):
    key = connect_key(settings.connect_prefix, "acme-support", "CallRecordings", str(uuid.uuid4()),
                      clock.now().replace(second=0, microsecond=0), "wav")
    version = boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=call_recording_wav(0.2))["VersionId"]
    local_runner.drain(timeout=30)
    record = MetadataTable(boto3.client("dynamodb"), settings.metadata_table).get_object(
        VaultKey.of_source("call-recording", settings.intake_bucket, key, version))
    expiry = KeyLifecycle.from_settings(settings, clock=clock)
    expiry.rotate(record.branch_key_id)
    clock.advance(seconds=settings.cache_ttl_seconds, minutes=5)  # every writer's cache has let it go
    assert [s.objects_unreadable for s in expiry.shred(record.branch_key_id, record.branch_key_version)] == [1]

    clients = AwsClients()
    reader = VaultReader.from_settings(settings, clients)
    with pytest.raises(DecryptRefusedError, match=rf"version {record.branch_key_version} was shredded on"):
        reader.decrypt_to_file(record.vault_bucket, record.vault_key, tmp_path / "call.wav")

    assert clients.calls["kms"] == 0
    assert list(tmp_path.iterdir()) == []


def test_a_process_that_cached_a_version_stops_decrypting_it_within_the_cache_ttl_of_the_shred(
        settings, clean_stack, clock):
    ttl = 12  # the shortest TTL that still caches (the MPL refreshes entries 10 s before they expire)
    instance = str(uuid.uuid4())
    contact_id, version = protect(settings, instance)
    item = boto3.client("dynamodb").get_item(TableName=settings.metadata_table, Key=contact_key(instance, contact_id))["Item"]
    message = bytes(item[sealed_attribute("customerEndpoint")]["B"])
    context = pii_context(settings.account_id, instance, contact_id, "customerEndpoint")
    # A warm function (or any MPL client) that does not consult the metadata: only its cache stands in the way.
    warm = BranchKeyStore(AwsClients(), settings.keystore_table, settings.keystore_name, settings.kms_key_arn, ttl)
    esdk = encryption_client()

    def decrypts() -> bool:
        try:
            esdk.decrypt(source=message, keyring=warm.keyring(f"instance/{instance}"), encryption_context=context)
        except Exception:
            return False
        return True

    assert decrypts()
    fetched = time.monotonic()
    expiry = KeyLifecycle.from_settings(settings, clock=clock)
    expiry.rotate(f"instance/{instance}")
    clock.advance(seconds=settings.cache_ttl_seconds, minutes=5)  # the stack's writers have let it go; `warm` reads only
    expiry.shred(f"instance/{instance}", version)

    # The documented bound: a cached version may keep working after the shred, at most until its
    # cache entry expires (at most `ttl` after it was fetched; the MPL may refresh it sooner).
    # Each attempt is timed from its start: a busy machine may finish a cache hit late.
    while True:
        started = time.monotonic()
        if not decrypts():
            break
        assert started - fetched < ttl, f"still decrypting a shredded version {ttl} s after caching it"
        time.sleep(0.25)


def test_forgetting_an_instance_makes_all_its_pii_unreadable_and_its_next_contact_gets_a_new_key(
        settings, clean_stack, clock):
    instance = str(uuid.uuid4())
    old, v1 = protect(settings, instance, "+12065550001")
    clock.advance(hours=25)
    KeyLifecycle.from_settings(settings, clock=clock).run()
    older_too, v2 = protect(settings, instance, "+12065550002")

    shreds = KeyLifecycle.from_settings(settings, clock=clock).forget(f"instance/{instance}")

    assert sorted(s.version for s in shreds) == sorted([v1, v2])
    for contact in (old, older_too):
        with pytest.raises(DecryptRefusedError, match="shredded on"):
            reveal_phone(settings, instance, contact)
    fresh, v3 = protect(settings, instance, "+12065550004")
    assert v3 not in (v1, v2) and reveal_phone(settings, instance, fresh) == "+12065550004"


class Stop(BaseException):
    """The forgetting process dying between marking the versions and deleting the key."""


def test_a_warm_function_never_stores_contact_pii_under_a_key_being_forgotten(settings, clean_stack):
    instance = str(uuid.uuid4())
    warm = ContactProtector.from_settings(settings)  # one process, its cache warm with the instance key

    def event(phone):
        contact_id = str(uuid.uuid4())
        return contact_id, contact_event_from_eventbridge(
            contact_event(settings.account_id, "us-east-1", instance, contact_id, phone=phone))

    first_contact, first = event("+12065550001")
    v1 = warm.protect(first).branch_key_version

    def stop_after(step, _key):
        if step == "marked":
            raise Stop

    with pytest.raises(Stop):  # versions marked SHREDDED, the key still in the store
        KeyLifecycle.from_settings(settings, after_step=stop_after).forget(f"instance/{instance}")
    during_contact, during = event("+12065550002")
    with pytest.raises(AtrestError, match="being forgotten") as refused:
        warm.protect(during)
    assert "+1206" not in str(refused.value)
    stored = boto3.client("dynamodb").get_item(TableName=settings.metadata_table,
                                               Key=contact_key(instance, during_contact)).get("Item")
    assert stored is None, "nothing may be stored under a version being shredded"

    KeyLifecycle.from_settings(settings).forget(f"instance/{instance}")  # the operator re-runs it: finished
    v2 = warm.protect(during).branch_key_version  # the event's retry, same warm process
    after_contact, after = event("+12065550003")
    v3 = warm.protect(after).branch_key_version

    assert v2 != v1 and v3 == v2
    assert reveal_phone(settings, instance, during_contact) == "+12065550002"
    assert reveal_phone(settings, instance, after_contact) == "+12065550003"
    with pytest.raises(DecryptRefusedError, match="shredded on"):
        reveal_phone(settings, instance, first_contact)


def test_contact_event_fields_off_the_allow_list_are_encrypted_including_ones_aws_adds_later(settings, clean_stack):
    instance, contact_id = str(uuid.uuid4()), str(uuid.uuid4())
    raw = contact_event(settings.account_id, "us-east-1", instance, contact_id, attributes={"account": "acct 12-34"})
    raw["detail"].update(name="Refund for Jane Doe", description="called about card 4111", tags={"vip": "yes"},
                         segmentAttributes={"connect:Subtype": {"ValueString": "connect:Guide"}},
                         references={"passport": {"type": "URL", "value": "https://x/jane.pdf"}},
                         aFieldAwsAddsNextYear={"secret": "s"},
                         agentInfo={"agentArn": "arn:aws:connect:us-east-1:1:instance/i/agent/a"})

    outcome = ContactProtector.from_settings(settings).protect(contact_event_from_eventbridge(raw))
    item = boto3.client("dynamodb").get_item(TableName=settings.metadata_table,
                                             Key=contact_key(instance, contact_id), ConsistentRead=True)["Item"]

    sealed = {"name", "description", "tags", "segmentAttributes", "references", "aFieldAwsAddsNextYear",
              "customerEndpoint", "systemEndpoint", "attributes"}
    assert sealed <= set(outcome.pii_fields)
    assert {"channel", "initiationMethod", "initiationTimestamp", "queueInfo", "agentInfo", "initialContactId"} \
        <= set(outcome.public_fields)
    for name in sealed:
        assert name not in item and sealed_attribute(name) in item
    # Whole values, each with a space: a bare "4111" or "12-34" turns up in the record's random ids by chance.
    for plaintext in ("Refund for Jane Doe", "called about card 4111", "acct 12-34", "https://x/jane.pdf"):
        assert plaintext not in str(item)
    view = ContactReader.from_settings(settings).reveal(instance, contact_id)
    assert view.pii["name"] == "Refund for Jane Doe" and view.pii["aFieldAwsAddsNextYear"] == {"secret": "s"}
