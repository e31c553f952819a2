"""Object records hold a keyed checksum of the plaintext, never an unsalted hash.

An unsalted SHA-256 in the metadata table would let anyone who can read the table confirm
a guessed document. Records hold `plaintext_hmac` (atrest.crypto.checksums) instead; decrypt and
ReadObject still verify the plaintext with it, and records written before keep verifying
with their SHA-256. Objects go through the deployed handlers, so the functions' IAM roles
(enforced by the local stack) must allow the beacon key reads this needs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from aws_cryptographic_material_providers.keystore import KeyStore
from aws_cryptographic_material_providers.keystore.config import KeyStoreConfig
from aws_cryptographic_material_providers.keystore.models import (
    Discovery, GetBeaconKeyInput, KMSConfigurationDiscovery,
)

from atrest.core.errors import DecryptRefusedError
from atrest.crypto.checksums import PURPOSE, ChecksumKey
from atrest.flows.decrypt_object import VaultReader
from atrest.storage.record_keys import is_object_item, object_key, vault_key_of
from atrest_cli.demos.reads import catalog_with_decryptors, fetch, read_object_event, role_session_arn
from atrest_cli.demos.samples import chat_transcript, connect_key

pytestmark = pytest.mark.local_only("invokes the functions' handlers in this process")

WHEN = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)


# --------------------------------------------------------------------------- helpers


def object_created(bucket: str, key: str, version_id: str) -> dict[str, Any]:
    return {
        "version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created", "source": "aws.s3",
        "account": "123456789012", "time": "2026-11-30T05:00:00Z", "region": "us-east-1",
        "resources": [f"arn:aws:s3:::{bucket}"],
        "detail": {"version": "0", "bucket": {"name": bucket},
                   "object": {"key": quote_plus(key, safe="/"), "size": 0, "etag": "0" * 32, "version-id": version_id, "sequencer": "0"},
                   "request-id": "R", "requester": "123456789012", "reason": "PutObject"},
    }


def sqs_batch(event: dict[str, Any]) -> dict[str, Any]:
    return {"Records": [
        {"messageId": "m0", "receiptHandle": "h0", "body": json.dumps(event),
         "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": "0", "SenderId": "x",
                        "ApproximateFirstReceiveTimestamp": "0"},
         "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
         "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:q", "awsRegion": "us-east-1"}]}


def encrypt_through_handler(settings: Any, encrypt_handler: Any, key: str, body: bytes) -> str:
    """The vault key of `body` uploaded at `key` and encrypted by EncryptObjectFunction (its role)."""
    version = boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=body)["VersionId"]
    response = encrypt_handler(sqs_batch(object_created(settings.intake_bucket, key, version)))
    assert response == {"batchItemFailures": []}, response
    items = [item for item in boto3.client("dynamodb").scan(
        TableName=settings.metadata_table, FilterExpression="source_key = :k",
        ExpressionAttributeValues={":k": {"S": key}})["Items"] if is_object_item(item)]
    assert len(items) == 1, items
    return vault_key_of(items[0])


def transcript(settings: Any, contact_id: str | None = None) -> tuple[str, bytes]:
    contact_id = contact_id or str(uuid.uuid4())
    key = connect_key(settings.connect_prefix, "acme", "ChatTranscripts", contact_id, WHEN, "json")
    return key, chat_transcript(settings.account_id, "11111111-2222-3333-4444-555555555555", contact_id, WHEN)


def raw_item(settings: Any, vault_key: str) -> dict[str, Any]:
    return boto3.client("dynamodb").get_item(
        TableName=settings.metadata_table, Key=object_key(vault_key),
        ConsistentRead=True)["Item"]


def update_record(settings: Any, vault_key: str, expression: str, values: dict[str, Any] | None = None) -> None:
    """What someone with write access to the metadata table could do (or an old record looks like)."""
    kwargs: dict[str, Any] = {"ExpressionAttributeValues": values} if values else {}
    boto3.client("dynamodb").update_item(
        TableName=settings.metadata_table, Key=object_key(vault_key),
        UpdateExpression=expression, **kwargs)


def as_old_style_record(settings: Any, vault_key: str, sha256_hex: str) -> None:
    """The record as the pipeline wrote it before keyed checksums: an unsalted SHA-256, no HMAC."""
    update_record(settings, vault_key, "REMOVE plaintext_hmac SET plaintext_sha256 = :h", {":h": {"S": sha256_hex}})


def strings_in(value: Any) -> list[str]:
    """Every string and binary value anywhere in a DynamoDB item (maps, lists, sets), as text."""
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings_in(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings_in(v)]
    if isinstance(value, (bytes, bytearray)):
        return [value.hex(), base64.b64encode(value).decode()]
    return [str(value)]


def beacon_key(settings: Any, branch_key_id: str) -> bytes:
    """The branch key's beacon key, read the way the MPL reads it (test side only)."""
    store = KeyStore(config=KeyStoreConfig(
        ddb_table_name=settings.keystore_table, logical_key_store_name=settings.keystore_name,
        kms_configuration=KMSConfigurationDiscovery(Discovery()), kms_client=boto3.client("kms"),
        ddb_client=boto3.client("dynamodb")))
    return bytes(store.get_beacon_key(GetBeaconKeyInput(branch_key_identifier=branch_key_id))
                 .beacon_key_materials.beacon_key)


