"""Backfill: encrypt objects that were there before atrest, through the event path's own code.

Every candidate goes through `EncryptPipeline.encrypt`, so a backfilled object gets the
same identity (bucket, key, pinned version), vault key, record and source-deletion rules
as one announced by an event; an object both backfilled and announced is encrypted once.

Resuming needs no checkpoint: what an interrupted run finished is recorded (and its
plaintext gone), so the next run's listing and record check pass over it; what it left
half-done is either still listed (no record, or a record whose source is still there) or
found by its record (`unfinished_records`).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator

from atrest.catalog.data_classes import DataClassifier, Exclusion
from atrest.core.clients import AwsClients
from atrest.core.settings import Settings
from atrest.storage.intake import SourceObject
from atrest.crypto.keystore import KeyStores
from atrest.storage.records import MetadataTable, ObjectStatus, UnfinishedSource
from atrest.storage.vault_keys import VaultKey

log = logging.getLogger(__name__)

_BATCH_GET_LIMIT = 100  # DynamoDB BatchGetItem's maximum keys per request


@dataclass(frozen=True)
class Candidate:
    """An object version a listing found that matches a data class."""

    source: SourceObject
    data_class: str
    last_modified: datetime


def list_candidates(
    clients: AwsClients, settings: Settings, bucket: str, prefixes: Iterable[str], since: datetime | None = None
) -> Iterator[Candidate]:
    """Current versions under `prefixes` that the catalog does not exclude (and newer than `since`)."""
    classifier = DataClassifier.from_settings(settings)
    paginator = clients.s3.get_paginator("list_object_versions")
    for prefix in prefixes:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for version in page.get("Versions", []):
                if not version.get("IsLatest"):
                    continue  # older versions were replaced before atrest; only what is current is live data
                if since and version["LastModified"] < since:
                    continue
                classification = classifier.classify(version["Key"], version.get("Size"))
                if isinstance(classification, Exclusion):
                    continue
                version_id = version.get("VersionId")
                source = SourceObject(bucket, version["Key"], None if version_id in (None, "null") else version_id,
                                      version["ETag"].strip('"'), version["Size"])
                yield Candidate(source, classification.data_class, version["LastModified"])


def unrecorded(clients: AwsClients, settings: Settings, candidates: Iterable[Candidate]) -> Iterator[Candidate]:
    """The candidates whose work is not finished (BatchGetItem, 100 at a time): no record yet,
    or a record still `ENCRYPTED`, i.e. a run stopped between recording and removing the source."""
    batch: list[Candidate] = []
    for candidate in candidates:
        batch.append(candidate)
        if len(batch) == _BATCH_GET_LIMIT:
            yield from _without_records(clients, settings, batch)
            batch = []
    if batch:
        yield from _without_records(clients, settings, batch)


def _without_records(clients: AwsClients, settings: Settings, batch: list[Candidate]) -> list[Candidate]:
    by_key = {str(VaultKey.of_source(c.data_class, c.source.bucket, c.source.key, c.source.version_id)): c for c in batch}
    statuses = MetadataTable(clients.dynamodb, settings.metadata_table).object_statuses(by_key)
    # Unfinished: no record yet, or a record whose source step is still to do.
    return [c for key, c in by_key.items() if statuses.get(key, ObjectStatus.ENCRYPTED) is ObjectStatus.ENCRYPTED]


def unfinished_records(clients: AwsClients, settings: Settings, bucket: str, prefixes: Iterable[str]) -> Iterator[Candidate]:
    """Objects recorded `ENCRYPTED` whose run stopped before the source step finished.

    When a run dies between deleting the plaintext version and marking its record, the
    listing no longer shows the object; only the record tells. Finishing it (the pipeline
    finds the record, the version is already gone, the record is marked) needs no listing.
    They are read from the sparse `unfinished` index (only those records are in it, by
    source bucket and key: the read is the size of the prefixes' unfinished work, not of
    the archive). Records written before that index existed are found by a scan, only
    while some are left (`atrest migrate` moves them into it).
    """
    table = MetadataTable(clients.dynamodb, settings.metadata_table)
    prefixes = list(prefixes) or [""]
    seen: set[str] = set()
    for prefix in prefixes:
        for record in table.unfinished_from(bucket, prefix):
            if record.vault_key not in seen:
                seen.add(record.vault_key)
                yield _candidate_of(record)
    if table.uncounted_possible() and table.has_uncounted(_known_versions(clients, settings, table)):
        log.warning("records written before the unfinished index existed are read with a scan until "
                    "`atrest migrate` has run")
        for record in table.unfinished_uncounted(bucket, prefixes):
            if record.vault_key not in seen:
                yield _candidate_of(record)


def _candidate_of(record: UnfinishedSource) -> Candidate:
    source = SourceObject(record.source_bucket, record.source_key, record.source_version_id, record.source_etag,
                          record.plaintext_size)
    return Candidate(source, record.data_class, datetime.fromisoformat(record.encrypted_at.replace("Z", "+00:00")))


def _known_versions(clients: AwsClients, settings: Settings, table: MetadataTable) -> list[tuple[str, str]]:
    """Every recorded version of every branch key in the key stores."""
    keys = [key.branch_key_id for key in KeyStores.from_settings(settings, clients).active_keys()]
    return [(key, record.version) for key in keys for record in table.key_versions(key)]


@dataclass
class BackfillReport:
    """What a backfill run did; `failures` maps object key to the reason (no content)."""

    listed: int = 0
    to_do: int = 0
    outcomes: Counter = field(default_factory=Counter)
    bytes_encrypted: int = 0
    failures: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def done(self) -> int:
        return sum(self.outcomes.values()) + len(self.failures)


# -- worker processes: the MPL's KMS components are not thread-safe, so each worker is a
# process with its own clients, key store and keyring cache.

_worker_pipeline: Any = None


def _start_worker(settings: Settings) -> None:
    global _worker_pipeline
    from atrest.flows.encrypt_object import EncryptPipeline

    logging.getLogger("atrest").setLevel(logging.WARNING)  # the parent reports progress
    _worker_pipeline = EncryptPipeline.from_settings(settings)


def _encrypt_in_worker(source: SourceObject) -> tuple[str, str, int, str | None]:
    try:
        outcome = _worker_pipeline.encrypt(source)
    except Exception as error:  # reported per object; the run goes on
        return source.key, "failed", 0, f"{type(error).__name__}: {error}"[:300]
    label = outcome.outcome.value if not outcome.repeated else "already-encrypted"
    if outcome.reason:
        label = f"skipped:{outcome.reason}"
    return source.key, label, outcome.plaintext_size or 0, None


def run_backfill(
    settings: Settings,
    bucket: str,
    prefixes: Iterable[str],
    since: datetime | None = None,
    workers: int = 2,
    on_listed: Callable[[int, int], None] | None = None,
    on_progress: Callable[[BackfillReport], None] | None = None,
    clients: AwsClients | None = None,
) -> BackfillReport:
    """Encrypt every unrecorded object of a data class under `prefixes` in `bucket`.

    `bucket` becomes the pipeline's source bucket for this run (the operator's
    credentials, not the function's role, decide whether it may be read and cleaned).
    """
    clients = clients or AwsClients()
    settings = replace(settings, intake_bucket=bucket)
    report = BackfillReport()
    started = time.monotonic()
    pending: list[SourceObject] = []
    for candidate in unrecorded(clients, settings, _counted(list_candidates(clients, settings, bucket, prefixes, since), report)):
        pending.append(candidate.source)
        if on_listed and len(pending) % 1000 == 0:
            on_listed(report.listed, len(pending))
    listed = {(s.key, s.version_id) for s in pending}
    pending += [c.source for c in unfinished_records(clients, settings, bucket, prefixes)
                if (c.source.key, c.source.version_id) not in listed]
    report.to_do = len(pending)
    if on_listed:
        on_listed(report.listed, report.to_do)

    context = multiprocessing.get_context("spawn")
    pool = context.Pool(processes=max(1, workers), initializer=_start_worker, initargs=(settings,))
    try:
        for key, label, size, error in pool.imap_unordered(_encrypt_in_worker, pending, chunksize=4):
            if error:
                report.failures[key] = error
            else:
                report.outcomes[label] += 1
                if label == "encrypted":
                    report.bytes_encrypted += size
            report.seconds = time.monotonic() - started
            if on_progress:
                on_progress(report)
        pool.close()
    except KeyboardInterrupt:
        report.interrupted = True
        pool.terminate()
    finally:
        pool.join()
        report.seconds = time.monotonic() - started
    return report


def _counted(candidates: Iterator[Candidate], report: BackfillReport) -> Iterator[Candidate]:
    for candidate in candidates:
        report.listed += 1
        yield candidate
