"""Objects that look like atrest messages: left alone only when they verify under this
stack's keys; anything else is plaintext and is encrypted like any other object.

A header copied from a vault object is the cheapest way to make plaintext look encrypted;
these tests make exactly that, and the other near-misses, on the local stack.
"""

from __future__ import annotations

import io
import logging
import uuid
from dataclasses import replace
from datetime import datetime, timezone
from urllib.parse import quote_plus

import boto3
import pytest
from aws_encryption_sdk.internal.formatting.deserialize import deserialize_header, deserialize_header_auth
from botocore.exceptions import ClientError

from atrest.catalog.scopes import BranchKeyScope
from atrest.core.clients import AwsClients
from atrest.crypto.envelope import encryption_client, encryption_context, is_atrest_message, read_header
from atrest.crypto.keystore import BranchKeyStore
from atrest.crypto.verification import KeyStoreUnavailableError, Verdict
from atrest.flows.decrypt_object import VaultReader
from atrest.flows.encrypt_object import EncryptPipeline, Outcome, SkipReason
from atrest.storage.intake import SourceObject
from atrest.storage.vault_keys import VaultKey
from atrest_cli.demos.samples import connect_key

pytestmark = pytest.mark.local_only("invokes EncryptObjectFunction's handler in this process on intake objects")

WHEN = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)
PLAINTEXT = b"caller: my card number is 4111 1111 1111 1111. " * 2000  # 96 KB: longer than the 64 KiB peek


def recording_key(settings):
    return connect_key(settings.connect_prefix, "acme-support", "CallRecordings", str(uuid.uuid4()), WHEN, "wav")


def upload(settings, body, key=None):
    key = key or recording_key(settings)
    response = boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=body)
    return SourceObject(settings.intake_bucket, key, response["VersionId"], response["ETag"].strip('"'), len(body))


def intake_versions(settings, key):
    listing = boto3.client("s3").list_object_versions(Bucket=settings.intake_bucket, Prefix=key)
    return [v["VersionId"] for v in listing.get("Versions", []) if v["Key"] == key]


def vault_bytes(settings, vault_key):
    return boto3.client("s3").get_object(Bucket=settings.vault_bucket, Key=vault_key)["Body"].read()


def decrypt(settings, reader, vault_key, tmp_path):
    out = tmp_path / f"out-{uuid.uuid4().hex}"
    reader.decrypt_to_file(settings.vault_bucket, vault_key, out)
    return out.read_bytes()


def header_length(ciphertext):
    """Bytes of the message header and its authentication tag: what a forger copies."""
    stream = io.BytesIO(ciphertext)
    header, _ = deserialize_header(stream, max_encrypted_data_keys=1)
    deserialize_header_auth(version=header.version, stream=stream, algorithm=header.algorithm)
    return stream.tell()


@pytest.fixture(scope="module")
def vault_message(settings):
    """A real vault object of three 4 KiB frames, as anyone who can read the vault sees it."""
    small_frames = replace(settings, frame_length=4096)
    outcome = EncryptPipeline.from_settings(small_frames).encrypt(upload(settings, bytes(range(256)) * 40))
    return vault_bytes(settings, outcome.vault_key)


@pytest.fixture(scope="module")
def pipeline(settings):
    return EncryptPipeline.from_settings(settings)


@pytest.fixture(scope="module")
def reader(settings):
    return VaultReader.from_settings(settings)


def assert_encrypted_as_plaintext(settings, pipeline, reader, body, reason, caplog, tmp_path):
    """`body` in the intake is encrypted, its plaintext version removed, the vault object
    decrypts to exactly `body`, and the log says why in one category and nothing more."""
    assert is_atrest_message(body[:64 * 1024]), "the test object must look like an atrest message"
    source = upload(settings, body)

    with caplog.at_level(logging.INFO, logger="atrest"):
        outcome = pipeline.encrypt(source)

    assert outcome.outcome is Outcome.ENCRYPTED and not outcome.repeated
    assert intake_versions(settings, source.key) == []
    assert decrypt(settings, reader, outcome.vault_key, tmp_path) == body  # every byte, the peeked ones included
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "atrest.flows.encrypt_object"]
    assert [r.reason for r in warnings] == [reason.value]
    logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    # Markers with a space: a bare "4111" turns up in record timestamps and ids by chance.
    assert "card number" not in logged and "4111 1111" not in logged
    return outcome


def test_plaintext_behind_a_header_copied_from_a_vault_object_is_encrypted_and_removed(
    settings, pipeline, reader, vault_message, caplog, tmp_path
):
    forged = vault_message[:header_length(vault_message)] + PLAINTEXT

    assert_encrypted_as_plaintext(settings, pipeline, reader, forged, Verdict.NOT_AUTHENTIC, caplog, tmp_path)


def test_a_genuine_header_and_first_frame_with_the_rest_cut_off_is_encrypted_as_plaintext(
    settings, pipeline, reader, vault_message, caplog, tmp_path
):
    truncated = vault_message[:header_length(vault_message) + 5000]  # mid-way through the second frame

    assert_encrypted_as_plaintext(settings, pipeline, reader, truncated, Verdict.TRUNCATED, caplog, tmp_path)


