"""The encrypt pipeline on the emulator: what a user of the stack would notice."""

from __future__ import annotations

import os
import uuid
from dataclasses import replace
from datetime import datetime, timezone

import boto3
import pytest
from aws_cryptographic_material_providers.keystore import KeyStore
from aws_cryptographic_material_providers.keystore.config import KeyStoreConfig
from aws_cryptographic_material_providers.keystore.models import KMSConfigurationKmsKeyArn
from aws_cryptographic_material_providers.mpl import AwsCryptographicMaterialProviders
from aws_cryptographic_material_providers.mpl.config import MaterialProvidersConfig
from aws_cryptographic_material_providers.mpl.models import CreateAwsKmsHierarchicalKeyringInput
import aws_encryption_sdk
from aws_encryption_sdk import CommitmentPolicy

from atrest.core.clients import AwsClients
from atrest.core.errors import DecryptRefusedError, StorageVerificationError
from atrest.flows.decrypt_object import VaultReader
from atrest.flows.encrypt_object import EncryptPipeline, Outcome, SkipReason
from atrest.storage.intake import SourceObject
from atrest.storage.record_keys import object_key
from atrest.storage.records import MetadataTable, ObjectRecord, ObjectStatus
from atrest.storage.vault_keys import VaultKey
from atrest_cli.demos.samples import call_recording_wav, chat_transcript, connect_key
from dynamodb_units import INDEX_ENTRY_OVERHEAD, KB, item_size, whole_entry_units, write_units

pytestmark = pytest.mark.local_only("encrypts intake objects in this process, which the deployed EncryptObject function would take too")

WHEN = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)


def recording_key(settings, alias="acme-support", extension="wav", folder="CallRecordings"):
    return connect_key(settings.connect_prefix, alias, folder, str(uuid.uuid4()), WHEN, extension)


def upload(settings, key, body):
    response = boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=body)
    return SourceObject(settings.intake_bucket, key, response["VersionId"], response["ETag"].strip('"'), len(body))


def versions_of(bucket, key):
    listing = boto3.client("s3").list_object_versions(Bucket=bucket, Prefix=key)
    return [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == key]


def decrypt(settings, vault_key, tmp_path):
    out = tmp_path / f"out-{uuid.uuid4().hex}"
    VaultReader.from_settings(settings).decrypt_to_file(settings.vault_bucket, vault_key, out)
    return out.read_bytes()


@pytest.fixture
def pipeline(settings):
    return EncryptPipeline.from_settings(settings)


def test_a_recording_becomes_a_recorded_vault_object_and_its_plaintext_version_is_deleted(settings, pipeline, tmp_path):
    audio = call_recording_wav(seconds=1)
    source = upload(settings, recording_key(settings), audio)

    outcome = pipeline.encrypt(source)

    assert outcome.outcome is Outcome.ENCRYPTED
    assert outcome.data_class == "call-recording"
    assert outcome.scope == f"account/{settings.account_id}"
    record = MetadataTable(boto3.client("dynamodb"), settings.metadata_table).get_object(outcome.vault_key)
    assert record.status is ObjectStatus.SOURCE_DELETED
    assert record.plaintext_size == len(audio)
    assert record.encryption_context == {
        "atrest:account": settings.account_id,
        "atrest:instance": "acme-support",
        "atrest:data-class": "call-recording",
        "atrest:source-bucket": settings.intake_bucket,
        "atrest:source-key": source.key,
    }
    assert versions_of(settings.intake_bucket, source.key) == []
    assert decrypt(settings, outcome.vault_key, tmp_path) == audio


def test_a_recordings_record_costs_two_write_units_in_the_table_and_in_each_index_that_holds_it_whole(settings, pipeline):
    # Most of what atrest costs per recording is its record's write units (docs/cost.md): one
    # per KB of item, in the table and in each ALL-projected index. A Connect recording's
    # record, as first written (unfinished, in the `unfinished` index too) and as it ends.
    audio = call_recording_wav(seconds=1)
    outcome = pipeline.encrypt(upload(settings, recording_key(settings), audio))
    dynamodb = boto3.client("dynamodb")
    final = dynamodb.get_item(TableName=settings.metadata_table, Key=object_key(outcome.vault_key))["Item"]
    record = ObjectRecord.from_item(final)
    first = replace(record, status=ObjectStatus.ENCRYPTED, source_removed_at=None).to_item()

    for item in (first, final):
        assert "vault_key" not in item and "encryption_context" not in item, sorted(item)
        assert write_units(item) == 2, item_size(item)
        assert whole_entry_units(item) == 2, item_size(item)
    assert item_size(first) <= 2 * KB - INDEX_ENTRY_OVERHEAD - 150, "less than 150 bytes left for longer keys"
    assert record.vault_key == outcome.vault_key
    assert record.encryption_context["atrest:source-key"] == record.source_key  # rebuilt, as written


