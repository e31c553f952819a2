"""The metadata table: which key protects what.

One item per encrypted object (`ObjectRecord`) and one per branch key version
(`KeyVersionRecord`); the `by-key-version` index lists the objects under a version, the
`by-contact` index a contact's objects, the `by-source` index what one intake key became.
Their keys and index entries: `atrest.storage.record_keys`; contact records:
`atrest.storage.contact_records`.
"""

from __future__ import annotations

import time
from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Iterable, Iterator, Mapping

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

from atrest.catalog.bindings import CTX_ACCOUNT, encryption_context
from atrest.storage.counts import (
    VersionCounts, count_update, object_removed, of_record, read_counts, source_finished,
)
from atrest.storage.record_keys import (
    COUNTED,
    KEY_VERSION_INDEX_ATTRIBUTES,
    PARTITION,
    UNFINISHED_INDEX_ATTRIBUTES,
    from_source,
    is_object_item,
    key_version_key,
    key_versions_of,
    object_index_entries,
    object_key,
    object_pk,
    of_contact,
    shard_of,
    shred_due_by,
    shred_due_entry,
    counts_migration_key,
    under_key_version,
    unfinished_from,
    vault_key_of,
)
from atrest.storage.transactions import transact_write
from atrest.storage.vault_keys import VaultKey

# The shape of the object records this code writes, told to operators' CLIs through the
# stack output `RecordFormat`: a CLI refuses a stack whose records are newer than it reads
# (atrest_cli.operations.deployment) instead of misreading them. Readers read every format up
# to theirs. 1: the vault key and encryption context stored as attributes; 2 (issue 17):
# neither (from_item rebuilds them), index sort keys the time alone.
RECORD_FORMAT = 2
# An object record's account (its encryption context's), when the context is not stored whole.
_ACCOUNT = "account"
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ObjectStatus(str, Enum):
    ENCRYPTED = "ENCRYPTED"  # ciphertext stored and recorded; the source is still there
    SOURCE_DELETED = "SOURCE_DELETED"  # ... and the plaintext version we encrypted is gone
    SOURCE_KEPT = "SOURCE_KEPT"  # ... and the plaintext is kept on purpose (configuration or unversioned bucket)


class KeyVersionState(str, Enum):
    ACTIVE = "ACTIVE"
    RETIRED = "RETIRED"
    SHREDDED = "SHREDDED"


@dataclass
class ObjectRecord:
    vault_bucket: str
    vault_key: str
    vault_version_id: str | None
    source_bucket: str
    source_key: str
    source_version_id: str | None
    source_etag: str | None
    data_class: str
    scope: str
    branch_key_id: str
    branch_key_version: str
    suite: str
    frame_length: int
    plaintext_size: int
    ciphertext_size: int
    ciphertext_sha256: str
    s3_checksum: str
    encryption_context: dict[str, str]
    encrypted_at: str
    status: ObjectStatus = ObjectStatus.ENCRYPTED
    instance: str | None = None
    contact_id: str | None = None
    source_removed_at: str | None = None
    duration_ms: int | None = None
    instance_id: str | None = None  # the Connect instance the alias belongs to, once a contact event taught it
    # HMAC-SHA256 of the plaintext under the branch key's checksum key (atrest.crypto.checksums): what
    # every record written now holds. Not a plain hash: that would confirm a guessed document.
    plaintext_hmac: str | None = None
    # Records written before keyed checksums hold an unsalted SHA-256 instead; still verified
    # (docs/reliability.md says how to remove it). Never written any more.
    plaintext_sha256: str | None = None
    # The source's Content-Type, in clear (a MIME type, bounded: atrest.crypto.object_metadata).
    # None in records written before atrest kept it.
    content_type: str | None = None
    # The source's user metadata as an ESDK message bound to this object (atrest.crypto.object_metadata):
    # it can hold customer data, so it is never stored in clear. None when the object had none.
    metadata_ciphertext: bytes | None = None

    @property
    def key(self) -> dict[str, Any]:
        """The item's key, for GetItem, UpdateItem and DeleteItem."""
        return object_key(self.vault_key)

    def to_item(self) -> dict[str, Any]:
        plain = {k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(self).items() if v is not None}
        # Not stored twice: the item's key names the vault key, and the encryption context is
        # rebuilt from the fields beside it (from_item). A write costs a unit per KB of the item
        # in the table and in each index projecting it whole (docs/cost.md).
        del plain["vault_key"]
        account = self.encryption_context.get(CTX_ACCOUNT)
        if account and self.encryption_context == _context_named(account, plain):
            del plain["encryption_context"]
            plain[_ACCOUNT] = account
        plain.update(object_index_entries(self.vault_key, self.encrypted_at, self.branch_key_id,
                                          self.branch_key_version, self.contact_id, self.source_bucket, self.source_key,
                                          unfinished=self.status is ObjectStatus.ENCRYPTED))
        plain[COUNTED] = True  # written with its count (atrest.storage.counts)
        return {**self.key, **{k: _serializer.serialize(v) for k, v in plain.items()}}

    def count_update(self, table: str, adds: dict[str, int]) -> dict[str, Any]:
        """A transaction's update of the count item this record is counted in."""
        return count_update(table, self.branch_key_id, self.branch_key_version, shard_of(self.vault_key), adds)

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "ObjectRecord":
        plain = _plain(item)
        plain.setdefault("vault_key", vault_key_of(item))  # records written before hold it too
        account = plain.pop(_ACCOUNT, None)
        if "encryption_context" not in plain and account is not None:
            plain["encryption_context"] = _context_named(account, plain)
        # Absent attributes were None when written (to_item drops them).
        record = cls(**{f.name: plain.get(f.name) for f in fields(cls) if f.name in plain or f.default is MISSING})
        record.status = ObjectStatus(record.status)
        return record


