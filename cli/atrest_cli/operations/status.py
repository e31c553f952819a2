"""`StatusReport`: what is protected and what is not, for `atrest status`.

Every object in the intake bucket is accounted for, exactly once, in one of five states
(`IntakeState`): encrypted (recorded in the metadata table while its plaintext is still
there: kept on purpose, or its removal unfinished), pending (of a data class, not
recorded yet), failed (not recorded, and its event is in EncryptDeadLetterQueue),
vault copy (an atrest message, e.g. a vault object copied back: the pipeline leaves
those alone once they verify, so they would be pending forever) or excluded (no data
class takes it, for a reason the catalog gives). The listing covers the
whole bucket, root included, whatever prefixes the catalog names: "every object" cannot
rest on the catalog being right about where objects land.

Built from the stack's own records, each read bounded whatever the size of the archive
(docs/scale.md): the counts kept per key version (`atrest.storage.counts`: encrypted
objects and bytes per data class and scope, wherever the plaintext was, and whether it was
deleted or kept; one BatchGetItem per 100 count items: 64 per version), a listing of the intake bucket of at
most `LISTING_LIMIT` objects, in key order (Amazon Connect's keys carry the date, so the
first listed are the oldest), with one BatchGetItem per 100 objects (which of them are
recorded), the encrypt queue's depth (events not processed yet), the key store's active
items (which KMS key wraps each scope), and the dead-letter queues (which objects
failed). `survey=True` lists the whole intake and the vault's versions instead. Key versions come from the same
inventory as `atrest keys list` (`operations.key_inventory`), so the two never disagree. An
unrecorded object's first bytes are read (one ranged GET, at most `VAULT_COPY_PEEKS` per
run) to tell a vault copy from a pending object: its header names the source it was
made from and the branch key version, under which the record it copies is found. Status
does not decrypt it (an operator may lack the right to; the pipeline leaves it alone only
once it verifies): the header and the record's ciphertext size must agree.
With `survey=True`, the vault bucket's version listing (no GETs) finds vault objects
overwritten since they were recorded: a tamper signal; that listing grows with the
archive, so a plain status run skips it and says so. `plaintext_objects` lists the whole
intake: it is the list an operator asked for.

Nothing here prints; callers pass `on_progress` to show how far a long listing got.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from enum import Enum
from typing import Any, Callable, Iterable, Iterator, Mapping

from atrest.catalog.data_classes import DataClassCatalog, DataClassifier, DataClassSpec, Exclusion
from atrest.catalog.scopes import ScopeKind
from atrest.core.clients import AwsClients
from atrest.core.settings import Settings
from atrest.crypto.envelope import CTX_DATA_CLASS, CTX_SOURCE_BUCKET, CTX_SOURCE_KEY, message_key, read_header
from atrest.crypto.keystore import KeyStores
from atrest.flows.expire_keys import KeyLifecycle
from atrest.storage.intake import SourceObject
from atrest.storage.record_keys import is_object_item, object_key
from atrest.storage.records import MetadataTable, ObjectStatus, _plain
from atrest.storage.vault_keys import VaultKey
from atrest_cli.operations.dead_letters import DeadLetterQueue
from atrest_cli.operations.key_inventory import KeyVersionView, inventory_and_counts

ENCRYPT_DEAD_LETTER_QUEUE = "EncryptDeadLetterQueue"
_BATCH_GET_LIMIT = 100  # DynamoDB BatchGetItem's maximum keys per request
# Unrecorded intake objects whose first bytes one status run reads (a ranged GET each) to tell
# a vault copy from a pending object; past it they count as pending (the report says how many
# were not read), so a bucket of millions of objects older than the stack stays cheap to survey.
VAULT_COPY_PEEKS = 1000
# Intake objects a status run lists, unless asked to survey them all: the pending counts and
# the oldest unencrypted object are then those of the first LISTING_LIMIT in key order, and
# the report says the listing stopped there.
LISTING_LIMIT = 10_000
HEADER_BYTES = 64 * 1024  # enough for any ESDK header atrest writes (as the pipeline peeks)

# (what is being read, how many items so far): called once per page of a listing or scan.
Progress = Callable[[str, int], None]


class IntakeState(str, Enum):
    ENCRYPTED = "encrypted"  # recorded; the plaintext is still in the intake (kept, or removal unfinished)
    PENDING = "pending"  # of a data class, not recorded yet
    FAILED = "failed"  # of a data class, not recorded, its event dead-lettered
    EXCLUDED = "excluded"  # no data class takes it; `reason` says why
    VAULT_COPY = "vault-copy"  # an atrest message (e.g. a vault object copied back): left alone, not plaintext


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
    copies: str | None = None  # vault copy: the vault key of the record it copies, when found

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key, "version_id": self.version_id, "size": self.size,
            "last_modified": self.last_modified.isoformat(), "state": self.state.value,
            "data_class": self.data_class, "scope": self.scope, "reason": self.reason,
            "record_status": self.record_status.value if self.record_status else None,
            "copies": self.copies,
        }


@dataclass
class ClassCounts:
    """Objects of one data class under one scope.

    `encrypted`, `source_deleted`, `source_kept` and `bytes_encrypted` come from the
    metadata table (every record, wherever its plaintext was). `in_intake` counts the
    class's objects now in the intake bucket, and always equals
    `in_intake_encrypted + pending + failed + vault_copies`.
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
    vault_copies: int = 0  # atrest messages in the intake under this class's keys (not plaintext)
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
    key_versions: list[KeyVersionView]  # `atrest keys list`'s inventory
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
    # Vault objects whose current version is not the one their record names (overwritten since).
    vault_overwritten: list[str] = field(default_factory=list)
    vault_overwritten_checked: str | None = None  # None: checked; else why the vault listing could not be read
    vault_copies_unchecked: int = 0  # unrecorded objects past VAULT_COPY_PEEKS, counted pending unread
    listing_complete: bool = True  # False: the intake holds more than the `listed` objects read
    queued: int | None = None  # object events in EncryptQueue not processed yet (None: queue unknown)
    # Records written before counts existed and not migrated yet (`atrest migrate`): read
    # from their version's unsharded index partition and added in, so the counts stay exact.
    uncounted: int = 0

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
            "vault_copies": sum(c.vault_copies for c in self.classes),
            "excluded": sum(self.excluded.values()),
            "encrypted": sum(c.encrypted for c in self.classes),
            "source_deleted": sum(c.source_deleted for c in self.classes),
            "source_kept": sum(c.source_kept for c in self.classes),
            "source_not_removed": sum(c.source_not_removed for c in self.classes),
        }

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["classes"] = [{**asdict(c), "source_not_removed": c.source_not_removed} for c in self.classes]
        result["key_versions"] = [asdict(v) for v in self.key_versions]
        result["totals"] = self.totals()
        return result