def decrypt(settings: Any, vault_key: str, output: Path) -> bytes:
    VaultReader.from_settings(settings).decrypt_to_file(settings.vault_bucket, vault_key, output)
    return output.read_bytes()


# --------------------------------------------------------------------------- the record


def test_a_record_holds_no_unsalted_hash_of_its_plaintext_anywhere(settings, encrypt_handler):
    key, body = transcript(settings)
    vault_key = encrypt_through_handler(settings, encrypt_handler, key, body)

    item = raw_item(settings, vault_key)
    digest = hashlib.sha256(body).digest()
    forms = {digest.hex(), digest.hex().upper(), base64.b64encode(digest).decode()}
    found = [(name, form) for name, value in item.items() for text in strings_in(value) for form in forms
             if form in text]
    assert found == [], f"the record holds an unsalted SHA-256 of its plaintext in {found}"
    assert "plaintext_sha256" not in item


def test_the_keyed_checksum_is_an_hmac_under_a_key_derived_from_the_beacon_key_not_the_beacon_key_itself(
        settings, encrypt_handler):
    key, body = transcript(settings)
    vault_key = encrypt_through_handler(settings, encrypt_handler, key, body)

    item = raw_item(settings, vault_key)
    beacon = beacon_key(settings, item["branch_key_id"]["S"])
    derived = hmac.new(beacon, PURPOSE, hashlib.sha256).digest()
    assert item["plaintext_hmac"]["S"] == hmac.new(derived, body, hashlib.sha256).hexdigest()
    assert item["plaintext_hmac"]["S"] != hmac.new(beacon, body, hashlib.sha256).hexdigest()


def test_a_checksum_key_never_shows_its_material():
    key = ChecksumKey.from_beacon_key(bytes(range(32)))
    material = hmac.new(bytes(range(32)), PURPOSE, hashlib.sha256).digest()
    for shown in (repr(key), str(key), f"{key}", f"{key!r}"):
        assert material.hex() not in shown and "hidden" in shown


# --------------------------------------------------------------------------- decrypt verifies with it


