"""`KeyLifetimePolicy`: how long a branch key version encrypts, how long it stays
decryptable after that, and whether it is then shredded. One policy per scope kind,
from configuration (template parameters -> `Settings`), and one per data class that has
a branch key of its own (the data class catalog, `atrest.catalog.data_classes`, which
combines the two: `deployment_lifetimes`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Mapping

from atrest.catalog.scopes import BranchKeyScope, ScopeKind
from atrest.core.settings import Settings


@dataclass(frozen=True)
class KeyLifetimePolicy:
    rotate_after: timedelta  # an active version older than this is replaced by a new one
    retain_for: timedelta  # a retired version stays decryptable this long
    shred: bool  # ... and is then shredded (its key store items deleted), or kept forever

    def expires_at(self, created: datetime) -> datetime:
        return created + self.rotate_after

    def shred_after(self, retired: datetime) -> datetime | None:
        return retired + self.retain_for if self.shred else None

    def describe(self) -> str:
        fate = f"shredded {self.retain_for.days} d after retirement" if self.shred else "kept after retirement"
        return f"rotates every {_span(self.rotate_after)}, {fate}"


# Service-owned keys (voiceprints): rotated yearly and never shredded on a schedule: the
# service, not the customer's key policy, decides when biometric templates go.
SERVICE_LIFETIME = KeyLifetimePolicy(timedelta(days=365), timedelta(days=36500), shred=False)


@dataclass(frozen=True)
class KeyLifetimes:
    account: KeyLifetimePolicy
    instance: KeyLifetimePolicy
    own: Mapping[str, KeyLifetimePolicy] = field(default_factory=dict)  # branch key id -> a class's own lifetime

    @classmethod
    def from_settings(cls, settings: Settings) -> "KeyLifetimes":
        return cls(
            account=KeyLifetimePolicy(
                timedelta(days=settings.account_key_rotation_days),
                timedelta(days=settings.account_key_retention_days),
                settings.shred_account_keys,
            ),
            instance=KeyLifetimePolicy(
                timedelta(hours=settings.instance_key_rotation_hours),
                timedelta(days=settings.instance_key_retention_days),
                settings.shred_instance_keys,
            ),
        )

    def for_branch_key(self, branch_key_id: str) -> KeyLifetimePolicy:
        if branch_key_id in self.own:
            return self.own[branch_key_id]
        scope = BranchKeyScope.parse(branch_key_id)
        if scope.kind is ScopeKind.INSTANCE:
            return self.instance
        return SERVICE_LIFETIME if scope.kind is ScopeKind.SERVICE else self.account


def _span(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    return f"{hours // 24} d" if hours % 24 == 0 else f"{hours} h"