def collect_status(settings: Settings, dead_letter_queues: Mapping[str, str], clients: AwsClients | None = None,
                   on_progress: Progress | None = None, survey: bool = False,
                   encrypt_queue: str | None = None, listing_limit: int = LISTING_LIMIT) -> StatusReport:
    """The report. `survey`: list every intake object and the vault's versions (grows with
    the buckets); else at most `listing_limit` intake objects, and no vault listing."""
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

    versions, version_counts = inventory_and_counts(KeyLifecycle.from_settings(settings, clients))
    table = MetadataTable(clients.dynamodb, settings.metadata_table)
    for (scope, _version), counted in version_counts.items():
        for data_class, tally in counted.classes.items():
            entry = bucket_for(data_class, scope)
            entry.encrypted += tally.objects
            entry.bytes_encrypted += tally.bytes
            entry.source_deleted += tally.source_deleted
            entry.source_kept += tally.source_kept
    uncounted = 0
    for view in versions:
        for item in table.uncounted_under(view.branch_key_id, view.version):
            uncounted += 1
            if is_object_item(item):
                plain = _plain(item)
                entry = bucket_for(plain["data_class"], plain["scope"])
                entry.encrypted += 1
                entry.bytes_encrypted += int(plain.get("plaintext_size") or 0)
                if plain.get("status") == ObjectStatus.SOURCE_KEPT.value:
                    entry.source_kept += 1
                elif plain.get("status") == ObjectStatus.SOURCE_DELETED.value:
                    entry.source_deleted += 1
    progress("key versions counted", len(versions))

    dead_letters = _queue_depths(clients, dead_letter_queues)
    failures = _failed_sources(clients, settings, dead_letter_queues, dead_letters)
    excluded: Counter[str] = Counter()
    listed = 0
    copies = VaultCopyFinder(settings, clients)
    listing = ListingExtent(None if survey else listing_limit)
    for found in survey_intake(settings, clients, classifier, failures, progress, copies, listing):
        listed += 1
        if found.state is IntakeState.EXCLUDED:
            excluded[found.reason or ""] += 1
            continue
        entry = bucket_for(found.data_class or "", found.scope or "")
        entry.in_intake += 1
        if found.state is IntakeState.ENCRYPTED:
            entry.in_intake_encrypted += 1
            continue
        if found.state is IntakeState.VAULT_COPY:
            entry.vault_copies += 1
            continue
        if found.state is IntakeState.FAILED:
            entry.failed += 1
        else:
            entry.pending += 1
            entry.bytes_pending += found.size
        modified = found.last_modified.isoformat()
        entry.oldest_pending = min(entry.oldest_pending or modified, modified)

    kms_keys = _active_kms_keys(clients, settings)
    if survey:
        overwritten, overwritten_checked = overwritten_vault_objects(settings, clients, progress)
    else:
        overwritten, overwritten_checked = [], "not surveyed: `atrest status --survey` lists the vault's versions"
    return StatusReport(
        bucket=settings.intake_bucket,
        classes=sorted(counts.values(), key=lambda c: (c.data_class, c.scope)),
        excluded=dict(sorted(excluded.items())),
        listed=listed,
        key_versions=versions,
        kms_keys=kms_keys,
        expected_kms_keys={scope: expected_kms_key(scope, catalog, settings) for scope in kms_keys},
        class_kms_keys={name: arn for name, arn in sorted(class_keys.items()) if arn},
        configured_kms_key=settings.kms_key_arn,
        service_kms_key=settings.service_kms_key_arn,
        dead_letters=dead_letters,
        dead_letters_elsewhere=failures.unmatched() if failures else 0,
        objects_per_key_version={f"{v.branch_key_id}#{v.version}": v.objects for v in versions},
        vault_overwritten=overwritten,
        vault_overwritten_checked=overwritten_checked,
        vault_copies_unchecked=copies.unchecked,
        listing_complete=listing.complete,
        queued=_queue_depths(clients, {"EncryptQueue": encrypt_queue}).get("EncryptQueue") if encrypt_queue else None,
        uncounted=uncounted,
    )


