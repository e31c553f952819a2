"""`atrest keys list` and `atrest status`: every version of the branch keys, its state, when
it expires or is due to be shredded, and how many objects it protects. Read-only: it reads
the key store and the metadata table as the lifecycle (`atrest.flows.expire_keys`) keeps
them, so the inventory and the expiry never disagree."""

from __future__ import annotations

from dataclasses import dataclass

from atrest.core.clock import from_text, to_text
from atrest.flows.expire_keys import KeyLifecycle
from atrest.storage.counts import VersionCounts
from atrest.storage.records import KeyVersionState


@dataclass(frozen=True)
class KeyVersionView:
    branch_key_id: str
    version: str
    state: str
    created: str
    expires: str | None  # ACTIVE: rotation due; RETIRED: shred due (None: kept); SHREDDED: when it was shredded
    objects: int


def key_inventory(lifecycle: KeyLifecycle, branch_key_id: str | None = None) -> list[KeyVersionView]:
    """Every version of one branch key (or of every key in the store), oldest first per key."""
    return inventory_and_counts(lifecycle, branch_key_id)[0]


def inventory_and_counts(lifecycle: KeyLifecycle, branch_key_id: str | None = None
                         ) -> tuple[list[KeyVersionView], dict[tuple[str, str], VersionCounts]]:
    """The inventory, and the counts it was made from (per branch key id and version), read
    once for every version: `atrest status` breaks them down by data class."""
    keys = [branch_key_id] if branch_key_id else [k.branch_key_id for k in lifecycle.keystore.active_keys()]
    found: list[tuple[str, str, str, str, str | None]] = []
    for key in keys:
        policy = lifecycle.lifetimes.for_branch_key(key)
        recorded = {r.version: r for r in lifecycle.records.key_versions(key)}
        stored = {v.version: v for v in lifecycle.keystore.versions(key)}
        for version in set(recorded) | set(stored):
            record, store = recorded.get(version), stored.get(version)
            if record is not None:
                state, created = record.state.value, from_text(record.created_at)
                if record.state is KeyVersionState.ACTIVE and store is not None and not store.active:
                    state = "RETIRING"  # rotated; the next expiry run records the retirement
            elif store is not None:
                state, created = ("ACTIVE" if store.active else "RETIRED"), store.created
            else:
                continue
            if state == "ACTIVE":
                expires: str | None = to_text(policy.expires_at(created))
            elif state == "SHREDDED":
                expires = record.shredded_at if record else None
            else:
                expires = record.shred_after if record and record.shred_after else None
            found.append((key, version, state, to_text(created), expires))
    counts = lifecycle.records.counts([(key, version) for key, version, *_ in found])
    views = [KeyVersionView(key, version, state, created, expires,
                            counts[(key, version)].dependents + lifecycle.records.count_uncounted(key, version))
             for key, version, state, created, expires in found]
    return sorted(views, key=lambda v: (v.branch_key_id, v.created)), counts
