"""Counts kept as records change (`atrest.storage.counts`): exact under duplicates, retries,
repeated source steps and deletions, spread over shards, and brought to records written
before they existed by `atrest migrate`."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import replace

import boto3
import pytest

from atrest.flows.encrypt_object import EncryptPipeline
from atrest.storage.intake import SourceObject
from atrest.storage.record_keys import (
    COUNTED, SHARDS, UNFINISHED_INDEX_ATTRIBUTES, counter_keys, counts_migration_key, key_version_gsi, shard_of,
)
from atrest.storage.records import MetadataTable, ObjectRecord, ObjectStatus
from atrest_cli.operations.backfill import unfinished_records
from atrest.storage.counts import ClassTally
from atrest_cli.operations.counts_migration import migrate_counts, migration_finished

SYNTHETIC = pytest.mark.local_only("writes records of objects that do not exist into the metadata table")


def a_record(branch_key_id: str, version: str, data_class: str = "call-recording", size: int = 100,
             status: ObjectStatus = ObjectStatus.ENCRYPTED, bucket: str = "intake", key: str | None = None) -> ObjectRecord:
    """A record as the pipeline writes one, under a version of its own (counts of other tests
    do not mix in)."""
    key = key or f"connect/acme/CallRecordings/{uuid.uuid4()}.wav"
    vault_key = f"{data_class}/{bucket}/{key}/{uuid.uuid4()}.esdk"
    return ObjectRecord(
        vault_bucket="vault", vault_key=vault_key, vault_version_id="v1", source_bucket=bucket, source_key=key,
        source_version_id="s1", source_etag="etag", data_class=data_class, scope=branch_key_id,
        branch_key_id=branch_key_id, branch_key_version=version, suite="suite", frame_length=1048576,
        plaintext_size=size, ciphertext_size=size + 500, ciphertext_sha256="00", s3_checksum="crc",
        encryption_context={"data-class": data_class}, encrypted_at="2026-12-01T00:00:00.000000Z", status=status)


@pytest.fixture
def table(settings) -> MetadataTable:
    return MetadataTable(boto3.client("dynamodb"), settings.metadata_table)


@pytest.fixture
def version() -> tuple[str, str]:
    return f"account/test-{uuid.uuid4()}", str(uuid.uuid4())


@SYNTHETIC
def test_a_record_is_counted_once_however_often_it_is_written_marked_or_deleted(table, version):
    branch_key_id, key_version = version
    records = [a_record(branch_key_id, key_version, size=10 * n) for n in range(1, 6)]
    assert all(table.put_object(record) for record in records)
    assert not any(table.put_object(record) for record in records)  # a duplicate delivery's write

    assert table.mark_source(records[0], ObjectStatus.SOURCE_DELETED)
    assert not table.mark_source(records[0], ObjectStatus.SOURCE_DELETED)  # a repeated source step
    assert not table.mark_source(records[0], ObjectStatus.SOURCE_KEPT)
    assert table.mark_source(records[1], ObjectStatus.SOURCE_KEPT)
    assert table.delete_object(records[2])
    assert not table.delete_object(records[2])

    counts = table.counts([version])[version]
    tally = counts.classes["call-recording"]
    assert (counts.objects, counts.bytes) == (4, 10 + 20 + 40 + 50)
    assert (tally.objects, tally.bytes, tally.source_deleted, tally.source_kept) == (4, 120, 1, 1)
    assert table.count_under(*version) == 4 == sum(1 for _ in table.objects_under(*version))


@SYNTHETIC
def test_a_record_leaves_the_unfinished_index_when_its_source_step_finishes(table, settings, version):
    branch_key_id, key_version = version
    prefix = f"backfill-{uuid.uuid4()}/"
    done, open_ = (a_record(branch_key_id, key_version, bucket=settings.intake_bucket, key=f"{prefix}{n}.csv")
                   for n in range(2))
    table.put_object(done)
    table.put_object(open_)
    table.mark_source(done, ObjectStatus.SOURCE_DELETED)

    item = boto3.client("dynamodb").get_item(TableName=settings.metadata_table, Key=done.key)["Item"]
    assert not set(UNFINISHED_INDEX_ATTRIBUTES) & set(item)
    found = list(unfinished_records(_clients(), settings, settings.intake_bucket, [prefix]))
    assert [(c.source.key, c.source.version_id, c.data_class) for c in found] == [(open_.source_key, "s1", open_.data_class)]


def test_duplicate_deliveries_through_the_pipeline_count_each_object_once(settings, clean_stack, table):
    s3 = boto3.client("s3")
    pipeline = EncryptPipeline.from_settings(settings)
    sources = []
    for n in range(3):
        key = f"uploads/{uuid.uuid4()}.csv"
        sources.append(SourceObject(settings.intake_bucket, key,
                                    s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=b"x" * (n + 1))["VersionId"]))
    first = pipeline.encrypt(sources[0])
    scope = (first.scope, first.branch_key_version)
    before = table.counts([scope])[scope]

    for source in sources + sources:  # every object delivered twice, the first one a third time
        pipeline.encrypt(source)

    after = table.counts([scope])[scope]
    assert (after.objects - before.objects, after.bytes - before.bytes) == (2, 2 + 3)
    tally_before = before.classes[first.data_class]
    tally = after.classes[first.data_class]
    assert tally.source_deleted - tally_before.source_deleted == 2


def test_contacts_under_a_version_are_counted_once_per_contact(settings, clean_stack, table):
    from atrest.events.shapes import contact_event_from_eventbridge
    from atrest.flows.protect_contact import ContactProtector
    from atrest_cli.demos.samples import contact_event

    instance = str(uuid.uuid4())
    protector = ContactProtector.from_settings(settings)
    events = [contact_event(settings.account_id, "us-east-1", instance, str(uuid.uuid4())) for _ in range(2)]
    versions = {protector.protect(contact_event_from_eventbridge(e)).branch_key_version for e in events + events}

    (key_version,) = versions
    scope = (f"instance/{instance}", key_version)
    assert table.counts([scope])[scope].contacts == 2
    assert table.count_under(*scope) == 2


def test_shards_spread_one_versions_writes_evenly():
    """10,000 objects of one version: no shard takes more than 1/16 of them (the goal), nor
    much more than its 1/SHARDS share."""
    shares = Counter(shard_of(f"call-recording/intake/connect/acme/{n:06d}.wav/v{n}.esdk") for n in range(10_000))
    assert set(shares) == set(range(SHARDS)) and SHARDS >= 16
    assert max(shares.values()) / 10_000 < min(1 / 16, 1.25 / SHARDS)
    key = f"call-recording/intake/{uuid.uuid4()}.esdk"
    assert shard_of(key) == shard_of(key)  # a retry lands where the first write did
    assert len({key_version_gsi("a", "v", shard) for shard in range(SHARDS)}) == SHARDS
    assert len({tuple(k["pk"].items()) for k in counter_keys("a", "v")}) == SHARDS


# -- records written before counts existed --------------------------------------------------


def legacy(record: ObjectRecord) -> dict:
    """The item an earlier atrest wrote: no count, one unsharded partition, no unfinished entry."""
    item = record.to_item()
    del item[COUNTED]
    for name in UNFINISHED_INDEX_ATTRIBUTES:
        item.pop(name, None)
    item["gsi1pk"] = {"S": key_version_gsi(record.branch_key_id, record.branch_key_version, None)}
    return item


@pytest.fixture
def before_migration(settings) -> None:
    """A stack updated from an earlier atrest: `atrest migrate` has not run on it."""
    boto3.client("dynamodb").delete_item(TableName=settings.metadata_table, Key=counts_migration_key())


@SYNTHETIC
def test_the_migration_counts_and_reindexes_earlier_records_once_and_resumes(settings, clean_stack, before_migration,
                                                                              table):
    dynamodb = boto3.client("dynamodb")
    # Earlier records sit under a version the stack knows (the account key's, made by one object).
    source = f"uploads/{uuid.uuid4()}.csv"
    made = EncryptPipeline.from_settings(settings).encrypt(SourceObject(
        settings.intake_bucket, source,
        boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=source, Body=b"x")["VersionId"]))
    version = (made.scope, made.branch_key_version)
    before = table.counts([version])[version]
    prefix = f"legacy-{uuid.uuid4()}/"
    records = [a_record(*version, size=7, bucket=settings.intake_bucket, key=f"{prefix}{n}.csv") for n in range(30)]
    for record in records:
        dynamodb.put_item(TableName=settings.metadata_table, Item=legacy(record))
    # Before the migration: every view still counts them (from the unsharded partition)...
    assert table.count_under(*version) == before.objects + 30 and table.has_uncounted([version])
    # ...and a backfill finds their unfinished source steps with a scan.
    assert {c.source.key for c in unfinished_records(_clients(), settings, settings.intake_bucket, [prefix])} == {
        r.source_key for r in records}
    # The pipeline finishes one of them before the migration gets there: marked, not counted.
    assert table.mark_source(records[0], ObjectStatus.SOURCE_DELETED)

    class Interrupted(Exception):
        pass

    def stop_after_first_page(read: int, done: int) -> None:
        if done:  # a page that migrated something, and saved where it got
            raise Interrupted

    with pytest.raises(Interrupted):
        migrate_counts(dynamodb, settings.metadata_table, stop_after_first_page, page_size=10)
    assert not migration_finished(dynamodb, settings.metadata_table)
    first = table.counts([version])[version].objects - before.objects
    assert table.count_under(*version) == before.objects + 30  # half-migrated: still exact

    report = migrate_counts(dynamodb, settings.metadata_table, page_size=10)
    again = migrate_counts(dynamodb, settings.metadata_table)

    assert report.resumed and again.migrated == 0 and migration_finished(dynamodb, settings.metadata_table)
    counts = table.counts([version])[version]
    tally, tally_before = counts.classes["call-recording"], before.classes.get("call-recording", ClassTally())
    assert 0 < first < 30 and (counts.objects - before.objects, counts.bytes - before.bytes) == (30, 210)
    assert (tally.objects - tally_before.objects, tally.source_deleted - tally_before.source_deleted) == (30, 1)
    assert table.count_under(*version) == before.objects + 30 and not table.has_uncounted([version])
    assert not MetadataTable(dynamodb, settings.metadata_table).uncounted_possible()
    assert {c.source.key for c in unfinished_records(_clients(), settings, settings.intake_bucket, [prefix])} == {
        r.source_key for r in records[1:]}
    # Migrated records behave as new ones: finishing one counts it once.
    assert table.mark_source(records[1], ObjectStatus.SOURCE_KEPT)
    assert table.counts([version])[version].classes["call-recording"].source_kept == tally.source_kept + 1
    assert table.delete_object(records[2])
    assert table.counts([version])[version].objects == before.objects + 29


@SYNTHETIC
def test_atrest_migrate_counts_an_earlier_contact_index_item_and_says_what_it_did(settings, before_migration, table,
                                                                                 version, atrest):
    dynamodb = boto3.client("dynamodb")
    branch_key_id, key_version = version
    contact = str(uuid.uuid4())
    dynamodb.put_item(TableName=settings.metadata_table, Item={
        "pk": {"S": f"CONTACT#{uuid.uuid4()}"}, "sk": {"S": f"K#{contact}#{key_version}"},
        "gsi1pk": {"S": key_version_gsi(branch_key_id, key_version, None)},
        "gsi1sk": {"S": f"2026-12-01T00:00:00Z#contact/{contact}"}})
    assert table.count_under(*version) == 1

    code, out, err = atrest("migrate")

    assert code == 0, err
    assert "and 1 contact index item(s) written before counts existed" in out and "Every record is counted" in out
    assert table.counts([version])[version].contacts == 1 and table.count_under(*version) == 1
    assert not table.has_uncounted([version])


def _clients():
    from atrest.core.clients import AwsClients

    return AwsClients()


@SYNTHETIC
def test_each_function_role_may_do_its_counting_and_no_more(settings, local_stack, version):
    """Held to the roles' policies by the emulator: the pipeline writes a record with its count,
    marks and counts it; ExpireKeys reads the counts (BatchGetItem) for its shred reports."""
    from botocore.exceptions import ClientError

    from roles import role_clients

    pipeline = MetadataTable(role_clients(local_stack, "EncryptObjectFunctionRoleArn").dynamodb, settings.metadata_table)
    expiry = MetadataTable(role_clients(local_stack, "ExpireKeysFunctionRoleArn").dynamodb, settings.metadata_table)
    record = a_record(*version)

    assert pipeline.put_object(record) and pipeline.mark_source(record, ObjectStatus.SOURCE_DELETED)
    assert expiry.count_under(*version) == 1
    with pytest.raises(ClientError, match="AccessDenied"):
        expiry.delete_object(record)  # not ExpireKeys' to do


@SYNTHETIC
def test_a_transaction_cancelled_for_a_conflict_is_sent_again_and_counted_once(settings, version):
    """DynamoDB cancels a transaction that meets another one on a count item (the emulator
    serializes them instead): the first attempt here is answered as DynamoDB would."""
    dynamodb = boto3.client("dynamodb")
    attempts: list[int] = []

    def conflict_once(**_: object):
        attempts.append(1)
        if len(attempts) > 1:
            return None  # sent to the emulator
        body = {"__type": "com.amazonaws.dynamodb.v20120810#TransactionCanceledException",
                "message": "Transaction cancelled, please refer cancellation reasons for specific reasons "
                           "[None, TransactionConflict]",
                "CancellationReasons": [{"Code": "None"}, {"Code": "TransactionConflict",
                                                             "Message": "Transaction is ongoing for the item"}]}
        from botocore.awsrequest import AWSResponse

        response = AWSResponse("https://dynamodb", 400, {}, None)
        return response, {"Error": {"Code": "TransactionCanceledException", "Message": body["message"]},
                          "CancellationReasons": body["CancellationReasons"],
                          "ResponseMetadata": {"HTTPStatusCode": 400}}

    dynamodb.meta.events.register("before-call.dynamodb.TransactWriteItems", conflict_once)
    table = MetadataTable(dynamodb, settings.metadata_table)
    record = a_record(*version, size=3)

    assert table.put_object(record)

    assert len(attempts) == 2
    assert table.counts([version])[version].objects == 1 and table.get_object(record.vault_key) is not None