def plaintext_objects(settings: Settings, dead_letter_queues: Mapping[str, str], clients: AwsClients | None = None,
                      on_progress: Progress | None = None) -> Iterator[IntakeObject]:
    """Every object in the intake bucket but vault copies, in key order, with its state: all of them are
    plaintext (the encrypted ones are kept on purpose, or their removal is unfinished).
    Streams: memory stays flat however large the bucket."""
    clients = clients or AwsClients()
    classifier = DataClassifier.from_settings(settings)
    failures = _failed_sources(clients, settings, dead_letter_queues, _queue_depths(clients, dead_letter_queues))
    for found in survey_intake(settings, clients, classifier, failures, on_progress or _quiet,
                               VaultCopyFinder(settings, clients)):
        if found.state is not IntakeState.VAULT_COPY:  # ciphertext, not plaintext
            yield found


@dataclass
class ListingExtent:
    """How much of the intake a survey lists: `limit` current versions (None: all), and
    whether it got to the end."""

    limit: int | None = None
    complete: bool = True


def survey_intake(settings: Settings, clients: AwsClients, classifier: DataClassifier,
                  failures: "FailedSources | None", on_progress: Progress | None = None,
                  copies: "VaultCopyFinder | None" = None, extent: ListingExtent | None = None) -> Iterator[IntakeObject]:
    """The current version of every object in the intake bucket (or of the first
    `extent.limit`), in key order, with its state. Without `copies`, no object is read:
    vault copies count as pending."""
    progress = on_progress or _quiet
    extent = extent or ListingExtent()
    listed = 0
    batch: list[dict[str, Any]] = []
    for page in clients.s3.get_paginator("list_object_versions").paginate(Bucket=settings.intake_bucket):
        for version in page.get("Versions", []):
            if not version.get("IsLatest"):
                continue  # older versions were replaced; the current one is the object
            if extent.limit is not None and listed == extent.limit:
                extent.complete = False  # one more than the limit exists: stop here, and say so
                break
            listed += 1
            batch.append(version)
            if len(batch) == _BATCH_GET_LIMIT:
                yield from _settle(settings, clients, classifier, failures, batch, copies)
                batch = []
        progress("intake objects", listed)
        if not extent.complete:
            break
    if batch:
        yield from _settle(settings, clients, classifier, failures, batch, copies)


