"""`StatusReport`: what is protected and what is not, for `atrest status`.

Every object in the intake bucket is accounted for, exactly once, in one of four states
(`IntakeState`): encrypted (recorded in the metadata table while its plaintext is still
there: kept on purpose, or its removal unfinished), pending (of a data class, not
recorded yet), failed (not recorded, and its event is in EncryptDeadLetterQueue) or
excluded (no data class takes it, for a reason the catalog gives). The listing covers the
whole bucket, root included, whatever prefixes the catalog names: "every object" cannot
rest on the catalog being right about where objects land.

Built from the stack's own records: a scan of the metadata table (objects and key
versions: encrypted counts wherever the plaintext was, and whether it was deleted or
kept), a listing of the intake bucket with one BatchGetItem per 100 objects (which of
them are recorded), the key store's active items (which KMS key wraps each scope), and
the dead-letter queues (which objects failed). Reading the metadata table is a full
scan: fine for an operator's look, not for a dashboard (the CloudWatch dashboard serves
that from metrics). `plaintext_objects` skips the scan: it needs only the listing.

Nothing here prints; callers pass `on_progress` to show how far a long listing got.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import Any, Callable, Iterable, Iterator, Mapping

from atrest.clients import AwsClients
from atrest.data_classes import DataClassCatalog, DataClassifier, DataClassSpec, Exclusion
from atrest.dead_letters import DeadLetterQueue
from atrest.keystore import KeyStores
from atrest.records import KeyVersionRecord, ObjectStatus, _plain, object_pk
from atrest.scopes import ScopeKind
from atrest.settings import Settings
from atrest.source import SourceObject
from atrest.vault import vault_key_for

ENCRYPT_DEAD_LETTER_QUEUE = "EncryptDeadLetterQueue"
_BATCH_GET_LIMIT = 100  # DynamoDB BatchGetItem's maximum keys per request

# (what is being read, how many items so far): called once per page of a listing or scan.
Progress = Callable[[str, int], None]


class IntakeState(str, Enum):
    ENCRYPTED = "encrypted"  # recorded; the plaintext is still in the intake (kept, or removal unfinished)
    PENDING = "pending"  # of a data class, not recorded yet
    FAILED = "failed"  # of a data class, not recorded, its event dead-lettered
    EXCLUDED = "excluded"  # no data class takes it; `reason` says why


@dataclass(frozen=True)
class IntakeObject:
    """One object (its current version) in the intake bucket and what atrest did with it."""

    key: str
    version_id: str | None
    size: int
    last_modified: datetime
    state: IntakeState
    data_class: str | None = None  # None when excluded
    scope: str | None = None
    reason: str | None = None  # why it is excluded
    record_status: ObjectStatus | None = None  # encrypted: SOURCE_KEPT, or ENCRYPTED (plaintext not removed yet)

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "version_id": self.version_id, "size": self.size,
            "last_modified": self.last_modified.isoformat(), "state": self.state.value,
            "data_class": self.data_class, "scope": self.scope, "reason": self.reason,
            "record_status": self.record_status.value if self.record_status else None,
        }


@dataclass
class ClassCounts:
    """Objects of one data class under one scope.

    `encrypted`, `source_deleted`, `source_kept` and `bytes_encrypted` come from the
    metadata table (every record, wherever its plaintext was). `in_intake` counts the
    class's objects now in the intake bucket, and always equals
    `in_intake_encrypted + pending + failed`.
    """

    data_class: str
    scope: str
    kms_key: str | None = None  # the KMS key the class is configured with (None: not in the catalog any more)
    encrypted: int = 0
    source_deleted: int = 0
    source_kept: int = 0
    bytes_encrypted: int = 0
    in_intake: int = 0
    in_intake_encrypted: int = 0
    pending: int = 0
    bytes_pending: int = 0
    failed: int = 0
    oldest_pending: str | None = None  # of the pending and failed objects: the oldest plaintext waiting

    @property
    def source_not_removed(self) -> int:
        """Records whose run stopped before the plaintext was deleted (`atrest backfill` finishes them)."""
        return self.encrypted - self.source_deleted - self.source_kept


@dataclass
class StatusReport:
    bucket: str  # the intake bucket
    classes: list[ClassCounts]
    excluded: dict[str, int]  # reason -> intake objects no data class takes
    listed: int  # objects (current versions) listed in the intake bucket
    key_versions: list[KeyVersionRecord]
    kms_keys: dict[str, str]  # scope -> KMS key ARN wrapping its active branch key
    expected_kms_keys: dict[str, str]  # scope -> the KMS key its data classes are configured with
    class_kms_keys: dict[str, str]  # data class (every class of the catalog) -> the KMS key it is configured with
    configured_kms_key: str
    dead_letters: dict[str, int]  # queue name -> messages
    # Encrypt dead letters that name no plaintext object in the intake now (encrypted or
    # deleted since, another bucket, malformed): `atrest dlq list` tells which.
    dead_letters_elsewhere: int = 0
    objects_per_key_version: dict[str, int] = field(default_factory=dict)
    service_kms_key: str | None = None  # the stack-owned key of service scopes (never the customer's)

    @property
    def accounted(self) -> int:
        """Intake objects given a state; equal to `listed` (the summary says so, or says not)."""
        return sum(c.in_intake for c in self.classes) + sum(self.excluded.values())

    def totals(self) -> dict[str, int]:
        """Intake objects per state, and the metadata table's encrypted objects."""
        return {
            "listed": self.listed,
            "accounted": self.accounted,
            "encrypted_in_intake": sum(c.in_intake_encrypted for c in self.classes),
            "pending": sum(c.pending for c in self.classes),
            "failed": sum(c.failed for c in self.classes),
            "excluded": sum(self.excluded.values()),
            "encrypted": sum(c.encrypted for c in self.classes),
            "source_deleted": sum(c.source_deleted for c in self.classes),
            "source_kept": sum(c.source_kept for c in self.classes),
            "source_not_removed": sum(c.source_not_removed for c in self.classes),
        }

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["classes"] = [{**asdict(c), "source_not_removed": c.source_not_removed} for c in self.classes]
        result["key_versions"] = [
            {**asdict(v), "state": v.state.value, "objects": self.objects_per_key_version.get(f"{v.branch_key_id}#{v.version}", 0)}
            for v in self.key_versions
        ]
        result["totals"] = self.totals()
        return result


