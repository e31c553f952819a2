"""From AWS event shapes to domain inputs. Knows events; knows nothing of crypto.

S3 "Object Created" events (EventBridge) carry the object key URL-encoded the way S3
encodes keys in notifications (`5:00` -> `5%3A00`, a space -> `+`), so keys are decoded
here, once, and the domain only ever sees real keys.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
import re
from typing import Any, Mapping
from urllib.parse import unquote_plus

from atrest.core.errors import MalformedEventError
from atrest.storage.intake import SourceObject

OBJECT_CREATED = "Object Created"


@dataclass(frozen=True)
class ContactEvent:
    """An Amazon Connect contact event, stripped of its EventBridge envelope."""

    account_id: str
    instance_id: str
    instance_arn: str
    contact_id: str
    event_type: str
    time: str | None
    detail: Mapping[str, Any] = field(default_factory=dict)


def _eventbridge_detail(event: Any, source: str, detail_type: str) -> Mapping[str, Any]:
    """The detail of an EventBridge event of the given source and detail-type, or MalformedEventError."""
    if not isinstance(event, Mapping):
        raise MalformedEventError(f"expected an EventBridge event object, got {type(event).__name__}")
    if event.get("source") != source or event.get("detail-type") != detail_type:
        raise MalformedEventError(
            f"expected source {source} and detail-type {detail_type!r}, "
            f"got {event.get('source')!r} / {event.get('detail-type')!r}"
        )
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise MalformedEventError("event has no detail object")
    return detail


def is_eventbridge_event(event: Mapping[str, Any]) -> bool:
    return isinstance(event, Mapping) and "detail-type" in event and "detail" in event


def source_from_object_created(event: Mapping[str, Any]) -> SourceObject:
    """The object version an S3 "Object Created" EventBridge event announces.

    Raises MalformedEventError naming the missing or wrong field.
    """
    detail = _eventbridge_detail(event, "aws.s3", OBJECT_CREATED)
    bucket = (detail.get("bucket") or {}).get("name") if isinstance(detail.get("bucket"), Mapping) else None
    obj = detail.get("object")
    if not bucket or not isinstance(obj, Mapping) or not obj.get("key"):
        raise MalformedEventError("event detail lacks bucket.name or object.key")
    size = obj.get("size")
    if size is not None and (not isinstance(size, int) or size < 0):
        raise MalformedEventError(f"event object.size {size!r} is not a byte count")
    etag = obj.get("etag") or obj.get("eTag")
    return SourceObject(
        bucket=str(bucket),
        key=unquote_plus(str(obj["key"])),
        version_id=obj.get("version-id") or None,
        etag=str(etag).strip('"') if etag else None,
        size=size,
    )


def source_from_sqs_body(body: str) -> SourceObject:
    """The object version in an SQS message whose body is an EventBridge event."""
    try:
        event = json.loads(body)
    except (TypeError, ValueError) as error:
        raise MalformedEventError(f"SQS message body is not JSON ({error.__class__.__name__})") from error
    return source_from_object_created(event)


CONTACT_EVENT = "Amazon Connect Contact Event"
_INSTANCE_ARN = re.compile(r"^arn:aws[a-z-]*:connect:[a-z0-9-]+:(?P<account>\d{12}):instance/(?P<id>[A-Za-z0-9-]{1,128})$")


def contact_event_from_eventbridge(event: Mapping[str, Any]) -> ContactEvent:
    """The contact an Amazon Connect Contact Event is about.

    Accepts both spellings of the instance ARN seen in the wild (`instanceArn` in real
    events, `instanceARN` in some documentation samples). Raises MalformedEventError
    naming the missing or wrong field.
    """
    detail = _eventbridge_detail(event, "aws.connect", CONTACT_EVENT)
    arn = detail.get("instanceArn") or detail.get("instanceARN")
    found = _INSTANCE_ARN.match(str(arn or ""))
    if not found:
        raise MalformedEventError(f"detail.instanceArn {arn!r} is not an Amazon Connect instance ARN")
    contact_id, event_type = detail.get("contactId"), detail.get("eventType")
    if not contact_id or not isinstance(contact_id, str) or not event_type or not isinstance(event_type, str):
        raise MalformedEventError("event detail lacks contactId or eventType")
    return ContactEvent(
        account_id=str(event.get("account") or found["account"]),
        instance_id=found["id"],
        instance_arn=str(arn),
        contact_id=contact_id,
        event_type=event_type,
        time=event.get("time"),
        detail=dict(detail),
    )


def is_backfill_batch(event: Mapping[str, Any]) -> bool:
    """A batch from the backfill state machine's Distributed Map (ItemBatcher: Items + BatchInput)."""
    return isinstance(event, Mapping) and isinstance(event.get("Items"), list) and isinstance(event.get("BatchInput"), Mapping)


def sources_from_backfill_batch(event: Mapping[str, Any]) -> list[SourceObject]:
    """The objects of a backfill batch, without those last modified before the batch's `since`.

    Items are what a Distributed Map's ItemReader makes of S3 ListObjectsV2: `Key` (not
    URL-encoded there), `Etag` in quotes, `LastModified` (epoch seconds in AWS's documented
    example; an ISO 8601 string is accepted too), `Size`, `StorageClass`.
    """
    batch = event.get("BatchInput") or {}
    bucket = batch.get("bucket")
    if not bucket:
        raise MalformedEventError("backfill batch has no BatchInput.bucket")
    since = _timestamp(batch.get("since"), "BatchInput.since")
    sources = []
    for item in event.get("Items", []):
        if not isinstance(item, Mapping) or not item.get("Key"):
            raise MalformedEventError("backfill batch item lacks Key")
        modified = _timestamp(item.get("LastModified"), f"LastModified of {item['Key']!r}")
        if since and modified and modified < since:
            continue
        etag = item.get("Etag") or item.get("ETag")
        size = item.get("Size")
        if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
            raise MalformedEventError(f"Size of {item['Key']!r} {size!r} is not a byte count")
        sources.append(SourceObject(str(bucket), str(item["Key"]), None, str(etag).strip('"') if etag else None, size))
    return sources


# Digits only, 9 or more before an optional fraction: epoch seconds (anything after
# 1973-03-03). Shorter digit strings are left to ISO 8601, where "20261130" is a date.
_EPOCH_SECONDS = re.compile(r"^[0-9]{9,}(\.[0-9]+)?$")


def _timestamp(value: Any, name: str) -> datetime | None:
    """A time given as epoch seconds (a number, or a string of one) or ISO 8601; None if absent.

    A time without a zone is UTC. Raises MalformedEventError for anything else (a bool,
    a list, epoch milliseconds, text that is no time).
    """
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise MalformedEventError(f"{name} {value!r} is not a time (epoch seconds or ISO 8601)")
    if isinstance(value, str) and _EPOCH_SECONDS.match(value.strip()):
        value = float(value.strip())
    if isinstance(value, (int, float)):
        try:
            return datetime.fromtimestamp(value, tz=timezone.utc)
        except (OverflowError, OSError, ValueError) as error:
            raise MalformedEventError(
                f"{name} {value!r} is not a time in epoch seconds (milliseconds or out of range?)"
            ) from error
    if not isinstance(value, str):
        raise MalformedEventError(f"{name} {value!r} is not a time (epoch seconds or ISO 8601)")
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise MalformedEventError(f"{name} {value!r} is not a time (epoch seconds or ISO 8601)") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