def class_kms_key(spec: DataClassSpec, settings: Settings) -> str | None:
    """The KMS key a data class is configured with: service classes use the stack-owned
    service key, never the customer's; the others their own key, else the stack's."""
    if spec.scope_kind is ScopeKind.SERVICE:
        return settings.service_kms_key_arn
    return settings.data_class_kms_keys.get(spec.name, settings.kms_key_arn)


def expected_kms_key(scope: str, catalog: DataClassCatalog, settings: Settings) -> str:
    """The KMS key that should wrap a scope's active branch key: that of the classes under it
    (a class with a KMS key of its own has a branch key of its own, `atrest.crypto.keystore`)."""
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
            versions: list[dict[str, Any]], copies: "VaultCopyFinder | None" = None) -> list[IntakeObject]:
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
    vault_keys = [str(VaultKey.of_source(o.data_class, settings.intake_bucket, o.key, o.version_id)) if o.data_class
                  else None for o in settled]
    statuses = MetadataTable(clients.dynamodb, settings.metadata_table).object_statuses(
        vault_key for vault_key in vault_keys if vault_key)
    for n, (found, vault_key) in enumerate(zip(settled, vault_keys)):
        if vault_key is None:
            continue
        status = statuses.get(vault_key)
        if status is not None:
            # Recorded: encrypted. (A record that says SOURCE_DELETED while the version is
            # still listed only means the listing ran beside the deletion.)
            settled[n] = replace(found, state=IntakeState.ENCRYPTED, record_status=status)
        elif failures is not None and failures.failed(found.key, found.version_id):
            settled[n] = replace(found, state=IntakeState.FAILED)
        elif copies is not None and (copy := copies.examine(found)) is not None:
            settled[n] = copy
    return settled


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
    keeps (the function's log has the exception). The messages stay in the queue."""
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


class VaultCopyFinder:
    """Tells a vault copy from a pending object: an unrecorded intake object whose bytes
    start an atrest message header. Its header names the data class, the source object it
    was made from (not the source's version) and the branch key version; the record it
    copies is the one under that version for that source whose ciphertext is exactly this
    object's size."""

    def __init__(self, settings: Settings, clients: AwsClients, peeks: int = VAULT_COPY_PEEKS) -> None:
        self.settings, self.clients, self.peeks = settings, clients, peeks
        self.unchecked = 0

    def examine(self, found: IntakeObject) -> IntakeObject | None:
        """The object as a vault copy, or None when it is not one (or was not read)."""
        if self.peeks <= 0:
            self.unchecked += 1
            return None
        self.peeks -= 1
        request: dict[str, Any] = {"Bucket": self.settings.intake_bucket, "Key": found.key,
                                   "Range": f"bytes=0-{HEADER_BYTES - 1}"}
        if found.version_id:
            request["VersionId"] = found.version_id
        try:
            prefix = self.clients.s3.get_object(**request)["Body"].read()
        except Exception:  # noqa: BLE001 - unreadable now (deleted, denied): it stays pending
            return None
        header = read_header(prefix)
        if header is None or CTX_DATA_CLASS not in header.encryption_context:
            return None
        return replace(found, state=IntakeState.VAULT_COPY, copies=self._record_copied(header, found.size))

    def _record_copied(self, header: Any, size: int) -> str | None:
        """The record of the header's source object (the `by-source` index: only that
        source's records are read, however large the archive) under the header's branch key
        version and data class, whose ciphertext is this object's size. The source's own
        version is usually gone (the pipeline deletes it), so the vault key cannot be derived."""
        context = header.encryption_context
        try:
            key = message_key(header)
        except ValueError:
            return None
        records = MetadataTable(self.clients.dynamodb, self.settings.metadata_table).objects_from_source(
            context.get(CTX_SOURCE_BUCKET, ""), context.get(CTX_SOURCE_KEY, ""))
        for record in records:
            if (record.branch_key_id, record.branch_key_version, record.data_class, record.ciphertext_size) == (
                    key.branch_key_id, key.branch_key_version, context[CTX_DATA_CLASS], size):
                return record.vault_key
        return None


def overwritten_vault_objects(settings: Settings, clients: AwsClients,
                              progress: Progress | None = None) -> tuple[list[str], str | None]:
    """Vault keys whose current version is not the one their record names: written over
    since they were encrypted (a tamper signal; ReadObject emits `VaultObjectOverwritten`
    when it meets one). Lists the vault's versions (no GETs) and reads the record only of
    keys with more than one version. Returns (vault keys, None), or ([], why) when the
    listing is refused (the vault bucket's policy may keep an operator out)."""
    progress = progress or _quiet
    overwritten: list[str] = []
    listed = 0
    try:
        current: dict[str, Any] = {}
        for page in clients.s3.get_paginator("list_object_versions").paginate(Bucket=settings.vault_bucket):
            for version in page.get("Versions", []):
                key = version["Key"]
                entry = current.setdefault(key, {"latest": None, "count": 0})
                entry["count"] += 1
                if version.get("IsLatest"):
                    entry["latest"] = version.get("VersionId")
            listed += len(page.get("Versions", []))
            progress("vault object versions", listed)
            # A key's versions are listed together: settle every key but the page's last.
            last = page.get("Versions", [{}])[-1].get("Key") if page.get("Versions") else None
            for key in [k for k in current if k != last]:
                overwritten += _overwritten(settings, clients, key, current.pop(key))
        for key, entry in current.items():
            overwritten += _overwritten(settings, clients, key, entry)
    except Exception as error:  # noqa: BLE001 - reported: the check did not run, nothing is claimed
        return [], f"the vault bucket's versions could not be listed: {type(error).__name__}: {error}"
    return sorted(overwritten), None


def _overwritten(settings: Settings, clients: AwsClients, key: str, entry: Mapping[str, Any]) -> list[str]:
    if entry["count"] < 2:
        return []
    item = clients.dynamodb.get_item(TableName=settings.metadata_table,
                                     Key=object_key(key),
                                     ProjectionExpression="vault_version_id").get("Item")
    if item is None:
        return []
    recorded = item.get("vault_version_id", {}).get("S")
    return [key] if recorded and recorded != entry["latest"] else []