def test_vault_objects_are_standard_esdk_messages_readable_with_the_key_store_alone(settings, pipeline):
    transcript = chat_transcript(settings.account_id, "instance-1", "contact-1")
    source = upload(settings, recording_key(settings, folder="ChatTranscripts", extension="json"), transcript)
    outcome = pipeline.encrypt(source)
    ciphertext = boto3.client("s3").get_object(Bucket=settings.vault_bucket, Key=outcome.vault_key)["Body"].read()

    # Nothing from atrest: the MPL key store and hierarchical keyring, the ESDK, boto3.
    key_store = KeyStore(config=KeyStoreConfig(
        ddb_table_name=settings.keystore_table, logical_key_store_name=settings.keystore_name,
        kms_configuration=KMSConfigurationKmsKeyArn(settings.kms_key_arn),
        kms_client=boto3.client("kms"), ddb_client=boto3.client("dynamodb")))
    keyring = AwsCryptographicMaterialProviders(MaterialProvidersConfig()).create_aws_kms_hierarchical_keyring(
        CreateAwsKmsHierarchicalKeyringInput(key_store=key_store, branch_key_id=f"account/{settings.account_id}", ttl_seconds=60))
    client = aws_encryption_sdk.EncryptionSDKClient(commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT)
    plaintext, header = client.decrypt(source=ciphertext, keyring=keyring)

    assert plaintext == transcript
    assert header.frame_length == settings.frame_length
    assert header.encryption_context["atrest:source-key"] == source.key


def test_objects_larger_than_a_part_go_up_in_checksummed_parts_and_round_trip(settings, tmp_path):
    settings = replace(settings, part_size=5 * 1024 * 1024)
    data = os.urandom(12 * 1024 * 1024 + 3)
    source = upload(settings, recording_key(settings), data)
    outcome = EncryptPipeline.from_settings(settings).encrypt(source)
    head = boto3.client("s3").head_object(Bucket=settings.vault_bucket, Key=outcome.vault_key)
    assert head["ETag"].strip('"').endswith("-3")  # three parts: 5 + 5 + 2 MiB
    assert decrypt(settings, outcome.vault_key, tmp_path) == data


def test_a_zero_byte_object_is_encrypted_and_decrypts_to_nothing(settings, pipeline, tmp_path):
    source = upload(settings, recording_key(settings), b"")
    outcome = pipeline.encrypt(source)
    assert outcome.outcome is Outcome.ENCRYPTED and outcome.plaintext_size == 0
    assert decrypt(settings, outcome.vault_key, tmp_path) == b""


def test_keep_source_leaves_the_plaintext_and_says_so(settings):
    keeping = EncryptPipeline.from_settings(replace(settings, keep_source=True))
    source = upload(settings, recording_key(settings), b"keep me")
    outcome = keeping.encrypt(source)
    assert outcome.source_status == ObjectStatus.SOURCE_KEPT.value
    assert versions_of(settings.intake_bucket, source.key) == [source.version_id]


def test_a_newer_version_uploaded_meanwhile_is_never_deleted(settings, pipeline, tmp_path):
    key = recording_key(settings)
    first = upload(settings, key, b"first take")
    second = upload(settings, key, b"second take")

    pipeline.encrypt(first)
    assert versions_of(settings.intake_bucket, key) == [second.version_id]

    outcome = pipeline.encrypt(second)
    assert versions_of(settings.intake_bucket, key) == []
    assert decrypt(settings, outcome.vault_key, tmp_path) == b"second take"


def test_a_source_deleted_before_processing_is_skipped_not_retried(settings, pipeline):
    source = upload(settings, recording_key(settings), b"gone soon")
    boto3.client("s3").delete_object(Bucket=source.bucket, Key=source.key, VersionId=source.version_id)
    outcome = pipeline.encrypt(source)
    assert outcome.outcome is Outcome.SKIPPED and outcome.reason == SkipReason.SOURCE_MISSING.value