def collect_status(settings: Settings, dead_letter_queues: Mapping[str, str], clients: AwsClients | None = None,
                   on_progress: Progress | None = None) -> StatusReport:
    clients = clients or AwsClients()
    progress = on_progress or _quiet
    catalog = DataClassCatalog.from_settings(settings)
    classifier = DataClassifier.from_settings(settings, catalog)
    counts: dict[tuple[str, str], ClassCounts] = {}
    class_keys = {spec.name: class_kms_key(spec, settings) for spec in catalog.classes}

    def bucket_for(data_class: str, scope: str) -> ClassCounts:
        return counts.setdefault((data_class, scope), ClassCounts(data_class, scope, class_keys.get(data_class)))

    # Every S3 class has a row, objects or not: the operator sees the whole catalog.
    for spec in catalog.s3_classes():
        bucket_for(spec.name, spec.scope(settings.account_id).branch_key_id)

    versions: list[KeyVersionRecord] = []
    per_version: dict[str, int] = defaultdict(int)
    scanned = 0
    for page in clients.dynamodb.get_paginator("scan").paginate(TableName=settings.metadata_table):
        for item in page.get("Items", []):
            sk = item.get("sk", {}).get("S", "")
            if sk == "OBJECT":
                plain = _plain(item)
                entry = bucket_for(plain["data_class"], plain["scope"])
                entry.encrypted += 1
                entry.bytes_encrypted += int(plain.get("plaintext_size") or 0)
                if plain.get("status") == ObjectStatus.SOURCE_KEPT.value:
                    entry.source_kept += 1
                elif plain.get("status") == ObjectStatus.SOURCE_DELETED.value:
                    entry.source_deleted += 1
                per_version[f"{plain['branch_key_id']}#{plain['branch_key_version']}"] += 1
            elif item.get("pk", {}).get("S", "").startswith("KEY#") and sk.startswith("V#"):
                versions.append(KeyVersionRecord.from_item(item))
        scanned += len(page.get("Items", []))
        progress("metadata table items", scanned)

    dead_letters = _queue_depths(clients, dead_letter_queues)
    failures = _failed_sources(clients, settings, dead_letter_queues, dead_letters)
    excluded: Counter[str] = Counter()
    listed = 0
    for found in survey_intake(settings, clients, classifier, failures, progress):
        listed += 1
        if found.state is IntakeState.EXCLUDED:
            excluded[found.reason or ""] += 1
            continue
        entry = bucket_for(found.data_class or "", found.scope or "")
        entry.in_intake += 1
        if found.state is IntakeState.ENCRYPTED:
            entry.in_intake_encrypted += 1
            continue
        if found.state is IntakeState.FAILED:
            entry.failed += 1
        else:
            entry.pending += 1
            entry.bytes_pending += found.size
        modified = found.last_modified.isoformat()
        entry.oldest_pending = min(entry.oldest_pending or modified, modified)

    kms_keys = _active_kms_keys(clients, settings)
    return StatusReport(
        bucket=settings.intake_bucket,
        classes=sorted(counts.values(), key=lambda c: (c.data_class, c.scope)),
        excluded=dict(sorted(excluded.items())),
        listed=listed,
        key_versions=sorted(versions, key=lambda v: (v.branch_key_id, v.created_at)),
        kms_keys=kms_keys,
        expected_kms_keys={scope: expected_kms_key(scope, catalog, settings) for scope in kms_keys},
        class_kms_keys={name: arn for name, arn in sorted(class_keys.items()) if arn},
        configured_kms_key=settings.kms_key_arn,
        service_kms_key=settings.service_kms_key_arn,
        dead_letters=dead_letters,
        dead_letters_elsewhere=failures.unmatched() if failures else 0,
        objects_per_key_version=dict(per_version),
    )


