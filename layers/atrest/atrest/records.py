"""The metadata table: which key protects what.

One item per encrypted object (`ObjectRecord`) and one per branch key version
(`KeyVersionRecord`); the `by-key-version` index lists the objects under a version.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from datetime import datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Iterator

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

BY_KEY_VERSION_INDEX = "by-key-version"

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
    plaintext_sha256: str
    ciphertext_sha256: str
    s3_checksum: str
    encryption_context: dict[str, str]
    encrypted_at: str
    status: ObjectStatus = ObjectStatus.ENCRYPTED
    instance: str | None = None
    contact_id: str | None = None
    source_removed_at: str | None = None
    duration_ms: int | None = None

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
    branch_key_id: str
    version: str
    state: KeyVersionState = KeyVersionState.ACTIVE
    created_at: str = field(default_factory=utc_now)

    def to_item(self) -> dict[str, Any]:
        return {
            "pk": {"S": f"KEY#{self.branch_key_id}"},
            "sk": {"S": f"V#{self.version}"},
            "branch_key_id": {"S": self.branch_key_id},
            "version": {"S": self.version},
            "state": {"S": self.state.value},
            "created_at": {"S": self.created_at},
        }

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "KeyVersionRecord":
        plain = _plain(item)
        return cls(plain["branch_key_id"], plain["version"], KeyVersionState(plain["state"]), plain["created_at"])


def object_pk(vault_key: str) -> str:
    return f"OBJ#{vault_key}"


def key_version_gsi(branch_key_id: str, version: str) -> str:
    return f"BKV#{branch_key_id}#{version}"


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    def convert(value: Any) -> Any:
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

    def record_key_version(self, branch_key_id: str, version: str) -> bool:
        """Record a branch key version the first time it is seen. True when this call added it."""
        try:
            self.dynamodb.put_item(
                TableName=self.table_name,
                Item=KeyVersionRecord(branch_key_id, version).to_item(),
                ConditionExpression="attribute_not_exists(pk)",
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def key_versions(self, branch_key_id: str) -> list[KeyVersionRecord]:
        items = self._query(
            KeyConditionExpression="pk = :pk", ExpressionAttributeValues={":pk": {"S": f"KEY#{branch_key_id}"}}
        )
        return [KeyVersionRecord.from_item(item) for item in items]

    def objects_under(self, branch_key_id: str, version: str) -> Iterator[ObjectRecord]:
        """Every object encrypted under one branch key version, oldest first."""
        items = self._query(
            IndexName=BY_KEY_VERSION_INDEX,
            KeyConditionExpression="gsi1pk = :v",
            ExpressionAttributeValues={":v": {"S": key_version_gsi(branch_key_id, version)}},
        )
        for item in items:
            yield ObjectRecord.from_item(item)

    def _query(self, **kwargs: Any) -> Iterator[dict[str, Any]]:
        paginator = self.dynamodb.get_paginator("query")
        for page in paginator.paginate(TableName=self.table_name, **kwargs):
            yield from page.get("Items", [])
