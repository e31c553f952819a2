"""How many objects and contacts depend on each branch key version, kept as they change.

Operator views (`atrest status`, `atrest keys list`, the impact of a shred or a
forget-instance) read these instead of counting records, so they cost the same whatever the
size of the archive (docs/scale.md). A count changes in the same DynamoDB transaction as
what it counts: the record's first write (conditional: a retry or a duplicate delivery finds
the record and adds nothing), its source step (conditional on the record still being
unfinished), a contact's first index item under a version, a record's deletion. So a count
is exact under retries, duplicates and crashes: there is no moment where one happened
without the other.

Each version's counts are spread over `SHARDS` items (the writer's shard: its vault key's
or contact's), so no single item takes every write of a large run; a reader adds the shards
up (one BatchGetItem per 100 keys).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from atrest.storage.record_keys import counter_key, counter_keys

OBJECTS = "objects"
BYTES = "bytes"
CONTACTS = "contacts"
# Per data class: "<what>:<data class>".
_CLASS_OBJECTS, _CLASS_BYTES, _CLASS_DELETED, _CLASS_KEPT = "objects:", "bytes:", "deleted:", "kept:"


@dataclass
class ClassTally:
    """One data class's objects under one version."""

    objects: int = 0
    bytes: int = 0
    source_deleted: int = 0
    source_kept: int = 0


@dataclass
class VersionCounts:
    """Everything that depends on one branch key version."""

    objects: int = 0
    bytes: int = 0
    contacts: int = 0
    classes: dict[str, ClassTally] = field(default_factory=dict)

    @property
    def dependents(self) -> int:
        """Objects and contacts a shred of the version would make unreadable."""
        return self.objects + self.contacts

    def add_item(self, item: Mapping[str, Any]) -> None:
        for name, value in item.items():
            number = int(value["N"]) if isinstance(value, Mapping) and "N" in value else None
            if number is None:
                continue
            if name == OBJECTS:
                self.objects += number
            elif name == BYTES:
                self.bytes += number
            elif name == CONTACTS:
                self.contacts += number
            else:
                what, _, data_class = name.partition(":")
                if not data_class:
                    continue
                tally = self.classes.setdefault(data_class, ClassTally())
                attribute = {"objects": "objects", "bytes": "bytes", "deleted": "source_deleted",
                             "kept": "source_kept"}.get(what)
                if attribute:
                    setattr(tally, attribute, getattr(tally, attribute) + number)


def object_added(data_class: str, size: int, kept: bool = False) -> dict[str, int]:
    """What one new object record adds to its version's counts."""
    adds = {OBJECTS: 1, BYTES: size, _CLASS_OBJECTS + data_class: 1, _CLASS_BYTES + data_class: size}
    if kept:
        adds[_CLASS_KEPT + data_class] = 1
    return adds


def source_finished(data_class: str, deleted: bool) -> dict[str, int]:
    """What an object's source step adds: its plaintext deleted, or kept."""
    return {(_CLASS_DELETED if deleted else _CLASS_KEPT) + data_class: 1}


def of_record(data_class: str, size: int, status: str) -> dict[str, int]:
    """Everything a record with `status` has added to its version's counts: its first write,
    and its source step once finished (ENCRYPTED: unfinished; SOURCE_DELETED; SOURCE_KEPT)."""
    adds = object_added(data_class, size)
    if status in ("SOURCE_DELETED", "SOURCE_KEPT"):
        adds |= source_finished(data_class, deleted=status == "SOURCE_DELETED")
    return adds


def object_removed(data_class: str, size: int, status: str) -> dict[str, int]:
    """What deleting an object record takes away (the opposite of everything it added)."""
    return {name: -value for name, value in of_record(data_class, size, status).items()}


def contact_added() -> dict[str, int]:
    return {CONTACTS: 1}


def count_update(table: str, branch_key_id: str, version: str, shard: int, adds: Mapping[str, int]) -> dict[str, Any]:
    """A TransactWriteItems `Update` adding `adds` to one shard's count item (created on first use)."""
    names = {f"#c{n}": name for n, name in enumerate(adds)}
    values = {f":c{n}": {"N": str(value)} for n, value in enumerate(adds.values())}
    return {"Update": {
        "TableName": table,
        "Key": counter_key(branch_key_id, version, shard),
        "UpdateExpression": "ADD " + ", ".join(f"#c{n} :c{n}" for n in range(len(adds))),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }}


def read_counts(dynamodb: Any, table: str, versions: list[tuple[str, str]]) -> dict[tuple[str, str], VersionCounts]:
    """The counts of each (branch key id, version): every shard's item, in BatchGetItems of 100
    keys (consistent reads: a count just written is seen)."""
    counts = {version: VersionCounts() for version in versions}
    keys = [(version, key) for version in versions for key in counter_keys(*version)]
    owner = {_key_text(key): version for version, key in keys}
    for start in range(0, len(keys), 100):
        request: dict[str, Any] = {table: {"Keys": [key for _, key in keys[start:start + 100]], "ConsistentRead": True}}
        while request:
            response = dynamodb.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(table, []):
                counts[owner[_key_text(item)]].add_item(item)
            request = response.get("UnprocessedKeys") or {}
            if request:
                time.sleep(0.1)  # throttled: back off briefly, then ask for the rest
    return counts


def _key_text(item: Mapping[str, Any]) -> str:
    return f"{item['pk']['S']}\n{item['sk']['S']}"
