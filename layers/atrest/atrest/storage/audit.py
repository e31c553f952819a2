"""The audit trail of reads: who decrypted what, when, and why (docs/audit.md).

One attempt, one final outcome. An attempt that is decided before any plaintext can
exist (denied, not found, refused) is one item with its outcome. An attempt that goes on
to decrypt writes a REQUESTED item first (before any plaintext exists: no record, no
read) and then one outcome item beside it (same partition, the request's sort key plus
`#outcome`, written only if none exists): RELEASED, REFUSED or FAILED. `attempts()` shows
the pair as one row; a REQUESTED item with no outcome after its `deadline` shows as "no
outcome (crashed?)", so a crash between the two writes still leaves a truthful row.
The outcome is a second PutItem rather than an UpdateItem so that the table stays
append-only for every principal (the resource policy denies UpdateItem) and the readers'
roles need nothing but PutItem. Items are only ever added:

- writes are PutItem with `attribute_not_exists(pk)`: an item is never replaced, not
  even by a retry (a retry gets a new id);
- the ReadObject role may PutItem and nothing else on the table, and the table's
  resource policy denies UpdateItem, DeleteItem, BatchWriteItem, PartiQL updates and
  deletes and TTL changes to every principal (template.yaml `AuditTable`);
- `atrest audit` only Queries.

Keys are laid out for the two questions operators ask:
- "what happened since T": `pk = day#YYYY-MM-DD`, `sk = <time>#<id>`: one Query per day;
- "who read contact C": index `by-contact`, `gsi1pk = contact#<id>`, `gsi1sk = <time>#<id>`.
A day partition takes about 1,000 writes a second; audited reads are made by people.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import date, datetime, timedelta, timezone
from enum import Enum
from typing import Any, Callable, Iterator

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from atrest.core.clock import to_text
from atrest.core.errors import AtrestError, ConfigurationError
from atrest.storage.audit_changes import original_sort_key

BY_CONTACT_INDEX = "by-contact"
MAX_REASON_LENGTH = 500
MAX_REQUESTED_LENGTH = 1100  # "object:<vault key>" with the longest S3 key
MAX_DETAIL_LENGTH = 500
# `--since` reaches back at most this far (one Query per day); older records are still in
# the table (and in its point-in-time backups) for an export to find.
MAX_SINCE_DAYS = 366

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


class AuditOutcome(str, Enum):
    REQUESTED = "REQUESTED"  # authorized and verified; decryption is starting (its outcome item follows)
    RELEASED = "RELEASED"  # the plaintext was handed over (written to the file, staged for the URL)
    REFUSED = "REFUSED"  # the caller may read it, but atrest would not: shredded key, object and record disagree
    DENIED = "DENIED"  # the caller may not read it, or the request was malformed
    NOT_FOUND = "NOT_FOUND"  # a decryptor asked for something that has no atrest record
    FAILED = "FAILED"  # decryption started and then broke (an error, not a verdict); nothing was handed over
    # Written by versions before the one-row rule: allowed, with no record of what happened next.
    ALLOWED = "ALLOWED"
    # Never written by atrest: an item in the audit table that is not an atrest record (shown, not trusted).
    UNREADABLE = "UNREADABLE"


FINAL_OUTCOMES = (AuditOutcome.RELEASED, AuditOutcome.REFUSED, AuditOutcome.DENIED, AuditOutcome.NOT_FOUND,
                  AuditOutcome.FAILED)
OUTCOME_SUFFIX = "#outcome"
NO_OUTCOME = "no outcome (crashed?)"
CHANGED = "changed after it was written; original kept"
IN_PROGRESS = "in progress"


class Channel(str, Enum):
    API = "api"  # the ReadObject function URL
    CLI = "cli"  # `atrest decrypt`


class AuditWriteError(AtrestError):
    """An audit record could not be written; the read it describes must not happen."""


def _day(moment: str) -> str:
    return f"day#{moment[:10]}"


def contact_partition(contact_id: str) -> str:
    return f"contact#{contact_id}"


@dataclass(frozen=True)
class AuditRecord:
    """One read, or one attempt. `reason` is the caller's, stored as given (never logged)."""

    principal: str
    channel: Channel
    outcome: AuditOutcome
    reason: str
    requested: str  # what was asked for, as asked: "contact:<id>", "contact:<id>/<class>", "object:<vault key>"
    vault_key: str | None = None
    data_class: str | None = None
    branch_key_id: str | None = None
    branch_key_version: str | None = None
    contact_id: str | None = None
    detail: str | None = None  # why it was denied or refused (for operators; never sent to the caller)
    request_id: str | None = None
    at: str = field(default_factory=lambda: to_text(datetime.now(timezone.utc)))
    record_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    # From the verified message header when the attempt got that far (else the record's, or none).
    source_bucket: str | None = None
    source_key: str | None = None
    source_version_id: str | None = None
    instance: str | None = None
    # REQUESTED: when its outcome must have been written by; an outcome: when it was decided.
    deadline: str | None = None
    decided_at: str | None = None
    # A kept original (atrest.storage.audit_changes): when its record was changed (MODIFY) or removed
    # (REMOVE), and the sort key it had. Never set on a record atrest writes for a read.
    replaced_at: str | None = None
    replaced_by: str | None = None
    replaced_sk: str | None = None
    # True for a record that was changed after it was written (its original is kept); not stored.
    _changed: bool = field(default=False, repr=False, compare=False)
    # True for the outcome item of a REQUESTED attempt (its sort key ends in #outcome); not stored.
    _outcome_of_request: bool = field(default=False, repr=False, compare=False)

    @classmethod
    def of_read(cls, principal: str, channel: Channel, outcome: AuditOutcome, reason: str, requested: str,
                record: Any = None, detail: str | None = None, contact_id: str | None = None,
                request_id: str | None = None, truth: Any = None) -> "AuditRecord":
        """A read as ReadObject and `atrest decrypt` record it: what was asked, and, when the
        object's record was found (an `ObjectRecord`), its vault key and key version. The data
        class, source, instance and contact come from `truth` (the verified message header,
        `atrest.flows.decrypt_object.HeaderTruth`) when the attempt got that far, else from the record."""
        described = truth if truth is not None else record
        return cls(
            principal=principal, channel=channel, outcome=outcome, reason=reason,
            requested=requested[:MAX_REQUESTED_LENGTH],
            vault_key=record.vault_key if record else None,
            data_class=described.data_class if described else None,
            branch_key_id=record.branch_key_id if record else None,
            branch_key_version=record.branch_key_version if record else None,
            contact_id=(described.contact_id if described else None) or contact_id,
            detail=detail[:MAX_DETAIL_LENGTH] if detail else None,
            request_id=request_id,
            source_bucket=described.source_bucket if described else None,
            source_key=described.source_key if described else None,
            source_version_id=described.source_version_id if described else None,
            instance=described.instance if described else None,
        )

    @property
    def sort_key(self) -> str:
        return f"{self.at}#{self.record_id}"

    def concluded(self, outcome: AuditOutcome, detail: str | None = None,
                  now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> "AuditRecord":
        """The outcome item of this REQUESTED attempt: the same attempt (time, id, what was
        read) with its final outcome and when it was decided."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(outcome=outcome, detail=detail[:MAX_DETAIL_LENGTH] if detail else None, deadline=None,
                      decided_at=to_text(now()), _outcome_of_request=True)
        return AuditRecord(**values)

    def to_item(self) -> dict[str, Any]:
        plain: dict[str, Any] = {k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(self).items()
                                 if v is not None and not k.startswith("_")}
        sort_key = self.item_sort_key
        plain.update(pk=_day(self.at), sk=sort_key)
        if self.contact_id:
            plain.update(gsi1pk=contact_partition(self.contact_id), gsi1sk=sort_key)
        return {k: _serializer.serialize(v) for k, v in plain.items()}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> "AuditRecord":
        """The record an item holds. An item that is not an atrest record (a principal that
        may PutItem wrote it by hand) becomes an UNREADABLE record naming what is wrong,
        so one planted item cannot stop `atrest audit` from showing the rest."""
        try:
            plain = {k: _deserializer.deserialize(v) for k, v in item.items()}
            values = {f.name: plain[f.name] for f in fields(cls) if f.name in plain and not f.name.startswith("_")}
            values["channel"] = Channel(values["channel"])
            values["outcome"] = AuditOutcome(values["outcome"])
            values["_outcome_of_request"] = original_sort_key(str(plain.get("sk", ""))).endswith(OUTCOME_SUFFIX)
            record = cls(**values)
            if not all(isinstance(getattr(record, name), str) for name in ("principal", "reason", "requested", "at")):
                raise TypeError("principal, reason, requested and at must be strings")
            return record
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            return cls._unreadable(item, error)

    @classmethod
    def _unreadable(cls, item: dict[str, Any], error: Exception) -> "AuditRecord":
        sort_key = str((item.get("sk") or {}).get("S", ""))
        at, _, rest = sort_key.partition("#")
        return cls(principal="?", channel=Channel.API, outcome=AuditOutcome.UNREADABLE, reason="",
                   requested=f"item {printable(str((item.get('pk') or {}).get('S', '?')), 40)} / {printable(sort_key, 120)}",
                   detail=f"not an atrest audit record ({type(error).__name__}: {printable(str(error), 200)})",
                   at=at or "?", record_id=rest or "?")

    @property
    def is_kept_original(self) -> bool:
        return self.replaced_at is not None

    @property
    def item_sort_key(self) -> str:
        """The sort key this record was written under (a kept original's is `replaced_sk`'s, marked)."""
        return self.sort_key + (OUTCOME_SUFFIX if self._outcome_of_request else "")

    def outcome_state(self, now: datetime | None = None) -> str:
        """The outcome, with a REQUESTED attempt's "in progress" or "no outcome (crashed?)"."""
        if self.outcome is not AuditOutcome.REQUESTED:
            return self.outcome.value
        current = to_text(now or datetime.now(timezone.utc))
        return NO_OUTCOME if self.deadline is None or current > self.deadline else IN_PROGRESS

    def state(self, now: datetime | None = None) -> str:
        """The outcome as `atrest audit` shows it: a REQUESTED attempt with no outcome is "in
        progress" until its deadline and "no outcome (crashed?)" after it. A kept original and
        a record changed after it was written say so."""
        state = self.outcome_state(now)
        if self.is_kept_original:
            how = "removed" if self.replaced_by == "REMOVE" else "changed"
            return f"{state} (original; {how} {str(self.replaced_at)[:19].replace('T', ' ')})"
        return f"{state} ({CHANGED})" if self._changed else state

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, Enum) else v) for k, v in asdict(self).items() if not k.startswith("_")}