@dataclass(frozen=True)
class UnfinishedSource:
    """What a record whose source step is unfinished says of its source: enough to finish it
    (the `unfinished` index's projection)."""

    vault_key: str
    source_bucket: str
    source_key: str
    source_version_id: str | None
    source_etag: str | None
    plaintext_size: int
    data_class: str
    encrypted_at: str

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "UnfinishedSource":
        plain = _plain(item)
        return cls(vault_key_of(item) or "", plain["source_bucket"], plain["source_key"],
                   plain.get("source_version_id"), plain.get("source_etag"), int(plain.get("plaintext_size") or 0),
                   plain["data_class"], plain["encrypted_at"])


@dataclass
class KeyVersionRecord:
    """One branch key version: ACTIVE (encrypts) -> RETIRED (decrypts only) -> SHREDDED (gone).

    `rotation_*` are set while an expiry run (or `atrest keys rotate`) holds the right to
    rotate this version: the lease makes two runs at once produce one rotation, and lets
    the next run take over from one that died (docs/keys.md).
    """

    branch_key_id: str
    version: str
    state: KeyVersionState = KeyVersionState.ACTIVE
    created_at: str = field(default_factory=utc_now)
    expires_at: str | None = None
    retired_at: str | None = None
    # The earliest time the version may be shredded: when its retirement was recorded, plus
    # the longest branch key cache TTL and a clock-skew margin. Until then a warm function
    # may still hold it as the active version and encrypt new data under it (docs/keys.md).
    writers_stop_by: str | None = None
    shred_after: str | None = None
    shredded_at: str | None = None
    objects_unreadable: int | None = None
    rotation_started_at: str | None = None
    rotation_lease_until: str | None = None
    rotation_run: str | None = None

    def to_item(self) -> dict[str, Any]:
        plain = {k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(self).items() if v is not None}
        return {**key_version_key(self.branch_key_id, self.version),
                **{k: _serializer.serialize(v) for k, v in plain.items()}}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "KeyVersionRecord":
        plain = _plain(item)
        record = cls(**{f.name: plain[f.name] for f in fields(cls) if f.name in plain})
        record.state = KeyVersionState(record.state)
        return record


def _context_named(account: str, fields_: Mapping[str, Any]) -> dict[str, str]:
    """The encryption context an object record's fields name (what to_item leaves out and
    from_item rebuilds)."""
    return encryption_context(account, fields_.get("instance"), fields_["data_class"], fields_["source_bucket"],
                              fields_["source_key"])


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    def convert(value: Any) -> Any:
        if isinstance(value, Binary):
            return value.value
        if isinstance(value, Decimal):
            return int(value) if value == value.to_integral_value() else float(value)
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return {k: convert(_deserializer.deserialize(v)) for k, v in item.items()}


_SHRED_DUE_ENTRY = ", ".join(KEY_VERSION_INDEX_ATTRIBUTES)


