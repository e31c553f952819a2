"""The vault writer on the emulator: parts upload while the next ones fill, a failed part
leaves nothing behind, S3's own answers confirm the checksum, and a write made only if the
key is free says when it is not."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from typing import Any

import boto3
import pytest

from atrest.core.errors import StorageVerificationError
from atrest.storage.vault import CHECKSUM_ALGORITHM, MultipartWriter, VaultKeyTaken

pytestmark = pytest.mark.local_only("writes scratch keys into the vault bucket")

MiB = 1024 * 1024
PART = 5 * MiB  # S3's smallest part


@pytest.fixture
def s3() -> Any:
    return boto3.client("s3")


@pytest.fixture
def key() -> str:
    return f"scratch/vault-writer/{uuid.uuid4()}"


def operations(s3: Any) -> list[str]:
    """The names of the S3 operations `s3` makes from now on, in order."""
    made: list[str] = []
    s3.meta.events.register("before-call.s3", lambda model, **_: made.append(model.name))
    return made


def open_uploads(s3: Any, bucket: str, key: str) -> list[str]:
    listing = s3.list_multipart_uploads(Bucket=bucket, Prefix=key)
    return [u["UploadId"] for u in listing.get("Uploads", []) if u["Key"] == key]


def write(writer: MultipartWriter, data: bytes, chunk: int = MiB) -> None:
    for start in range(0, len(data), chunk):
        writer.write(data[start:start + chunk])


def test_two_parts_upload_at_once_and_the_object_is_what_was_written(settings, s3, key):
    data = os.urandom(3 * PART + 123)
    # Each of the first two part uploads waits until the other has started: only writers
    # that keep two parts in flight get past it (one at a time breaks the barrier's timeout).
    both_started = threading.Barrier(2, timeout=30)

    def meet(params: dict[str, Any], **_: Any) -> None:
        if params["PartNumber"] <= 2:
            both_started.wait()

    s3.meta.events.register("before-parameter-build.s3.UploadPart", meet)
    with MultipartWriter(s3, settings.vault_bucket, key, PART) as writer:
        write(writer, data)
        stored = writer.close()

    assert not both_started.broken
    body = s3.get_object(Bucket=settings.vault_bucket, Key=key, VersionId=stored.version_id)["Body"].read()
    assert body == data
    assert (stored.size, stored.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert stored.s3_checksum.endswith("-4")  # S3's composite checksum of the four parts


def test_the_completed_upload_is_confirmed_from_s3s_answer_without_reading_it_back(settings, s3, key):
    made = operations(s3)
    with MultipartWriter(s3, settings.vault_bucket, key, PART) as writer:
        write(writer, os.urandom(2 * PART))
        writer.close()

    assert made == ["CreateMultipartUpload", "UploadPart", "UploadPart", "CompleteMultipartUpload"]


def test_a_part_that_fails_aborts_the_upload_and_leaves_nothing_at_the_key(settings, s3, key):
    def refuse_part_two(params: dict[str, Any], **_: Any) -> None:
        if params["PartNumber"] == 2:
            raise ConnectionError("part 2 lost")

    s3.meta.events.register("before-parameter-build.s3.UploadPart", refuse_part_two)
    with pytest.raises(ConnectionError, match="part 2 lost"):
        with MultipartWriter(s3, settings.vault_bucket, key, PART) as writer:
            write(writer, os.urandom(4 * PART))
            writer.close()

    assert open_uploads(s3, settings.vault_bucket, key) == []
    assert s3.list_object_versions(Bucket=settings.vault_bucket, Prefix=key).get("Versions", []) == []


def test_a_part_s3_stores_with_another_checksum_is_refused(settings, s3, key):
    def corrupt(http_response: Any, model: Any, parsed: dict[str, Any], **_: Any) -> None:
        if model.name == "UploadPart":
            field = f"Checksum{CHECKSUM_ALGORITHM}"
            parsed[field] = "AAAAAA==" if parsed.get(field) != "AAAAAA==" else "BBBBBB=="

    s3.meta.events.register("after-call.s3.UploadPart", corrupt)
    with pytest.raises(StorageVerificationError, match="different checksum"):
        with MultipartWriter(s3, settings.vault_bucket, key, PART) as writer:
            write(writer, os.urandom(2 * PART + 1))
            writer.close()

    assert open_uploads(s3, settings.vault_bucket, key) == []


def test_a_write_made_only_if_the_key_is_free_says_when_it_is_not_and_can_still_be_stored(settings, s3, key):
    with MultipartWriter(s3, settings.vault_bucket, key, PART, if_absent=True) as writer:
        writer.write(b"first")
        first = writer.close()
    made = operations(s3)

    second = MultipartWriter(s3, settings.vault_bucket, key, PART, if_absent=True)
    second.write(b"second")
    with pytest.raises(VaultKeyTaken):
        second.close()
    stored = second.overwrite()

    assert made == ["PutObject", "PutObject"]  # no HEAD before, none after: S3's answer confirms it
    versions = s3.list_object_versions(Bucket=settings.vault_bucket, Prefix=key)["Versions"]
    assert {v["VersionId"] for v in versions} == {first.version_id, stored.version_id}
    assert s3.get_object(Bucket=settings.vault_bucket, Key=key)["Body"].read() == b"second"
