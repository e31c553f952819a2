"""`BranchKeyScope`: which branch key protects a piece of data.

`account/<account-id>` (recordings, transcripts, knowledge documents),
`account/<account-id>/<key>` (an account class with its own lifetime, e.g. integration
configuration), `instance/<instance-id>` (contact PII) and `service/<key>` (voiceprints:
a key store under a KMS key the stack owns, never the customer's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from atrest.core.errors import AtrestError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
KEY_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # a data class's own key: `account/<id>/<key>`, `service/<key>`


class ScopeKind(str, Enum):
    ACCOUNT = "account"
    INSTANCE = "instance"
    SERVICE = "service"


@dataclass(frozen=True)
class BranchKeyScope:
    """One branch key per scope; see the module docstring for the forms."""

    kind: ScopeKind
    identifier: str
    key: str | None = None  # an account class's own branch key (its own lifetime)

    def __post_init__(self) -> None:
        valid = KEY_NAME if self.kind is ScopeKind.SERVICE else _ID
        if not valid.match(self.identifier):
            raise AtrestError(f"invalid {self.kind.value} identifier {self.identifier!r} for a branch key scope")
        if self.key is not None and (self.kind is not ScopeKind.ACCOUNT or not KEY_NAME.match(self.key)):
            raise AtrestError(f"invalid key name {self.key!r} for a {self.kind.value} scope "
                              "(only account scopes take one: lowercase letters, digits and '-')")

    @property
    def branch_key_id(self) -> str:
        suffix = f"/{self.key}" if self.key else ""
        return f"{self.kind.value}/{self.identifier}{suffix}"

    @property
    def is_service(self) -> bool:
        return self.kind is ScopeKind.SERVICE

    def __str__(self) -> str:
        return self.branch_key_id

    @classmethod
    def account(cls, account_id: str, key: str | None = None) -> "BranchKeyScope":
        return cls(ScopeKind.ACCOUNT, account_id, key)

    @classmethod
    def service(cls, key: str) -> "BranchKeyScope":
        return cls(ScopeKind.SERVICE, key)

    @classmethod
    def instance(cls, instance_id: str) -> "BranchKeyScope":
        return cls(ScopeKind.INSTANCE, instance_id)

    @classmethod
    def parse(cls, branch_key_id: str) -> "BranchKeyScope":
        kind, _, rest = branch_key_id.partition("/")
        identifier, _, key = rest.partition("/")
        try:
            return cls(ScopeKind(kind), identifier, key or None)
        except ValueError as error:
            raise AtrestError(
                f"{branch_key_id!r} is not a scope; use account/<account-id>[/<key>], instance/<instance-id> "
                "or service/<key>"
            ) from error
