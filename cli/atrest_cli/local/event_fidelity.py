"""EventBridge events with the shape AWS gives them, in the in-process moto server.

moto 5.2.5 delivers S3 "Object Created" events to EventBridge rules, but the event it
builds (`moto.s3.notifications._send_event_bridge_message`) differs from what S3 sends
on AWS in ways that matter to a consumer:

- the object key is raw; S3 URL-encodes it (`quote_plus`, `/` kept: `a b:c` -> `a+b%3Ac`);
- the ETag field is `eTag`; S3 writes `etag`;
- `reason` is `ObjectCreated`; S3 writes the API call (`PutObject`, `POST Object`,
  `CopyObject`, `CompleteMultipartUpload`);
- `detail.event-version` is missing; every event has the same `id`, `sequencer`, `request-id`;
- every rule on every event bus is tried, including schedule-only rules (which match
  everything because their pattern is empty) and disabled rules; one rule whose target
  moto cannot deliver to (a Lambda function) ends delivery for every rule after it.
  S3 sends to the default bus only; schedule-only and disabled rules never match.

And events sent with PutEvents reach SQS targets without their `account` field: moto
rebuilds them from a default input template that leaves it out.

`install()` replaces moto's S3 function with `send_event_bridge_message` below and adds
`account` to that default template, inside the moto server (which runs in this
process); `uninstall()` puts moto's own back. docs/local.md lists these differences.
"""

from __future__ import annotations

import copy
import logging
import secrets
import string
import threading
import time
import uuid
from typing import Any
from urllib.parse import quote_plus

log = logging.getLogger(__name__)

# What S3 writes in `detail.reason` for each Object Created notification event.
_CREATED_REASONS = {
    "s3:ObjectCreated:Put": "PutObject",
    "s3:ObjectCreated:Post": "POST Object",
    "s3:ObjectCreated:Copy": "CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "CompleteMultipartUpload",
}
_DELETED_REASONS = {
    "s3:ObjectRemoved:Delete": "DeleteObject",
    "s3:LifecycleExpiration:Delete": "Lifecycle Expiration",
}
_EVENT_VERSION = "1.0"

_sequencer_lock = threading.Lock()
_last_sequencer = 0


def encode_object_key(key: str) -> str:
    """The object key as S3 writes it into event notifications."""
    return quote_plus(key, safe="/")


def _next_sequencer() -> str:
    # S3's sequencer orders events for one key; increasing hex like S3's is enough here.
    global _last_sequencer
    with _sequencer_lock:
        _last_sequencer = max(_last_sequencer + 1, time.time_ns())
        return f"{_last_sequencer:016X}"


def _request_id() -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def s3_event_bridge_event(account_id: str, bucket: Any, event_name: str, key: Any) -> dict[str, Any]:
    """The EventBridge event S3 sends for `event_name` (an `s3:...` notification event name)
    on `key` (a moto FakeKey) in `bucket` (a moto FakeBucket)."""
    from moto.s3.notifications import _detail_type

    detail_type = _detail_type(event_name)
    obj: dict[str, Any] = {"key": encode_object_key(key.name)}
    detail: dict[str, Any] = {"version": "0", "event-version": _EVENT_VERSION, "bucket": {"name": bucket.name}, "object": obj}
    if detail_type != "Object Deleted":
        obj["size"] = key.size
        obj["etag"] = key.etag.replace('"', "")
    version_id = getattr(key, "version_id", None)
    if version_id and version_id != "null":
        obj["version-id"] = version_id
    obj["sequencer"] = _next_sequencer()
    detail["request-id"] = _request_id()
    detail["requester"] = account_id
    detail["source-ip-address"] = "127.0.0.1"
    if event_name in _CREATED_REASONS:
        detail["reason"] = _CREATED_REASONS[event_name]
    elif event_name in _DELETED_REASONS:
        detail["reason"] = _DELETED_REASONS[event_name]
        detail["deletion-type"] = "Permanently Deleted"
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": account_id,
        # moto's SQS target turns an epoch number into ISO-8601 ("2021-11-12T00:00:00Z").
        "time": time.time(),
        "region": bucket.region_name,
        "resources": [bucket.arn],
        "detail": detail,
    }


def send_event_bridge_message(account_id: str, bucket: Any, event_name: str, key: Any) -> None:
    """Deliver an S3 event to the enabled pattern rules of the default event bus."""
    from moto.events.models import events_backends

    try:
        event = s3_event_bridge_event(account_id, bucket, event_name, key)
        default_bus = events_backends[account_id][bucket.region_name].event_buses.get("default")
    except Exception:  # S3 delivers asynchronously: the object write must succeed regardless
        log.exception("could not build the S3 event for %s", getattr(key, "name", key))
        return
    if default_bus is None:
        return
    for rule in list(default_bus.rules.values()):
        if rule.state != "ENABLED" or not rule.event_pattern.get_pattern():
            continue
        try:
            rule.send_to_targets(copy.deepcopy(event), transform_input=False)
        except Exception:
            log.warning("rule %s could not deliver an S3 event to its targets", rule.name, exc_info=True)


# The envelope of an event as EventBridge delivers it to a target without an input transformer.
DEFAULT_EVENT_INPUT_TEMPLATE = (
    '{"version": "0", "id": "<id>", "detail-type": "<detail-type>", "source": "<source>", "account": "<account>", '
    '"time": <time>, "region": "<region>", "resources": <resources>, "detail": <detail>}'
)

_originals: dict[str, Any] = {}


def install() -> None:
    """Make the in-process moto server send EventBridge events with the shape AWS gives them."""
    from moto.events.utils import EventTemplateParser
    from moto.s3 import notifications

    if not _originals:
        _originals["s3"] = notifications._send_event_bridge_message
        _originals["template"] = EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE
        notifications._send_event_bridge_message = send_event_bridge_message
        EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = DEFAULT_EVENT_INPUT_TEMPLATE


def uninstall() -> None:
    """Put moto's own functions back."""
    from moto.events.utils import EventTemplateParser
    from moto.s3 import notifications

    if _originals:
        notifications._send_event_bridge_message = _originals.pop("s3")
        EventTemplateParser.DEFAULT_EVENT_INPUT_TEMPLATE = _originals.pop("template")