def test_keys_the_catalog_excludes_are_left_alone_with_the_reason(settings, pipeline):
    source = upload(settings, f"{settings.connect_prefix}acme/Reports/{uuid.uuid4()}.csv", b"a,b\n")
    outcome = pipeline.encrypt(source)
    assert outcome.reason == SkipReason.EXCLUDED.value and "no customer content" in outcome.detail
    assert versions_of(settings.intake_bucket, source.key) == [source.version_id]


def test_an_atrest_message_copied_into_the_intake_is_not_encrypted_again_nor_deleted(settings, pipeline):
    original = pipeline.encrypt(upload(settings, recording_key(settings), b"secret"))
    ciphertext = boto3.client("s3").get_object(Bucket=settings.vault_bucket, Key=original.vault_key)["Body"].read()
    copy = upload(settings, recording_key(settings), ciphertext)

    outcome = pipeline.encrypt(copy)

    assert outcome.reason == SkipReason.ALREADY_ATREST_MESSAGE.value
    assert versions_of(settings.intake_bucket, copy.key) == [copy.version_id]


def test_a_repeated_delivery_yields_one_vault_object_and_one_record(settings, pipeline):
    source = upload(settings, recording_key(settings), b"once")
    first = pipeline.encrypt(source)
    again = pipeline.encrypt(source)
    assert again.repeated and again.vault_key == first.vault_key
    versions = boto3.client("s3").list_object_versions(Bucket=settings.vault_bucket, Prefix=first.vault_key)["Versions"]
    assert len(versions) == 1


def test_unicode_plus_and_percent_in_keys_round_trip(settings, pipeline, tmp_path):
    key = f"{settings.knowledge_prefix}politique de retour+été 100%/guide ✓.pdf"
    outcome = pipeline.encrypt(upload(settings, key, b"%PDF-1.7 ..."))
    assert outcome.outcome is Outcome.ENCRYPTED
    assert decrypt(settings, outcome.vault_key, tmp_path) == b"%PDF-1.7 ..."


def test_branch_key_materials_are_cached_so_kms_is_called_rarely(settings):
    clients = AwsClients()
    pipeline = EncryptPipeline.from_settings(settings, clients)
    pipeline.encrypt(upload(settings, recording_key(settings), b"warm up"))
    before = clients.calls["kms"]
    for n in range(20):
        pipeline.encrypt(upload(settings, recording_key(settings), f"call {n}".encode()))
    assert clients.calls["kms"] - before == 0


def test_a_checksum_mismatch_on_store_keeps_the_plaintext_and_records_nothing(settings):
    clients = AwsClients()
    pipeline = EncryptPipeline.from_settings(settings, clients)

    def corrupt(parsed, **_):
        for field in [f for f in parsed if f.startswith("Checksum") and f not in ("ChecksumType", "ChecksumAlgorithm")]:
            parsed[field] = "AAAAAA==" if parsed[field] != "AAAAAA==" else "BBBBBB=="

    clients.s3.meta.events.register("after-call.s3.PutObject", corrupt)
    clients.s3.meta.events.register("after-call.s3.HeadObject", corrupt)
    source = upload(settings, recording_key(settings), b"must not be lost")

    with pytest.raises(StorageVerificationError):
        pipeline.encrypt(source)

    assert versions_of(settings.intake_bucket, source.key) == [source.version_id]
    from atrest.storage.vault_keys import VaultKey
    vault_key = str(VaultKey.of_source("call-recording", source.bucket, source.key, source.version_id))
    assert MetadataTable(boto3.client("dynamodb"), settings.metadata_table).get_object(vault_key) is None


def test_a_failure_mid_upload_aborts_the_multipart_upload_and_keeps_the_plaintext(settings):
    clients = AwsClients()
    pipeline = EncryptPipeline.from_settings(replace(settings, part_size=5 * 1024 * 1024), clients)
    parts = []

    def fail_second_part(**_):
        parts.append(1)
        if len(parts) == 2:
            raise ConnectionError("network dropped mid-upload")

    clients.s3.meta.events.register("before-call.s3.UploadPart", fail_second_part)
    source = upload(settings, recording_key(settings), os.urandom(11 * 1024 * 1024))

    with pytest.raises(ConnectionError):
        pipeline.encrypt(source)

    assert boto3.client("s3").list_multipart_uploads(Bucket=settings.vault_bucket).get("Uploads", []) == []
    assert versions_of(settings.intake_bucket, source.key) == [source.version_id]
    # The retry completes the work.
    assert EncryptPipeline.from_settings(settings).encrypt(source).outcome is Outcome.ENCRYPTED