class AuditTrail:
    """Appends to and reads the audit table. Appending is all a reader's role may do."""

    def __init__(self, dynamodb: Any, table_name: str) -> None:
        self.dynamodb = dynamodb
        self.table_name = table_name

    @classmethod
    def for_table(cls, dynamodb: Any, table_name: str | None) -> "AuditTrail":
        if not table_name:
            raise ConfigurationError(
                "this deployment has no audit table, and every decrypt must be recorded: set ATREST_AUDIT_TABLE "
                "(stack output AuditTableName; deploy the current template.yaml to get one)"
            )
        return cls(dynamodb, table_name)

    def begin(self, entry: AuditRecord, allowed_for: timedelta) -> AuditRecord:
        """Append the REQUESTED item of an attempt about to decrypt; its outcome must follow
        (`conclude`) within `allowed_for`, else `atrest audit` shows "no outcome (crashed?)"."""
        at = datetime.fromisoformat(entry.at.replace("Z", "+00:00"))
        values = {f.name: getattr(entry, f.name) for f in fields(entry)}
        values.update(outcome=AuditOutcome.REQUESTED, deadline=to_text(at + allowed_for), decided_at=None)
        return self.record(AuditRecord(**values))

    def conclude(self, requested: AuditRecord, outcome: AuditOutcome, detail: str | None = None) -> AuditRecord:
        """Append the one outcome item of a REQUESTED attempt. A second outcome for the same
        attempt is refused (`AuditWriteError`): an attempt has one final outcome."""
        if requested.outcome is not AuditOutcome.REQUESTED or outcome not in FINAL_OUTCOMES:
            raise ValueError(f"an outcome item concludes a REQUESTED attempt with a final outcome, not {outcome}")
        return self.record(requested.concluded(outcome, detail))

    def record(self, entry: AuditRecord) -> AuditRecord:
        """Append `entry`. Raises `AuditWriteError` when it cannot be written, including when
        an item with its key already exists: an audit record is never replaced."""
        try:
            self.dynamodb.put_item(
                TableName=self.table_name, Item=entry.to_item(), ConditionExpression="attribute_not_exists(pk)"
            )
        except self.dynamodb.exceptions.ConditionalCheckFailedException as error:
            raise AuditWriteError(
                f"audit record {entry.sort_key} already exists; audit records are never overwritten"
            ) from error
        except Exception as error:
            raise AuditWriteError(
                f"could not write the audit record ({type(error).__name__}); nothing was decrypted. Check that "
                f"your role may dynamodb:PutItem on {self.table_name}"
            ) from error
        return entry

    def since(self, start: datetime, end: datetime | None = None) -> list[AuditRecord]:
        """Every record from `start` to `end` (default: now), oldest first. One Query per day."""
        end = end or datetime.now(timezone.utc)
        first, last = to_text(start), to_text(end)
        records: list[AuditRecord] = []
        for day in _days(start.astimezone(timezone.utc).date(), end.astimezone(timezone.utc).date()):
            records += self._query(
                KeyConditionExpression="pk = :day AND sk BETWEEN :first AND :last",
                ExpressionAttributeValues={
                    ":day": {"S": f"day#{day.isoformat()}"}, ":first": {"S": first}, ":last": {"S": last + "#\uffff"},
                },
            )
        return records

    def for_contact(self, contact_id: str, start: datetime | None = None) -> list[AuditRecord]:
        """Every record that names contact `contact_id` (reads of its objects, and attempts), oldest first."""
        condition = "gsi1pk = :contact"
        values: dict[str, Any] = {":contact": {"S": contact_partition(contact_id)}}
        if start is not None:
            condition += " AND gsi1sk >= :first"
            values[":first"] = {"S": to_text(start)}
        return self._query(IndexName=BY_CONTACT_INDEX, KeyConditionExpression=condition, ExpressionAttributeValues=values)

    def _query(self, **kwargs: Any) -> list[AuditRecord]:
        paginator = self.dynamodb.get_paginator("query")
        return attempts([
            AuditRecord.from_item(item)
            for page in paginator.paginate(TableName=self.table_name, **kwargs)
            for item in page.get("Items", [])
        ])


