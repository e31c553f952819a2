"""Dead letters: events the encrypt function failed on `MaxReceiveCount` times (or that
EventBridge could not deliver), looked at and moved back to EncryptQueue once the cause is fixed.

SQS shows a message only by receiving it. `DeadLetterQueue.list` receives every message
with a short hold, then makes each visible again at once; a receive counts in SQS's
ApproximateReceiveCount, so `receives` is the count before this listing's own receive
(earlier listings included).

`redrive` sends a copy to EncryptQueue first and deletes the dead letter only after SQS
accepted the copy: a failure in between can deliver an event twice (which the pipeline
absorbs: one vault object per source version) but never loses one. SQS's server-side
StartMessageMoveTask cannot pick single messages, and the local emulator (moto 5.2.5)
does not implement it, so one receive/send/delete path serves both.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from botocore.exceptions import ClientError

from atrest.core.errors import MalformedEventError
from atrest.events.shapes import source_from_sqs_body
from atrest.storage.intake import SourceObject
from atrest_cli import terminal

HOLD_SECONDS = 60  # how long a listing or redrive keeps a message from other receivers
_EMPTY_RECEIVES = 3  # short polls may miss messages: stop after this many empty receives in a row


@dataclass(frozen=True)
class DeadLetter:
    """One message in the dead-letter queue, as an operator needs to judge it."""

    message_id: str
    first_received: datetime | None
    receives: int
    source: SourceObject | None  # None when the body is not an S3 "Object Created" event
    reason: str | None
    body: str = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "first_received": self.first_received.isoformat() if self.first_received else None,
            "receives": self.receives,
            "source": self.source.as_dict() if self.source else None,
            "reason": self.reason,
        }


@dataclass
class Redrive:
    moved: dict[str, str] = field(default_factory=dict)  # dead letter's message id -> its copy's id on EncryptQueue
    missing: list[str] = field(default_factory=list)  # asked for, but not in the dead-letter queue


class DeadLetterQueue:
    """EncryptDeadLetterQueue and the queue its messages go back to.

    `explain(source)` may say what is known about a dead letter's source (see
    `SourceDiagnosis`); it is asked only when the message itself carries no reason.
    """

    def __init__(self, sqs: Any, dead_letter_queue_url: str, encrypt_queue_url: str,
                 explain: Callable[[SourceObject], str | None] | None = None) -> None:
        self.sqs = sqs
        self.url = dead_letter_queue_url
        self.encrypt_queue_url = encrypt_queue_url
        self.explain = explain

    def list(self) -> list[DeadLetter]:
        """Every dead letter, oldest first; all of them stay in the queue."""
        messages = self._receive_all()
        try:
            return sorted((self._describe(m) for m in messages), key=lambda d: (d.first_received or _EPOCH, d.message_id))
        finally:
            self._release(messages)

    def redrive(self, message_ids: Iterable[str] | None = None) -> Redrive:
        """Move the given dead letters (None: all of them) back to EncryptQueue."""
        wanted = None if message_ids is None else set(message_ids)
        result = Redrive()
        messages = self._receive_all()
        try:
            for message in messages:
                if wanted is not None and message["MessageId"] not in wanted:
                    continue
                copy = {"QueueUrl": self.encrypt_queue_url, "MessageBody": message["Body"]}
                if message.get("MessageAttributes"):
                    copy["MessageAttributes"] = message["MessageAttributes"]
                sent = self.sqs.send_message(**copy)
                # Only now that EncryptQueue holds the copy may the dead letter go.
                self.sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
                result.moved[message["MessageId"]] = sent["MessageId"]
        finally:
            self._release([m for m in messages if m["MessageId"] not in result.moved])
        result.missing = sorted((wanted or set()) - {m["MessageId"] for m in messages})
        return result

    def _receive_all(self) -> list[dict[str, Any]]:
        expected = int(self.sqs.get_queue_attributes(QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"])
                       ["Attributes"]["ApproximateNumberOfMessages"])
        found: dict[str, dict[str, Any]] = {}
        empty = 0
        while len(found) < expected and empty < _EMPTY_RECEIVES:
            received = self.sqs.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, VisibilityTimeout=HOLD_SECONDS, WaitTimeSeconds=0,
                AttributeNames=["All"], MessageAttributeNames=["All"],
            ).get("Messages", [])
            empty = 0 if received else empty + 1
            found.update({m["MessageId"]: m for m in received})
        return list(found.values())

    def _release(self, messages: list[dict[str, Any]]) -> None:
        for message in messages:
            try:
                self.sqs.change_message_visibility(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0)
            except ClientError:  # it becomes visible anyway when the hold ends
                pass

    def _describe(self, message: dict[str, Any]) -> DeadLetter:
        attributes = message.get("Attributes", {})
        first = attributes.get("ApproximateFirstReceiveTimestamp")
        source, reason = None, _delivery_error(message.get("MessageAttributes", {}))
        try:
            source = source_from_sqs_body(message["Body"])
        except MalformedEventError as error:
            reason = reason or f"malformed event: {error}"
        if reason is None and source is not None and self.explain is not None:
            reason = self.explain(source)
        return DeadLetter(
            message_id=message["MessageId"],
            first_received=datetime.fromtimestamp(int(first) / 1000, timezone.utc) if first else None,
            receives=max(0, int(attributes.get("ApproximateReceiveCount", "1")) - 1),
            source=source,
            reason=reason,
            body=message["Body"],
        )


_EPOCH = datetime.fromtimestamp(0, timezone.utc)


def _delivery_error(attributes: dict[str, Any]) -> str | None:
    """EventBridge's reason for a target dead letter (message attributes ERROR_CODE, ERROR_MESSAGE)."""
    code = attributes.get("ERROR_CODE", {}).get("StringValue")
    text = attributes.get("ERROR_MESSAGE", {}).get("StringValue")
    if not code and not text:
        return None
    return f"EventBridge could not deliver it: {': '.join(part for part in (code, text) if part)}"


