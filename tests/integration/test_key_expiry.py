"""ExpireKeys: expired branch keys are rotated once, retired versions are shredded when
their retention is over, and a run that dies half way is finished by the next one.
A `ManualClock` stands in for hours and days."""

from __future__ import annotations

import multiprocessing
import uuid
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from atrest.catalog.scopes import BranchKeyScope
from atrest.core.clock import ManualClock, from_text, to_text
from atrest.flows.expire_keys import CLOCK_SKEW_MARGIN, ROTATION_LEASE, KeyLifecycle
from atrest.storage.record_keys import key_version_key, shred_due_entry
from atrest.storage.records import KeyVersionState

from crashes import Crash, crash_at

pytestmark = pytest.mark.local_only("fakes time (ManualClock) and crashes key expiry runs mid-step")


@pytest.fixture
def instance_key(settings, clean_stack):
    """A new instance branch key (as the first contact of an instance creates it)."""
    expiry = KeyLifecycle.from_settings(settings)
    scope = BranchKeyScope.instance(str(uuid.uuid4()))
    expiry.keystore.ensure(scope)
    return scope.branch_key_id


def states(settings, branch_key_id):
    return {r.version: r for r in KeyLifecycle.from_settings(settings).records.key_versions(branch_key_id)}


def test_only_keys_whose_active_version_has_expired_are_rotated(settings, instance_key):
    account = BranchKeyScope.account(uuid.uuid4().hex[:12])
    clock = ManualClock()
    expiry = KeyLifecycle.from_settings(settings, clock=clock)
    expiry.keystore.ensure(account)
    first = expiry.keystore.describe_active(instance_key).version

    assert expiry.run().rotated == []
    clock.advance(hours=25)
    report = expiry.run()

    assert [(r.branch_key_id, r.retired_version) for r in report.rotated] == [(instance_key, first)]
    recorded = states(settings, instance_key)
    assert recorded[first].state is KeyVersionState.RETIRED
    assert recorded[first].retired_at == to_text(clock.now())
    assert from_text(recorded[first].shred_after) == clock.now() + timedelta(days=90)
    (new,) = [r for r in recorded.values() if r.state is KeyVersionState.ACTIVE]
    assert new.version == expiry.keystore.describe_active(instance_key).version != first
    assert new.created_at == to_text(clock.now())


def test_running_expiry_again_at_the_same_time_changes_nothing(settings, instance_key):
    clock = ManualClock()
    expiry = KeyLifecycle.from_settings(settings, clock=clock)
    clock.advance(hours=25)
    assert len(expiry.run().rotated) == 1
    before = states(settings, instance_key)

    again = expiry.run()

    assert again.rotated == [] and again.retired == [] and again.shredded == []
    assert states(settings, instance_key) == before


def test_retired_instance_versions_are_shredded_after_their_retention_and_account_versions_are_kept(settings, instance_key):
    account = BranchKeyScope.account(uuid.uuid4().hex[:12]).branch_key_id
    clock = ManualClock()
    expiry = KeyLifecycle.from_settings(settings, clock=clock)
    expiry.keystore.ensure(BranchKeyScope.parse(account))
    first_instance = expiry.keystore.describe_active(instance_key).version
    first_account = expiry.keystore.describe_active(account).version

    clock.advance(days=366)  # both expire; the instance version is retired now, shredded 90 days on
    expiry.run()
    clock.advance(days=89)
    assert expiry.run().shredded == []
    clock.advance(days=2)
    report = expiry.run()

    assert [(s.branch_key_id, s.version) for s in report.shredded] == [(instance_key, first_instance)]
    record = states(settings, instance_key)[first_instance]
    assert record.state is KeyVersionState.SHREDDED and record.shredded_at == to_text(clock.now())
    assert first_instance not in {v.version for v in expiry.keystore.versions(instance_key)}
    kept = states(settings, account)[first_account]
    assert kept.state is KeyVersionState.RETIRED and kept.shred_after is None
    assert first_account in {v.version for v in expiry.keystore.versions(account)}


def _run_expiry_in_fresh_process(settings, at, start, results):
    # Its own process, like a second ExpireKeys invocation: the MPL's KMS components are not thread-safe.
    expiry = KeyLifecycle.from_settings(settings, clock=ManualClock(at))
    start.wait(10)
    report = expiry.run()
    results.put([(r.branch_key_id, r.retired_version, r.active_version) for r in report.rotated])


def test_two_expiry_runs_at_once_rotate_an_expired_key_once(settings, instance_key):
    at = datetime.now(timezone.utc) + timedelta(hours=25)
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    workers = [context.Process(target=_run_expiry_in_fresh_process, args=(settings, at, start, results)) for _ in range(2)]
    for worker in workers:
        worker.start()
    start.set()
    rotations = [rotation for _ in workers for rotation in results.get(timeout=60)]
    for worker in workers:
        worker.join(30)

    assert all(worker.exitcode == 0 for worker in workers)
    assert len(rotations) == 1, rotations
    keystore = KeyLifecycle.from_settings(settings).keystore
    assert len(keystore.versions(instance_key)) == 2
    recorded = states(settings, instance_key)
    assert sorted(r.state.value for r in recorded.values()) == ["ACTIVE", "RETIRED"]


