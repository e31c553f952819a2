"""`forget-instance` against a rotation running at the same moment (issue 15, finding 3).

A rotation is a VersionKey under the rotation lease (`atrest.flows.expire_keys`): it writes a new
version item and overwrites the ACTIVE item. Were a forget to delete the key's items while
that VersionKey is in flight, the new version item could land after the forget looked at
the key store and survive it, and PII written under it would stay readable. Both orders
are played on the local stack: a rotation that started first makes the forget refuse,
changing nothing; a forget that started first makes the rotation refuse. Either way, once
both are over, the key store holds nothing of the instance and every version is SHREDDED.
"""

from __future__ import annotations

import threading
import uuid

import boto3
import pytest

from atrest.core.clients import AwsClients
from atrest.core.errors import AtrestError
from atrest.crypto.keystore_format import TYPE, items_of
from atrest.events.shapes import contact_event_from_eventbridge
from atrest.flows.expire_keys import KeyLifecycle, RotationInProgressError
from atrest.flows.protect_contact import ContactProtector
from atrest.storage.records import KeyVersionState, MetadataTable
from atrest_cli.demos.samples import contact_event

from crashes import Crash, crash_at

pytestmark = pytest.mark.local_only("crashes key expiry runs mid-step (crash_at) on an emptied stack")


def protect(settings, instance_id):
    contact_id = str(uuid.uuid4())
    event = contact_event(settings.account_id, "us-east-1", instance_id, contact_id, phone="+12065550100")
    return ContactProtector.from_settings(settings).protect(contact_event_from_eventbridge(event)).branch_key_version


def key_store_items(settings, branch_key_id):
    items = boto3.client("dynamodb").query(
        TableName=settings.keystore_table, **items_of(branch_key_id), ConsistentRead=True)["Items"]
    return sorted(item[TYPE]["S"] for item in items)


def recorded_states(settings, branch_key_id):
    records = MetadataTable(boto3.client("dynamodb"), settings.metadata_table).key_versions(branch_key_id)
    return {r.version: r.state for r in records}


def test_a_forget_during_a_rotation_refuses_and_changes_nothing_then_leaves_no_version_behind(settings, clean_stack):
    instance = str(uuid.uuid4())
    branch_key_id = f"instance/{instance}"
    v1 = protect(settings, instance)
    before = key_store_items(settings, branch_key_id)

    # The rotation takes its lease, then waits before its VersionKey.
    claimed, go_on, rotated = threading.Event(), threading.Event(), []

    def pause_after_claim(step, _key):
        if step == "claimed":
            claimed.set()
            assert go_on.wait(60)

    rotation = threading.Thread(target=lambda: rotated.append(
        KeyLifecycle.from_settings(settings, after_step=pause_after_claim).rotate(branch_key_id)))
    rotation.start()
    assert claimed.wait(60)

    # The widest window: the VersionKey lands just after the forget looked at the key store,
    # before its first delete (the forget's own key store requests are hooked, not replaced).
    forget_clients = AwsClients()

    def rotation_lands_now(**_kwargs):
        go_on.set()
        rotation.join(60)

    forget_clients.dynamodb.meta.events.register("before-call.dynamodb.DeleteItem", rotation_lands_now)
    try:
        with pytest.raises(RotationInProgressError, match="being rotated") as refused:
            KeyLifecycle.from_settings(settings, clients=forget_clients).forget(branch_key_id)
        assert "nothing was shredded" in str(refused.value) and branch_key_id in str(refused.value)
        assert key_store_items(settings, branch_key_id) == before
        assert recorded_states(settings, branch_key_id) == {v1: KeyVersionState.ACTIVE}
    finally:
        go_on.set()
        rotation.join(60)
        forget_clients.dynamodb.meta.events.unregister("before-call.dynamodb.DeleteItem", rotation_lands_now)
    (report,) = rotated
    (rotation_done,) = report.rotated
    v2 = rotation_done.active_version

    shreds = KeyLifecycle.from_settings(settings).forget(branch_key_id)  # the operator runs it again

    assert sorted(s.version for s in shreds) == sorted([v1, v2])
    assert key_store_items(settings, branch_key_id) == [], "a version item survived the forget"
    assert recorded_states(settings, branch_key_id) == {v1: KeyVersionState.SHREDDED, v2: KeyVersionState.SHREDDED}


@pytest.mark.parametrize("step", ["held", "marked"])
def test_a_rotation_during_a_forget_refuses_and_the_forget_leaves_nothing_behind(settings, clean_stack, step):
    instance = str(uuid.uuid4())
    branch_key_id = f"instance/{instance}"
    v1 = protect(settings, instance)
    refusals = []

    def rotate_now(at, _key):
        if at != step:
            return
        # `atrest keys rotate` and a scheduled ExpireKeys run, each from a process of its own.
        with pytest.raises(AtrestError, match="being forgotten") as refused:
            KeyLifecycle.from_settings(settings).rotate(branch_key_id)
        refusals.append(str(refused.value))
        report = KeyLifecycle.from_settings(settings).run()
        assert report.rotated == [] and report.failed == []

    shreds = KeyLifecycle.from_settings(settings, after_step=rotate_now).forget(branch_key_id)

    assert len(refusals) == 1 and "nothing rotated" in refusals[0]
    assert [s.version for s in shreds] == [v1]
    assert key_store_items(settings, branch_key_id) == []
    assert recorded_states(settings, branch_key_id) == {v1: KeyVersionState.SHREDDED}


def test_a_forget_interrupted_while_holding_the_rotation_lease_can_be_run_again_at_once(settings, clean_stack):
    instance = str(uuid.uuid4())
    branch_key_id = f"instance/{instance}"
    v1 = protect(settings, instance)

    with pytest.raises(Crash):
        KeyLifecycle.from_settings(settings, after_step=crash_at("held")).forget(branch_key_id)
    with pytest.raises(AtrestError, match="being forgotten"):  # the dead forget's lease still stops rotations
        KeyLifecycle.from_settings(settings).rotate(branch_key_id)

    shreds = KeyLifecycle.from_settings(settings).forget(branch_key_id)  # no 20-minute wait for its own lease

    assert [s.version for s in shreds] == [v1]
    assert key_store_items(settings, branch_key_id) == []


def test_forget_instance_on_a_key_whose_rotation_died_mid_way_says_when_to_run_it_again(atrest, settings, clean_stack):
    instance = str(uuid.uuid4())
    branch_key_id = f"instance/{instance}"
    protect(settings, instance)
    before = key_store_items(settings, branch_key_id)

    with pytest.raises(Crash):  # dies holding the lease
        KeyLifecycle.from_settings(settings, after_step=crash_at("claimed")).rotate(branch_key_id)
    code, out, err = atrest("forget-instance", instance, "--yes")

    assert code == 1 and "being rotated right now" in err and "nothing was shredded" in err
    lease_until = MetadataTable(boto3.client("dynamodb"), settings.metadata_table).key_versions(branch_key_id)[0] \
        .rotation_lease_until
    assert f"after {lease_until} if that run died" in err
    assert key_store_items(settings, branch_key_id) == before
