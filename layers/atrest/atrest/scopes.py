"""`BranchKeyScope`: which branch key protects a piece of data."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from atrest.errors import AtrestError

_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


class ScopeKind(str, Enum):
    ACCOUNT = "account"
    INSTANCE = "instance"


@dataclass(frozen=True)
class BranchKeyScope:
    """One branch key per scope: `account/<account-id>` or `instance/<instance-id>`."""

    kind: ScopeKind
    identifier: str

    def __post_init__(self) -> None:
        if not _ID.match(self.identifier):
            raise AtrestError(f"invalid {self.kind.value} identifier {self.identifier!r} for a branch key scope")

    @property
    def branch_key_id(self) -> str:
        return f"{self.kind.value}/{self.identifier}"

    def __str__(self) -> str:
        return self.branch_key_id

    @classmethod
    def account(cls, account_id: str) -> "BranchKeyScope":
        return cls(ScopeKind.ACCOUNT, account_id)

    @classmethod
    def instance(cls, instance_id: str) -> "BranchKeyScope":
        return cls(ScopeKind.INSTANCE, instance_id)

    @classmethod
    def parse(cls, branch_key_id: str) -> "BranchKeyScope":
        kind, _, identifier = branch_key_id.partition("/")
        try:
            return cls(ScopeKind(kind), identifier)
        except ValueError as error:
            raise AtrestError(
                f"{branch_key_id!r} is not a scope; use account/<account-id> or instance/<instance-id>"
            ) from error