class SourceDiagnosis:
    """What the stack itself can tell about a dead letter's source object.

    The failure's own exception is in the function's log (the line "encryption failed",
    with the same bucket, key and version); this names the cases an operator can act on
    without it: the object is outside what atrest encrypts, it was encrypted since, or
    its plaintext version is gone.
    """

    def __init__(self, settings: Any, clients: Any) -> None:
        from atrest.catalog.data_classes import DataClassifier
        from atrest.storage.records import MetadataTable

        self.settings = settings
        self.s3 = clients.s3
        self.records = MetadataTable(clients.dynamodb, settings.metadata_table)
        self.classifier = DataClassifier.from_settings(settings)

    def __call__(self, source: SourceObject) -> str | None:
        from atrest.catalog.data_classes import Exclusion
        from atrest.storage.vault_keys import VaultKey

        if source.bucket != self.settings.intake_bucket:
            return f"not this stack's intake bucket ({source.bucket}); a redrive skips it"
        classification = self.classifier.classify(source.key, source.size)
        if isinstance(classification, Exclusion):
            return f"the data class catalog excludes it ({classification.reason}); a redrive skips it"
        if not source.version_id:
            return None
        record = self.records.get_object(VaultKey.of_source(classification.data_class, source.bucket, source.key,
                                                                  source.version_id))
        if record is not None:
            return f"encrypted since ({record.status.value}); the message can be deleted or redriven"
        try:
            self.s3.head_object(Bucket=source.bucket, Key=source.key, VersionId=source.version_id)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NotFound", "NoSuchKey", "NoSuchVersion", "405", "MethodNotAllowed"):
                return "the source version no longer exists; a redrive skips it"
            raise
        return None


def render_table(letters: list[DeadLetter]) -> str:
    header = ("message id", "first received", "receives", "source key", "reason")
    rows = [
        (
            d.message_id,
            d.first_received.strftime("%Y-%m-%d %H:%M:%S") if d.first_received else "-",
            str(d.receives),
            d.source.key if d.source else "-",
            d.reason or "not known here: see the function's log for this key",
        )
        for d in letters
    ]
    return terminal.render_table(header, rows, rule=False)


def dumps(letters: list[DeadLetter]) -> str:
    return json.dumps([d.as_dict() for d in letters], indent=2, ensure_ascii=False)