def test_a_run_killed_after_rotating_is_finished_by_the_next_run(settings, instance_key):
    clock = ManualClock()
    first = KeyLifecycle.from_settings(settings).keystore.describe_active(instance_key).version
    clock.advance(hours=25)
    crashed_at = clock.now()
    with pytest.raises(Crash):
        KeyLifecycle.from_settings(settings, clock=clock, after_step=crash_at("rotated")).run()
    assert states(settings, instance_key)[first].state is KeyVersionState.ACTIVE  # the crash left it half done

    clock.advance(minutes=5)
    report = KeyLifecycle.from_settings(settings, clock=clock).run()

    assert report.rotated == [] and report.retired == [f"{instance_key}@{first}"]
    recorded = states(settings, instance_key)
    assert recorded[first].state is KeyVersionState.RETIRED
    assert recorded[first].retired_at == to_text(crashed_at)  # when the rotation happened, not when it was noticed
    (new,) = [r for r in recorded.values() if r.state is KeyVersionState.ACTIVE]
    assert new.created_at == to_text(crashed_at)
    assert len(KeyLifecycle.from_settings(settings).keystore.versions(instance_key)) == 2


def test_a_run_killed_after_claiming_a_rotation_is_finished_once_its_lease_runs_out(settings, instance_key):
    clock = ManualClock()
    clock.advance(hours=25)
    with pytest.raises(Crash):
        KeyLifecycle.from_settings(settings, clock=clock, after_step=crash_at("claimed")).run()

    clock.advance(minutes=1)
    meanwhile = KeyLifecycle.from_settings(settings, clock=clock).run()
    assert meanwhile.rotated == [] and meanwhile.busy  # the dead run might still be alive: hands off
    clock.advance(seconds=ROTATION_LEASE.total_seconds())
    report = KeyLifecycle.from_settings(settings, clock=clock).run()

    assert len(report.rotated) == 1
    assert len(KeyLifecycle.from_settings(settings).keystore.versions(instance_key)) == 2


@pytest.mark.parametrize("step", ["marked", "deleted"])
def test_a_run_killed_mid_shred_is_finished_by_the_next_run(settings, instance_key, step):
    clock = ManualClock()
    first = KeyLifecycle.from_settings(settings).keystore.describe_active(instance_key).version
    clock.advance(hours=25)
    KeyLifecycle.from_settings(settings, clock=clock).run()
    clock.advance(days=91)
    with pytest.raises(Crash):
        KeyLifecycle.from_settings(settings, clock=clock, after_step=crash_at(step)).run()
    # Marked before the key goes: from then on nothing new is stored under it.
    assert states(settings, instance_key)[first].state is KeyVersionState.SHREDDED

    report = KeyLifecycle.from_settings(settings, clock=clock).run()

    assert [s.version for s in report.shredded] == [first]
    assert first not in [v.version for v in KeyLifecycle.from_settings(settings).keystore.versions(instance_key)]
    assert states(settings, instance_key)[first].objects_unreadable is not None
    assert KeyLifecycle.from_settings(settings, clock=clock).run().shredded == []  # finished: off the shred-due index


def test_a_retention_shorter_than_the_writers_cache_waits_for_the_cache(settings, instance_key):
    """A due version is shredded only once no warm function can still hold it as active."""
    clock = ManualClock()
    first = KeyLifecycle.from_settings(settings).keystore.describe_active(instance_key).version
    clock.advance(hours=25)
    KeyLifecycle.from_settings(settings, clock=clock).run()
    retired = states(settings, instance_key)[first]
    assert retired.writers_stop_by == to_text(
        clock.now() + timedelta(seconds=settings.cache_ttl_seconds) + CLOCK_SKEW_MARGIN)
    # As if its retention had been a minute: due now, but writers may still use it.
    due = shred_due_entry(to_text(clock.now()), instance_key, first)
    boto3.client("dynamodb").update_item(
        TableName=settings.metadata_table, Key=key_version_key(instance_key, first),
        UpdateExpression="SET " + ", ".join(f"{name} = :due{n}" for n, name in enumerate(due)),
        ExpressionAttributeValues={f":due{n}": {"S": value} for n, value in enumerate(due.values())})

    waiting = KeyLifecycle.from_settings(settings, clock=clock).run()
    clock.advance(seconds=settings.cache_ttl_seconds, minutes=5)
    done = KeyLifecycle.from_settings(settings, clock=clock).run()

    assert waiting.shredded == [] and waiting.waiting == [f"{instance_key}@{first} after {retired.writers_stop_by}"]
    assert [s.version for s in done.shredded] == [first]


def test_the_scheduled_function_runs_the_expiry_and_logs_a_summary(local_runner, settings, instance_key):
    (invocation,) = [i for i in local_runner.fire_schedules() if i.function_logical_id == "ExpireKeysFunction"]

    assert invocation.succeeded, invocation.error
    assert invocation.response["keys_checked"] == 1 and invocation.response["rotated"] == []
