"""Tampered vault objects and records: decrypt refuses with a specific error and writes
nothing, and the pipeline never removes what it cannot prove is its own redundant copy.

Also covered in tests/integration/test_encrypt_pipeline.py (TestDecryptRefusals): a vault
object copied under another record, a record edited to name another source, a flipped
byte in a one-frame object, an object without a record; and in
tests/integration/test_cli_decrypt.py: a record edited to name another instance.
"""

from __future__ import annotations

import os

import boto3
import pytest

from atrest.core.errors import DecryptRefusedError
from atrest.flows.decrypt_object import VaultReader
from atrest.flows.encrypt_object import EncryptPipeline
from atrest.storage.record_keys import object_key

from probes import decrypt, record_of, recording_key, upload, vault_versions

pytestmark = pytest.mark.local_only("encrypts intake objects in this process, which the deployed EncryptObject function would take too")


@pytest.fixture
def pipeline(settings):
    return EncryptPipeline.from_settings(settings)


def point_record_at(settings, vault_key, version_id):
    """What someone with write access to the metadata table could do."""
    boto3.client("dynamodb").update_item(
        TableName=settings.metadata_table, Key=object_key(vault_key),
        UpdateExpression="SET vault_version_id = :v", ExpressionAttributeValues={":v": {"S": version_id}})


def test_ciphertext_encrypted_for_instance_a_presented_as_instance_b_is_refused_and_nothing_is_written(
    settings, pipeline, tmp_path
):
    instance_a = pipeline.encrypt(upload(settings, recording_key(settings, alias="instance-a"), b"instance A's call"))
    instance_b = pipeline.encrypt(upload(settings, recording_key(settings, alias="instance-b"), b"instance B's call"))
    assert record_of(settings, instance_b.vault_key).encryption_context["atrest:instance"] == "instance-b"
    s3 = boto3.client("s3")
    copied = s3.copy_object(Bucket=settings.vault_bucket, Key=instance_b.vault_key,
                            CopySource={"Bucket": settings.vault_bucket, "Key": instance_a.vault_key})
    point_record_at(settings, instance_b.vault_key, copied["VersionId"])

    with pytest.raises(DecryptRefusedError, match="instance.* disagree with the verified message header"):
        VaultReader.from_settings(settings).decrypt_to_file(settings.vault_bucket, instance_b.vault_key, tmp_path / "b.wav")
    assert list(tmp_path.iterdir()) == []


def test_a_flipped_byte_in_the_last_frame_leaves_no_partial_plaintext_and_an_existing_output_file_untouched(
    settings, pipeline, tmp_path
):
    body = os.urandom(3 * settings.frame_length + 1000)  # four frames: three decrypt fine before the bad one
    outcome = pipeline.encrypt(upload(settings, recording_key(settings), body))
    s3 = boto3.client("s3")
    ciphertext = bytearray(s3.get_object(Bucket=settings.vault_bucket, Key=outcome.vault_key)["Body"].read())
    ciphertext[-200] ^= 0x01
    point_record_at(settings, outcome.vault_key,
                    s3.put_object(Bucket=settings.vault_bucket, Key=outcome.vault_key, Body=bytes(ciphertext))["VersionId"])
    output = tmp_path / "call.wav"
    output.write_bytes(b"yesterday's file")

    with pytest.raises(DecryptRefusedError, match="does not verify"):
        VaultReader.from_settings(settings).decrypt_to_file(settings.vault_bucket, outcome.vault_key, output)

    assert output.read_bytes() == b"yesterday's file"
    assert list(tmp_path.iterdir()) == [output], "partial plaintext left beside the output"


def test_a_vault_object_overwritten_without_its_record_still_decrypts_to_the_recorded_bytes(settings, pipeline, tmp_path):
    outcome = pipeline.encrypt(upload(settings, recording_key(settings), b"the real call"))
    boto3.client("s3").put_object(Bucket=settings.vault_bucket, Key=outcome.vault_key, Body=b"forged")
    assert decrypt(settings, outcome.vault_key, tmp_path) == b"the real call"  # the record pins the version


def test_a_redelivery_never_removes_a_vault_version_that_is_not_a_copy_of_its_record(settings, pipeline):
    source = upload(settings, recording_key(settings), b"keep both")
    outcome = pipeline.encrypt(source)
    recorded = record_of(settings, outcome.vault_key).vault_version_id
    foreign = boto3.client("s3").put_object(Bucket=settings.vault_bucket, Key=outcome.vault_key, Body=b"not ours")["VersionId"]

    assert pipeline.encrypt(source).repeated

    assert sorted(vault_versions(settings, outcome.vault_key)) == sorted([recorded, foreign])