def attempts(items: list[AuditRecord]) -> list[AuditRecord]:
    """One row per attempt, in the order of `items`: a REQUESTED item and its outcome item
    become the outcome item (which carries the whole attempt); a REQUESTED item alone stays.
    A kept original (atrest.storage.audit_changes) is a row of its own, and the record that replaced
    it is marked as changed."""
    changed = {item.replaced_sk for item in items if item.is_kept_original}
    items = [replace(item, _changed=True) if item.item_sort_key in changed and not item.is_kept_original
             else item for item in items]
    outcomes = {item.sort_key: item for item in items if item._outcome_of_request and not item.is_kept_original}
    rows = []
    for item in items:
        if item._outcome_of_request and not item.is_kept_original:
            continue
        rows.append(item if item.is_kept_original else outcomes.pop(item.sort_key, item))
    # An outcome whose REQUESTED item fell outside the query (it cannot: same keys) is kept, not hidden.
    return rows + list(outcomes.values())


def _days(first: date, last: date) -> Iterator[date]:
    day = first
    while day <= last:
        yield day
        day += timedelta(days=1)


_RELATIVE = re.compile(r"^\s*(\d{1,6})\s*([mhd])\s*$")


def parse_since(text: str, now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)) -> datetime:
    """`--since`: a span back from now (`30m`, `24h`, `7d`) or an ISO 8601 date or time (UTC
    unless it says otherwise). Raises `AtrestError` saying what is accepted."""
    current = now()
    if found := _RELATIVE.match(text):
        amount, unit = int(found.group(1)), found.group(2)
        start = current - {"m": timedelta(minutes=amount), "h": timedelta(hours=amount), "d": timedelta(days=amount)}[unit]
    else:
        try:
            start = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise AtrestError(
                f"--since {text!r} is not a span (30m, 24h, 7d) or an ISO 8601 date/time (2026-03-01, 2026-03-01T09:00Z)"
            ) from None
        start = start if start.tzinfo else start.replace(tzinfo=timezone.utc)
    if start > current:
        raise AtrestError(f"--since {text!r} is in the future")
    if current - start > timedelta(days=MAX_SINCE_DAYS):
        raise AtrestError(
            f"--since reaches back at most {MAX_SINCE_DAYS} days; use --contact ID for a contact's whole history, "
            "or export the audit table (DynamoDB export to S3) for older records"
        )
    return start