class TestDecryptRefusals:
    def encrypted(self, settings, pipeline, body=b"customer said: card ending 4242"):
        return pipeline.encrypt(upload(settings, recording_key(settings), body))

    def test_a_vault_object_copied_under_another_record_is_refused_and_nothing_is_written(self, settings, pipeline, tmp_path):
        a = self.encrypted(settings, pipeline)
        b = self.encrypted(settings, pipeline, b"another call")
        s3 = boto3.client("s3")
        s3.copy_object(Bucket=settings.vault_bucket, Key=b.vault_key, CopySource={"Bucket": settings.vault_bucket, "Key": a.vault_key})
        # Point b's record at the copied bytes' version, so only the header can tell.
        table = MetadataTable(boto3.client("dynamodb"), settings.metadata_table)
        record = table.get_object(b.vault_key)
        latest = s3.head_object(Bucket=settings.vault_bucket, Key=b.vault_key)["VersionId"]
        boto3.client("dynamodb").update_item(
            TableName=settings.metadata_table, Key=record.key,
            UpdateExpression="SET vault_version_id = :v", ExpressionAttributeValues={":v": {"S": latest}})
        out = tmp_path / "plain.wav"

        with pytest.raises(DecryptRefusedError, match="source_key.* disagree with the verified message header"):
            VaultReader.from_settings(settings).decrypt_to_file(settings.vault_bucket, b.vault_key, out)
        assert list(tmp_path.iterdir()) == []

    def test_a_record_edited_to_name_another_source_is_refused(self, settings, pipeline, tmp_path):
        a = self.encrypted(settings, pipeline)
        boto3.client("dynamodb").update_item(
            TableName=settings.metadata_table, Key=object_key(a.vault_key),
            UpdateExpression="SET source_key = :v", ExpressionAttributeValues={":v": {"S": "connect/other/CallRecordings/x.wav"}})
        with pytest.raises(DecryptRefusedError, match="source_key"):
            VaultReader.from_settings(settings).decrypt_to_file(settings.vault_bucket, a.vault_key, tmp_path / "x")
        assert list(tmp_path.iterdir()) == []

    def test_a_stored_context_edited_to_name_another_source_is_refused(self, settings, pipeline, tmp_path):
        # Records written before the context was rebuilt from their fields hold it whole.
        a = self.encrypted(settings, pipeline)
        record = MetadataTable(boto3.client("dynamodb"), settings.metadata_table).get_object(a.vault_key)
        edited = {**record.encryption_context, "atrest:source-key": "connect/other/CallRecordings/x.wav"}
        boto3.client("dynamodb").update_item(
            TableName=settings.metadata_table, Key=object_key(a.vault_key),
            UpdateExpression="SET encryption_context = :v",
            ExpressionAttributeValues={":v": {"M": {k: {"S": v} for k, v in edited.items()}}})
        with pytest.raises(DecryptRefusedError, match="encryption context does not match its record"):
            VaultReader.from_settings(settings).decrypt_to_file(settings.vault_bucket, a.vault_key, tmp_path / "x")
        assert list(tmp_path.iterdir()) == []

    def test_a_flipped_byte_is_refused_and_nothing_is_written(self, settings, pipeline, tmp_path):
        a = self.encrypted(settings, pipeline, os.urandom(300_000))
        s3 = boto3.client("s3")
        data = bytearray(s3.get_object(Bucket=settings.vault_bucket, Key=a.vault_key)["Body"].read())
        data[-100] ^= 0x01
        new_version = s3.put_object(Bucket=settings.vault_bucket, Key=a.vault_key, Body=bytes(data))["VersionId"]
        boto3.client("dynamodb").update_item(
            TableName=settings.metadata_table, Key=object_key(a.vault_key),
            UpdateExpression="SET vault_version_id = :v", ExpressionAttributeValues={":v": {"S": new_version}})
        with pytest.raises(DecryptRefusedError):
            VaultReader.from_settings(settings).decrypt_to_file(settings.vault_bucket, a.vault_key, tmp_path / "x")
        assert list(tmp_path.iterdir()) == []

    def test_an_object_without_a_record_is_refused(self, settings, tmp_path):
        from atrest.core.errors import RecordNotFoundError

        with pytest.raises(RecordNotFoundError, match="no atrest record"):
            VaultReader.from_settings(settings).decrypt_to_file(
                settings.vault_bucket, str(VaultKey.of_source("call-recording", "nowhere", "none", None)), tmp_path / "x")


