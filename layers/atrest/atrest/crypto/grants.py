"""KMS grants on the customer managed keys the stack does not own (bring your own key).

The stack's grant keys are `CustomerManagedKeyArn` when set and every data class's own key
(`DataClassKmsKeys`, `grant_keys`). On each, the `KmsGrants` custom resource
(functions/kms_grant) takes one grant per function role at deploy time (`take_grants`) and
retires them when the stack is deleted or the keys are switched (`retire_generation`). Each
grant allows only the operations that role's key store work needs, and only with the
encryption context `tablename=<key store name>` (`EncryptionContextSubset`): the key store
puts that pair in every KMS call, so a grant can wrap and unwrap this stack's branch keys
and nothing else.

Grant names are `<prefix><role name>-<generation>` (prefix `atrest-<stack>-`; the
generation is the deployment request that took them), which is how `atrest grants list`
finds this stack's grants among the key's others, and how a deployment's grants are found
again to be retired: CloudFormation's response allows 1 KB of physical id, too little for
the grant ids of several keys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from atrest.crypto.keystore_format import TABLE_NAME_CONTEXT

# What each kind of key store work asks of KMS (MPL: CreateKey/VersionKey need
# GenerateDataKeyWithoutPlaintext and ReEncrypt; reading a branch key needs Decrypt).
READ_WRITE_OPERATIONS = ("Decrypt", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo")
ROTATE_OPERATIONS = ("GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo")
ALLOWED_OPERATIONS = frozenset(READ_WRITE_OPERATIONS)


@dataclass(frozen=True)
class Grantee:
    """A role and the KMS operations its grant allows."""

    role_arn: str
    operations: tuple[str, ...] = READ_WRITE_OPERATIONS

    @property
    def role_name(self) -> str:
        return self.role_arn.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class GrantView:
    """A grant as `atrest grants list` shows it."""

    grant_id: str
    name: str
    grantee: str
    operations: tuple[str, ...]
    encryption_context: dict[str, str]
    created: str


def grant_name(prefix: str, grantee: Grantee, generation: str = "") -> str:
    """`<prefix><role name>[-<generation>]`. The generation (the deployment request that made
    the grant) keeps a re-created grant distinct from the one it replaces, so retiring the
    old one never retires the new."""
    name = f"{prefix}{grantee.role_name}" + (f"-{generation}" if generation else "")
    # KMS grant names: up to 256 characters of [a-zA-Z0-9:/_-].
    return "".join(c if c.isalnum() or c in ":/_-" else "-" for c in name)[:256]


def parse_grantees(specs: Iterable[Any]) -> list[Grantee]:
    """Grantees from the custom resource's `Grantees`: [{RoleArn, Operations}] (CloudFormation
    sends every value as a string or list of strings). Refuses operations the key store
    does not need."""
    grantees = []
    for spec in specs:
        operations = tuple(spec.get("Operations") or READ_WRITE_OPERATIONS)
        extra = sorted(set(operations) - ALLOWED_OPERATIONS)
        if extra:
            raise ValueError(f"grant for {spec.get('RoleArn')}: {extra} are not key store operations "
                             f"(allowed: {sorted(ALLOWED_OPERATIONS)})")
        if not str(spec.get("RoleArn", "")).startswith("arn:"):
            raise ValueError(f"grantee {spec!r} has no RoleArn")
        grantees.append(Grantee(str(spec["RoleArn"]), operations))
    return grantees


def create_grants(kms: Any, key_arn: str, grantees: Sequence[Grantee], keystore_name: str, prefix: str,
                  retiring_principal: str | None = None, generation: str = "") -> list[str]:
    """One grant per grantee on `key_arn`, constrained to the key store's context. Returns
    the grant ids. A retried request makes no second grant: KMS returns the existing grant
    for an identical CreateGrant (same name, grantee, operations and constraints)."""
    ids = []
    for grantee in grantees:
        name = grant_name(prefix, grantee, generation)
        request: dict[str, Any] = {
            "KeyId": key_arn,
            "GranteePrincipal": grantee.role_arn,
            "Operations": list(grantee.operations),
            "Constraints": {"EncryptionContextSubset": {TABLE_NAME_CONTEXT: keystore_name}},
            "Name": name,
        }
        if retiring_principal:
            request["RetiringPrincipal"] = retiring_principal
        ids.append(kms.create_grant(**request)["GrantId"])
    return ids


def grant_keys(customer_key_arn: str | None, data_class_kms_keys: Mapping[str, str]) -> list[str]:
    """The keys the stack takes grants on: the customer's key (when set) and each data class's
    own key, each once, in a stable order. A key the stack creates (`AtrestKmsKey`) is not
    among them: its key policy names the roles."""
    keys = ([customer_key_arn] if customer_key_arn else []) + sorted(set(data_class_kms_keys.values()))
    return list(dict.fromkeys(keys))


def take_grants(kms: Any, key_arns: Sequence[str], grantees: Sequence[Grantee], keystore_name: str, prefix: str,
                retiring_principal: str | None = None, generation: str = "") -> dict[str, list[str]]:
    """`create_grants` on each key, taking none that is already there (same name, grantee,
    operations and constraint: a retried request), so a repeated request never piles them
    up. If a grant cannot be taken, those this call created are retired before the error
    propagates: a failed deployment leaves no grant behind. Returns key -> grant ids."""
    grants: dict[str, list[str]] = {}
    created: dict[str, list[str]] = {}
    try:
        for key_arn in key_arns:
            existing = {(view.name, view.grantee, frozenset(view.operations)): view.grant_id
                        for view in list_grants(kms, key_arn, prefix)
                        if view.encryption_context == {TABLE_NAME_CONTEXT: keystore_name}}
            grants[key_arn] = []
            for grantee in grantees:
                name = grant_name(prefix, grantee, generation)
                grant_id = existing.get((name, grantee.role_arn, frozenset(grantee.operations)))
                if grant_id is None:
                    (grant_id,) = create_grants(kms, key_arn, [grantee], keystore_name, prefix, retiring_principal,
                                                generation)
                    created.setdefault(key_arn, []).append(grant_id)
                grants[key_arn].append(grant_id)
    except Exception:
        for key_arn, ids in created.items():
            try:
                retire_grants(kms, key_arn, ids)
            except Exception:  # noqa: S112 - the error that stopped the request is the one to report
                continue
        raise
    return grants


def retire_generation(kms: Any, key_arns: Sequence[str], grantees: Sequence[Grantee], prefix: str,
                      generation: str) -> dict[str, list[str]]:
    """Retire the grants one deployment request took (`take_grants` with that generation) on
    each key: found by name, so grants of other generations (the update that replaced them)
    stay. A key that no longer exists has nothing left to retire. Returns key -> retired ids."""
    names = {grant_name(prefix, grantee, generation) for grantee in grantees}
    retired: dict[str, list[str]] = {}
    for key_arn in key_arns:
        try:
            views = list_grants(kms, key_arn, prefix)
        except kms.exceptions.NotFoundException:
            continue
        retired[key_arn] = retire_grants(kms, key_arn, [view.grant_id for view in views if view.name in names])
    return retired


def retire_grants(kms: Any, key_arn: str, grant_ids: Iterable[str]) -> list[str]:
    """Retire (or, failing that, revoke) each grant; a grant already gone is not an error.
    Returns the ids that were still there."""
    gone = []
    for grant_id in grant_ids:
        try:
            kms.retire_grant(KeyId=key_arn, GrantId=grant_id)
        except kms.exceptions.NotFoundException:
            continue
        except Exception:  # not the retiring principal: the key's account may still revoke
            try:
                kms.revoke_grant(KeyId=key_arn, GrantId=grant_id)
            except kms.exceptions.NotFoundException:
                continue
        gone.append(grant_id)
    return gone


def list_grants(kms: Any, key_arn: str, prefix: str = "") -> list[GrantView]:
    """The key's grants whose name starts with `prefix` (this stack's), oldest first."""
    views = []
    for page in kms.get_paginator("list_grants").paginate(KeyId=key_arn):
        for grant in page.get("Grants", []):
            name = grant.get("Name", "")
            if not name.startswith(prefix):
                continue
            constraints = grant.get("Constraints") or {}
            context = constraints.get("EncryptionContextSubset") or constraints.get("EncryptionContextEquals") or {}
            views.append(GrantView(grant["GrantId"], name, grant.get("GranteePrincipal", ""),
                                   tuple(grant.get("Operations", [])), dict(context), str(grant.get("CreationDate", ""))))
    return sorted(views, key=lambda v: (v.created, v.name))


def stack_grant_prefix(stack_name: str) -> str:
    return f"atrest-{stack_name}-"
