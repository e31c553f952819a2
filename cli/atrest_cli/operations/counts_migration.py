"""`atrest migrate`: bring records written before counts and shards existed into them, once.

A stack updated from an earlier atrest holds records that no count includes, in the one
unsharded `by-key-version` partition of their version, and unfinished ones missing from
the `unfinished` index. Until they are migrated the operator views stay exact (they add up
the unsharded partition, `MetadataTable.count_uncounted`) but read more than they need.

For each such item, in one transaction: mark it counted, move its index entry to its shard
(and into `unfinished` while its source step is), and add it to its version's counts. The
mark's condition (not counted yet, and the status the scan saw) makes the step exact under
a concurrent pipeline and a re-run: an item is counted once, whoever gets there first.

Resumable: the scan's position is saved after every page (`CONFIG`/`COUNTS`); a re-run
carries on from there, and one after the end finds nothing left (it starts over, reading
only what is still uncounted, which is how an item written by a function that had not been
updated yet is caught). Run it after `sam deploy` has finished.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from atrest.storage.counts import contact_added, count_update, of_record
from atrest.storage.record_keys import (
    COUNTED, INDEX_ATTRIBUTES, BY_KEY_VERSION_INDEX, OBJECT_SK, PARTITION, SORT, counts_migration_key,
    is_contact_version_item, key_version_gsi, shard_of, unfinished_entry,
)
from atrest.storage.records import ObjectRecord, ObjectStatus, cancelled_by_condition, utc_now
from atrest.storage.transactions import transact_write

# (items read so far, items migrated so far): called once per page.
Progress = Callable[[int, int], None]
_ATTEMPTS = 5  # a record whose status keeps changing under us is left for the next run


@dataclass
class MigrationReport:
    read: int = 0
    objects: int = 0
    contacts: int = 0
    left: int = 0  # changed under the migration every time it tried: counted by the next run
    resumed: bool = False

    @property
    def migrated(self) -> int:
        return self.objects + self.contacts


def migrate_counts(dynamodb: Any, table: str, on_progress: Progress | None = None,
                   page_size: int | None = None) -> MigrationReport:
    """Count and re-index every item written before counts existed (`page_size`: items a
    scan page reads; DynamoDB's 1 MB pages when None)."""
    progress = on_progress or (lambda _read, _done: None)
    report = MigrationReport()
    state = dynamodb.get_item(TableName=table, Key=counts_migration_key(), ConsistentRead=True).get("Item") or {}
    start = json.loads(state["resume_from"]["S"]) if "resume_from" in state else None
    report.resumed = start is not None
    request: dict[str, Any] = {
        "TableName": table, "ConsistentRead": True,
        "FilterExpression": f"attribute_not_exists({COUNTED}) AND (#sk = :object OR begins_with(#sk, :contact))",
        "ExpressionAttributeNames": {"#sk": SORT},
        "ExpressionAttributeValues": {":object": {"S": OBJECT_SK}, ":contact": {"S": "K#"}},
        **({"Limit": page_size} if page_size else {}),
    }
    while True:
        page = dynamodb.scan(**request, **({"ExclusiveStartKey": start} if start else {}))
        for item in page.get("Items", []):
            report.read += 1
            if item[SORT]["S"] == OBJECT_SK:
                if _migrate_object(dynamodb, table, item):
                    report.objects += 1
                elif _still_uncounted(dynamodb, table, item):
                    report.left += 1
            elif is_contact_version_item(item) and _migrate_contact(dynamodb, table, item):
                report.contacts += 1
        report.read += page.get("ScannedCount", 0) - len(page.get("Items", []))
        start = page.get("LastEvaluatedKey")
        _save(dynamodb, table, start, finished=start is None)
        progress(report.read, report.migrated)
        if start is None:
            return report


def _migrate_object(dynamodb: Any, table: str, item: Mapping[str, Any]) -> bool:
    """Count one record written before counts: True when this call counted it."""
    for _ in range(_ATTEMPTS):
        record = ObjectRecord.from_item(dict(item))
        adds = of_record(record.data_class, record.plaintext_size, record.status.value)
        partition, sort = INDEX_ATTRIBUTES[BY_KEY_VERSION_INDEX]
        sets = {COUNTED: {"BOOL": True},
                partition: {"S": key_version_gsi(record.branch_key_id, record.branch_key_version, shard_of(record.vault_key))}}
        if record.status is ObjectStatus.ENCRYPTED:
            sets |= {name: {"S": value} for name, value in
                     unfinished_entry(record.vault_key, record.source_bucket, record.source_key).items()}
        names = {f"#m{n}": name for n, name in enumerate(sets)} | {"#status": "status"}
        values = {f":m{n}": value for n, value in enumerate(sets.values())} | {":seen": {"S": record.status.value}}
        try:
            transact_write(dynamodb, [
                {"Update": {
                    "TableName": table, "Key": record.key,
                    "UpdateExpression": "SET " + ", ".join(f"#m{n} = :m{n}" for n in range(len(sets))),
                    "ConditionExpression": f"attribute_exists({PARTITION}) AND attribute_not_exists({COUNTED}) "
                                           "AND #status = :seen",
                    "ExpressionAttributeNames": names, "ExpressionAttributeValues": values,
                }},
                record.count_update(table, adds),
            ])
            return True
        except dynamodb.exceptions.TransactionCanceledException as error:
            if not cancelled_by_condition(error, 0):
                raise
        # Counted, deleted or moved on since the scan read it: read it again.
        item = dynamodb.get_item(TableName=table, Key=record.key, ConsistentRead=True).get("Item")
        if item is None or COUNTED in item:
            return False
    return False


def _still_uncounted(dynamodb: Any, table: str, item: Mapping[str, Any]) -> bool:
    current = dynamodb.get_item(TableName=table, Key={PARTITION: item[PARTITION], SORT: item[SORT]},
                                ConsistentRead=True).get("Item")
    return current is not None and COUNTED not in current


def _migrate_contact(dynamodb: Any, table: str, item: Mapping[str, Any]) -> bool:
    """Count one contact index item written before counts: True when this call counted it."""
    partition, _ = INDEX_ATTRIBUTES[BY_KEY_VERSION_INDEX]
    legacy = item.get(partition, {}).get("S", "")
    contact_id = item[SORT]["S"][len("K#"):].rpartition("#")[0]
    branch_key_id, _, version = legacy[len("BKV#"):].rpartition("#")
    if not (legacy.startswith("BKV#") and branch_key_id and version and contact_id):
        return False  # not an index item this migration knows how to read: left as it is
    try:
        transact_write(dynamodb, [
            {"Update": {
                "TableName": table, "Key": {PARTITION: item[PARTITION], SORT: item[SORT]},
                "UpdateExpression": "SET #counted = :yes, #partition = :shard",
                "ConditionExpression": f"attribute_exists({PARTITION}) AND attribute_not_exists({COUNTED})",
                "ExpressionAttributeNames": {"#counted": COUNTED, "#partition": partition},
                "ExpressionAttributeValues": {":yes": {"BOOL": True},
                                              ":shard": {"S": key_version_gsi(branch_key_id, version, shard_of(contact_id))}},
            }},
            count_update(table, branch_key_id, version, shard_of(contact_id), contact_added()),
        ])
    except dynamodb.exceptions.TransactionCanceledException as error:
        if cancelled_by_condition(error, 0):
            return False
        raise
    return True


def _save(dynamodb: Any, table: str, resume_from: Mapping[str, Any] | None, finished: bool) -> None:
    item: dict[str, Any] = {**counts_migration_key(), "updated_at": {"S": utc_now()}}
    if resume_from is not None:
        item["resume_from"] = {"S": json.dumps(resume_from, sort_keys=True)}
    if finished:
        item["finished_at"] = {"S": utc_now()}
    dynamodb.put_item(TableName=table, Item=item)


def migration_finished(dynamodb: Any, table: str) -> bool:
    """Whether a migration ran to its end (after which every record is counted and indexed)."""
    item = dynamodb.get_item(TableName=table, Key=counts_migration_key(), ConsistentRead=True).get("Item")
    return bool(item and "finished_at" in item)