def plaintext_objects(settings: Settings, dead_letter_queues: Mapping[str, str], clients: AwsClients | None = None,
                      on_progress: Progress | None = None) -> Iterator[IntakeObject]:
    """Every object in the intake bucket, in key order, with its state: all of them are
    plaintext (the encrypted ones are kept on purpose, or their removal is unfinished).
    Streams: memory stays flat however large the bucket."""
    clients = clients or AwsClients()
    classifier = DataClassifier.from_settings(settings)
    failures = _failed_sources(clients, settings, dead_letter_queues, _queue_depths(clients, dead_letter_queues))
    yield from survey_intake(settings, clients, classifier, failures, on_progress or _quiet)


def survey_intake(settings: Settings, clients: AwsClients, classifier: DataClassifier,
                  failures: "FailedSources | None", on_progress: Progress | None = None) -> Iterator[IntakeObject]:
    """The current version of every object in the intake bucket, in key order, with its state."""
    progress = on_progress or _quiet
    listed = 0
    batch: list[dict[str, Any]] = []
    for page in clients.s3.get_paginator("list_object_versions").paginate(Bucket=settings.intake_bucket):
        for version in page.get("Versions", []):
            if not version.get("IsLatest"):
                continue  # older versions were replaced; the current one is the object
            batch.append(version)
            if len(batch) == _BATCH_GET_LIMIT:
                yield from _settle(settings, clients, classifier, failures, batch)
                batch = []
        listed += sum(1 for v in page.get("Versions", []) if v.get("IsLatest"))
        progress("intake objects", listed)
    if batch:
        yield from _settle(settings, clients, classifier, failures, batch)


def class_kms_key(spec: DataClassSpec, settings: Settings) -> str | None:
    """The KMS key a data class is configured with: service classes use the stack-owned
    service key, never the customer's; the others their own key, else the stack's."""
    if spec.scope_kind is ScopeKind.SERVICE:
        return settings.service_kms_key_arn
    return settings.data_class_kms_keys.get(spec.name, settings.kms_key_arn)


def expected_kms_key(scope: str, catalog: DataClassCatalog, settings: Settings) -> str:
    """The KMS key that should wrap a scope's active branch key: that of the classes under it
    (a class with a KMS key of its own has a branch key of its own, `atrest.keystore`)."""
    for spec in catalog.classes:
        if spec.scope_kind is ScopeKind.INSTANCE:
            matches = scope.startswith(f"{ScopeKind.INSTANCE.value}/")
        else:
            matches = spec.scope(settings.account_id).branch_key_id == scope
        if matches:
            return class_kms_key(spec, settings) or settings.kms_key_arn
    if scope.startswith(f"{ScopeKind.SERVICE.value}/") and settings.service_kms_key_arn:
        return settings.service_kms_key_arn
    return settings.kms_key_arn


class FailedSources:
    """The intake objects named by encrypt dead letters, to tell a failed object from a
    pending one. A dead letter without a version id names whichever version is current."""

    def __init__(self, sources: Iterable[SourceObject], letters: int) -> None:
        self.letters = letters  # every dead letter read, whatever it names
        self._named: Counter[tuple[str, str | None]] = Counter((s.key, s.version_id) for s in sources)
        self._matched: set[tuple[str, str | None]] = set()

    def failed(self, key: str, version_id: str | None) -> bool:
        found = [named for named in ((key, version_id), (key, None)) if named in self._named]
        self._matched.update(found)
        return bool(found)

    def unmatched(self) -> int:
        """Dead letters that named no failed object of the survey (once it has run)."""
        return self.letters - sum(self._named[named] for named in self._matched)


