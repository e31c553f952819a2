"""The metadata table: which key protects what.

One item per encrypted object (`ObjectRecord`) and one per branch key version
(`KeyVersionRecord`); the `by-key-version` index lists the objects under a version, the
`by-contact` index a contact's objects, the `by-source` index what one intake key became.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Iterator

from boto3.dynamodb.types import Binary, TypeDeserializer, TypeSerializer

BY_KEY_VERSION_INDEX = "by-key-version"
# Objects of one Amazon Connect contact (ReadObject reads "by contact id", docs/audit.md).
BY_CONTACT_INDEX = "by-contact"
# Objects from one intake bucket and key, every version (`atrest decrypt s3://<intake>/<key>`
# without a version: the encrypted version is gone from the intake, so it cannot be listed).
# KEYS_ONLY: the index finds vault keys; records are then read with a consistent GetItem.
BY_SOURCE_INDEX = "by-source"

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
    def pk(self) -> str:
        return object_pk(self.vault_key)

    def to_item(self) -> dict[str, Any]:
        plain = {k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(self).items() if v is not None}
        plain.update(
            pk=self.pk,
            sk="OBJECT",
            gsi1pk=key_version_gsi(self.branch_key_id, self.branch_key_version),
            gsi1sk=f"{self.encrypted_at}#{self.vault_key}",
        )
        if self.contact_id:
            plain.update(gsi2pk=contact_objects_gsi(self.contact_id), gsi2sk=f"{self.encrypted_at}#{self.vault_key}")
        plain.update(gsi3pk=source_objects_gsi(self.source_bucket, self.source_key),
                     gsi3sk=f"{self.encrypted_at}#{self.vault_key}")
        return {k: _serializer.serialize(v) for k, v in plain.items()}

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
        plain.update(pk=key_version_pk(self.branch_key_id), sk=key_version_sk(self.version))
        return {k: _serializer.serialize(v) for k, v in plain.items()}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "KeyVersionRecord":
        plain = _plain(item)
        record = cls(**{f.name: plain[f.name] for f in fields(cls) if f.name in plain})
        record.state = KeyVersionState(record.state)
        return record


# Retired versions that will be shredded sit in the by-key-version index under one
# partition, sorted by when they may be shredded, so an expiry run finds the due ones
# with one range query. (Versions are few: one per scope per rotation period.)
SHRED_DUE_GSI = "SHRED-DUE"


def key_version_pk(branch_key_id: str) -> str:
    return f"KEY#{branch_key_id}"


def key_version_sk(version: str) -> str:
    return f"V#{version}"


def object_pk(vault_key: str) -> str:
    return f"OBJ#{vault_key}"


def key_version_gsi(branch_key_id: str, version: str) -> str:
    return f"BKV#{branch_key_id}#{version}"


def contact_objects_gsi(contact_id: str) -> str:
    return f"CONTACT#{contact_id}"


def source_objects_gsi(bucket: str, key: str) -> str:
    return f"SRC#{bucket}#{key}"


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


class MetadataTable:
    """Reads and writes the metadata table. Writes are conditional so retries cannot clobber."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self.dynamodb = dynamodb
        self.table_name = table_name

    def get_object(self, vault_key: str) -> ObjectRecord | None:
        item = self.dynamodb.get_item(
            TableName=self.table_name, Key={"pk": {"S": object_pk(vault_key)}, "sk": {"S": "OBJECT"}}, ConsistentRead=True
        ).get("Item")
        return ObjectRecord.from_item(item) if item else None

    def put_object(self, record: ObjectRecord) -> bool:
        """Store a new object record. False when one already exists for that vault key."""
        try:
            self.dynamodb.put_item(
                TableName=self.table_name, Item=record.to_item(), ConditionExpression="attribute_not_exists(pk)"
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def mark_source(self, vault_key: str, status: ObjectStatus, at: str | None = None) -> None:
        self.dynamodb.update_item(
            TableName=self.table_name,
            Key={"pk": {"S": object_pk(vault_key)}, "sk": {"S": "OBJECT"}},
            UpdateExpression="SET #status = :status, source_removed_at = :at",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":status": {"S": status.value}, ":at": {"S": at or utc_now()}},
        )

    def record_key_version(self, branch_key_id: str, version: str, created_at: str | None = None,
                           expires_at: str | None = None) -> bool:
        """Record a branch key version the first time it is seen. True when this call added it."""
        record = KeyVersionRecord(branch_key_id, version, created_at=created_at or utc_now(), expires_at=expires_at)
        try:
            self.dynamodb.put_item(
                TableName=self.table_name, Item=record.to_item(), ConditionExpression="attribute_not_exists(pk)"
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def key_version(self, branch_key_id: str, version: str) -> KeyVersionRecord | None:
        item = self.dynamodb.get_item(
            TableName=self.table_name,
            Key={"pk": {"S": key_version_pk(branch_key_id)}, "sk": {"S": key_version_sk(version)}},
            ConsistentRead=True,
        ).get("Item")
        return KeyVersionRecord.from_item(item) if item else None

    def key_versions(self, branch_key_id: str) -> list[KeyVersionRecord]:
        items = self._query(
            KeyConditionExpression="pk = :pk AND begins_with(sk, :v)",
            ExpressionAttributeValues={":pk": {"S": key_version_pk(branch_key_id)}, ":v": {"S": "V#"}},
            ConsistentRead=True,
        )
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
            update += ", shred_after = :shred, gsi1pk = :due, gsi1sk = :sort"
            values.update({
                ":shred": {"S": shred_after}, ":due": {"S": SHRED_DUE_GSI},
                ":sort": {"S": f"{shred_after}#{branch_key_id}#{version}"},
            })
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
                UpdateExpression="SET objects_unreadable = :n REMOVE gsi1pk, gsi1sk",
                ConditionExpression="attribute_exists(pk) AND attribute_not_exists(objects_unreadable)",
                ExpressionAttributeValues={":n": {"N": str(objects_unreadable)}},
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            # Counted by an earlier attempt; only its index entry may be left.
            self.dynamodb.update_item(TableName=self.table_name, Key=self._version_key(branch_key_id, version),
                                      UpdateExpression="REMOVE gsi1pk, gsi1sk",
                                      ConditionExpression="attribute_exists(pk)")

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
        items = self._query(
            IndexName=BY_KEY_VERSION_INDEX,
            KeyConditionExpression="gsi1pk = :due AND gsi1sk <= :now",
            ExpressionAttributeValues={":due": {"S": SHRED_DUE_GSI}, ":now": {"S": now + "#\uffff"}},
        )
        return [KeyVersionRecord.from_item(item) for item in items]

    def count_under(self, branch_key_id: str, version: str) -> int:
        """How many items (vault objects and contact records) depend on one branch key version."""
        paginator = self.dynamodb.get_paginator("query")
        return sum(
            page["Count"]
            for page in paginator.paginate(
                TableName=self.table_name,
                IndexName=BY_KEY_VERSION_INDEX,
                KeyConditionExpression="gsi1pk = :v",
                ExpressionAttributeValues={":v": {"S": key_version_gsi(branch_key_id, version)}},
                Select="COUNT",
            )
        )

    def objects_under(self, branch_key_id: str, version: str) -> Iterator[ObjectRecord]:
        """Every object encrypted under one branch key version, oldest first."""
        items = self._query(
            IndexName=BY_KEY_VERSION_INDEX,
            KeyConditionExpression="gsi1pk = :v",
            ExpressionAttributeValues={":v": {"S": key_version_gsi(branch_key_id, version)}},
        )
        for item in items:
            if item.get("sk", {}).get("S") == "OBJECT":  # contact records share the index
                yield ObjectRecord.from_item(item)

    def objects_of_contact(self, contact_id: str) -> list[ObjectRecord]:
        """Every vault object recorded for one Amazon Connect contact, oldest first (the
        `by-contact` index; objects recorded before the index existed are not in it)."""
        items = self._query(
            IndexName=BY_CONTACT_INDEX,
            KeyConditionExpression="gsi2pk = :c",
            ExpressionAttributeValues={":c": {"S": contact_objects_gsi(contact_id)}},
        )
        return [ObjectRecord.from_item(item) for item in items if item.get("sk", {}).get("S") == "OBJECT"]

    def objects_from_source(self, bucket: str, key: str) -> list[ObjectRecord]:
        """Every vault object recorded for one source bucket and key (any version), oldest
        first. The `by-source` index holds keys only, and an index is eventually consistent:
        each record is then read with a consistent GetItem, and one deleted since is left out.
        Objects recorded before the index existed are not in it."""
        items = self._query(
            IndexName=BY_SOURCE_INDEX,
            KeyConditionExpression="gsi3pk = :s",
            ExpressionAttributeValues={":s": {"S": source_objects_gsi(bucket, key)}},
        )
        prefix = object_pk("")
        vault_keys = [item["pk"]["S"][len(prefix):] for item in items
                      if item.get("sk", {}).get("S") == "OBJECT" and item["pk"]["S"].startswith(prefix)]
        return [record for record in map(self.get_object, vault_keys) if record is not None]

    def _version_key(self, branch_key_id: str, version: str) -> dict[str, Any]:
        return {"pk": {"S": key_version_pk(branch_key_id)}, "sk": {"S": key_version_sk(version)}}

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        paginator = self.dynamodb.get_paginator("query")
        for page in paginator.paginate(TableName=self.table_name, **kwargs):
            yield from page.get("Items", [])
