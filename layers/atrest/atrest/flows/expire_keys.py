"""`KeyLifecycle`: what happens to a branch key version over its life. `run()` is the
ExpireKeys function's scheduled work: it rotates branch keys whose active version has
expired, retires the old version, and shreds retired versions whose retention is over.
`rotate`, `shred` and `forget` are the same steps on an operator's demand (`atrest keys`,
`atrest forget-instance`), under the same lease and the same rules; what the versions are
now (`atrest keys list`) is read by the CLI's `operations.key_inventory`.

Safe to run twice at once, and resumable after a crash at any step:
- **One rotation per expiry.** Before VersionKey a run takes a lease on the ACTIVE
  version's record in the metadata table (a conditional update: state ACTIVE and no
  unexpired lease). A second run finds the lease and leaves that key alone. The MPL's
  VersionKey itself does not compare-and-swap the ACTIVE item, so this lease is what
  prevents two new versions.
- **Resuming.** Every run first reconciles the records with the key store: a version
  still recorded ACTIVE that is no longer the key store's active version was rotated by
  a run that stopped before finishing, so it is retired now (with the time the rotation
  started, read from its lease). A run that died before VersionKey leaves a lease that
  expires after `ROTATION_LEASE` (longer than the function's timeout), and the next run
  rotates. Reads go records first, key store second: the key store's active version only
  moves forward, so a record that is not it is truly retired.
- **Never under a writer.** A retired version may still be the active version in a warm
  function's branch key cache for up to `BranchKeyCacheTtlSeconds` after the rotation, and
  new data encrypted under it then would die with it. So retiring a version records
  `writers_stop_by` (the time of the record + the cache TTL + `CLOCK_SKEW_MARGIN`), and no
  path shreds it earlier: the schedule waits, `atrest keys shred` refuses and says when.
- **Shredding** marks the record SHREDDED (from then on no contact record can be stored
  under the version: `atrest.flows.protect_contact` writes in a transaction that requires it not
  SHREDDED), counts what is under the version, deletes its key store item, and stores the
  count; every step repeats harmlessly, and the first mark's time and count stand.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, Callable

from atrest.catalog.data_classes import deployment_lifetimes
from atrest.catalog.lifetimes import KeyLifetimePolicy, KeyLifetimes
from atrest.core.clients import AwsClients
from atrest.core.clock import Clock, SystemClock, from_text, to_text
from atrest.core.errors import AtrestError, ShredTooEarlyError
from atrest.core.settings import Settings
from atrest.crypto.keystore import BranchKeyStore, KeyStores, StoredVersion
from atrest.storage.records import KeyVersionRecord, KeyVersionState, MetadataTable

log = logging.getLogger(__name__)

# Longer than ExpireKeysFunction's Timeout (template.yaml): a run holding a lease this old is dead.
ROTATION_LEASE = timedelta(minutes=20)
# Added to the branch key cache TTL before a retired version may be shredded: the clocks of
# the run that recorded the retirement, of the functions, and of the operator's machine
# may disagree by this much (Lambda and EC2 keep NTP time; a laptop may be minutes off).
CLOCK_SKEW_MARGIN = timedelta(minutes=5)


# Every form a branch key scope takes (atrest.catalog.scopes), for messages that send the operator back to them.
SCOPE_FORMS = "account/<account-id>, account/<account-id>/<key>, instance/<instance-id> or service/<key>"


# Run ids of `forget-instance`. Its rotation lease stops rotations while it deletes the key;
# a re-run of an interrupted forget may take that lease over at once.
FORGET_RUN_PREFIX = "forget-instance/"


class RotationInProgressError(AtrestError):
    """`forget-instance` found a rotation of the branch key under way; nothing was shredded."""


def _forgotten(branch_key_id: str) -> AtrestError:
    return AtrestError(f"{branch_key_id} is being forgotten (`atrest forget-instance`); nothing rotated. Once the "
                       "forget has finished the scope's next data gets a new key")


class UnknownBranchKeyError(AtrestError):
    """Neither the key store nor the metadata table knows the branch key; nothing was changed."""

    def __init__(self, branch_key_id: str, action: str) -> None:
        super().__init__(
            f"{branch_key_id} has no branch key: neither the key store nor the metadata table has a version of it, so "
            f"there is nothing to {action}; nothing was changed. Check the scope against `atrest keys list` (every "
            f"branch key of the stack; scopes are {SCOPE_FORMS}). A scope's key is created when its first data is "
            "encrypted"
        )


@dataclass(frozen=True)
class Rotation:
    branch_key_id: str
    retired_version: str
    active_version: str


@dataclass(frozen=True)
class Shred:
    branch_key_id: str
    version: str
    objects_unreadable: int


@dataclass
class ExpiryReport:
    """What one run did. Safe to log: identifiers and counts only."""

    run_id: str
    at: str
    keys_checked: int = 0
    rotated: list[Rotation] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)  # "<branch key id>@<version>"
    shredded: list[Shred] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # "<branch key id>@<version> after <time>": due, writers may still use it
    busy: list[str] = field(default_factory=list)  # keys another run is rotating right now
    failed: list[str] = field(default_factory=list)  # "<branch key id>: <error class>" (details in the log)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class KeyLifecycle:
    """`after_step(step, branch_key_id)` is called after each durable step ("claimed",
    "rotated", "recorded", "retired", "deleted", "marked"; "held": a forget took the
    rotation lease): tests stop a run there to show that the next run finishes it."""

    def __init__(
        self,
        keystore: BranchKeyStore | KeyStores,
        records: MetadataTable,
        lifetimes: KeyLifetimes,
        clock: Clock | None = None,
        after_step: Callable[[str, str], None] | None = None,
    ) -> None:
        self.keystore = keystore
        self.records = records
        self.lifetimes = lifetimes
        self.clock = clock or SystemClock()
        self.after_step = after_step or (lambda _step, _key: None)

    @classmethod
    def from_settings(cls, settings: Settings, clients: AwsClients | None = None, clock: Clock | None = None,
                      after_step: Callable[[str, str], None] | None = None) -> "KeyLifecycle":
        clients = clients or AwsClients()
        keystore = KeyStores.from_settings(settings, clients)
        return cls(keystore, MetadataTable(clients.dynamodb, settings.metadata_table), deployment_lifetimes(settings),
                   clock, after_step)

    # -- the scheduled run --------------------------------------------------------------

    def run(self) -> ExpiryReport:
        now = self.clock.now()
        report = ExpiryReport(run_id=str(uuid.uuid4()), at=to_text(now))
        for active in self.keystore.active_keys():
            report.keys_checked += 1
            # One key that cannot be rotated (e.g. its items were re-wrapped under a KMS key
            # this function is not yet configured with, docs/byok.md) must not stop the others,
            # nor the shredding below: note it, carry on, and fail the run at the end.
            try:
                self._settle(active.branch_key_id, now, report, force=False)
            except Exception as error:  # noqa: BLE001 - reported and re-raised below
                report.failed.append(f"{active.branch_key_id}: {type(error).__name__}")
                log.exception("branch key not settled", extra={"branch_key_id": active.branch_key_id})
        for record in self.records.shred_due(to_text(now)):
            if record.state is KeyVersionState.SHREDDED:
                # Marked by a run that stopped before deleting and counting (the last step
                # takes it off the index, which may also lag a finished shred by a moment).
                self._shred(record.branch_key_id, record.version, now, report)
                continue
            if record.state is not KeyVersionState.RETIRED:
                continue
            safe_from = self.shreddable_from(record)
            if now < safe_from:  # only with a retention shorter than the cache TTL; the next run takes it
                report.waiting.append(f"{record.branch_key_id}@{record.version} after {to_text(safe_from)}")
                continue
            self._shred(record.branch_key_id, record.version, now, report)
        log.info("key expiry run", extra={"expiry": report.as_dict()})
        if report.failed:
            raise AtrestError(
                f"key expiry finished with {len(report.failed)} key(s) not settled ({'; '.join(report.failed)}); the "
                "others were rotated and shredded as due. See this function's log for each error; the next scheduled "
                "run retries them"
            )
        return report

    def rotate(self, branch_key_id: str) -> ExpiryReport:
        """Rotate one branch key now, whatever its age (`atrest keys rotate`)."""
        now = self.clock.now()
        report = ExpiryReport(run_id=str(uuid.uuid4()), at=to_text(now))
        if self.keystore.describe_active(branch_key_id) is None:
            if self.records.key_versions(branch_key_id):
                raise AtrestError(f"{branch_key_id} has no active version to rotate: every version of it was "
                                  f"shredded (see `atrest keys list --scope {branch_key_id}`); its next data creates "
                                  "a new one")
            raise UnknownBranchKeyError(branch_key_id, "rotate")
        self._settle(branch_key_id, now, report, force=True)
        if report.busy and report.busy[0].startswith(FORGET_RUN_PREFIX):
            raise _forgotten(branch_key_id)
        if not report.rotated and not report.busy:
            # Nothing to rotate: a forget has marked the active version SHREDDED and is deleting the key.
            active = self.keystore.describe_active(branch_key_id)
            record = self.records.key_version(branch_key_id, active.version) if active else None
            if active is None or (record is not None and record.state is KeyVersionState.SHREDDED):
                raise _forgotten(branch_key_id)
        if report.busy:
            raise AtrestError(
                f"{branch_key_id} is being rotated by another run (run {report.busy[0]}); "
                f"try again in a minute, or after {to_text(now + ROTATION_LEASE)} if that run died"
            )
        return report

    # -- rotation -----------------------------------------------------------------------

    def _settle(self, branch_key_id: str, now: datetime, report: ExpiryReport, force: bool) -> None:
        policy = self.lifetimes.for_branch_key(branch_key_id)
        recorded = {r.version: r for r in self.records.key_versions(branch_key_id)}  # records first ...
        active = self.keystore.describe_active(branch_key_id)  # ... then the key store (see module docstring)
        if active is None:
            return
        current = self._finish_rotations(branch_key_id, active, recorded, policy, now, report)
        if current.state is not KeyVersionState.ACTIVE:
            return
        if not force and now < from_text(current.created_at) + policy.rotate_after:
            return
        run_id = report.run_id
        if not self.records.claim_rotation(branch_key_id, current.version, run_id, to_text(now), to_text(now + ROTATION_LEASE)):
            holder = self.records.key_version(branch_key_id, current.version)
            report.busy.append(holder.rotation_run if holder and holder.rotation_run else branch_key_id)
            return
        self.after_step("claimed", branch_key_id)
        latest = self.keystore.describe_active(branch_key_id)
        new_version = latest.version if latest else current.version
        if new_version == current.version:
            new_version = self.keystore.rotate(branch_key_id)
        self.after_step("rotated", branch_key_id)
        self._settle(branch_key_id, now, report, force=False)
        report.rotated.append(Rotation(branch_key_id, current.version, new_version))
        log.info("branch key rotated", extra={"branch_key_id": branch_key_id, "retired_version": current.version,
                                               "active_version": new_version})

    def _finish_rotations(self, branch_key_id: str, active: StoredVersion, recorded: dict[str, KeyVersionRecord],
                          policy: KeyLifetimePolicy, now: datetime, report: ExpiryReport) -> KeyVersionRecord:
        """Record the key store's active version and retire every other version still
        recorded ACTIVE. Returns the active version's record."""
        # Re-read them: their lease (and so the rotation's start) may be newer than `recorded`.
        superseded = [
            self.records.key_version(branch_key_id, r.version) or r
            for r in recorded.values()
            if r.state is KeyVersionState.ACTIVE and r.version != active.version
        ]
        started = max((r.rotation_started_at for r in superseded if r.rotation_started_at), default=None)
        current = recorded.get(active.version)
        if current is None:
            # A version created by a rotation lives from the rotation's start (the run's clock);
            # one created on first use, from the key store's create time.
            created = started or to_text(active.created)
            self.records.record_key_version(branch_key_id, active.version, created,
                                            to_text(policy.expires_at(from_text(created))))
            self.after_step("recorded", branch_key_id)
            current = self.records.key_version(branch_key_id, active.version)
            assert current is not None
        for record in superseded:
            retired_at = from_text(record.rotation_started_at) if record.rotation_started_at else now
            shred_after = policy.shred_after(retired_at)
            # Read the clock again: `now` was taken before this run's VersionKey, and writers
            # may have fetched the old version as active until that call returned.
            writers_stop_by = self.clock.now() + self._writer_cache_ttl()
            if self.records.retire_key_version(branch_key_id, record.version, to_text(retired_at),
                                               to_text(shred_after) if shred_after else None,
                                               to_text(writers_stop_by)):
                report.retired.append(f"{branch_key_id}@{record.version}")
                self.after_step("retired", branch_key_id)
        return current

    # -- shredding ----------------------------------------------------------------------

    def _writer_cache_ttl(self) -> timedelta:
        return timedelta(seconds=self.keystore.cache_ttl_seconds) + CLOCK_SKEW_MARGIN

    def shreddable_from(self, record: KeyVersionRecord) -> datetime:
        """The earliest time a retired version may be shredded: no writer can still hold it
        as its active version (see the module docstring)."""
        if record.writers_stop_by:
            return from_text(record.writers_stop_by)
        # Retired before the time was recorded: the rotation ended within its lease.
        started = from_text(record.retired_at) if record.retired_at else self.clock.now()
        return started + ROTATION_LEASE + self._writer_cache_ttl()

    def _shred(self, branch_key_id: str, version: str, now: datetime, report: ExpiryReport) -> Shred:
        # Mark first: from here on no contact record can land under the version, so the count
        # below is what the shred makes unreadable, and nothing is stored under a deleted key.
        self.records.mark_shredded(branch_key_id, version, to_text(now), None)
        self.after_step("marked", branch_key_id)
        objects = self.records.count_under(branch_key_id, version)
        self.keystore.shred(branch_key_id, version)
        self.after_step("deleted", branch_key_id)
        self.records.set_unreadable_count(branch_key_id, version, objects)
        shred = Shred(branch_key_id, version, objects)
        report.shredded.append(shred)
        log.info("branch key version shredded", extra={"branch_key_id": branch_key_id, "version": version,
                                                        "objects_unreadable": objects})
        return shred

    def plan_shred(self, branch_key_id: str, version: str | None = None) -> list["ShredPlan"]:
        """What `shred` would do, per RETIRED version: how many objects (and contact records)
        it leaves unreadable, counted now, and from when it may be shredded.

        Without `version`: every RETIRED version of the key. A rotation not yet recorded is
        recorded first, so its version's retirement (and writers' deadline) starts now.
        A branch key neither the key store nor the records know is `UnknownBranchKeyError`:
        "nothing to shred" there is almost always a mistyped scope, not a finished job."""
        active = self.keystore.describe_active(branch_key_id)
        if active is None and not self.records.key_versions(branch_key_id) \
                and not self.keystore.versions(branch_key_id):
            raise UnknownBranchKeyError(branch_key_id, "shred")
        if active is not None:
            self._finish_rotations(branch_key_id, active, {r.version: r for r in self.records.key_versions(branch_key_id)},
                                   self.lifetimes.for_branch_key(branch_key_id), self.clock.now(),
                                   ExpiryReport(run_id=str(uuid.uuid4()), at=to_text(self.clock.now())))
        recorded = {r.version: r for r in self.records.key_versions(branch_key_id)}
        if version is not None:
            if active is not None and active.version == version:
                raise AtrestError(
                    f"{branch_key_id} version {version} is the active version; rotate first "
                    f"(`atrest keys rotate {branch_key_id}`), then shred it"
                )
            stored = {v.version: v for v in self.keystore.versions(branch_key_id)}
            record = recorded.get(version)
            if version not in stored:
                when = f" on {record.shredded_at}" if record and record.shredded_at else ""
                raise AtrestError(f"{branch_key_id} has no version {version} in the key store (already shredded{when}?); "
                                  f"see `atrest keys list --scope {branch_key_id}`")
            if record is None or record.state is KeyVersionState.ACTIVE:
                # In the store, never recorded and not active: its retirement starts being counted now.
                now = self.clock.now()
                self.records.record_key_version(branch_key_id, version, to_text(stored[version].created))
                self.records.retire_key_version(branch_key_id, version, to_text(now), None,
                                                to_text(now + self._writer_cache_ttl()))
                record = self.records.key_version(branch_key_id, version)
                assert record is not None
            targets = [record]
        else:
            targets = [r for r in recorded.values() if r.state is KeyVersionState.RETIRED]
        now = self.clock.now()
        plans = []
        for record in sorted(targets, key=lambda r: r.created_at):
            safe_from = self.shreddable_from(record)
            plans.append(ShredPlan(record.version, self.records.count_under(branch_key_id, record.version),
                                   to_text(safe_from), now >= safe_from))
        return plans

    def shred(self, branch_key_id: str, version: str | None = None) -> list[Shred]:
        """Shred retired versions now, before their retention ends (`atrest keys shred`).

        Only versions no writer can still use: a named version that is not yet is refused
        with the time it can be; without a version, the ones not yet shreddable are left."""
        plans = self.plan_shred(branch_key_id, version)
        early = [p for p in plans if not p.shreddable]
        if version is not None and early:
            raise ShredTooEarlyError(self.too_early_message(branch_key_id, early[0]))
        now = self.clock.now()
        report = ExpiryReport(run_id=str(uuid.uuid4()), at=to_text(now))
        for plan in plans:
            if plan.shreddable:
                self._shred(branch_key_id, plan.version, now, report)
        return report.shredded

    def too_early_message(self, branch_key_id: str, plan: "ShredPlan") -> str:
        return (f"{branch_key_id} version {plan.version} cannot be shredded before {plan.shreddable_from}: a warm "
                f"function may still hold it as the active version and encrypt new data under it until its branch key "
                f"cache expires ({self.keystore.cache_ttl_seconds} s, BranchKeyCacheTtlSeconds, plus "
                f"{int(CLOCK_SKEW_MARGIN.total_seconds() // 60)} min for clock skew, after its retirement was "
                f"recorded). Run the same command after that time")

    def plan_forget(self, branch_key_id: str) -> list[tuple[str, int]]:
        """Every version `forget` shreds, with what is under it now."""
        stored = {v.version for v in self.keystore.versions(branch_key_id)}
        recorded = {r.version for r in self.records.key_versions(branch_key_id) if r.state is not KeyVersionState.SHREDDED}
        return [(v, self.records.count_under(branch_key_id, v)) for v in sorted(stored | recorded)]

    def forget(self, branch_key_id: str) -> list[Shred]:
        """Shred every version, the active one included (right to be forgotten).

        No waiting here: forgetting is meant to take effect at once. What makes it safe for
        data arriving meanwhile: every version is marked SHREDDED before the key store items
        go, and a contact record is stored only under a version not SHREDDED (one
        transaction), so a warm function whose cache still holds the forgotten key cannot
        store anything under it; it drops its cache and seals under the instance's new key
        (`atrest.flows.protect_contact.ContactProtector`). Re-running after a crash finishes the job.

        What makes it safe against a rotation (ExpireKeys, `atrest keys rotate`): first of
        all it takes the same rotation lease on the active version. A rotation holding it
        now could land its VersionKey after the deletes below and leave a version behind,
        so the forget refuses (`RotationInProgressError`) before changing anything; a
        rotation starting later finds the lease, or the version SHREDDED, and rotates
        nothing. The versions are listed only once the lease is held."""
        now = self.clock.now()
        self._stop_rotations(branch_key_id, now)
        self.after_step("held", branch_key_id)
        versions = [version for version, _ in self.plan_forget(branch_key_id)]
        for version in versions:
            self.records.mark_shredded(branch_key_id, version, to_text(now), None)
        self.after_step("marked", branch_key_id)
        counts = {version: self.records.count_under(branch_key_id, version) for version in versions}
        self.keystore.forget(branch_key_id)
        self.after_step("deleted", branch_key_id)
        shreds = []
        for version in versions:
            self.records.set_unreadable_count(branch_key_id, version, counts[version])
            shreds.append(Shred(branch_key_id, version, counts[version]))
        log.info("branch key forgotten", extra={"branch_key_id": branch_key_id, "versions": len(shreds)})
        return shreds

    def _stop_rotations(self, branch_key_id: str, now: datetime) -> None:
        """Hold the rotation lease of the key store's active version for this forget, or
        raise `RotationInProgressError` when a rotation holds it."""
        active = self.keystore.describe_active(branch_key_id)
        if active is None:
            return  # nothing left to rotate: no VersionKey can succeed without the ACTIVE item
        # A version used but never rotated may have no record yet: the lease lives on one.
        self.records.record_key_version(branch_key_id, active.version, to_text(active.created))
        run_id = f"{FORGET_RUN_PREFIX}{uuid.uuid4()}"
        if self.records.claim_rotation(branch_key_id, active.version, run_id, to_text(now),
                                       to_text(now + ROTATION_LEASE), take_over_from=FORGET_RUN_PREFIX):
            return
        holder = self.records.key_version(branch_key_id, active.version)
        if holder is not None and holder.state is KeyVersionState.SHREDDED:
            return  # marked by an interrupted forget: no rotation can claim a SHREDDED version
        run = f" (run {holder.rotation_run})" if holder and holder.rotation_run else ""
        until = holder.rotation_lease_until if holder and holder.rotation_lease_until else to_text(now + ROTATION_LEASE)
        raise RotationInProgressError(
            f"{branch_key_id} is being rotated right now{run}; nothing was shredded. Its new version could outlive "
            f"a forget started now: run `atrest forget-instance` again in a minute (a rotation takes seconds), or "
            f"after {until} if that run died"
        )


@dataclass(frozen=True)
class ShredPlan:
    version: str
    objects: int  # objects and contact records under the version now
    shreddable_from: str
    shreddable: bool