def test_a_source_named_without_a_version_gets_the_same_identity_as_its_event(settings, pipeline):
    key = recording_key(settings)
    with_version = upload(settings, key, b"listed, not announced")
    listed = SourceObject(settings.intake_bucket, key, None, with_version.etag)

    outcome = pipeline.encrypt(listed)

    assert outcome.outcome is Outcome.ENCRYPTED
    assert pipeline.encrypt(with_version).repeated  # the event for the same version finds the record


def test_bytes_overwritten_since_the_listing_are_skipped_and_the_replacement_is_kept(settings, pipeline):
    key = recording_key(settings)
    first = upload(settings, key, b"first")
    second = upload(settings, key, b"second")
    outcome = pipeline.encrypt(SourceObject(settings.intake_bucket, key, None, first.etag))
    assert outcome.reason == SkipReason.SOURCE_REPLACED.value
    assert versions_of(settings.intake_bucket, key) == [second.version_id, first.version_id]


def test_a_first_delivery_asks_s3_only_what_it_must(settings):
    """Small ciphertext: one PutObject made only if the vault key is free (no HEAD before it,
    none after). Parts: a HEAD first (an earlier delivery's whole upload is not repeated);
    open uploads are looked for only when the delivery may be a retry."""
    part = 5 * 1024 * 1024
    pipeline = EncryptPipeline.from_settings(replace(settings, part_size=part))
    made: list[str] = []
    pipeline.clients.s3.meta.events.register("before-call.s3", lambda model, **_: made.append(model.name))

    pipeline.encrypt(upload(settings, recording_key(settings), os.urandom(64 * 1024)), may_be_retry=False)
    small, made[:] = list(made), []
    pipeline.encrypt(upload(settings, recording_key(settings), os.urandom(2 * part + 1024)), may_be_retry=False)
    large, made[:] = list(made), []
    pipeline.encrypt(upload(settings, recording_key(settings), os.urandom(2 * part + 1024)))
    maybe_retried, made[:] = list(made), []
    # Events that give no size (or a wrong one): the stored size, known from the GET's
    # headers before its body is read, decides the same way.
    pipeline.encrypt(replace(upload(settings, recording_key(settings), os.urandom(64 * 1024)), size=None),
                     may_be_retry=False)
    small_sizeless, made[:] = list(made), []
    pipeline.encrypt(replace(upload(settings, recording_key(settings), os.urandom(2 * part + 1024)), size=1024),
                     may_be_retry=False)
    large_understated = list(made)

    assert small == ["GetObject", "PutObject", "DeleteObject"]
    assert large == ["HeadObject", "GetObject", "CreateMultipartUpload", "UploadPart", "UploadPart", "UploadPart",
                     "CompleteMultipartUpload", "DeleteObject"]
    assert maybe_retried == large[:-1] + ["ListMultipartUploads", "DeleteObject"]
    assert small_sizeless == small
    assert large_understated == ["GetObject", "HeadObject"] + large[2:]


def test_a_repeated_delivery_without_a_size_does_not_upload_a_large_object_again(settings):
    part = 5 * 1024 * 1024
    pipeline = EncryptPipeline.from_settings(replace(settings, part_size=part, keep_source=True))
    source = replace(upload(settings, recording_key(settings), os.urandom(2 * part + 1024)), size=None)
    first = pipeline.encrypt(source)
    made: list[str] = []
    pipeline.clients.s3.meta.events.register("before-call.s3", lambda model, **_: made.append(model.name))

    again = pipeline.encrypt(source)

    assert (first.repeated, again.repeated) == (False, True)
    assert "CreateMultipartUpload" not in made and "UploadPart" not in made
    assert len(versions_of(settings.vault_bucket, first.vault_key)) == 1


def test_a_repeated_delivery_of_a_small_object_finds_the_record_through_its_conditional_write(settings, tmp_path):
    pipeline = EncryptPipeline.from_settings(replace(settings, keep_source=True))
    source = upload(settings, recording_key(settings), b"a short transcript")
    first = pipeline.encrypt(source)

    again = pipeline.encrypt(source)

    assert (first.repeated, again.repeated) == (False, True)
    assert len(versions_of(settings.vault_bucket, first.vault_key)) == 1
    assert decrypt(settings, first.vault_key, tmp_path) == b"a short transcript"
