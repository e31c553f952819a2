"""From AWS event shapes to domain inputs. Knows events; knows nothing of crypto.

S3 "Object Created" events (EventBridge) carry the object key URL-encoded the way S3
encodes keys in notifications (`5:00` -> `5%3A00`, a space -> `+`), so keys are decoded
here, once, and the domain only ever sees real keys.
"""

from __future__ import annotations

import json
from typing import Any, Mapping
from urllib.parse import unquote_plus

from atrest.errors import MalformedEventError
from atrest.source import SourceObject

OBJECT_CREATED = "Object Created"


def is_eventbridge_event(event: Mapping[str, Any]) -> bool:
    return isinstance(event, Mapping) and "detail-type" in event and "detail" in event


def source_from_object_created(event: Mapping[str, Any]) -> SourceObject:
    """The object version an S3 "Object Created" EventBridge event announces.

    Raises MalformedEventError naming the missing or wrong field.
    """
    if not isinstance(event, Mapping):
        raise MalformedEventError(f"expected an EventBridge event object, got {type(event).__name__}")
    if event.get("source") != "aws.s3" or event.get("detail-type") != OBJECT_CREATED:
        raise MalformedEventError(
            f"expected source aws.s3 and detail-type {OBJECT_CREATED!r}, "
            f"got {event.get('source')!r} / {event.get('detail-type')!r}"
        )
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise MalformedEventError("event has no detail object")
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