def test_decrypt_refuses_an_object_whose_stored_keyed_checksum_was_changed_and_writes_nothing(
        settings, encrypt_handler, tmp_path):
    key, body = transcript(settings)
    vault_key = encrypt_through_handler(settings, encrypt_handler, key, body)
    stored = raw_item(settings, vault_key)["plaintext_hmac"]["S"]
    update_record(settings, vault_key, "SET plaintext_hmac = :h", {":h": {"S": stored[:-1] + ("0" if stored[-1] != "0" else "1")}})

    with pytest.raises(DecryptRefusedError, match="checksum differs from its record"):
        decrypt(settings, vault_key, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_decrypt_refuses_a_record_stripped_of_every_plaintext_checksum(settings, encrypt_handler, tmp_path):
    key, body = transcript(settings)
    vault_key = encrypt_through_handler(settings, encrypt_handler, key, body)
    update_record(settings, vault_key, "REMOVE plaintext_hmac")

    with pytest.raises(DecryptRefusedError, match="holds no checksum"):
        decrypt(settings, vault_key, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_a_record_written_before_keyed_checksums_still_decrypts_and_verifies_with_its_sha256(
        settings, encrypt_handler, tmp_path):
    key, body = transcript(settings)
    vault_key = encrypt_through_handler(settings, encrypt_handler, key, body)
    as_old_style_record(settings, vault_key, hashlib.sha256(body).hexdigest())

    assert decrypt(settings, vault_key, tmp_path / "old") == body

    as_old_style_record(settings, vault_key, hashlib.sha256(body + b"x").hexdigest())
    with pytest.raises(DecryptRefusedError, match="checksum differs from its record"):
        decrypt(settings, vault_key, tmp_path / "edited")
    assert not (tmp_path / "edited").exists()


def test_a_service_owned_object_gets_a_keyed_checksum_from_the_service_key_store(settings, encrypt_handler, tmp_path):
    body = b"voiceprint template " + uuid.uuid4().bytes
    vault_key = encrypt_through_handler(settings, encrypt_handler, f"voiceprints/{uuid.uuid4()}.bin", body)

    item = raw_item(settings, vault_key)
    assert item["branch_key_id"]["S"].startswith("service/")
    assert len(item["plaintext_hmac"]["S"]) == 64 and "plaintext_sha256" not in item
    assert decrypt(settings, vault_key, tmp_path / "voiceprint") == body


# --------------------------------------------------------------------------- ReadObject


@pytest.fixture(scope="module")
def read_object(local_stack: Any, emulator: Any, tmp_path_factory: Any) -> Any:
    """ReadObjectFunction in-process under its own role, chat transcripts readable by QaReviewer."""
    from atrest_cli.local.lambda_runtime import InProcessFunction

    catalog = catalog_with_decryptors(tmp_path_factory.mktemp("catalog") / "data-classes.json",
                                      {"chat-transcript": ["QaReviewer"]})
    return InProcessFunction(local_stack.function("ReadObjectFunction"),
                             {**emulator.environment(), "ATREST_DATA_CLASSES_FILE": str(catalog)})


def read_by_contact(read_object: Any, local_stack: Any, contact_id: str) -> tuple[int, dict[str, Any]]:
    caller = role_session_arn(local_stack.account_id, "QaReviewer", "jane")
    invocation = read_object.invoke(read_object_event(
        caller, {"reason": "test: keyed checksums", "contact_id": contact_id},
        account_id=local_stack.account_id, region=local_stack.region))
    assert invocation.succeeded, invocation.error
    return invocation.response["statusCode"], json.loads(invocation.response["body"])


def test_read_object_gives_the_sha256_of_the_plaintext_it_staged(settings, local_stack, encrypt_handler, read_object):
    contact_id = str(uuid.uuid4())
    key, body = transcript(settings, contact_id)
    encrypt_through_handler(settings, encrypt_handler, key, body)

    status, answer = read_by_contact(read_object, local_stack, contact_id)

    assert status == 200, answer
    [entry] = answer["objects"]
    assert fetch(entry["url"]) == body
    assert entry["sha256"] == hashlib.sha256(body).hexdigest()


def test_read_object_still_reads_a_record_written_before_keyed_checksums(settings, local_stack, encrypt_handler,
                                                                          read_object):
    contact_id = str(uuid.uuid4())
    key, body = transcript(settings, contact_id)
    vault_key = encrypt_through_handler(settings, encrypt_handler, key, body)
    as_old_style_record(settings, vault_key, hashlib.sha256(body).hexdigest())

    status, answer = read_by_contact(read_object, local_stack, contact_id)

    assert status == 200, answer
    assert fetch(answer["objects"][0]["url"]) == body


def test_read_object_refuses_an_object_whose_keyed_checksum_was_changed(settings, local_stack, encrypt_handler,
                                                                        read_object):
    contact_id = str(uuid.uuid4())
    key, body = transcript(settings, contact_id)
    vault_key = encrypt_through_handler(settings, encrypt_handler, key, body)
    update_record(settings, vault_key, "SET plaintext_hmac = :h", {":h": {"S": "0" * 64}})

    status, answer = read_by_contact(read_object, local_stack, contact_id)

    assert status == 422, answer
    assert "url" not in answer["objects"][0]