class MetadataTable:
    """Reads and writes the metadata table. Writes are conditional so retries cannot clobber."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self.dynamodb = dynamodb
        self.table_name = table_name
        self._uncounted_possible: bool | None = None

    def get_object(self, vault_key: str | VaultKey) -> ObjectRecord | None:
        item = self.dynamodb.get_item(TableName=self.table_name, Key=object_key(vault_key), ConsistentRead=True).get("Item")
        return ObjectRecord.from_item(item) if item else None

    def put_object(self, record: ObjectRecord) -> bool:
        """Store a new object record, and count it. False when one already exists for that
        vault key (nothing is counted then: the record and its count are one transaction)."""
        added = of_record(record.data_class, record.plaintext_size, record.status.value)
        try:
            transact_write(self.dynamodb, [
                {"Put": {"TableName": self.table_name, "Item": record.to_item(),
                         "ConditionExpression": f"attribute_not_exists({PARTITION})"}},
                record.count_update(self.table_name, added),
            ])
        except self.dynamodb.exceptions.TransactionCanceledException as error:
            if cancelled_by_condition(error, 0):
                return False
            raise
        return True

    def delete_object(self, record: ObjectRecord) -> bool:
        """Delete an object record and take it out of the counts. False when it was gone already."""
        status = record.status.value if isinstance(record.status, ObjectStatus) else str(record.status)
        try:
            transact_write(self.dynamodb, [
                {"Delete": {"TableName": self.table_name, "Key": record.key,
                            "ConditionExpression": f"attribute_exists({PARTITION}) AND {COUNTED} = :yes",
                            "ExpressionAttributeValues": {":yes": {"BOOL": True}}}},
                record.count_update(self.table_name, object_removed(record.data_class, record.plaintext_size, status)),
            ])
        except self.dynamodb.exceptions.TransactionCanceledException as error:
            if not cancelled_by_condition(error, 0):
                raise
            # Gone, or written before counts existed (not counted yet): delete it without a count.
            try:
                self.dynamodb.delete_item(
                    TableName=self.table_name, Key=record.key,
                    ConditionExpression=f"attribute_exists({PARTITION}) AND attribute_not_exists({COUNTED})")
            except self.dynamodb.exceptions.ConditionalCheckFailedException:
                return False
        return True

    def _put_new(self, item: dict[str, Any]) -> bool:
        """Put `item` only if no item has its key: True when this call added it."""
        try:
            self.dynamodb.put_item(TableName=self.table_name, Item=item,
                                   ConditionExpression=f"attribute_not_exists({PARTITION})")
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def counts(self, versions: list[tuple[str, str]]) -> dict[tuple[str, str], VersionCounts]:
        """The counts of each (branch key id, version), from its count items."""
        return read_counts(self.dynamodb, self.table_name, versions)

    def object_statuses(self, vault_keys: Iterable[str | VaultKey]) -> dict[str, ObjectStatus]:
        """Vault key -> status of the object records that exist among `vault_keys` (at most 100:
        one BatchGetItem, asked again for what DynamoDB left unprocessed)."""
        wanted = {object_pk(vault_key): str(vault_key) for vault_key in vault_keys}
        found: dict[str, ObjectStatus] = {}
        request: dict[str, Any] = {self.table_name: {
            "Keys": [object_key(vault_key) for vault_key in wanted.values()],
            "ProjectionExpression": f"{PARTITION}, #status", "ExpressionAttributeNames": {"#status": "status"}}}
        while wanted and request:
            response = self.dynamodb.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(self.table_name, []):
                found[wanted[item[PARTITION]["S"]]] = ObjectStatus(item["status"]["S"])
            request = response.get("UnprocessedKeys") or {}
            if request:
                time.sleep(0.1)  # throttled: back off briefly, then ask for the rest
        return found

    def mark_source(self, record: ObjectRecord, status: ObjectStatus, at: str | None = None) -> bool:
        """ENCRYPTED -> `status` (the plaintext deleted, or kept), counted once: False when the
        record had left ENCRYPTED already (a repeated source step) or is gone."""
        unfinished = ", ".join(UNFINISHED_INDEX_ATTRIBUTES)
        finished = source_finished(record.data_class, deleted=status is ObjectStatus.SOURCE_DELETED)
        update = {
            "TableName": self.table_name,
            "Key": record.key,
            "UpdateExpression": f"SET #status = :status, source_removed_at = :at REMOVE {unfinished}",
            "ConditionExpression": f"attribute_exists({PARTITION}) AND #status = :encrypted AND {COUNTED} = :yes",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":status": {"S": status.value}, ":at": {"S": at or utc_now()},
                                          ":encrypted": {"S": ObjectStatus.ENCRYPTED.value}, ":yes": {"BOOL": True}},
        }
        try:
            transact_write(self.dynamodb, [
                {"Update": update}, record.count_update(self.table_name, finished)])
            return True
        except self.dynamodb.exceptions.TransactionCanceledException as error:
            if not cancelled_by_condition(error, 0):
                raise
        # Marked already, gone, or written before counts existed: only the last is marked here,
        # uncounted (the migration counts it with the status it then has).
        update["ConditionExpression"] = f"attribute_exists({PARTITION}) AND #status = :encrypted AND attribute_not_exists({COUNTED})"
        del update["ExpressionAttributeValues"][":yes"]
        try:
            self.dynamodb.update_item(**update)
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def record_key_version(self, branch_key_id: str, version: str, created_at: str | None = None,
                           expires_at: str | None = None) -> bool:
        """Record a branch key version the first time it is seen. True when this call added it."""
        record = KeyVersionRecord(branch_key_id, version, created_at=created_at or utc_now(), expires_at=expires_at)
        return self._put_new(record.to_item())

    def key_version(self, branch_key_id: str, version: str) -> KeyVersionRecord | None:
        item = self.dynamodb.get_item(
            TableName=self.table_name, Key=key_version_key(branch_key_id, version), ConsistentRead=True,
        ).get("Item")
        return KeyVersionRecord.from_item(item) if item else None

    def key_versions(self, branch_key_id: str) -> list[KeyVersionRecord]:
        items = self._query(**key_versions_of(branch_key_id), ConsistentRead=True)
        return [KeyVersionRecord.from_item(item) for item in items]

    def claim_rotation(self, branch_key_id: str, version: str, run_id: str, now: str, lease_until: str,
                       take_over_from: str | None = None) -> bool:
        """Take the right to rotate an ACTIVE version (nobody holds it, or the holder's lease ran out).

        `take_over_from`: a run id prefix whose lease may be taken even before it runs out
        (`forget-instance` re-run after an interrupted one: forgetting twice is harmless)."""
        condition = "attribute_not_exists(rotation_lease_until) OR rotation_lease_until < :now"
        values = {
            ":run": {"S": run_id}, ":now": {"S": now}, ":lease": {"S": lease_until},
            ":active": {"S": KeyVersionState.ACTIVE.value},
        }
        if take_over_from:
            condition += " OR begins_with(rotation_run, :holder)"
            values[":holder"] = {"S": take_over_from}
        try:
            self.dynamodb.update_item(
                TableName=self.table_name,
                Key=self._version_key(branch_key_id, version),
                UpdateExpression="SET rotation_run = :run, rotation_started_at = :now, rotation_lease_until = :lease",
                ConditionExpression=f"#state = :active AND ({condition})",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=values,
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def retire_key_version(self, branch_key_id: str, version: str, retired_at: str, shred_after: str | None,
                           writers_stop_by: str) -> bool:
        """ACTIVE -> RETIRED. False when it was already retired (another run finished it)."""
        names = {"#state": "state"}
        values: dict[str, Any] = {
            ":retired": {"S": KeyVersionState.RETIRED.value}, ":at": {"S": retired_at},
            ":active": {"S": KeyVersionState.ACTIVE.value}, ":stop": {"S": writers_stop_by},
        }
        update = "SET #state = :retired, retired_at = :at, writers_stop_by = :stop"
        if shred_after:
            update += ", shred_after = :shred"
            values[":shred"] = {"S": shred_after}
            for n, (name, value) in enumerate(shred_due_entry(shred_after, branch_key_id, version).items()):
                update += f", {name} = :due{n}"
                values[f":due{n}"] = {"S": value}
        try:
            self.dynamodb.update_item(
                TableName=self.table_name,
                Key=self._version_key(branch_key_id, version),
                UpdateExpression=update + " REMOVE rotation_lease_until",
                ConditionExpression="#state = :active",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def mark_shredded(self, branch_key_id: str, version: str, shredded_at: str, objects_unreadable: int | None) -> bool:
        """-> SHREDDED (from any state; creates the record if the version was never recorded).
        False when it was already SHREDDED: the first shred's time stands.

        Marking comes before the key store item is deleted: a contact record names its key
        version in a transaction that requires the version not SHREDDED (`atrest.flows.protect_contact`),
        so from this write on nothing new can be stored under the version. The count of what
        it made unreadable is taken after the mark (`set_unreadable_count`): a count taken
        before could miss a write that landed in between."""
        update = ("SET #state = :shredded, shredded_at = :at, branch_key_id = :id, version = :v, "
                  "created_at = if_not_exists(created_at, :at)")
        values = {
            ":shredded": {"S": KeyVersionState.SHREDDED.value}, ":at": {"S": shredded_at},
            ":id": {"S": branch_key_id}, ":v": {"S": version},
        }
        if objects_unreadable is not None:
            update += ", objects_unreadable = :n"
            values[":n"] = {"N": str(objects_unreadable)}
        try:
            self.dynamodb.update_item(
                TableName=self.table_name,
                Key=self._version_key(branch_key_id, version),
                # The shred-due index entry stays until the count is stored (the last step), so a
                # run that stopped in between is found and finished by the next.
                UpdateExpression=update + " REMOVE rotation_lease_until",
                ConditionExpression="attribute_not_exists(#state) OR #state <> :shredded",
                ExpressionAttributeNames={"#state": "state"},
                ExpressionAttributeValues=values,
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def set_unreadable_count(self, branch_key_id: str, version: str, objects_unreadable: int) -> None:
        """The count of a shred, once; a repeated shred (after a crash) keeps the first."""
        try:
            self.dynamodb.update_item(
                TableName=self.table_name,
                Key=self._version_key(branch_key_id, version),
                UpdateExpression=f"SET objects_unreadable = :n REMOVE {_SHRED_DUE_ENTRY}",
                ConditionExpression=f"attribute_exists({PARTITION}) AND attribute_not_exists(objects_unreadable)",
                ExpressionAttributeValues={":n": {"N": str(objects_unreadable)}},
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            # Counted by an earlier attempt; only its index entry may be left.
            self.dynamodb.update_item(TableName=self.table_name, Key=self._version_key(branch_key_id, version),
                                      UpdateExpression=f"REMOVE {_SHRED_DUE_ENTRY}",
                                      ConditionExpression=f"attribute_exists({PARTITION})")

    def version_not_shredded(self, branch_key_id: str, version: str) -> dict[str, Any]:
        """A TransactWriteItems ConditionCheck: the version is not SHREDDED (or not recorded
        yet). Writes that store data under a version carry it, so none lands after a shred's mark."""
        return {"ConditionCheck": {
            "TableName": self.table_name,
            "Key": self._version_key(branch_key_id, version),
            "ConditionExpression": "attribute_not_exists(#state) OR #state <> :shredded",
            "ExpressionAttributeNames": {"#state": "state"},
            "ExpressionAttributeValues": {":shredded": {"S": KeyVersionState.SHREDDED.value}},
        }}

    def shred_due(self, now: str) -> list[KeyVersionRecord]:
        """RETIRED versions whose `shred_after` is at or before `now`, oldest first."""
        items = self._query(**shred_due_by(now))
        return [KeyVersionRecord.from_item(item) for item in items]

    def count_under(self, branch_key_id: str, version: str) -> int:
        """How many items (vault objects and contact records) depend on one branch key version:
        its counts, plus the items written before counts existed that the migration has not
        counted yet (they are in the version's one unsharded index partition, empty once it has)."""
        counted = self.counts([(branch_key_id, version)])[(branch_key_id, version)].dependents
        return counted + self.count_uncounted(branch_key_id, version)

    def uncounted_possible(self) -> bool:
        """False once `atrest migrate` has run to its end: no item written before counts
        existed is left, and no reader needs to look for one (read once per table object)."""
        if self._uncounted_possible is None:
            item = self.dynamodb.get_item(TableName=self.table_name, Key=counts_migration_key(),
                                          ConsistentRead=True).get("Item")
            self._uncounted_possible = not (item and "finished_at" in item)
        return self._uncounted_possible

    def count_uncounted(self, branch_key_id: str, version: str) -> int:
        """Items under a version written before counts existed and not migrated yet."""
        if not self.uncounted_possible():
            return 0
        paginator = self.dynamodb.get_paginator("query")
        legacy = under_key_version(branch_key_id, version)[0]
        return sum(page["Count"] for page in paginator.paginate(TableName=self.table_name, **legacy, Select="COUNT"))

    def uncounted_under(self, branch_key_id: str, version: str) -> Iterator[dict[str, Any]]:
        """The items under a version written before counts existed and not migrated yet (its
        unsharded index partition: empty on a stack that never had them, or once migrated)."""
        if self.uncounted_possible():
            yield from self._query(**under_key_version(branch_key_id, version)[0])

    def objects_under(self, branch_key_id: str, version: str) -> Iterator[ObjectRecord]:
        """Every object encrypted under one branch key version, shard by shard."""
        for query in under_key_version(branch_key_id, version):
            for item in self._query(**query):
                if is_object_item(item):  # contact records share the index
                    yield ObjectRecord.from_item(item)

    def unfinished_from(self, bucket: str, prefix: str = "") -> Iterator[UnfinishedSource]:
        """Records of `bucket`'s objects under `prefix` whose source step is unfinished, from the
        sparse `unfinished` index (eventually consistent: one finished a moment ago may still
        be listed; finishing it again is a no-op)."""
        for query in unfinished_from(bucket, prefix):
            for item in self._query(**query):
                found = UnfinishedSource.from_item(item)
                if found.source_key.startswith(prefix):  # the index holds at most 1,024 bytes of it
                    yield found

    def has_uncounted(self, versions: Iterable[tuple[str, str]]) -> bool:
        """Whether any item under `versions` was written before counts and shards existed
        (one item read per version: its unsharded `by-key-version` partition)."""
        if not self.uncounted_possible():
            return False
        for branch_key_id, version in versions:
            legacy = under_key_version(branch_key_id, version)[0]
            if self.dynamodb.query(TableName=self.table_name, **legacy, Select="COUNT", Limit=1)["Count"]:
                return True
        return False

    def unfinished_uncounted(self, bucket: str, prefixes: Iterable[str]) -> Iterator[UnfinishedSource]:
        """Unfinished records written before the `unfinished` index existed: a scan of the
        table, only until `atrest migrate` has indexed them."""
        prefixes = list(prefixes)
        values: dict[str, Any] = {":encrypted": {"S": ObjectStatus.ENCRYPTED.value}, ":bucket": {"S": bucket}}
        terms = []
        for n, prefix in enumerate(p for p in prefixes if p):
            values[f":p{n}"] = {"S": prefix}
            terms.append(f"begins_with(source_key, :p{n})")
        within = f" AND ({' OR '.join(terms)})" if terms and "" not in prefixes else ""
        pages = self.dynamodb.get_paginator("scan").paginate(
            TableName=self.table_name,
            FilterExpression=f"#status = :encrypted AND source_bucket = :bucket AND attribute_not_exists({COUNTED})"
                             + within,
            ExpressionAttributeNames={"#status": "status"}, ExpressionAttributeValues=values)
        for page in pages:
            for item in page.get("Items", []):
                if is_object_item(item):
                    yield UnfinishedSource.from_item(item)

    def objects_of_contact(self, contact_id: str) -> list[ObjectRecord]:
        """Every vault object recorded for one Amazon Connect contact, oldest first (the
        `by-contact` index; objects recorded before the index existed are not in it)."""
        return [ObjectRecord.from_item(item) for item in self._query(**of_contact(contact_id)) if is_object_item(item)]

    def objects_from_source(self, bucket: str, key: str) -> list[ObjectRecord]:
        """Every vault object recorded for one source bucket and key (any version), oldest
        first. The `by-source` index holds keys only, and an index is eventually consistent:
        each record is then read with a consistent GetItem, and one deleted since is left out.
        Objects recorded before the index existed are not in it."""
        vault_keys = [vault_key for item in self._query(**from_source(bucket, key)) if (vault_key := vault_key_of(item))]
        return [record for record in map(self.get_object, vault_keys) if record is not None]

    def _version_key(self, branch_key_id: str, version: str) -> dict[str, Any]:
        return key_version_key(branch_key_id, version)

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        paginator = self.dynamodb.get_paginator("query")
        for page in paginator.paginate(TableName=self.table_name, **kwargs):
            yield from page.get("Items", [])


def cancelled_by_condition(error: Any, index: int) -> bool:
    """Whether a cancelled transaction failed on item `index`'s condition."""
    reasons = error.response.get("CancellationReasons") or []
    return len(reasons) > index and reasons[index].get("Code") == "ConditionalCheckFailed"
