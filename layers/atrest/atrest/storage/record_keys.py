"""The metadata table's keys: every item kind's partition and sort key, its index entries,
and the key conditions that find items. Nothing else spells them (docs/architecture.md,
"Metadata table").

- object: `OBJ#<vault key>` / `OBJECT`, in the `by-key-version` index (`BKV#<branch key
  id>#<version>#<shard>`: SHARDS partitions per version), the `by-contact` index
  (`CONTACT#<contact id>`) and the `by-source` index (`SRC#<bucket>#<key>`), each sorted by
  `<encrypted at>`; while its source step is unfinished, also in the sparse
  `unfinished` index (`UNFINISHED#<shard>`, sorted by `<source bucket>#<source key>`);
- counts: `COUNT#<branch key id>#<version>#<shard>` / `COUNT`: how many objects (in total and
  per data class, with their bytes and source outcomes) and contacts depend on one version,
  added to in the same transaction as what they count (docs/scale.md);
- branch key version: `KEY#<branch key id>` / `V#<version>`; a RETIRED one due for shredding
  sits in `by-key-version` under `SHRED-DUE`, sorted by `<shred after>#<branch key id>#<version>`;
- contact: `CONTACT#<instance id>` / `C#<contact id>`, and per key version its PII uses an
  index item `CONTACT#<instance id>` / `K#<contact id>#<version>` in `by-key-version`;
- instance: `INSTANCE#<instance id>` / `INSTANCE`, and `ALIAS#<alias>` / `INSTANCE`;
- configuration: `CONFIG` / `KMS` (the stack's KMS key) and `CONFIG` / `KMS#<data class>`.
"""

from __future__ import annotations

import hashlib
from typing import Any, Mapping

from atrest.storage.vault_keys import VaultKey

PARTITION = "pk"
SORT = "sk"

BY_KEY_VERSION_INDEX = "by-key-version"
# Objects of one Amazon Connect contact (ReadObject reads "by contact id", docs/audit.md).
BY_CONTACT_INDEX = "by-contact"
# Objects from one intake bucket and key, every version (`atrest decrypt s3://<intake>/<key>`
# without a version: the encrypted version is gone from the intake, so it cannot be listed).
# KEYS_ONLY: the index finds vault keys; records are then read with a consistent GetItem.
BY_SOURCE_INDEX = "by-source"
# Records whose source step has not finished (sparse: the entry is removed when it finishes):
# `atrest backfill` finds them without reading the archive.
UNFINISHED_INDEX = "unfinished"
INDEX_ATTRIBUTES = {BY_KEY_VERSION_INDEX: ("gsi1pk", "gsi1sk"), BY_CONTACT_INDEX: ("gsi2pk", "gsi2sk"),
                     BY_SOURCE_INDEX: ("gsi3pk", "gsi3sk"), UNFINISHED_INDEX: ("gsi4pk", "gsi4sk")}
UNFINISHED_INDEX_ATTRIBUTES = INDEX_ATTRIBUTES[UNFINISHED_INDEX]
# What the unfinished index carries besides its keys: what a backfill needs to finish one.
UNFINISHED_PROJECTION = ("source_bucket", "source_key", "source_version_id", "source_etag", "plaintext_size",
                         "data_class", "encrypted_at")

# What many objects share (a branch key version: every object of a scope for its lifetime) is
# spread over SHARDS partition keys, each object to the one its vault key hashes to. DynamoDB
# allows ~1,000 write units per second per partition key; 5,000 objects per second for one
# scope write ~30,000 units per second to its version's `by-key-version` entries (two writes
# of ~3 units each per object), so 64 shards take ~470 each: half the limit, a margin for a
# hash that is not perfectly even (docs/scale.md). A reader gets a version's counts in one
# BatchGetItem per 100 keys and lists a version with one Query per shard.
SHARDS = 64
# Set on every item counted in the counts (written by a pipeline that counts, or by the migration).
COUNTED = "counted"
KEY_VERSION_INDEX_ATTRIBUTES = INDEX_ATTRIBUTES[BY_KEY_VERSION_INDEX]

OBJECT_SK = "OBJECT"
_OBJECT_PREFIX = "OBJ#"
_KEY_VERSION_PREFIX = "V#"
# Retired versions that will be shredded sit in the by-key-version index under one
# partition, sorted by when they may be shredded, so an expiry run finds the due ones
# with one range query. (Versions are few: one per scope per rotation period.)
SHRED_DUE_GSI = "SHRED-DUE"
_INSTANCE_SK = "INSTANCE"
_CONFIG_PK = "CONFIG"
_KMS_CONFIG_SK = "KMS"
_CLASS_KMS_CONFIG_PREFIX = "KMS#"
_COUNTS_CONFIG_SK = "COUNTS"
_COUNT_PREFIX = "COUNT#"
COUNT_SK = "COUNT"
_UNFINISHED_PREFIX = "UNFINISHED#"


