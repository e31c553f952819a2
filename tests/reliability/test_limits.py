"""Limits: huge objects are streamed, not buffered; the longest keys S3 allows and the
characters S3 events encode round-trip; an empty object is fine; what decides "already
encrypted" is the message header, never metadata someone can set.

Also covered in tests/integration/test_encrypt_pipeline.py: a 0-byte object
(test_a_zero_byte_object_is_encrypted_and_decrypts_to_nothing), an atrest message copied
into the intake without its metadata (test_an_atrest_message_copied_into_the_intake_is_not_encrypted_again_nor_deleted).
"""

from __future__ import annotations

import tracemalloc
import uuid

import pytest
from botocore.exceptions import ClientError

from atrest.core.clients import AwsClients
from atrest.flows.encrypt_object import EncryptPipeline, Outcome
from atrest.storage.intake import SourceObject
from atrest.storage.records import ObjectStatus
from atrest.storage.vault import MAX_PARTS, part_size_for
from atrest.storage.vault_keys import VaultKey

from probes import decrypt, record_of, recording_key, source_versions, upload, vault_key_of

pytestmark = pytest.mark.local_only("runs the functions with the local runner")

MIB = 1024 * 1024
GIB = 1024 * MIB
TIB = 1024 * GIB


# --------------------------------------------------------------------------- size


@pytest.mark.parametrize("size", [0, 1, 8 * MIB, 5 * GIB, 78 * GIB, 100 * GIB, 5 * TIB])
def test_every_object_up_to_5_tib_fits_in_10000_parts(size):
    part = part_size_for(size, 8 * MIB)
    assert part >= 8 * MIB and part % MIB == 0 and part <= 5 * GIB
    assert -(-size // part) <= MAX_PARTS


def test_the_configured_part_size_holds_until_10000_parts_would_not_suffice():
    assert part_size_for(None, 8 * MIB) == 8 * MIB
    assert part_size_for(5 * GIB, 8 * MIB) == 8 * MIB  # 640 parts
    assert part_size_for(8 * MIB * MAX_PARTS, 8 * MIB) == 8 * MIB
    assert part_size_for(8 * MIB * MAX_PARTS + 1, 8 * MIB) == 9 * MIB
    assert part_size_for(5 * TIB, 8 * MIB) == 525 * MIB


class GeneratedBody:
    """The body of a 5 GiB object, made up as it is read; the connection drops after `drop_after` bytes."""

    def __init__(self, size: int, drop_after: int) -> None:
        self.size, self.drop_after, self.position = size, drop_after, 0
        self._block = bytes(range(256)) * 4096  # 1 MiB of non-repeating-looking bytes

    def read(self, amount: int = -1) -> bytes:
        if self.position >= self.drop_after:
            raise ConnectionResetError(f"connection reset after {self.position} bytes")
        amount = min(self.size - self.position, len(self._block) if amount is None or amount < 0 else amount)
        amount = min(amount, len(self._block), self.drop_after - self.position)
        self.position += amount
        return self._block[:amount]

    def close(self) -> None:
        pass


class CountingVault:
    """S3 for a pipeline whose source is generated and whose parts are counted, not stored."""

    def __init__(self, body: GeneratedBody, version_id: str) -> None:
        self.body, self.version_id = body, version_id
        self.part_sizes: list[int] = []
        self.aborted: list[str] = []

    def get_object(self, **_):
        return {"Body": self.body, "ContentLength": self.body.size, "VersionId": self.version_id}

    def head_object(self, **_):  # nothing in the vault yet
        raise ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, "HeadObject")

    def create_multipart_upload(self, **_):
        return {"UploadId": "upload-1"}

    def upload_part(self, Body, PartNumber, **_):
        self.part_sizes.append(len(Body))
        return {"ETag": f'"{PartNumber}"'}

    def abort_multipart_upload(self, UploadId, **_):
        self.aborted.append(UploadId)


class ClientsWithS3(AwsClients):
    def __init__(self, s3) -> None:
        super().__init__()
        self._s3 = s3

    @property
    def s3(self):
        return self._s3


def test_a_5_gib_object_declared_in_its_event_is_streamed_in_parts_and_never_held_in_memory(settings):
    declared = 5 * GIB
    read_before_drop = 160 * MIB
    body = GeneratedBody(declared, drop_after=read_before_drop)
    vault = CountingVault(body, version_id=uuid.uuid4().hex)
    pipeline = EncryptPipeline.from_settings(settings, ClientsWithS3(vault))
    source = SourceObject(settings.intake_bucket, recording_key(settings), vault.version_id, None, declared)

    tracemalloc.start()
    try:
        with pytest.raises(ConnectionResetError):
            pipeline.encrypt(source)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert body.position == read_before_drop
    assert vault.part_sizes and set(vault.part_sizes) == {part_size_for(declared, settings.part_size)}
    assert len(vault.part_sizes) >= read_before_drop // settings.part_size - 2, "parts must go up while reading"
    assert peak < 64 * MIB, f"peak {peak / MIB:.0f} MiB: the object is being buffered"
    assert vault.aborted == ["upload-1"], "the multipart upload of a failed stream must be aborted"
    assert record_of(settings, VaultKey.of_source("call-recording", source.bucket, source.key, source.version_id)) is None


# --------------------------------------------------------------------------- keys and content


def key_of_exactly_1024_bytes(prefix: str) -> str:
    stem = f"{prefix}politique+retour été 100% ✓ 5:00 {uuid.uuid4().hex}/"
    tail = ".pdf"
    room = 1024 - len(stem.encode()) - len(tail)
    key = stem + "é" * (room // 2) + "x" * (room % 2) + tail
    assert len(key.encode("utf-8")) == 1024
    return key


def test_a_1024_byte_key_with_unicode_plus_and_percent_and_an_empty_object_flow_through_events_and_round_trip(
    settings, local_runner, tmp_path
):
    longest = upload(settings, key_of_exactly_1024_bytes(settings.knowledge_prefix), b"%PDF-1.7 politique")
    empty = upload(settings, recording_key(settings), b"")

    stats = local_runner.drain(timeout=60)

    assert stats.failed_invocations == 0
    for source, data_class, body in ((longest, "knowledge-document", b"%PDF-1.7 politique"), (empty, "call-recording", b"")):
        record = record_of(settings, vault_key_of(source, data_class))
        assert record is not None and record.source_key == source.key
        assert record.encryption_context["atrest:source-key"] == source.key
        assert record.status is ObjectStatus.SOURCE_DELETED
        assert decrypt(settings, record.vault_key, tmp_path) == body


def test_plaintext_carrying_atrest_metadata_is_still_encrypted_and_removed(settings, tmp_path):
    forged = upload(settings, recording_key(settings), b"plaintext pretending to be ciphertext",
                    Metadata={"atrest-format": "esdk", "atrest-data-class": "call-recording"})

    outcome = EncryptPipeline.from_settings(settings).encrypt(forged)

    assert outcome.outcome is Outcome.ENCRYPTED
    assert source_versions(settings, forged.key) == []
    assert decrypt(settings, outcome.vault_key, tmp_path) == b"plaintext pretending to be ciphertext"
