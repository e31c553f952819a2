"""Audit records changed after they were written: the original is kept beside them.

atrest only ever adds audit records (PutItem with `attribute_not_exists(pk)`), and the
table's resource policy denies UpdateItem, DeleteItem and the rest to every principal.
What no policy can do is make a PutItem conditional: DynamoDB has no condition key for a
request's ConditionExpression, so a principal allowed to PutItem (the readers' roles,
operators who run `atrest decrypt`) can still replace a concluded record with an
unconditioned PutItem. The table's stream (NEW_AND_OLD_IMAGES) shows every such change
with the record as it was; WatchAuditTrail hands each change here, and this appends the
old image as a record of its own:

- its sort key is the original's plus `#replaced#<stream sequence number>`, in the same
  day partition and (when it names a contact) the same by-contact partition, so
  `atrest audit` finds it wherever it finds the replacement, and shows it as the
  original of a changed record;
- it is written with `attribute_not_exists(pk)` like every record: a redelivered stream
  record (Lambda retries) finds it written and is done;
- a change of a kept original is kept again under the original's own sort key (the
  `#replaced#` part is not repeated), so a key never grows past DynamoDB's limit.

Detective, not preventive: the replacement stays in the table too, and the function's
AuditRecordsChanged metric raises AuditTrailChangedAlarm (docs/audit.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from atrest.core.errors import AtrestError

REPLACED_MARK = "#replaced#"
CHANGE_EVENTS = ("MODIFY", "REMOVE")


def original_sort_key(sort_key: str) -> str:
    """The sort key a record was first written under (a kept original's without its mark)."""
    return sort_key.split(REPLACED_MARK, 1)[0]


@dataclass(frozen=True)
class AuditChange:
    """One change the audit table's stream reports: the item as it was (DynamoDB JSON), as
    it is now (None when removed), the stream's sequence number and when it happened."""

    event: str  # INSERT, MODIFY or REMOVE
    old_item: Mapping[str, Any] | None
    new_item: Mapping[str, Any] | None
    sequence_number: str
    changed_at: str

    @property
    def replaces_a_record(self) -> bool:
        # An INSERT adds (what atrest does); a MODIFY that changes nothing is no change
        # (AWS writes no stream record for it; the local emulator does).
        return self.event in CHANGE_EVENTS and bool(self.old_item) and self.old_item != self.new_item

    def original(self) -> dict[str, Any]:
        """The old image as the record that keeps it."""
        if not self.old_item or "S" not in self.old_item.get("sk", {}) or "S" not in self.old_item.get("pk", {}):
            raise AtrestError(f"stream record {self.sequence_number} has no old image with the table's keys; "
                              "is the audit table's StreamViewType NEW_AND_OLD_IMAGES?")
        replaced_sk = self.old_item["sk"]["S"]
        sort_key = f"{original_sort_key(replaced_sk)}{REPLACED_MARK}{self.sequence_number}"
        item = dict(self.old_item)
        item.update(sk={"S": sort_key}, replaced_at={"S": self.changed_at}, replaced_by={"S": self.event},
                    replaced_sk={"S": replaced_sk})
        if "gsi1pk" in item:
            item["gsi1sk"] = {"S": sort_key}
        return item


class AuditChangeKeeper:
    """Appends the originals of changed audit records to the audit table."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self.dynamodb = dynamodb
        self.table_name = table_name

    def keep(self, change: AuditChange) -> bool:
        """Keep the original of `change`; True when it was written now, False when this
        change was kept before (a redelivery). Raises on any other failure, so the stream
        record is retried."""
        try:
            self.dynamodb.put_item(TableName=self.table_name, Item=change.original(),
                                   ConditionExpression="attribute_not_exists(pk)")
        except self.dynamodb.exceptions.ConditionalCheckFailedException:
            return False
        return True
