"""`StatusReport`: what is protected and what is not, for `atrest status`.

Built from the stack's own records: one pass over the metadata table (objects and key
versions), a listing of the intake bucket's data-class prefixes (what is still plaintext),
the key store's active items (which KMS key wraps each scope), and the dead-letter queues.
Reading the metadata table is a full scan: fine for an operator's look, not for a
dashboard (the CloudWatch dashboard serves that from metrics).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from atrest.backfill import list_candidates, unrecorded
from atrest.clients import AwsClients
from atrest.data_classes import DataClassCatalog, DataClassifier
from atrest.dead_letters import DeadLetterQueue
from atrest.keystore import KeyStores
from atrest.records import KeyVersionRecord, ObjectStatus, _plain
from atrest.settings import Settings


@dataclass
class ClassCounts:
    """Objects of one data class under one scope."""

    data_class: str
    scope: str
    encrypted: int = 0
    bytes_encrypted: int = 0
    source_kept: int = 0
    pending: int = 0
    bytes_pending: int = 0
    failed: int = 0
    oldest_pending: str | None = None


@dataclass
class StatusReport:
    classes: list[ClassCounts]
    key_versions: list[KeyVersionRecord]
    kms_keys: dict[str, str]  # scope -> KMS key ARN wrapping its active branch key
    configured_kms_key: str
    dead_letters: dict[str, int]  # queue name -> messages
    skipped: int  # intake objects under watched prefixes that match no data class
    objects_per_key_version: dict[str, int] = field(default_factory=dict)
    service_kms_key: str | None = None  # the stack-owned key of service scopes (never the customer's)

    def as_dict(self) -> dict[str, Any]:
        result = asdict(self)
        result["key_versions"] = [
            {**asdict(v), "state": v.state.value, "objects": self.objects_per_key_version.get(f"{v.branch_key_id}#{v.version}", 0)}
            for v in self.key_versions
        ]
        return result


def collect_status(settings: Settings, dead_letter_queues: Mapping[str, str], clients: AwsClients | None = None) -> StatusReport:
    clients = clients or AwsClients()
    counts: dict[tuple[str, str], ClassCounts] = {}

    def bucket_for(data_class: str, scope: str) -> ClassCounts:
        return counts.setdefault((data_class, scope), ClassCounts(data_class, scope))

    versions: list[KeyVersionRecord] = []
    per_version: dict[str, int] = defaultdict(int)
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
                per_version[f"{plain['branch_key_id']}#{plain['branch_key_version']}"] += 1
            elif item.get("pk", {}).get("S", "").startswith("KEY#") and sk.startswith("V#"):
                versions.append(KeyVersionRecord.from_item(item))

    catalog = DataClassCatalog.from_settings(settings)
    classifier = DataClassifier.from_settings(settings, catalog)
    prefixes = catalog.listing_prefixes()
    for candidate in unrecorded(clients, settings, list_candidates(clients, settings, settings.intake_bucket, prefixes)):
        scope = classifier.classify(candidate.source.key).scope.branch_key_id
        entry = bucket_for(candidate.data_class, scope)
        entry.pending += 1
        entry.bytes_pending += candidate.source.size or 0
        modified = candidate.last_modified.isoformat()
        entry.oldest_pending = min(entry.oldest_pending or modified, modified)
    skipped = _count_unclassified(clients, settings, classifier, prefixes)

    dead_letters = {}
    for name, url in dead_letter_queues.items():
        if url:
            attributes = clients.client("sqs").get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
            )["Attributes"]
            dead_letters[name] = int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])
    encrypt_dlq = dead_letter_queues.get("EncryptDeadLetterQueue")
    if encrypt_dlq and dead_letters.get("EncryptDeadLetterQueue"):
        # Attribute each failed object to its class; the messages stay in the queue.
        for letter in DeadLetterQueue(clients.client("sqs"), encrypt_dlq, "").list():
            classification = classifier.classify(letter.source.key) if letter.source else None
            if classification:
                bucket_for(classification.data_class, classification.scope.branch_key_id).failed += 1

    return StatusReport(
        classes=sorted(counts.values(), key=lambda c: (c.data_class, c.scope)),
        key_versions=sorted(versions, key=lambda v: (v.branch_key_id, v.created_at)),
        kms_keys=_active_kms_keys(clients, settings),
        configured_kms_key=settings.kms_key_arn,
        service_kms_key=settings.service_kms_key_arn,
        dead_letters=dead_letters,
        skipped=skipped,
        objects_per_key_version=dict(per_version),
    )


def _count_unclassified(clients: AwsClients, settings: Settings, classifier: DataClassifier, prefixes: list[str]) -> int:
    skipped = 0
    for prefix in prefixes:
        for page in clients.s3.get_paginator("list_objects_v2").paginate(Bucket=settings.intake_bucket, Prefix=prefix):
            skipped += sum(1 for obj in page.get("Contents", []) if classifier.classify(obj["Key"]) is None)
    return skipped


def _active_kms_keys(clients: AwsClients, settings: Settings) -> dict[str, str]:
    """scope -> the KMS key ARN on its branch key's ACTIVE item (what wraps new data keys),
    in the customer's key store and the service's."""
    return {key.branch_key_id: key.kms_arn for key in KeyStores.from_settings(settings, clients).active_keys()}
