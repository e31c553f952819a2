"""`BranchKeyStore`: branch keys in the MPL key store, and hierarchical keyrings over them.

Branch keys are created on first use. Two processes creating the same scope at once
is expected (a burst of first uploads): the key store's CreateKey writes with a
condition, so exactly one wins and the loser reads the winner's key.

Two MPL key store objects over the one table, because reading and administering branch
keys need different KMS configurations:
- the *writer* (`KMSConfigurationKmsKeyArn`) creates and versions branch keys, always
  under the configured KMS key;
- the *reader* (`KMSConfigurationDiscovery`) fetches branch key versions (for encrypt and
  decrypt) and unwraps each with the KMS key its item names. After `atrest rekey` moves
  items to a new KMS key, a function still configured with the old one keeps working
  without a redeploy.

Discovery alone would unwrap with *any* key an item names, and anyone who may write the
table (the writer roles, operators, CI) could plant an item under a KMS key of their own:
new data would then be encrypted under key material they hold. So every store is fenced
twice: each function role has an explicit IAM Deny on every KMS key but the stack's
(template.yaml, KmsKeyFencePolicy; a grant cannot override it), and here, every key store item
the MPL reads is checked before the MPL may call KMS with it: an item naming a key outside
`allowed_kms_keys` (`Settings.fenced_kms_keys`) raises `ForeignKmsKeyError`, naming the
item, and logs `KeyStoreItemRefused` (a metric filter counts it; an alarm fires: it is an
attack signal). The check is a botocore hook on the GetItem responses of this store's
table, the one place the MPL's reads pass through before its KMS call.

A data class with a KMS key of its own (`DataClassKmsKeys`, docs/byok.md) has its branch
key created and rotated under that key. The MPL's writer takes one KMS key per key store
object, so `KeyStores` holds one writer per distinct KMS key over the same table and picks
it by branch key id; the readers are discovery readers and need no such choice.

Rotation is the key store's own VersionKey. Shredding is the one operation the MPL
does not offer, so it is the one place atrest writes key store items by hand: it
deletes a version's item (`branch:version:<v>`), and for an instance that is forgotten
every item of its branch key. Nothing else touches the table directly; reads of the
raw items (versions and create times) need no KMS call.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Collection, Mapping

from aws_cryptographic_material_providers.keystore import KeyStore
from aws_cryptographic_material_providers.keystore.config import KeyStoreConfig
from aws_cryptographic_material_providers.keystore.models import (
    CreateKeyInput,
    Discovery,
    GetActiveBranchKeyInput,
    GetBeaconKeyInput,
    KMSConfigurationDiscovery,
    KMSConfigurationKmsKeyArn,
    VersionKeyInput,
)
from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
from aws_cryptographic_material_providers.mpl.models import (
    CacheTypeDefault,
    CreateAwsKmsHierarchicalKeyringInput,
    DefaultCache,
)

from atrest.catalog.data_classes import SOURCE_S3, DataClassCatalog
from atrest.catalog.scopes import BranchKeyScope, ScopeKind
from atrest.core.clients import AwsClients
from atrest.core.clock import from_text
from atrest.core.errors import AtrestError, ConfigurationError
from atrest.core.settings import DATA_CLASS_KMS_KEYS_PARAMETER, DATA_CLASS_KMS_KEYS_VARIABLE, Settings
from atrest.crypto.checksums import ChecksumKey
from atrest.crypto.keystore_format import (
    ACTIVE_TYPE,
    BEACON_TYPE,
    BRANCH_KEY_ID,
    CREATE_TIME,
    KMS_ARN,
    TYPE,
    VERSION,
    VERSION_TYPE_PREFIX,
    item_key,
    text_of,
    version_of,
    version_type,
)

log = logging.getLogger(__name__)

# How long a process that lost a branch key's creation waits for the winner's items.
CONCURRENT_CREATE_WAIT_SECONDS = 10.0

# The token the metric filters count (template.yaml, *KeyStoreItemRefusedFilter): keep it in the log message.
REFUSED_ITEM_LOG_TOKEN = "KeyStoreItemRefused"

# Custom encryption context bound into every branch key we create (required by the
# MPL for a branch key id of our choosing, and a record of what the key is for).
SCOPE_CONTEXT_KEY = "atrest-scope"

_NOT_FOUND = "No item found for corresponding branch key identifier"


@dataclass(frozen=True)
class StoredVersion:
    """A branch key version as the key store holds it (no key material)."""

    branch_key_id: str
    version: str
    created: datetime
    active: bool = False
    kms_arn: str = ""  # the KMS key its item is wrapped by (what `atrest rekey` moves)


# Set while this module reads an item as stored (`describe_active`): the fence guards what
# the MPL unwraps, not atrest's own listing, so a planted item can still be seen and deleted.
_RAW_READ = threading.local()


class ForeignKmsKeyError(AtrestError):
    """A key store item names a KMS key outside the stack's fence; refused before any KMS call."""

    def __init__(self, table: str, item: Mapping[str, Any], allowed: Collection[str]) -> None:
        self.table = table
        self.branch_key_id = text_of(item, BRANCH_KEY_ID, "?")
        self.item_type = text_of(item, TYPE, "?")
        self.kms_arn = text_of(item, KMS_ARN)
        super().__init__(
            f"key store item {self.branch_key_id} {self.item_type} (table {table}) is wrapped by KMS key "
            f"{self.kms_arn or '(none)'}, which is not one this stack uses ({', '.join(sorted(allowed))}); refused "
            "before any KMS call. Only a principal with write access to the key store can have put it there: treat it "
            "as an attack, find the writer in CloudTrail, and delete the item (docs/byok.md, \"Planted key store "
            "items\"). A KMS key you are switching to must be declared first (RekeyKmsKeyArn)")


