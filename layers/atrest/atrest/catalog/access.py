"""Who is asking, and may they read a data class: the ReadObject API's authorization.

On AWS the function URL (AuthType AWS_IAM) has already authenticated the caller with
SigV4 and checked that its policies allow both `lambda:InvokeFunctionUrl` and
`lambda:InvokeFunction` (the latter conditioned on `lambda:InvokedViaFunctionUrl`, required
of function URLs created since October 2025; docs/audit.md); the URL event then names the caller in
`requestContext.authorizer.iam.userArn`. That is almost always an STS session,
`arn:aws:sts::<account>:assumed-role/<RoleName>/<session>`, which names the role but
not its path. So a decryptor is matched by account and role name:

- `arn:aws:iam::<account>:role/<path/>Name` matches sessions of role `Name` in `<account>`
  (IAM role names are unique within an account whatever their path);
- a bare role name `Name` matches sessions of role `Name` in the stack's own account.

Names are compared exactly as written (IAM ARNs carry the name as it was created), and
anything that is not a role session or a role (IAM users, the root user, federated
users, a malformed ARN) never matches: such callers are denied.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable

# arn:<partition>:sts::<account>:assumed-role/<role name>/<session name>
_ASSUMED_ROLE = re.compile(r"^arn:(aws[a-z-]*):sts::([0-9]{12}):assumed-role/([\w+=,.@-]{1,64})/([\w+=,.@-]{1,64})$")
# arn:<partition>:iam::<account>:role/<optional path/>name
_ROLE = re.compile(r"^arn:(aws[a-z-]*):iam::([0-9]{12}):role/((?:[\w+=,.@-]+/)*)([\w+=,.@-]{1,64})$")
_OTHER = re.compile(r"^arn:(aws[a-z-]*):(?:iam|sts)::([0-9]{12}):(\S+)$")
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")


@dataclass(frozen=True)
class Principal:
    """An authenticated caller. `role_name` is set for role sessions and roles only."""

    arn: str
    partition: str | None = None
    account_id: str | None = None
    role_name: str | None = None
    session_name: str | None = None

    @property
    def is_role(self) -> bool:
        return self.role_name is not None

    @property
    def short(self) -> str:
        """`role/session` (or the ARN's resource part) for tables and logs."""
        if self.role_name and self.session_name:
            return f"{self.role_name}/{self.session_name}"
        if self.role_name:
            return self.role_name
        return self.arn.split(":", 5)[-1] if self.arn.count(":") >= 5 else self.arn


def parse_principal(arn: str | None) -> Principal:
    """The caller an ARN names. Never raises: an ARN this module does not recognise gives a
    `Principal` with no role (so it is authorized for nothing) that keeps the text for the audit."""
    text = (arn or "").strip()
    if found := _ASSUMED_ROLE.match(text):
        partition, account, role, session = found.groups()
        return Principal(text, partition, account, role, session)
    if found := _ROLE.match(text):
        partition, account, _path, role = found.groups()
        return Principal(text, partition, account, role)
    if found := _OTHER.match(text):
        return Principal(text, found.group(1), found.group(2))
    return Principal(text[:2048])


@dataclass(frozen=True)
class Decryptor:
    """One entry of a data class's `decryptors`: a role in an account (None: the stack's)."""

    role_name: str
    account_id: str | None = None
    partition: str | None = None

    @classmethod
    def parse(cls, text: str) -> "Decryptor | None":
        """None for anything but a role ARN or a bare role name (wildcards included):
        an entry that cannot be matched exactly matches nobody."""
        if found := _ROLE.match(text):
            partition, account, _path, role = found.groups()
            return cls(role, account, partition)
        if _ROLE_NAME.match(text):
            return cls(text)
        return None

    def matches(self, principal: Principal, stack_account_id: str) -> bool:
        if not principal.is_role:
            return False
        if self.partition is not None and principal.partition != self.partition:
            return False
        return principal.account_id == (self.account_id or stack_account_id) and principal.role_name == self.role_name


def is_decryptor(principal: Principal, decryptors: Iterable[str], stack_account_id: str) -> bool:
    """Whether `principal` is one of `decryptors` (a data class's list). An empty list: nobody."""
    for entry in decryptors:
        decryptor = Decryptor.parse(entry)
        if decryptor is not None and decryptor.matches(principal, stack_account_id):
            return True
    return False
