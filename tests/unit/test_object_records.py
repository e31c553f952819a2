"""An object record's item: what it stores once, and what it rebuilds."""

from __future__ import annotations

from boto3.dynamodb.types import TypeSerializer

from atrest.catalog.bindings import encryption_context
from atrest.storage.record_keys import object_index_entries
from atrest.storage.records import ObjectRecord, ObjectStatus
from atrest.storage.vault_keys import VaultKey

SOURCE_KEY = "connect/acme/CallRecordings/2026/12/03/0c8f4a6e-9a3b-4f1e-8d2c-5b7a1e3c9f01_20261203T10:24_UTC.wav"


def record(**changes) -> ObjectRecord:
    vault_key = str(VaultKey.of_source("call-recording", "intake", SOURCE_KEY, "v1"))
    fields = dict(
        vault_bucket="vault", vault_key=vault_key, vault_version_id="vv1", source_bucket="intake",
        source_key=SOURCE_KEY, source_version_id="v1", source_etag="e", data_class="call-recording",
        scope="account/123456789012", branch_key_id="account/123456789012", branch_key_version="bkv",
        suite="S", frame_length=1048576, plaintext_size=10, ciphertext_size=20, ciphertext_sha256="c",
        s3_checksum="k", encryption_context=encryption_context("123456789012", "acme", "call-recording", "intake",
                                                               SOURCE_KEY),
        encrypted_at="2026-12-03T10:24:29.123Z", instance="acme", contact_id="0c8f4a6e", plaintext_hmac="h")
    return ObjectRecord(**(fields | changes))


def test_the_vault_key_and_the_encryption_context_are_stored_once_and_read_back_whole():
    written = record()
    item = written.to_item()

    assert "vault_key" not in item and "encryption_context" not in item
    assert item["account"] == {"S": "123456789012"}
    assert ObjectRecord.from_item(item) == written


def test_a_context_the_fields_do_not_name_is_stored_as_it_is():
    # Not what atrest writes; a record must still say what its message is bound to.
    unusual = record(encryption_context={"atrest:account": "123456789012", "other": "x"})
    item = unusual.to_item()

    assert "encryption_context" in item and "account" not in item
    assert ObjectRecord.from_item(item) == unusual


def test_records_written_before_read_the_same():
    # Earlier records hold the vault key and the context as attributes, and index sort keys
    # ending in the vault key.
    written = record(status=ObjectStatus.SOURCE_DELETED, source_removed_at="2026-12-03T10:24:30.000Z")
    old = {k: v for k, v in written.to_item().items() if k != "account"}
    serialize = TypeSerializer().serialize
    old |= {"vault_key": serialize(written.vault_key), "encryption_context": serialize(written.encryption_context)}
    sort = f"{written.encrypted_at}#{written.vault_key}"
    old |= {name: {"S": sort} for name in ("gsi1sk", "gsi2sk", "gsi3sk")}

    assert ObjectRecord.from_item(old) == written


def test_index_entries_sort_by_time_alone():
    entries = object_index_entries("call-recording/ab/x.esdk", "2026-12-03T10:24:29.123Z", "account/1", "v",
                                   "c1", "intake", SOURCE_KEY)
    assert {entries[name] for name in ("gsi1sk", "gsi2sk", "gsi3sk")} == {"2026-12-03T10:24:29.123Z"}