def _refusal_in(error: BaseException) -> ForeignKmsKeyError | None:
    """The fence's refusal, when the MPL wrapped it in an error of its own (its KeyStore
    client turns every exception into a ServiceError; the ESDK path passes it unchanged)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ForeignKmsKeyError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _is_not_found(error: Exception) -> bool:
    return _NOT_FOUND in str(error)


def _is_already_exists(error: Exception) -> bool:
    return "ConditionalCheckFailed" in str(error)


class BranchKeyStore:
    """The MPL key store of one stack, with one cached hierarchical keyring per scope.

    Not thread-safe (the MPL's KMS components are not): use one per thread or process.
    """

    def __init__(
        self,
        clients: AwsClients,
        table_name: str,
        logical_name: str,
        kms_key_arn: str,
        cache_ttl_seconds: int,
        cache_entries: int = 100,
        allowed_kms_keys: Collection[str] | None = None,
    ) -> None:
        """`allowed_kms_keys`: the KMS keys its items may name besides `kms_key_arn` (the
        stack's fence, `Settings.fenced_kms_keys`); an item naming another is refused."""
        self.table_name = table_name
        self.kms_key_arn = kms_key_arn
        self.allowed_kms_keys = frozenset({kms_key_arn, *(allowed_kms_keys or ())})
        events = clients.dynamodb.meta.events
        # The request's table travels to the response handler in botocore's per-request context.
        events.register("before-parameter-build.dynamodb.GetItem", self._note_table)
        events.register("after-call.dynamodb.GetItem", self._refuse_foreign_item)
        self.cache_ttl_seconds = cache_ttl_seconds
        self.cache_entries = cache_entries
        self.key_store_ddb = clients.dynamodb
        def key_store(kms_configuration: Any) -> KeyStore:
            return KeyStore(
                config=KeyStoreConfig(
                    ddb_table_name=table_name,
                    logical_key_store_name=logical_name,
                    kms_configuration=kms_configuration,
                    kms_client=clients.kms,
                    ddb_client=clients.dynamodb,
                )
            )

        self.key_store = key_store(KMSConfigurationKmsKeyArn(kms_key_arn))  # CreateKey, VersionKey
        self.reader = key_store(KMSConfigurationDiscovery(Discovery()))  # GetActiveBranchKey, GetBranchKeyVersion
        self._providers = AwsCryptographicMaterialProviders(MaterialProvidersConfig())
        self._keyrings: dict[str, Any] = {}
        self._checksum_keys: dict[str, tuple[ChecksumKey, float]] = {}  # branch key id -> (key, monotonic expiry)
        self._known: set[str] = set()
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, clients: AwsClients) -> "BranchKeyStore":
        return cls(clients, settings.keystore_table, settings.keystore_name, settings.kms_key_arn, settings.cache_ttl_seconds,
                   allowed_kms_keys=customer_fence(settings))

    # -- the fence: no item under a KMS key the stack does not use reaches KMS ---------------

    def _note_table(self, params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        context["atrest_table"] = params.get("TableName")

    def _refuse_foreign_item(self, parsed: Mapping[str, Any], context: Mapping[str, Any], **_: Any) -> None:
        # Raised here, the error reaches the MPL's caller unchanged and the MPL makes no KMS call.
        if context.get("atrest_table") != self.table_name or getattr(_RAW_READ, "active", False):
            return
        item = parsed.get("Item") or {}
        kms_arn = item.get(KMS_ARN, {}).get("S")
        if BRANCH_KEY_ID not in item or kms_arn in self.allowed_kms_keys:
            return
        error = ForeignKmsKeyError(self.table_name, item, self.allowed_kms_keys)
        log.error("%s: %s", REFUSED_ITEM_LOG_TOKEN, error, extra={
            "branch_key_id": error.branch_key_id, "item_type": error.item_type, "kms_arn": error.kms_arn,
            "table": self.table_name})
        raise error

    def active_version(self, scope: BranchKeyScope) -> str | None:
        """The active version of the scope's branch key, or None when it has none yet."""
        try:
            output = self.reader.get_active_branch_key(
                GetActiveBranchKeyInput(branch_key_identifier=scope.branch_key_id)
            )
        except Exception as error:  # the MPL raises its own error classes, not botocore's
            if _is_not_found(error):
                return None
            refusal = _refusal_in(error)
            if refusal is not None:
                raise refusal from None
            raise
        return output.branch_key_materials.branch_key_version

    def ensure(self, scope: BranchKeyScope) -> bool:
        """Make sure the scope has a branch key. Returns True when this call created it."""
        if scope.branch_key_id in self._known:
            return False
        created = False
        if self.active_version(scope) is None:
            try:
                self.key_store.create_key(
                    CreateKeyInput(
                        branch_key_identifier=scope.branch_key_id,
                        encryption_context={SCOPE_CONTEXT_KEY: scope.branch_key_id},
                    )
                )
                created = True
                log.info("created branch key", extra={"branch_key_id": scope.branch_key_id})
            except Exception as error:
                if not _is_already_exists(error):
                    raise
                # Another process created it between our read and our write: use theirs.
                log.info("branch key created concurrently", extra={"branch_key_id": scope.branch_key_id})
                self._await_items_of(scope.branch_key_id)
        self._known.add(scope.branch_key_id)
        return created

    def _await_items_of(self, branch_key_id: str) -> None:
        """Return once the branch key another process created can be used: its ACTIVE item,
        the version item that one names and its beacon item are readable. Our CreateKey can
        fail while the winner's transaction is still committing (DynamoDB cancels a
        transaction that conflicts with one in flight; the local emulator applies a
        transaction's items one after another), so "it exists" does not yet mean "it can be
        read". Consistent GetItems, as the key store's readers make, with a short backoff;
        after CONCURRENT_CREATE_WAIT_SECONDS the winner is taken to have failed."""
        deadline = time.monotonic() + CONCURRENT_CREATE_WAIT_SECONDS
        delay = 0.02
        while True:
            active = self._item(branch_key_id, ACTIVE_TYPE)
            if (active is not None and VERSION in active and self._item(branch_key_id, text_of(active, VERSION)) is not None
                    and self._item(branch_key_id, BEACON_TYPE) is not None):
                return
            if time.monotonic() >= deadline:
                raise AtrestError(
                    f"branch key {branch_key_id} was created by another process at the same moment, and its items "
                    f"were still not readable after {CONCURRENT_CREATE_WAIT_SECONDS:.0f} s (that creation failed?); "
                    "the delivery will be retried")
            time.sleep(delay)  # the other transaction is committing: a few milliseconds on DynamoDB
            delay = min(delay * 2, 0.5)

    def _item(self, branch_key_id: str, item_type: str) -> dict[str, Any] | None:
        return self.key_store_ddb.get_item(TableName=self.table_name, Key=item_key(branch_key_id, item_type),
                                           ConsistentRead=True).get("Item")

    def keyring(self, branch_key_id: str) -> Any:
        """A hierarchical keyring bound to one branch key, cached for this process.

        Its branch key materials are cached for `cache_ttl_seconds`: that is also how long
        a shredded or re-wrapped version may still be used by this process.
        """
        with self._lock:
            keyring = self._keyrings.get(branch_key_id)
            if keyring is None:
                keyring = self._providers.create_aws_kms_hierarchical_keyring(
                    CreateAwsKmsHierarchicalKeyringInput(
                        key_store=self.reader,
                        branch_key_id=branch_key_id,
                        ttl_seconds=self.cache_ttl_seconds,
                        cache=CacheTypeDefault(DefaultCache(entry_capacity=self.cache_entries)),
                    )
                )
                self._keyrings[branch_key_id] = keyring
            return keyring

    def checksum_key(self, branch_key_id: str) -> ChecksumKey:
        """The key of the branch key's plaintext checksums (`atrest.crypto.checksums`), derived from
        its beacon key and cached for `cache_ttl_seconds` like the branch key materials.

        One GetItem and one KMS Decrypt per branch key per TTL, through the discovery reader
        (so a beacon key moved by `atrest rekey` still unwraps). The beacon key survives
        rotation and shredding of versions; only `forget` deletes it, and with it every
        version, so every object that can still be decrypted can still be verified.
        """
        now = time.monotonic()
        with self._lock:
            cached = self._checksum_keys.get(branch_key_id)
            if cached is not None and cached[1] > now:
                return cached[0]
        try:
            output = self.reader.get_beacon_key(GetBeaconKeyInput(branch_key_identifier=branch_key_id))
        except Exception as error:
            refusal = _refusal_in(error)
            if refusal is not None:
                raise refusal from None
            raise
        key = ChecksumKey.from_beacon_key(output.beacon_key_materials.beacon_key)
        with self._lock:
            self._checksum_keys[branch_key_id] = (key, now + self.cache_ttl_seconds)
        return key

    # -- versions: list, rotate, shred -------------------------------------------------

    def _item_version(self, item: dict[str, Any], active: bool) -> StoredVersion:
        version = item[VERSION]["S"] if active else item[TYPE]["S"]
        return StoredVersion(
            item[BRANCH_KEY_ID]["S"], version_of(version), from_text(item[CREATE_TIME]["S"]), active, text_of(item, KMS_ARN),
        )

    def active_keys(self) -> list[StoredVersion]:
        """The active version of every branch key in the store (a Scan: the table holds a
        few items per scope, never data)."""
        dynamodb = self.key_store_ddb
        found = []
        for page in dynamodb.get_paginator("scan").paginate(
            TableName=self.table_name,
            FilterExpression="#type = :active",
            ExpressionAttributeNames={"#type": TYPE},
            ExpressionAttributeValues={":active": {"S": ACTIVE_TYPE}},
            ConsistentRead=True,
        ):
            found += [self._item_version(item, active=True) for item in page.get("Items", [])]
        return sorted(found, key=lambda v: v.branch_key_id)

    def describe_active(self, branch_key_id: str) -> StoredVersion | None:
        """The ACTIVE item as stored, whatever KMS key it names (no key material is used:
        listing and deleting a planted item must stay possible)."""
        _RAW_READ.active = True
        try:
            item = self.key_store_ddb.get_item(
                TableName=self.table_name,
                Key=item_key(branch_key_id, ACTIVE_TYPE),
                ConsistentRead=True,
            ).get("Item")
        finally:
            _RAW_READ.active = False
        return self._item_version(item, active=True) if item else None

    def versions(self, branch_key_id: str) -> list[StoredVersion]:
        """Every version of a branch key still in the store (shredded ones are gone), oldest first."""
        active = self.describe_active(branch_key_id)
        items = []
        for page in self.key_store_ddb.get_paginator("query").paginate(
            TableName=self.table_name,
            KeyConditionExpression="#id = :id AND begins_with(#type, :prefix)",
            ExpressionAttributeNames={"#id": BRANCH_KEY_ID, "#type": TYPE},
            ExpressionAttributeValues={":id": {"S": branch_key_id}, ":prefix": {"S": VERSION_TYPE_PREFIX}},
            ConsistentRead=True,
        ):
            items += page.get("Items", [])
        versions = [self._item_version(item, active=False) for item in items]
        marked = [StoredVersion(v.branch_key_id, v.version, v.created, active is not None and v.version == active.version)
                  for v in versions]
        return sorted(marked, key=lambda v: v.created)

    def rotate(self, branch_key_id: str) -> str:
        """VersionKey: a new active version; older versions keep decrypting. Returns the new version.

        The MPL's VersionKey overwrites the ACTIVE item without comparing it with what it
        read, so two at once would make two versions: callers serialize (atrest.flows.expire_keys).
        """
        try:
            self.key_store.version_key(VersionKeyInput(branch_key_identifier=branch_key_id))
        except Exception as error:
            refusal = _refusal_in(error)
            if refusal is not None:
                raise refusal from None
            raise
        self._keyrings.pop(branch_key_id, None)  # this process encrypts under the new version at once
        active = self.describe_active(branch_key_id)
        assert active is not None
        return active.version

    def shred(self, branch_key_id: str, version: str) -> bool:
        """Delete one retired version's item: data under it can never be decrypted again
        (once every process's cache of it has expired: `cache_ttl_seconds`).

        Refuses the active version (its copy lives on in the ACTIVE item): rotate first,
        or `forget` the whole branch key. True when this call deleted it.
        """
        active = self.describe_active(branch_key_id)
        if active is not None and active.version == version:
            raise AtrestError(
                f"{branch_key_id} version {version} is the active version; rotate first "
                f"(`atrest keys rotate {branch_key_id}`) or forget the instance (`atrest forget-instance`)"
            )
        deleted = self._delete(branch_key_id, version_type(version))
        self._keyrings.pop(branch_key_id, None)
        return deleted

    def forget(self, branch_key_id: str) -> list[str]:
        """Delete every item of a branch key: every version, the ACTIVE copy and the beacon
        key. Returns the versions deleted. The next use of the scope creates a new key."""
        versions = [v.version for v in self.versions(branch_key_id)]
        active = self.describe_active(branch_key_id)
        if active is not None and active.version not in versions:
            versions.append(active.version)
        for version in versions:
            self._delete(branch_key_id, version_type(version))
        # The ACTIVE item holds a copy of the active version's key: it goes too.
        self._delete(branch_key_id, ACTIVE_TYPE)
        self._delete(branch_key_id, BEACON_TYPE)
        self.forget_cached(branch_key_id)
        return versions

    def forget_cached(self, branch_key_id: str) -> None:
        """Drop this process's knowledge of a branch key (after it was forgotten elsewhere)."""
        self._keyrings.pop(branch_key_id, None)
        self._checksum_keys.pop(branch_key_id, None)
        self._known.discard(branch_key_id)

    def _delete(self, branch_key_id: str, item_type: str) -> bool:
        response = self.key_store_ddb.delete_item(
            TableName=self.table_name,
            Key=item_key(branch_key_id, item_type),
            ReturnValues="ALL_OLD",
        )
        return "Attributes" in response


def customer_fence(settings: Settings) -> frozenset[str]:
    """The KMS keys an item of the customer's key store may name: the stack's fence but the
    service key, which wraps only the service key store's items."""
    return settings.fenced_kms_keys() - {settings.service_kms_key_arn}


@dataclass(frozen=True)
class ClassKmsKey:
    """A data class whose own branch key lives under a KMS key of its own (DataClassKmsKeys)."""

    data_class: str
    branch_key_id: str
    kms_key_arn: str


def class_branch_key(catalog: DataClassCatalog, data_class: str, account_id: str) -> str:
    """The branch key id of `data_class` if it may have a KMS key of its own; otherwise
    `ConfigurationError` saying why and what to do. Only an account-scoped S3 class with a
    branch key of its own (`"key"` in the catalog) shared with no other class qualifies:
    one branch key cannot be wrapped by two KMS keys, instance keys are per instance, and
    service-owned keys (voiceprints) never leave the service's own KMS key."""
    spec = catalog.get(data_class)
    if spec is None:
        known = ", ".join(s.name for s in catalog.classes)
        raise ConfigurationError(f"data class {data_class!r} is not in the data class catalog ({catalog.source}); "
                                 f"its classes are: {known}")
    if spec.scope_kind is ScopeKind.SERVICE:
        raise ConfigurationError(
            f"data class {data_class!r} is service-owned: its branch keys stay under the stack's service key "
            "(AtrestServiceKmsKey), never a customer key; remove it from " + DATA_CLASS_KMS_KEYS_PARAMETER)
    if spec.scope_kind is not ScopeKind.ACCOUNT or spec.source != SOURCE_S3:
        raise ConfigurationError(
            f"data class {data_class!r} is protected by one branch key per Amazon Connect instance, not a branch key "
            "of its own, so it cannot have a KMS key of its own; only account-scoped S3 classes with a \"key\" in "
            "the catalog can")
    branch_key_id = spec.scope(account_id).branch_key_id
    sharing = [s.name for s in catalog.classes
               if s.name != spec.name and s.scope_kind is ScopeKind.ACCOUNT and s.source == SOURCE_S3
               and s.scope(account_id).branch_key_id == branch_key_id]
    if spec.key is None or sharing:
        shared = f" with data class(es) {', '.join(sharing)}" if sharing else ""
        raise ConfigurationError(
            f"data class {data_class!r} has no branch key of its own: it shares {branch_key_id}{shared}, and one "
            "branch key cannot be wrapped by two KMS keys. Give the class a \"key\" of its own in the catalog "
            "(docs/data-classes.md) first")
    return branch_key_id


def resolve_class_kms_keys(settings: Settings, catalog: DataClassCatalog | None = None) -> list[ClassKmsKey]:
    """`settings.data_class_kms_keys` checked against the data class catalog (loaded when
    not given, and only when some class has a key of its own). Every problem is reported
    at once, as a `ConfigurationError` naming the entries and the parameter."""
    if not settings.data_class_kms_keys:
        return []
    if catalog is None:
        catalog = DataClassCatalog.from_settings(settings)
    resolved, problems = [], []
    for data_class, kms_key_arn in sorted(settings.data_class_kms_keys.items()):
        try:
            resolved.append(ClassKmsKey(data_class, class_branch_key(catalog, data_class, settings.account_id),
                                        kms_key_arn))
        except ConfigurationError as error:
            problems.append(str(error))
    if problems:
        raise ConfigurationError(
            f"{DATA_CLASS_KMS_KEYS_VARIABLE} (stack parameter {DATA_CLASS_KMS_KEYS_PARAMETER}) is not valid: "
            + "; ".join(problems) + ". Fix the parameter and deploy again (docs/byok.md)")
    return resolved


class KeyStores:
    """The stack's key stores behind one interface, chosen by branch key id.

    - the customer's: `account/...` and `instance/...` branch keys, under the configured
      KMS key (the stack's own or the customer's, `CustomerManagedKeyArn`); this is the
      store `atrest rekey` moves and the KMS grants cover;
    - per data class with a KMS key of its own (`DataClassKmsKeys`): the same table, but a
      writer that creates and rotates that class's branch key under the class's key (one
      `BranchKeyStore` per distinct KMS key, shared by the classes naming it);
    - the service's: `service/...` branch keys (voiceprints), in their own table under a
      KMS key the stack always owns (`AtrestServiceKmsKey`). A customer key switch or grant
      never reaches them: no rekey scans that table and no grant names that key.
    """

    def __init__(self, customer: BranchKeyStore, service: BranchKeyStore | None = None,
                 class_stores: Mapping[str, BranchKeyStore] | None = None) -> None:
        self.customer = customer
        self.service = service
        self.class_stores = dict(class_stores or {})  # branch key id -> the store writing under its class's key

    @classmethod
    def from_settings(cls, settings: Settings, clients: AwsClients,
                      catalog: DataClassCatalog | None = None) -> "KeyStores":
        """Raises `ConfigurationError` when `settings.data_class_kms_keys` names a class that
        may not have a KMS key of its own (at start, before any data is touched)."""
        service = None
        if settings.service_keystore_table and settings.service_kms_key_arn:
            # Only the service key: no customer key, class key or rekey target wraps service branch keys.
            service = BranchKeyStore(clients, settings.service_keystore_table, settings.service_keystore_table,
                                     settings.service_kms_key_arn, settings.cache_ttl_seconds)
        customer = BranchKeyStore.from_settings(settings, clients)
        by_key: dict[str, BranchKeyStore] = {settings.kms_key_arn: customer}
        class_stores = {}
        for assigned in resolve_class_kms_keys(settings, catalog):
            store = by_key.get(assigned.kms_key_arn)
            if store is None:
                store = by_key[assigned.kms_key_arn] = BranchKeyStore(
                    clients, settings.keystore_table, settings.keystore_name, assigned.kms_key_arn,
                    settings.cache_ttl_seconds, allowed_kms_keys=customer_fence(settings))
            class_stores[assigned.branch_key_id] = store
        return cls(customer, service, class_stores)

    @property
    def stores(self) -> list[BranchKeyStore]:
        """One store per table (the class writers share the customer's table)."""
        return [self.customer] + ([self.service] if self.service else [])

    def kms_key_for(self, branch_key_id: str) -> str:
        """The KMS key a new branch key or version of `branch_key_id` is created under:
        its class's own key, the service key, or the stack's configured key."""
        return self.for_branch_key(branch_key_id).kms_key_arn

    def for_branch_key(self, branch_key_id: str) -> BranchKeyStore:
        if branch_key_id in self.class_stores:
            return self.class_stores[branch_key_id]
        if BranchKeyScope.parse(branch_key_id).kind is not ScopeKind.SERVICE:
            return self.customer
        if self.service is None:
            raise AtrestError(
                f"{branch_key_id} is a service-owned key but this deployment has no service key store; set "
                "ATREST_SERVICE_KEYSTORE_TABLE and ATREST_SERVICE_KMS_KEY_ARN (outputs ServiceKeyStoreTableName, "
                "ServiceKmsKeyArn)"
            )
        return self.service

    @property
    def cache_ttl_seconds(self) -> int:
        return self.customer.cache_ttl_seconds

    def active_version(self, scope: BranchKeyScope) -> str | None:
        return self.for_branch_key(scope.branch_key_id).active_version(scope)

    def ensure(self, scope: BranchKeyScope) -> bool:
        return self.for_branch_key(scope.branch_key_id).ensure(scope)

    def keyring(self, branch_key_id: str) -> Any:
        return self.for_branch_key(branch_key_id).keyring(branch_key_id)

    def checksum_key(self, branch_key_id: str) -> ChecksumKey:
        return self.for_branch_key(branch_key_id).checksum_key(branch_key_id)

    def active_keys(self) -> list[StoredVersion]:
        return sorted((key for store in self.stores for key in store.active_keys()), key=lambda v: v.branch_key_id)

    def describe_active(self, branch_key_id: str) -> StoredVersion | None:
        return self.for_branch_key(branch_key_id).describe_active(branch_key_id)

    def versions(self, branch_key_id: str) -> list[StoredVersion]:
        return self.for_branch_key(branch_key_id).versions(branch_key_id)

    def rotate(self, branch_key_id: str) -> str:
        return self.for_branch_key(branch_key_id).rotate(branch_key_id)

    def shred(self, branch_key_id: str, version: str) -> bool:
        return self.for_branch_key(branch_key_id).shred(branch_key_id, version)

    def forget(self, branch_key_id: str) -> list[str]:
        return self.for_branch_key(branch_key_id).forget(branch_key_id)

    def forget_cached(self, branch_key_id: str) -> None:
        self.for_branch_key(branch_key_id).forget_cached(branch_key_id)