def shard_of(name: str) -> int:
    """The shard of an item named `name` (a vault key, a contact id): the same on every write."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:4], "big") % SHARDS


def item_key(pk: str, sk: str) -> dict[str, Any]:
    return {PARTITION: {"S": pk}, SORT: {"S": sk}}


def sort_key_of(item: Mapping[str, Any]) -> str:
    return str(item.get(SORT, {}).get("S", ""))


# -- objects ---------------------------------------------------------------------------------


def object_pk(vault_key: str | VaultKey) -> str:
    return f"{_OBJECT_PREFIX}{vault_key}"


def object_key(vault_key: str | VaultKey) -> dict[str, Any]:
    return item_key(object_pk(vault_key), OBJECT_SK)


def is_object_item(item: Mapping[str, Any]) -> bool:
    """Object records share the table and its indexes with contact and key version items."""
    return sort_key_of(item) == OBJECT_SK


def vault_key_of(item: Mapping[str, Any]) -> str | None:
    """The vault key an object item's key names (an index entry without its attributes)."""
    pk = str(item.get(PARTITION, {}).get("S", ""))
    return pk[len(_OBJECT_PREFIX):] if is_object_item(item) and pk.startswith(_OBJECT_PREFIX) else None


def object_index_entries(vault_key: str, encrypted_at: str, branch_key_id: str, version: str,
                         contact_id: str | None, source_bucket: str, source_key: str,
                         unfinished: bool = False) -> dict[str, str]:
    """The index attributes of an object record: by key version, by contact (if it has one), by
    source, and unfinished (while its source step is)."""
    # Time order is all a reader needs (an index's sort key need not be unique; a page's
    # LastEvaluatedKey carries the table key too). Records written before also end in
    # `#<vault key>`: same order, 90 bytes more in every index entry.
    sort = encrypted_at
    entries = _entry(BY_KEY_VERSION_INDEX, key_version_gsi(branch_key_id, version, shard_of(vault_key)), sort)
    if contact_id:
        entries |= _entry(BY_CONTACT_INDEX, contact_objects_gsi(contact_id), sort)
    if unfinished:
        entries |= unfinished_entry(vault_key, source_bucket, source_key)
    return entries | _entry(BY_SOURCE_INDEX, source_objects_gsi(source_bucket, source_key), sort)


def unfinished_entry(vault_key: str, source_bucket: str, source_key: str) -> dict[str, str]:
    return _entry(UNFINISHED_INDEX, f"{_UNFINISHED_PREFIX}{shard_of(vault_key):02d}",
                  _sort_key_bytes(f"{source_bucket}#{source_key}"))


# DynamoDB's limit on a sort key (an index's too); an S3 key alone may take 1,024 bytes.
_SORT_KEY_BYTES = 1024


def _sort_key_bytes(text: str) -> str:
    """`text` cut to what a sort key may hold, on a character boundary: an index sort key
    need not be unique, and a prefix query cut the same way finds it (its caller filters
    on the whole key)."""
    encoded = text.encode("utf-8")
    return text if len(encoded) <= _SORT_KEY_BYTES else encoded[:_SORT_KEY_BYTES].decode("utf-8", errors="ignore")


def key_version_gsi(branch_key_id: str, version: str, shard: int | None) -> str:
    """The `by-key-version` partition of one shard of a version (None: the one partition
    records had before sharding; the migration moves them, readers read it until then)."""
    base = f"BKV#{branch_key_id}#{version}"
    return base if shard is None else f"{base}#{shard:02d}"


def contact_objects_gsi(contact_id: str) -> str:
    return f"CONTACT#{contact_id}"


def source_objects_gsi(bucket: str, key: str) -> str:
    return f"SRC#{bucket}#{key}"


# -- branch key versions ---------------------------------------------------------------------


def key_version_pk(branch_key_id: str) -> str:
    return f"KEY#{branch_key_id}"


def key_version_sk(version: str) -> str:
    return f"{_KEY_VERSION_PREFIX}{version}"


def key_version_key(branch_key_id: str, version: str) -> dict[str, Any]:
    return item_key(key_version_pk(branch_key_id), key_version_sk(version))


def shred_due_entry(shred_after: str, branch_key_id: str, version: str) -> dict[str, str]:
    return _entry(BY_KEY_VERSION_INDEX, SHRED_DUE_GSI, f"{shred_after}#{branch_key_id}#{version}")


# -- contacts --------------------------------------------------------------------------------


def contact_key(instance_id: str, contact_id: str) -> dict[str, Any]:
    return item_key(f"CONTACT#{instance_id}", f"C#{contact_id}")


def contact_version_key(instance_id: str, contact_id: str, version: str) -> dict[str, Any]:
    """The index item that counts a contact under one key version its PII uses."""
    return item_key(f"CONTACT#{instance_id}", f"K#{contact_id}#{version}")


def contact_version_entry(branch_key_id: str, version: str, at: str, contact_id: str) -> dict[str, str]:
    return _entry(BY_KEY_VERSION_INDEX, key_version_gsi(branch_key_id, version, shard_of(contact_id)),
                  f"{at}#contact/{contact_id}")


def is_contact_version_item(item: Mapping[str, Any]) -> bool:
    return str(item.get(PARTITION, {}).get("S", "")).startswith("CONTACT#") and sort_key_of(item).startswith("K#")