def check_reason(reason: Any, error: type[Exception] = AtrestError, name: str = "the reason",
                 where: str = '--reason "..."') -> str:
    """The reason a reader must give (`atrest decrypt --reason`, ReadObject's "reason"), as
    given; raises `error` naming `name` and `where` when it is missing or too long."""
    if not isinstance(reason, str) or not reason.strip():
        raise error(f"{name} is required: say why you need this plaintext ({where}); it is kept in the audit trail")
    if len(reason) > MAX_REASON_LENGTH:
        raise error(f"{name} is longer than {MAX_REASON_LENGTH} characters")
    return reason


def caller_arn(clients: Any) -> str:
    """Who the CLI runs as (STS GetCallerIdentity): the principal every audit record names."""
    return str(clients.client("sts").get_caller_identity()["Arn"])


def printable(text: str | None, width: int | None = None) -> str:
    """`text` safe for a terminal (control characters shown as '?'), cut to `width`."""
    clean = "".join(c if c.isprintable() else "?" for c in (text or ""))
    if width is not None and len(clean) > width:
        clean = clean[: max(width - 3, 0)] + "..."
    return clean


SUMMARY_COUNTS = ("released", "refused", "denied", "not_found", "failed", "no_outcome", "in_progress")


def summarize(records: list[AuditRecord], now: datetime | None = None) -> dict[str, int]:
    """How many attempts ended how (one per attempt: `records` are `attempts()` rows). Rows of
    versions before the one-row rule (ALLOWED) are counted as `allowed_before_outcomes`, items
    that are no atrest record as `unreadable`, and kept originals of records changed after
    they were written as `changed_records` (not attempts: the changed record is the attempt)."""
    counts = dict.fromkeys(SUMMARY_COUNTS, 0)
    for record in records:
        if record.is_kept_original:
            # Not an attempt of its own: the original of one that was changed after it was written.
            counts["changed_records"] = counts.get("changed_records", 0) + 1
            continue
        state = record.outcome_state(now)
        name = {NO_OUTCOME: "no_outcome", IN_PROGRESS: "in_progress"}.get(state, state.lower())
        if record.outcome is AuditOutcome.ALLOWED:
            name = "allowed_before_outcomes"
        counts[name] = counts.get(name, 0) + 1
    return {"attempts": len(records) - counts.get("changed_records", 0), **counts}
