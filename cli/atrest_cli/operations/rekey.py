"""Switching the KMS key that protects the branch keys, without rewriting any object.

Every object is an ESDK message whose data key is wrapped by a branch key version; each
branch key version is an item of the MPL key store whose `enc` is the version's key
material encrypted by KMS. Switching the KMS key is therefore a KMS ReEncrypt of each
item's `enc` from the old key to the new one, with the item's encryption context
(`atrest.crypto.keystore_format`), written back with a condition: KMS calls are proportional to
the number of branch key items (three per scope plus one per version), never to objects.

A rekey is a plan (`plan_rekey`) and its execution (`execute`):
- the target is validated before anything changes (`validate_target`): it exists, is in
  the stack's region, is a symmetric ENCRYPT_DECRYPT key, is enabled, and this caller can
  really use it with the key store's encryption context (a trial round trip);
- each item is re-read, re-wrapped and written back with the condition that its `kms-arn`
  and `enc` are still what was read, so a crash anywhere leaves every item either wholly
  on the old key or wholly on the new one, and a second run skips what is done;
- the metadata table records which KMS key wraps each version (`kms_key_arn` on the
  version record) and, last, the stack's active KMS key (the `CONFIG`/`KMS` item).

A rekey moves either the whole key store but the branch keys of data classes with a KMS
key of their own (`plan_stack_rekey`), or exactly one such class's branch key
(`plan_class_rekey`, `atrest rekey --data-class`): a class's branch key follows its own key
(`DataClassKmsKeys`), never the stack's, and a stack rekey leaves it where it is.

A rekey moves only items under keys it can account for: the configured keys (the stack's
and each data class's), the keys the last rekeys recorded (moved to and from), the declared
other key of the switch (`RekeyKmsKeyArn`) and the target. An item under any other key was
planted by someone who may write the key store (docs/byok.md, "Planted key store items"):
re-wrapping it would make the planted key material the customer's for good, so the whole
run is refused (`PlantedItemsError`) before anything changes.

Shredded versions have no item left in the key store, so they are never touched.
Switching what the functions are configured with (the `CustomerManagedKeyArn` stack
parameter) is the operator's step after the rekey (docs/byok.md).

Until then the functions read re-wrapped items with their discovery key store reader
(`atrest.crypto.keystore`), which unwraps with the KMS key each item names; on AWS their roles
may use the target only through a grant, so a rekey first takes *bridge grants* on the
target for them (`take_bridge_grants`), the same operations and constraint the deploy's
own `KmsGrants` take, and the run after the configuration switch retires them
(`retire_bridge_grants`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Collection, Iterable, Mapping, Sequence

from atrest.catalog.data_classes import DataClassCatalog
from atrest.core.errors import AtrestError
from atrest.crypto.grants import (
    READ_WRITE_OPERATIONS,
    ROTATE_OPERATIONS,
    GrantView,
    Grantee,
    create_grants,
    grant_name,
    list_grants,
    retire_grants,
    stack_grant_prefix,
)
from atrest.crypto.keystore_format import (
    BRANCH_KEY_ID,
    ENC,
    KMS_ARN,
    TABLE_NAME_CONTEXT,
    TYPE,
    check_item,
    check_library_version,
    item_key,
    item_kind,
    kms_encryption_context,
    version_of,
)
from atrest.core.settings import KMS_KEY_ARN, Settings
from atrest.crypto.keystore import class_branch_key, resolve_class_kms_keys
from atrest.storage.record_keys import PARTITION, class_kms_config_key, class_kms_configs, key_version_key, kms_config_key
from atrest.storage.records import utc_now

_WRITE_ATTEMPTS = 3
# The function roles a bridge grant is for, by stack output, with the operations the
# template's KmsGrants custom resource gives each (tests/infrastructure/test_kms_fence.py
# keeps the two equal).
BRIDGE_ROLE_OUTPUTS: dict[str, tuple[str, ...]] = {
    "EncryptObjectFunctionRoleArn": READ_WRITE_OPERATIONS,
    "ProtectContactFunctionRoleArn": READ_WRITE_OPERATIONS,
    "ExpireKeysFunctionRoleArn": ROTATE_OPERATIONS,
    "ReadObjectFunctionRoleArn": ("Decrypt",),  # reads objects: unwraps branch keys, never makes them
}


class TargetKeyError(AtrestError):
    """The KMS key to switch to cannot be used; nothing was changed."""


class RekeyConflictError(AtrestError):
    """An item kept changing under the rekey (a concurrent rotation); run the rekey again."""


class PlantedItemsError(AtrestError):
    """Key store items under KMS keys the stack never used: the rekey refused, changing nothing."""

    def __init__(self, items: Sequence["KeyStoreItemRef"], accounted: Collection[str]) -> None:
        self.items = list(items)
        shown = "; ".join(f"{ref.branch_key_id} {ref.item_type} under {ref.kms_arn or '(no key)'}"
                          for ref in self.items[:10])
        more = f" and {len(self.items) - 10} more" if len(self.items) > 10 else ""
        super().__init__(
            f"{len(self.items)} key store item(s) are wrapped by KMS keys this stack never used: {shown}{more}. "
            f"The keys a rekey may move from are {', '.join(sorted(accounted))}. Someone with write access to the key "
            "store planted or changed these items; re-wrapping them would make their key material yours for good. "
            "Nothing was changed: find the writer in CloudTrail, delete the items (docs/byok.md, \"Planted key store "
            "items\"), then run the rekey again")


class BridgeGrantError(AtrestError):
    """A bridge grant could not be taken or retired; the message says what to do."""


@dataclass(frozen=True)
class KeyStoreItemRef:
    """One key store item to move: which branch key, which item, which KMS key wraps it now."""

    branch_key_id: str
    item_type: str
    kms_arn: str

    @property
    def kind(self) -> str:
        return item_kind(self.item_type)


@dataclass
class RekeyPlan:
    """What a rekey to `target_arn` would do. `pending` items are still on another key.

    `only`: the branch keys it moves (None: all but `excluded`); `data_class`: the class whose
    own branch key it moves (`atrest rekey --data-class`); `excluded`: branch key id -> the
    data class that keeps it on a key of its own (left out of a stack rekey)."""

    target_arn: str
    configured_arn: str
    pending: list[KeyStoreItemRef]
    done: list[KeyStoreItemRef]
    only: frozenset[str] | None = None
    data_class: str | None = None
    excluded: dict[str, str] = field(default_factory=dict)
    left_out: int = 0  # key store items of `excluded` branch keys, not moved

    @property
    def total(self) -> int:
        return len(self.pending) + len(self.done)

    @property
    def is_noop(self) -> bool:
        return not self.pending and self.configured_arn == self.target_arn

    def source_keys(self) -> dict[str, int]:
        """KMS key ARN -> how many pending items it wraps now."""
        counts: dict[str, int] = {}
        for ref in self.pending:
            counts[ref.kms_arn] = counts.get(ref.kms_arn, 0) + 1
        return counts

    def scopes(self) -> list[str]:
        return sorted({ref.branch_key_id for ref in self.pending + self.done})


@dataclass
class RekeyReport:
    target_arn: str
    rewrapped: list[KeyStoreItemRef] = field(default_factory=list)
    already_done: int = 0
    versions_recorded: int = 0

    @property
    def kms_calls(self) -> int:
        return len(self.rewrapped)  # one ReEncrypt per item re-wrapped


def _parse_arn(arn: str) -> re.Match[str]:
    match = KMS_KEY_ARN.match(arn or "")
    if match is None:
        raise TargetKeyError(
            f"{arn!r} is not a KMS key ARN (arn:aws:kms:<region>:<account>:key/<key-id>); aliases and key ids are "
            "not accepted because the key store records the full ARN; nothing was changed"
        )
    return match


def refuse_service_key(target_arn: str, settings: Settings) -> None:
    """Raise `TargetKeyError` when `target_arn` is the stack's service-owned KMS key
    (`AtrestServiceKmsKey`, `settings.service_kms_key_arn`).

    That key wraps only the service's own branch keys (voiceprints), in a key store apart
    from the customer's, so that no customer decision reaches them and no customer data
    depends on a key the customer does not own. Moving the customer's branch keys (all of
    them, or one data class's) under it would break both promises, so it is refused
    before anything is read or changed. Compared by key id: the same key can be spelled
    with another partition or account alias in the ARN, its id cannot."""
    service = settings.service_kms_key_arn
    if not service or not target_arn:
        return
    target_match, service_match = KMS_KEY_ARN.match(target_arn.strip()), KMS_KEY_ARN.match(service)
    same = (target_match["key_id"] == service_match["key_id"] if target_match and service_match
            else target_arn.strip() == service)
    if same:
        raise TargetKeyError(
            f"{target_arn} is the stack's service-owned KMS key (AtrestServiceKmsKey): it wraps only the service's "
            "own branch keys (voiceprints, service/... scopes) and never customer data, so no rekey may move the "
            "customer's branch keys under it; choose a customer managed key of your own (docs/byok.md); "
            "nothing was changed"
        )


def validate_target(kms: Any, target_arn: str, settings: Settings, region: str) -> dict[str, Any]:
    """Raise `TargetKeyError` (naming the reason) unless the stack can switch to `target_arn`.

    Changes nothing: DescribeKey, then a trial GenerateDataKeyWithoutPlaintext and Decrypt
    with the key store's encryption context (what the function roles' grants and key
    policy statements are constrained to). Returns the key's metadata.
    """
    match = _parse_arn(target_arn)
    refuse_service_key(target_arn, settings)
    if match["region"] != region:
        raise TargetKeyError(
            f"{target_arn} is in region {match['region']} but the stack runs in {region}: the key store calls KMS in "
            "its own region (use a key, or a multi-Region replica, in that region); nothing was changed"
        )
    try:
        metadata = kms.describe_key(KeyId=target_arn)["KeyMetadata"]
    except kms.exceptions.NotFoundException:
        raise TargetKeyError(f"KMS key {target_arn} does not exist (DescribeKey: not found); nothing was changed") from None
    except Exception as error:  # AccessDenied, malformed, ...
        raise TargetKeyError(f"cannot describe KMS key {target_arn}: {error}; this role may not use it; "
                             "nothing was changed") from None
    if metadata.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT" or metadata.get("KeySpec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT":
        raise TargetKeyError(
            f"KMS key {target_arn} is {metadata.get('KeySpec')} for {metadata.get('KeyUsage', 'ENCRYPT_DECRYPT')}; the key store needs a "
            "symmetric encryption key (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT); nothing was changed"
        )
    if metadata.get("KeyState", "Enabled") != "Enabled" or metadata.get("Enabled") is False:
        raise TargetKeyError(f"KMS key {target_arn} is {metadata.get('KeyState', 'disabled')}, not Enabled; "
                             "nothing was changed")
    probe_context = {TABLE_NAME_CONTEXT: settings.keystore_name, "atrest-rekey": "usability check"}
    try:
        blob = kms.generate_data_key_without_plaintext(KeyId=target_arn, NumberOfBytes=32,
                                                       EncryptionContext=probe_context)["CiphertextBlob"]
        kms.decrypt(CiphertextBlob=blob, KeyId=target_arn, EncryptionContext=probe_context)
    except Exception as error:
        raise TargetKeyError(
            f"this stack may not use KMS key {target_arn} for the key store ({error}); grant kms:GenerateDataKey"
            "WithoutPlaintext, kms:ReEncrypt* and kms:Decrypt with encryption context "
            f"tablename={settings.keystore_name} (docs/byok.md); nothing was changed"
        ) from None
    return metadata


def _scan_items(dynamodb: Any, table: str) -> Iterable[dict[str, Any]]:
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ConsistentRead=True):
        yield from page.get("Items", [])


def plan_rekey(dynamodb: Any, settings: Settings, target_arn: str, configured_arn: str | None = None, *,
               only: Collection[str] | None = None, excluded: Mapping[str, str] | None = None,
               data_class: str | None = None) -> RekeyPlan:
    """Every key store item of the branch keys in scope (`only`, else all but `excluded`),
    split into those still on another key and those on the target.

    Checks every item's format first (`KeyStoreFormatError`, nothing changed), refuses
    the service-owned key as a target (`refuse_service_key`) before reading any, and
    refuses the whole run (`PlantedItemsError`) if any item of the table, in scope or not,
    is under a key `accounted_kms_keys` does not name."""
    refuse_service_key(target_arn, settings)
    check_library_version()
    pending, done, planted = [], [], []
    excluded = dict(excluded or {})
    left_out = 0
    accounted = accounted_kms_keys(dynamodb, settings, target_arn, configured_arn)
    for item in _scan_items(dynamodb, settings.keystore_table):
        check_item(item)
        ref = KeyStoreItemRef(item[BRANCH_KEY_ID]["S"], item[TYPE]["S"], item[KMS_ARN]["S"])
        if ref.kms_arn not in accounted:
            planted.append(ref)
            continue
        if (only is not None and ref.branch_key_id not in only) or ref.branch_key_id in excluded:
            left_out += ref.branch_key_id in excluded
            continue
        (done if ref.kms_arn == target_arn else pending).append(ref)
    if planted:
        raise PlantedItemsError(planted, accounted)
    order = {"version": 0, "active": 1, "beacon": 2}  # versions first: the ACTIVE copy follows its version
    pending.sort(key=lambda r: (r.branch_key_id, order[r.kind], r.item_type))
    return RekeyPlan(target_arn, configured_arn or settings.kms_key_arn, pending, done,
                     frozenset(only) if only is not None else None, data_class, excluded, left_out)


def accounted_kms_keys(dynamodb: Any, settings: Settings, target_arn: str,
                       configured_arn: str | None = None) -> frozenset[str]:
    """The KMS keys a customer key store item may be under: configured (the stack's, each
    data class's, the declared other key of a switch), recorded by earlier rekeys (the keys
    moved to and from, the stack's and each class's) and the target. Never the service key."""
    keys = set(settings.fenced_kms_keys()) | {target_arn}
    if configured_arn:
        keys.add(configured_arn)
    item = dynamodb.get_item(TableName=settings.metadata_table, Key=kms_config_key(), ConsistentRead=True).get("Item") or {}
    keys |= {item[name]["S"] for name in ("kms_key_arn", "previous_kms_key_arn") if name in item}
    keys |= {kms_key_arn for _, kms_key_arn in recorded_class_kms_keys(dynamodb, settings).values()}
    keys.discard(settings.service_kms_key_arn)
    keys.discard("")
    return frozenset(keys)


def _replan(dynamodb: Any, settings: Settings, plan: RekeyPlan) -> RekeyPlan:
    return plan_rekey(dynamodb, settings, plan.target_arn, plan.configured_arn, only=plan.only,
                      excluded=plan.excluded, data_class=plan.data_class)


def class_kms_key_exclusions(dynamodb: Any, settings: Settings,
                             catalog: DataClassCatalog | None = None) -> dict[str, str]:
    """Branch key id -> data class, for every class whose branch key stays on a key of its
    own: those the configuration names (`DataClassKmsKeys`) and those a class rekey moved
    and the configuration does not name yet (between `atrest rekey --data-class` and the
    deploy)."""
    exclusions = {assigned.branch_key_id: assigned.data_class for assigned in resolve_class_kms_keys(settings, catalog)}
    for data_class, (branch_key_id, _) in recorded_class_kms_keys(dynamodb, settings).items():
        exclusions.setdefault(branch_key_id, data_class)
    return exclusions


def plan_stack_rekey(dynamodb: Any, settings: Settings, target_arn: str,
                     catalog: DataClassCatalog | None = None) -> RekeyPlan:
    """`atrest rekey --to-kms-key`: every branch key but those of data classes on keys of their own."""
    return plan_rekey(dynamodb, settings, target_arn, excluded=class_kms_key_exclusions(dynamodb, settings, catalog))


def plan_class_rekey(dynamodb: Any, settings: Settings, data_class: str, target_arn: str,
                     catalog: DataClassCatalog | None = None) -> RekeyPlan:
    """`atrest rekey --data-class NAME --to-kms-key ARN`: the class's own branch key only.

    Raises `ConfigurationError` (nothing changed) for a class that cannot have a KMS key of
    its own: not in the catalog, sharing its branch key, instance-scoped or service-owned."""
    catalog = catalog or DataClassCatalog.from_settings(settings)
    branch_key_id = class_branch_key(catalog, data_class, settings.account_id)
    configured = settings.data_class_kms_keys.get(data_class, settings.kms_key_arn)
    return plan_rekey(dynamodb, settings, target_arn, configured, only={branch_key_id}, data_class=data_class)


class KeyStoreRewrap:
    """Moves key store items to a target KMS key, one conditional write at a time."""

    def __init__(self, kms: Any, dynamodb: Any, settings: Settings) -> None:
        self.kms = kms
        self.dynamodb = dynamodb
        self.settings = settings

    def rewrap(self, ref: KeyStoreItemRef, target_arn: str) -> bool:
        """Re-wrap one item under `target_arn`. False when it already was (a previous run).

        The write is conditional on the item being exactly what was read: a rotation or a
        shred racing with us makes us read again (or find the item gone: nothing to do)."""
        for _ in range(_WRITE_ATTEMPTS):
            item = self.dynamodb.get_item(
                TableName=self.settings.keystore_table,
                Key=item_key(ref.branch_key_id, ref.item_type),
                ConsistentRead=True,
            ).get("Item")
            if item is None:
                return False  # shredded or forgotten since the plan: nothing left to protect
            check_item(item)
            source_arn = item[KMS_ARN]["S"]
            if source_arn == target_arn:
                return False
            name = self.settings.keystore_name
            ciphertext = self.kms.re_encrypt(
                CiphertextBlob=item[ENC]["B"],
                SourceKeyId=source_arn,
                SourceEncryptionContext=kms_encryption_context(item, name),
                DestinationKeyId=target_arn,
                DestinationEncryptionContext=kms_encryption_context(item, name, target_arn),
            )["CiphertextBlob"]
            try:
                self.dynamodb.update_item(
                    TableName=self.settings.keystore_table,
                    Key=item_key(item[BRANCH_KEY_ID]["S"], item[TYPE]["S"]),
                    UpdateExpression="SET #enc = :new_enc, #kms = :target",
                    ConditionExpression="#kms = :source AND #enc = :old_enc",
                    ExpressionAttributeNames={"#enc": ENC, "#kms": KMS_ARN},
                    ExpressionAttributeValues={
                        ":new_enc": {"B": ciphertext}, ":target": {"S": target_arn},
                        ":source": {"S": source_arn}, ":old_enc": item[ENC],
                    },
                )
            except self.dynamodb.exceptions.ConditionalCheckFailedException:
                continue
            return True
        raise RekeyConflictError(f"{ref.branch_key_id} {ref.item_type} changed {_WRITE_ATTEMPTS} times while being "
                                 "re-wrapped (a rotation running now?); run the rekey again to finish")

    def record_version(self, ref: KeyStoreItemRef, target_arn: str) -> bool:
        """Note on the version's metadata record which KMS key wraps it (if it has a record)."""
        if ref.kind != "version":
            return False
        version = version_of(ref.item_type)
        try:
            self.dynamodb.update_item(
                TableName=self.settings.metadata_table,
                Key=key_version_key(ref.branch_key_id, version),
                UpdateExpression="SET kms_key_arn = :arn, kms_key_switched_at = :at",
                ConditionExpression=f"attribute_exists({PARTITION})",
                ExpressionAttributeValues={":arn": {"S": target_arn}, ":at": {"S": utc_now()}},
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True


def execute(plan: RekeyPlan, kms: Any, dynamodb: Any, settings: Settings,
            progress: Callable[[int, int], None] | None = None) -> RekeyReport:
    """Re-wrap every pending item of `plan`, then record the switch in the metadata table.

    Interruptible anywhere: run `plan_rekey` + `execute` again to finish. Items created
    meanwhile under the old key (a function configured with it created a branch key) are
    picked up by the final re-plan and moved too."""
    report = RekeyReport(plan.target_arn, already_done=len(plan.done))
    rewrap = KeyStoreRewrap(kms, dynamodb, settings)
    done = 0
    total = plan.total
    if progress:
        progress(len(plan.done), total)
    pending = list(plan.pending)
    for _ in range(_WRITE_ATTEMPTS):
        for ref in pending:
            if rewrap.rewrap(ref, plan.target_arn):
                report.rewrapped.append(ref)
            if rewrap.record_version(ref, plan.target_arn):
                report.versions_recorded += 1
            done += 1
            if progress:
                progress(len(plan.done) + done, max(total, len(plan.done) + done))
        pending = _replan(dynamodb, settings, plan).pending
        if not pending:
            break
        total += len(pending)
    else:
        raise RekeyConflictError(f"{len(pending)} key store item(s) kept appearing under another KMS key; "
                                 "switch the functions' configuration, then run the rekey again")
    # Versions already moved by an earlier run may lack their metadata note (a crash between
    # the two writes): record every version of the plan, idempotently.
    for ref in plan.done:
        if rewrap.record_version(ref, plan.target_arn):
            report.versions_recorded += 1
    if plan.data_class is not None and plan.only:
        (branch_key_id,) = plan.only
        record_class_kms_key(dynamodb, settings, plan.data_class, branch_key_id, plan.target_arn,
                             previous=plan.configured_arn)
    else:
        record_active_kms_key(dynamodb, settings, plan.target_arn, previous=plan.configured_arn)
    return report


def record_active_kms_key(dynamodb: Any, settings: Settings, kms_arn: str, previous: str | None = None) -> None:
    """The metadata table's `CONFIG`/`KMS` item: the KMS key every branch key is wrapped with."""
    item = {**kms_config_key(), "kms_key_arn": {"S": kms_arn}, "switched_at": {"S": utc_now()}}
    if previous and previous != kms_arn:
        item["previous_kms_key_arn"] = {"S": previous}
    dynamodb.put_item(TableName=settings.metadata_table, Item=item)


def record_class_kms_key(dynamodb: Any, settings: Settings, data_class: str, branch_key_id: str, kms_arn: str,
                         previous: str | None = None) -> None:
    """The metadata table's `CONFIG`/`KMS#<class>` item: the KMS key a class rekey moved the
    class's branch key to, so that a stack rekey leaves it there even before the deploy
    names it in `DataClassKmsKeys`. A class moved to the stack's own key rejoins the stack:
    its item is deleted, and the next stack rekey moves it with the rest."""
    key = class_kms_config_key(data_class)
    if kms_arn == settings.kms_key_arn:
        dynamodb.delete_item(TableName=settings.metadata_table, Key=key)
        return
    item = {**key, "data_class": {"S": data_class}, "branch_key_id": {"S": branch_key_id},
            "kms_key_arn": {"S": kms_arn}, "switched_at": {"S": utc_now()}}
    if previous and previous != kms_arn:
        item["previous_kms_key_arn"] = {"S": previous}
    dynamodb.put_item(TableName=settings.metadata_table, Item=item)


def recorded_class_kms_keys(dynamodb: Any, settings: Settings) -> dict[str, tuple[str, str]]:
    """Data class -> (branch key id, KMS key) of every class a class rekey moved off the stack's key."""
    found = {}
    for page in dynamodb.get_paginator("query").paginate(
            TableName=settings.metadata_table, ConsistentRead=True, **class_kms_configs()):
        for item in page.get("Items", []):
            found[item["data_class"]["S"]] = (item["branch_key_id"]["S"], item["kms_key_arn"]["S"])
    return found


def recorded_kms_key(dynamodb: Any, settings: Settings) -> str | None:
    """The KMS key the last completed rekey moved the stack to, if any."""
    item = dynamodb.get_item(TableName=settings.metadata_table,
                             Key=kms_config_key(), ConsistentRead=True).get("Item")
    return item["kms_key_arn"]["S"] if item else None


# -- bridge grants: the function roles may use the target until `sam deploy` grants it ----------


def bridge_grant_prefix(stack_name: str) -> str:
    """`atrest-<stack>-bridge:`. Within the stack's prefix, so `atrest grants list` shows them;
    the ":" (never in a role name) keeps them apart from the deploy's grants, named
    `atrest-<stack>-<role name>-...` (a stack called "bridge" would otherwise collide)."""
    return f"{stack_grant_prefix(stack_name)}bridge:"


def bridge_grantees(outputs: Mapping[str, str]) -> tuple[list[Grantee], list[str]]:
    """The roles to bridge, from the stack outputs, and the outputs that were missing."""
    grantees, missing = [], []
    for output, operations in BRIDGE_ROLE_OUTPUTS.items():
        role_arn = outputs.get(output, "")
        if role_arn.startswith("arn:"):
            grantees.append(Grantee(role_arn, operations))
        else:
            missing.append(output)
    return grantees, missing


@dataclass
class BridgeGrants:
    """What `take_bridge_grants` did: grants it created, and those an earlier run had made."""

    key_arn: str
    taken: list[GrantView] = field(default_factory=list)
    kept: list[GrantView] = field(default_factory=list)


def _is_same_grant(view: GrantView, name: str, grantee: Grantee, keystore_name: str) -> bool:
    return (view.name == name and view.grantee == grantee.role_arn and set(view.operations) == set(grantee.operations)
            and view.encryption_context == {TABLE_NAME_CONTEXT: keystore_name})


def take_bridge_grants(kms: Any, target_arn: str, grantees: Sequence[Grantee], keystore_name: str,
                       stack_name: str) -> BridgeGrants:
    """One grant per role on `target_arn`, constrained to `tablename=<key store>`, unless an
    identical one (same name, grantee, operations, constraint) is already there: a resumed
    rekey takes none twice. (KMS answers an identical CreateGrant with the existing grant,
    but the emulator makes a second one, and listing first keeps both honest.) Takes no retiring principal:
    the stack's account may retire them (kms:RetireGrant), or a key administrator revoke."""
    prefix = bridge_grant_prefix(stack_name)
    result = BridgeGrants(target_arn)
    try:
        existing = list_grants(kms, target_arn, prefix)
        for grantee in grantees:
            name = grant_name(prefix, grantee)
            same = [view for view in existing if _is_same_grant(view, name, grantee, keystore_name)]
            if same:
                result.kept.append(same[0])
                continue
            grant_id = create_grants(kms, target_arn, [grantee], keystore_name, prefix)[0]
            result.taken.append(GrantView(grant_id, name, grantee.role_arn, grantee.operations,
                                          {TABLE_NAME_CONTEXT: keystore_name}, ""))
    except Exception as error:
        raise BridgeGrantError(
            f"could not take bridge grants on {target_arn} for the function roles ({error}); this run re-wrapped "
            f"no key store item. Allow this caller kms:ListGrants and kms:CreateGrant on that key (with kms:GrantOperations "
            f"and kms:EncryptionContext:tablename={keystore_name}, docs/byok.md), then run the rekey again"
        ) from None
    return result


def retire_bridge_grants(kms: Any, key_arn: str, stack_name: str) -> list[GrantView]:
    """Retire (or revoke) every bridge grant of the stack on `key_arn`; returns those that were there."""
    try:
        views = list_grants(kms, key_arn, bridge_grant_prefix(stack_name))
        gone = set(retire_grants(kms, key_arn, [view.grant_id for view in views]))
    except Exception as error:
        raise BridgeGrantError(
            f"could not retire the bridge grants on {key_arn} ({error}); the rekey itself is complete. Allow this "
            "caller kms:RetireGrant (or kms:RevokeGrant on the key) and run the rekey again, or retire them with "
            "`aws kms retire-grant` (`atrest grants list` shows them)"
        ) from None
    return [view for view in views if view.grant_id in gone]