# -- helpers ------------------------------------------------------------------------------


def _quiet(_what: str, _count: int) -> None:
    pass


def _settle(settings: Settings, clients: AwsClients, classifier: DataClassifier, failures: FailedSources | None,
            versions: list[dict[str, Any]]) -> list[IntakeObject]:
    """States for one listing batch, in its order: classify, then one BatchGetItem for the classified."""
    settled: list[IntakeObject] = []
    for version in versions:
        version_id = None if version.get("VersionId") in (None, "null") else version["VersionId"]
        # The size lets a size-limited exclusion (an empty folder marker) apply, as it does for the pipeline.
        found = classifier.classify(version["Key"], size=version.get("Size"))
        if isinstance(found, Exclusion):
            settled.append(IntakeObject(version["Key"], version_id, version.get("Size", 0), version["LastModified"],
                                        IntakeState.EXCLUDED, reason=found.reason))
        else:
            settled.append(IntakeObject(version["Key"], version_id, version.get("Size", 0), version["LastModified"],
                                        IntakeState.PENDING, found.data_class, found.scope.branch_key_id))
    pks = [object_pk(vault_key_for(o.data_class, settings.intake_bucket, o.key, o.version_id)) if o.data_class else None
           for o in settled]
    statuses = _record_statuses(clients, settings, [pk for pk in pks if pk])
    for n, (found, pk) in enumerate(zip(settled, pks)):
        if pk is None:
            continue
        status = statuses.get(pk)
        if status is not None:
            # Recorded: encrypted. (A record that says SOURCE_DELETED while the version is
            # still listed only means the listing ran beside the deletion.)
            settled[n] = replace(found, state=IntakeState.ENCRYPTED, record_status=status)
        elif failures is not None and failures.failed(found.key, found.version_id):
            settled[n] = replace(found, state=IntakeState.FAILED)
    return settled


def _record_statuses(clients: AwsClients, settings: Settings, pks: list[str]) -> dict[str, ObjectStatus]:
    """pk -> status of the object records that exist among `pks` (at most 100)."""
    if not pks:
        return {}
    found: dict[str, ObjectStatus] = {}
    request: dict[str, Any] = {settings.metadata_table: {
        "Keys": [{"pk": {"S": pk}, "sk": {"S": "OBJECT"}} for pk in dict.fromkeys(pks)],
        "ProjectionExpression": "pk, #status", "ExpressionAttributeNames": {"#status": "status"}}}
    while request:
        response = clients.dynamodb.batch_get_item(RequestItems=request)
        for item in response.get("Responses", {}).get(settings.metadata_table, []):
            found[item["pk"]["S"]] = ObjectStatus(item["status"]["S"])
        request = response.get("UnprocessedKeys") or {}
        if request:
            time.sleep(0.1)  # throttled: back off briefly, then ask for the rest
    return found


def _queue_depths(clients: AwsClients, dead_letter_queues: Mapping[str, str]) -> dict[str, int]:
    depths = {}
    for name, url in dead_letter_queues.items():
        if url:
            attributes = clients.client("sqs").get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]
            depths[name] = int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])
    return depths


def _failed_sources(clients: AwsClients, settings: Settings, dead_letter_queues: Mapping[str, str],
                    depths: Mapping[str, int]) -> FailedSources | None:
    """What EncryptDeadLetterQueue names: the only record of a failed encryption the stack
    keeps (the function's log has the exception; its idempotency record is removed on
    failure). The messages stay in the queue."""
    url = dead_letter_queues.get(ENCRYPT_DEAD_LETTER_QUEUE)
    if not url:
        return None
    if not depths.get(ENCRYPT_DEAD_LETTER_QUEUE):
        return FailedSources([], 0)
    letters = DeadLetterQueue(clients.client("sqs"), url, "").list()
    sources = [d.source for d in letters if d.source is not None and d.source.bucket == settings.intake_bucket]
    return FailedSources(sources, len(letters))


def _active_kms_keys(clients: AwsClients, settings: Settings) -> dict[str, str]:
    """scope -> the KMS key ARN on its branch key's ACTIVE item (what wraps new data keys),
    in the customer's key store and the service's."""
    return {key.branch_key_id: key.kms_arn for key in KeyStores.from_settings(settings, clients).active_keys()}