# -- counts ----------------------------------------------------------------------------------


def counter_key(branch_key_id: str, version: str, shard: int) -> dict[str, Any]:
    return item_key(f"{_COUNT_PREFIX}{branch_key_id}#{version}#{shard:02d}", COUNT_SK)


def counter_keys(branch_key_id: str, version: str) -> list[dict[str, Any]]:
    """Every shard's count item of one version."""
    return [counter_key(branch_key_id, version, shard) for shard in range(SHARDS)]


def counts_migration_key() -> dict[str, Any]:
    """Where the counts migration keeps how far it got, and when it finished."""
    return item_key(_CONFIG_PK, _COUNTS_CONFIG_SK)


# -- instances and configuration -------------------------------------------------------------


def instance_key(instance_id: str) -> dict[str, Any]:
    return item_key(f"INSTANCE#{instance_id}", _INSTANCE_SK)


def alias_key(alias: str) -> dict[str, Any]:
    return item_key(f"ALIAS#{alias}", _INSTANCE_SK)


def kms_config_key() -> dict[str, Any]:
    """The record of the KMS key the stack's branch keys are wrapped with (`atrest rekey`)."""
    return item_key(_CONFIG_PK, _KMS_CONFIG_SK)


def class_kms_config_key(data_class: str) -> dict[str, Any]:
    """The record of the KMS key a data class's own branch key was last moved to."""
    return item_key(_CONFIG_PK, _CLASS_KMS_CONFIG_PREFIX + data_class)


# -- key conditions: keyword arguments of a Query --------------------------------------------


def objects_only() -> dict[str, Any]:
    """Scan arguments that keep object records only."""
    return {"FilterExpression": f"{SORT} = :object", "ExpressionAttributeValues": {":object": {"S": OBJECT_SK}}}


def key_versions_of(branch_key_id: str) -> dict[str, Any]:
    return _begins_with(key_version_pk(branch_key_id), _KEY_VERSION_PREFIX)


def class_kms_configs() -> dict[str, Any]:
    return _begins_with(_CONFIG_PK, _CLASS_KMS_CONFIG_PREFIX)


def under_key_version(branch_key_id: str, version: str) -> list[dict[str, Any]]:
    """Objects and contact index items under one branch key version: one Query per
    partition: first the one partition of items written before sharding (empty once the
    migration has moved them), then every shard."""
    return [_in_index(BY_KEY_VERSION_INDEX, key_version_gsi(branch_key_id, version, shard))
            for shard in [None, *range(SHARDS)]]


def unfinished_from(bucket: str, prefix: str = "") -> list[dict[str, Any]]:
    """Records of `bucket` whose source step is unfinished, keys beginning with `prefix`: one
    Query per shard of the `unfinished` index."""
    partition, sort = UNFINISHED_INDEX_ATTRIBUTES
    return [{"IndexName": UNFINISHED_INDEX, "KeyConditionExpression": f"{partition} = :p AND begins_with({sort}, :s)",
             "ExpressionAttributeValues": {":p": {"S": f"{_UNFINISHED_PREFIX}{shard:02d}"},
                                           ":s": {"S": _sort_key_bytes(f"{bucket}#{prefix}")}}}
            for shard in range(SHARDS)]


def of_contact(contact_id: str) -> dict[str, Any]:
    return _in_index(BY_CONTACT_INDEX, contact_objects_gsi(contact_id))


def from_source(bucket: str, key: str) -> dict[str, Any]:
    return _in_index(BY_SOURCE_INDEX, source_objects_gsi(bucket, key))


def shred_due_by(now: str) -> dict[str, Any]:
    """Versions whose shred time is at or before `now` (ISO text: sorts as time)."""
    partition, sort = KEY_VERSION_INDEX_ATTRIBUTES
    return {"IndexName": BY_KEY_VERSION_INDEX, "KeyConditionExpression": f"{partition} = :due AND {sort} <= :now",
            "ExpressionAttributeValues": {":due": {"S": SHRED_DUE_GSI}, ":now": {"S": now + "#\uffff"}}}


def filtered(query: Mapping[str, Any], expression: str, values: Mapping[str, Any]) -> dict[str, Any]:
    """`query` (one of the above) with a FilterExpression whose values join the key condition's."""
    return {**query, "FilterExpression": expression,
            "ExpressionAttributeValues": {**query["ExpressionAttributeValues"], **values}}


def _entry(index: str, partition: str, sort: str) -> dict[str, str]:
    partition_name, sort_name = INDEX_ATTRIBUTES[index]
    return {partition_name: partition, sort_name: sort}


def _in_index(index: str, partition: str) -> dict[str, Any]:
    return {"IndexName": index, "KeyConditionExpression": f"{INDEX_ATTRIBUTES[index][0]} = :partition",
            "ExpressionAttributeValues": {":partition": {"S": partition}}}


def _begins_with(pk: str, sk_prefix: str) -> dict[str, Any]:
    return {"KeyConditionExpression": f"{PARTITION} = :pk AND begins_with({SORT}, :prefix)",
            "ExpressionAttributeValues": {":pk": {"S": pk}, ":prefix": {"S": sk_prefix}}}
