"""Contact records in the metadata table: what one contact's events said, PII sealed.

One item per contact (keys: `atrest.storage.record_keys.contact_key`) gathers what its
events say: the fields kept in clear as attributes of their own, `event:<type>` times, and
each sealed field as `pii:<name>` (an ESDK message) with `pii:<name>@version` (the branch
key version its header names). For each key version a contact's PII uses, an index item
puts the contact in the `by-key-version` index, so shredding a version can say how many
contacts it makes unreadable.

The write that stores sealed fields requires, in the same transaction, that each of their
key versions is not SHREDDED (`MetadataTable.version_not_shredded`): a shred marks the
version before it deletes the key, so nothing lands under a version after its shred.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from atrest.core.errors import AtrestError
from atrest.storage.counts import contact_added, count_update
from atrest.storage.record_keys import (
    COUNTED, PARTITION, SORT, contact_key, contact_version_entry, contact_version_key, shard_of,
)
from atrest.storage.records import MetadataTable, utc_now
from atrest.storage.transactions import transact_write

PII_PREFIX = "pii:"
_VERSION_SUFFIX = "@version"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class KeyVersionShreddedError(AtrestError):
    """The key version a contact's fields were sealed under was shredded before they were stored."""


@dataclass(frozen=True)
class ContactEventFields:
    """What one contact event adds to its contact's record."""

    instance_id: str
    contact_id: str
    event_type: str
    event_time: str | None
    instance_alias: str | None
    public: Mapping[str, Any]
    sealed: Mapping[str, bytes]  # field -> its ESDK message
    versions: Mapping[str, str]  # field -> the branch key version its message header names


@dataclass(frozen=True)
class StoredContact:
    """A contact record as read: clear fields decoded, sealed fields still sealed."""

    public: dict[str, Any]
    sealed: dict[str, bytes]
    recorded_versions: dict[str, str] = field(default_factory=dict)  # field -> its `@version` attribute


def sealed_attribute(name: str) -> str:
    """The attribute holding field `name`'s ESDK message."""
    return PII_PREFIX + name


def version_attribute(name: str) -> str:
    """The attribute naming the branch key version field `name`'s message was sealed under."""
    return f"{PII_PREFIX}{name}{_VERSION_SUFFIX}"


def _dynamo_value(value: Any) -> dict[str, Any]:
    # DynamoDB has no floats: JSON numbers become Decimals.
    return _serializer.serialize(json.loads(json.dumps(value), parse_float=Decimal))


def store_contact_event(records: MetadataTable, branch_key_id: str, fields: ContactEventFields) -> None:
    """Add one event's fields to its contact's record (created by the first event).

    Raises `KeyVersionShreddedError` when a version a sealed field names was shredded:
    nothing was stored, and the caller seals again under the current key."""
    now = utc_now()
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    sets: list[str] = []

    def assign(attribute: str, value: dict[str, Any]) -> None:
        n = len(sets)
        names[f"#a{n}"], values[f":v{n}"] = attribute, value
        sets.append(f"#a{n} = :v{n}")

    assign("instance_id", {"S": fields.instance_id})
    assign("contact_id", {"S": fields.contact_id})
    assign("last_event_type", {"S": fields.event_type})
    assign("updated_at", {"S": now})
    assign(f"event:{fields.event_type}", {"S": fields.event_time or now})
    if fields.instance_alias:
        assign("instance_alias", {"S": fields.instance_alias})
    for name, value in fields.public.items():
        assign(name, _dynamo_value(value))
    for name, ciphertext in fields.sealed.items():
        assign(sealed_attribute(name), {"B": ciphertext})
        assign(version_attribute(name), {"S": fields.versions[name]})
    update = {
        "TableName": records.table_name,
        "Key": contact_key(fields.instance_id, fields.contact_id),
        "UpdateExpression": "SET " + ", ".join(sets),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }
    if not fields.versions:
        records.dynamodb.update_item(**update)
        return
    used = sorted(set(fields.versions.values()))
    # The contact's first index item under a version counts it (atrest.storage.counts): put only
    # if absent, with the count, in one transaction; versions whose item exists already
    # (an earlier event) are left out, so the count is added once.
    new_versions = list(used)
    while True:
        items: list[dict[str, Any]] = [{"Update": update}]
        for version in new_versions:
            entry = contact_version_entry(branch_key_id, version, now, fields.contact_id)
            items.append({"Put": {"TableName": records.table_name, "Item": {
                **contact_version_key(fields.instance_id, fields.contact_id, version),
                **{name: {"S": value} for name, value in entry.items()}, COUNTED: {"BOOL": True},
            }, "ConditionExpression": f"attribute_not_exists({PARTITION})"}})
        items += [count_update(records.table_name, branch_key_id, version, shard_of(fields.contact_id), contact_added())
                  for version in new_versions]
        checks = len(items)
        items += [records.version_not_shredded(branch_key_id, version) for version in used]
        try:
            transact_write(records.dynamodb, items)
            break
        except records.dynamodb.exceptions.TransactionCanceledException as error:
            reasons = [r.get("Code") for r in error.response.get("CancellationReasons", [])]
            if len(reasons) != len(items):
                raise
            shredded = [version for version, reason in zip(used, reasons[checks:]) if reason == "ConditionalCheckFailed"]
            if shredded:
                raise KeyVersionShreddedError(f"{branch_key_id} version {', '.join(shredded)} was shredded") from None
            present = {version for version, reason in zip(new_versions, reasons[1:1 + len(new_versions)])
                       if reason == "ConditionalCheckFailed"}
            if not present:
                raise
            new_versions = [version for version in new_versions if version not in present]
    for version in used:
        records.record_key_version(branch_key_id, version)


def read_contact(records: MetadataTable, instance_id: str, contact_id: str) -> StoredContact | None:
    item = records.dynamodb.get_item(
        TableName=records.table_name, Key=contact_key(instance_id, contact_id), ConsistentRead=True
    ).get("Item")
    if not item:
        return None
    stored = StoredContact({}, {})
    for attribute, value in item.items():
        if not attribute.startswith(PII_PREFIX):
            if attribute not in (PARTITION, SORT):
                stored.public[attribute] = _deserializer.deserialize(value)
        elif attribute.endswith(_VERSION_SUFFIX):
            stored.recorded_versions[attribute[len(PII_PREFIX):-len(_VERSION_SUFFIX)]] = value["S"]
        else:
            stored.sealed[attribute[len(PII_PREFIX):]] = bytes(value["B"])
    return stored
