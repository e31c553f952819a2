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
from typing import Any, Iterable, Iterator

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

from atrest.storage.record_keys import (
    KEY_VERSION_INDEX_ATTRIBUTES,
    PARTITION,
    from_source,
    is_object_item,
    key_version_key,
    key_versions_of,
    object_index_entries,
    object_key,
    object_pk,
    of_contact,
    shred_due_by,
    shred_due_entry,
    under_key_version,
    vault_key_of,
)
from atrest.storage.vault_keys import VaultKey

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
        plain.update(object_index_entries(self.vault_key, self.encrypted_at, self.branch_key_id,
                                          self.branch_key_version, self.contact_id, self.source_bucket, self.source_key))
        return {**self.key, **{k: _serializer.serialize(v) for k, v in plain.items()}}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "ObjectRecord":
        plain = _plain(item)
        # Absent attributes were None when written (to_item drops them).
        record = cls(**{f.name: plain.get(f.name) for f in fields(cls) if f.name in plain or f.default is MISSING})
        record.status = ObjectStatus(record.status)
        return record


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

    def get_object(self, vault_key: str | VaultKey) -> ObjectRecord | None:
        item = self.dynamodb.get_item(TableName=self.table_name, Key=object_key(vault_key), ConsistentRead=True).get("Item")
        return ObjectRecord.from_item(item) if item else None

    def put_object(self, record: ObjectRecord) -> bool:
        """Store a new object record. False when one already exists for that vault key."""
        return self._put_new(record.to_item())

    def _put_new(self, item: dict[str, Any]) -> bool:
        """Put `item` only if no item has its key: True when this call added it."""
        try:
            self.dynamodb.put_item(TableName=self.table_name, Item=item,
                                   ConditionExpression=f"attribute_not_exists({PARTITION})")
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

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

    def mark_source(self, vault_key: str, status: ObjectStatus, at: str | None = None) -> None:
        self.dynamodb.update_item(
            TableName=self.table_name,
            Key=object_key(vault_key),
            UpdateExpression="SET #status = :status, source_removed_at = :at",
            ConditionExpression=f"attribute_exists({PARTITION})",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":status": {"S": status.value}, ":at": {"S": at or utc_now()}},
        )

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
        """How many items (vault objects and contact records) depend on one branch key version."""
        paginator = self.dynamodb.get_paginator("query")
        return sum(
            page["Count"]
            for page in paginator.paginate(
                TableName=self.table_name, **under_key_version(branch_key_id, version), Select="COUNT"
            )
        )

    def objects_under(self, branch_key_id: str, version: str) -> Iterator[ObjectRecord]:
        """Every object encrypted under one branch key version, oldest first."""
        for item in self._query(**under_key_version(branch_key_id, version)):
            if is_object_item(item):  # contact records share the index
                yield ObjectRecord.from_item(item)

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