def test_a_genuine_message_followed_by_plaintext_is_encrypted_as_a_whole(
    settings, pipeline, reader, vault_message, caplog, tmp_path
):
    with_trailer = vault_message + PLAINTEXT

    assert_encrypted_as_plaintext(settings, pipeline, reader, with_trailer, Verdict.TRAILING_BYTES, caplog, tmp_path)


def test_a_message_under_a_branch_key_this_stack_does_not_have_is_encrypted_as_plaintext(
    settings, pipeline, reader, clone_table, caplog, tmp_path
):
    # Another key store (another stack's, or one made for the purpose) with a branch key
    # whose id this stack's key store has never held.
    table = f"foreign-keystore-{uuid.uuid4().hex[:8]}"
    clone_table(boto3.client("dynamodb"), settings.keystore_table, table)
    foreign = BranchKeyStore(AwsClients(), table, table, settings.kms_key_arn, cache_ttl_seconds=60)
    scope = BranchKeyScope.instance(f"not-this-stack-{uuid.uuid4().hex[:8]}")
    foreign.ensure(scope)
    context = encryption_context(settings.account_id, "acme-support", "call-recording", settings.intake_bucket, "x.wav")
    message = encryption_client().encrypt(source=PLAINTEXT, keyring=foreign.keyring(scope.branch_key_id),
                                          encryption_context=context, frame_length=4096)[0]
    try:
        assert_encrypted_as_plaintext(settings, pipeline, reader, message, Verdict.UNKNOWN_BRANCH_KEY, caplog, tmp_path)
    finally:
        boto3.client("dynamodb").delete_table(TableName=table)


def test_a_message_naming_a_version_this_stacks_branch_key_does_not_have_is_encrypted_as_plaintext(
    settings, pipeline, reader, vault_message, caplog, tmp_path
):
    # This stack's branch key id, but a version its key store does not hold: shredded, or
    # made up (as here: the version inside the data key, swapped for another).
    edk = next(iter(read_header(vault_message).encrypted_data_keys)).encrypted_data_key
    at = vault_message.index(edk) + 28  # salt (16) | IV (12) | branch key version (16) | wrapped key
    unknown_version = vault_message[:at] + uuid.uuid4().bytes + vault_message[at + 16:]

    assert_encrypted_as_plaintext(settings, pipeline, reader, unknown_version, Verdict.UNKNOWN_BRANCH_KEY, caplog, tmp_path)


def test_a_genuine_vault_object_copied_into_the_intake_is_left_alone_and_kept_by_the_deployed_function(
    settings, vault_message, encrypt_handler
):
    # Through the handler as Lambda runs it, with the function's own role: verifying needs
    # no permission the function lacks.
    copy = upload(settings, vault_message)
    event = {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
        "account": settings.account_id, "time": "2026-11-30T05:00:00Z", "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{settings.intake_bucket}"],
        "detail": {"version": "0", "bucket": {"name": settings.intake_bucket},
                   "object": {"key": quote_plus(copy.key, safe="/"), "size": copy.size, "etag": copy.etag,
                              "version-id": copy.version_id, "sequencer": "0"},
                   "request-id": "R", "requester": settings.account_id, "reason": "PutObject"},
    }

    result = encrypt_handler(event)

    assert (result["outcome"], result["reason"]) == (Outcome.SKIPPED.value, SkipReason.ALREADY_ATREST_MESSAGE.value)
    assert intake_versions(settings, copy.key) == [copy.version_id]
    vault_key = str(VaultKey.of_source("call-recording", copy.bucket, copy.key, copy.version_id))
    assert boto3.client("s3").list_object_versions(Bucket=settings.vault_bucket, Prefix=vault_key).get("Versions", []) == []


def test_a_backfill_batch_encrypts_a_forged_message_instead_of_skipping_it(settings, vault_message, encrypt_handler):
    # The state machine's batches go through the same pipeline: a forged object is
    # encrypted on the first run, so no later run finds it again.
    forged = upload(settings, vault_message[:header_length(vault_message)] + PLAINTEXT)
    batch = {"Items": [{"Key": forged.key, "Etag": f'"{forged.etag}"', "Size": forged.size,
                        "LastModified": "2026-11-30T05:00:00Z"}],
             "BatchInput": {"bucket": settings.intake_bucket, "since": ""}}

    result = encrypt_handler(batch)

    assert result == {"objects": 1, "outcomes": {"encrypted": 1}}
    assert intake_versions(settings, forged.key) == []


def test_a_key_store_that_does_not_answer_is_retried_not_taken_for_a_forgery(settings, vault_message):
    clients = AwsClients()
    pipeline = EncryptPipeline.from_settings(settings, clients)

    def throttled(**_):
        raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "Decrypt")

    clients.kms.meta.events.register("before-send.kms", throttled)
    copy = upload(settings, vault_message)

    with pytest.raises(KeyStoreUnavailableError, match="ThrottlingException"):
        pipeline.encrypt(copy)

    assert intake_versions(settings, copy.key) == [copy.version_id]  # kept, for the retry to verify
    vault_key = str(VaultKey.of_source("call-recording", copy.bucket, copy.key, copy.version_id))
    assert boto3.client("s3").list_object_versions(Bucket=settings.vault_bucket, Prefix=vault_key).get("Versions", []) == []

