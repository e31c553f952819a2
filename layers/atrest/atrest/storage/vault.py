"""Where ciphertext lives: a streamed, checksummed, verified S3 writer (keys: `atrest.storage.vault_keys`)."""

from __future__ import annotations

import base64
import hashlib
import logging
import zlib
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Mapping

from botocore.exceptions import ClientError

from atrest.core.errors import StorageVerificationError

log = logging.getLogger(__name__)

MIB = 1024 * 1024
MAX_PARTS = 10_000  # S3's limit on the parts of one multipart upload
MAX_PART_SIZE = 5 * 1024 * MIB  # S3's largest part
# Parts uploading while the next one fills. Two keep the upload busy while the ESDK encrypts
# (bench/results.md); each costs one part of memory, and the 1 GiB peak-RSS target leaves
# room for about two 8 MiB parts above what the loaded code takes. A third, measured
# (bench/rss_probe.py, and 256 MiB in the region profile): 150.6 MiB at 1 GiB against 143.2,
# over the 150 MiB target, for 0.84x the plain copy's rate instead of 0.78x in that run.
PARTS_IN_FLIGHT = 2


def part_size_for(expected_size: int | None, configured: int) -> int:
    """The part size for an upload of about `expected_size` bytes.

    The configured size (8 MiB by default: 640 parts for a 5 GiB object) unless S3's
    10,000-part limit would be reached first; then the smallest whole number of MiB that
    fits (a 5 TiB object needs 525 MiB parts). A part is what MultipartWriter holds in memory.
    """
    if not expected_size or expected_size <= configured * MAX_PARTS:
        return configured
    needed = -(-expected_size // MAX_PARTS)
    return min(MAX_PART_SIZE, -(-needed // MIB) * MIB)


@dataclass(frozen=True)
class StoredObject:
    """A ciphertext object as stored and confirmed by S3."""

    bucket: str
    key: str
    version_id: str | None
    size: int
    sha256: str  # hex digest of the whole ciphertext (what a reader verifies the download against)
    s3_checksum: str  # S3's checksum: CRC32, of the object or composite of its parts ("<base64>-<parts>")


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode("ascii")


# What S3 checks each request body against. It guards the transfer: the record's SHA-256 of
# the whole ciphertext (computed once, while writing) is what a reader verifies, and the
# ESDK's tags authenticate every frame. A CRC costs a fraction of a SHA-256 pass
# (bench/results.md: ~5x here; more on CPUs without SHA extensions), as the S3 Encryption
# Client and boto3's own default do. Records written before issue 17 hold SHA-256 here.
CHECKSUM_ALGORITHM = "CRC32"
_CHECKSUM_FIELD = f"Checksum{CHECKSUM_ALGORITHM}"


def _crc32(data: bytes | bytearray) -> bytes:
    return zlib.crc32(data).to_bytes(4, "big")


class VaultKeyTaken(Exception):
    """A write made only if nothing was stored at the key found something there (S3's 412).

    Not an error by itself: an earlier delivery got there first. The writer still holds the
    body, so `MultipartWriter.overwrite()` can store it after all."""


class MultipartWriter:
    """Writes a stream to S3 in parts of `part_size`, at most `parts_in_flight` of them
    uploading while the next one fills.

    Small results go in one PutObject; larger ones in a multipart upload with a CRC32
    checksum per part (`CHECKSUM_ALGORITHM`). `close()` confirms S3's checksum equals the one computed while
    writing; any failure aborts the multipart upload, so no orphaned parts are left.

    Uploading a part takes a round trip and the part's transfer; encrypting the next one
    needs only the CPU. Overlapping them (boto3 clients are thread-safe; hashlib and the
    socket release the GIL) is what the transfer manager does for a plain copy. Memory: the
    filling part plus the parts in flight, each handed over without a copy, their buffers
    reused once uploaded (no growing and freeing 8 MiB blocks: peak RSS stays flat in the
    object's size, bench/results.md).

    `if_absent`: a single PutObject is made only if no object is at the key (S3 conditional
    write, `If-None-Match: *`); `close()` then raises `VaultKeyTaken` instead of writing over it.
    """

    def __init__(self, s3: Any, bucket: str, key: str, part_size: int, metadata: Mapping[str, str] | None = None,
                 *, if_absent: bool = False, parts_in_flight: int = PARTS_IN_FLIGHT):
        self.s3 = s3
        self.bucket = bucket
        self.key = key
        self.part_size = part_size
        self.metadata = dict(metadata or {})
        self.if_absent = if_absent
        self.parts_in_flight = max(1, parts_in_flight)
        # The part being filled: its first `_filled` bytes. The first grows as written (a small
        # object never takes a whole part); later ones are whole parts, reused (`_spare`).
        self._buffer = bytearray()
        self._filled = 0
        self._spare: list[bytearray] = []
        self._upload_id: str | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: deque[Future[dict[str, Any]]] = deque()
        self._parts: list[dict[str, Any]] = []
        self._part_digests: list[bytes] = []
        self._whole = hashlib.sha256()
        self._size = 0
        self.multipart = False  # True once the result went up in parts

    def __enter__(self) -> "MultipartWriter":
        return self

    def __exit__(self, exc_type: Any, *_: Any) -> None:
        if exc_type is not None:
            self.abort()
        self._shutdown()

    def write(self, data: bytes) -> None:
        self._whole.update(data)
        self._size += len(data)
        view = memoryview(data)
        while view:
            chunk = view[:self.part_size - self._filled]
            # Into the buffer in place (extending it while it is the first, growing one).
            self._buffer[self._filled:self._filled + len(chunk)] = chunk
            self._filled += len(chunk)
            view = view[len(chunk):]
            if self._filled == self.part_size:
                part = self._buffer
                self._buffer, self._filled = (self._spare.pop() if self._spare else bytearray(self.part_size)), 0
                self._send_part(part)

    def _take_filled(self) -> bytearray:
        """The buffer as filled so far, handed over (no copy); the writer starts an empty one."""
        part = self._buffer
        del part[self._filled:]
        self._buffer, self._filled = bytearray(), 0
        return part

    def _send_part(self, part: bytearray) -> None:
        if self._upload_id is None:
            self._upload_id = self.s3.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ChecksumAlgorithm=CHECKSUM_ALGORITHM, Metadata=self.metadata
            )["UploadId"]
            self.multipart = True
            self._pool = ThreadPoolExecutor(max_workers=self.parts_in_flight, thread_name_prefix="vault-part")
        while len(self._in_flight) >= self.parts_in_flight:
            self._collect(self._in_flight.popleft())
        number = len(self._parts) + len(self._in_flight) + 1
        assert self._pool is not None
        self._in_flight.append(self._pool.submit(self._upload_part, self._upload_id, number, part))

    def _upload_part(self, upload_id: str, number: int, part: bytearray) -> dict[str, Any]:
        digest = _crc32(part)
        response = self.s3.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=upload_id, PartNumber=number, Body=part,
            # Given, so botocore does not compute it again.
            ChecksumAlgorithm=CHECKSUM_ALGORITHM, **{_CHECKSUM_FIELD: _b64(digest)},
        )
        returned = response.get(_CHECKSUM_FIELD)
        if returned is not None and returned != _b64(digest):
            raise StorageVerificationError(f"S3 stored part {number} of s3://{self.bucket}/{self.key} with a different checksum")
        return {"PartNumber": number, "ETag": response["ETag"], _CHECKSUM_FIELD: _b64(digest), "digest": digest,
                "buffer": part}

    def _collect(self, future: "Future[dict[str, Any]]") -> None:
        part = future.result()  # a failed part raises here, in the writer's thread
        self._part_digests.append(part.pop("digest"))
        buffer = part.pop("buffer")
        if len(buffer) == self.part_size:  # a whole part's buffer fills the next one
            self._spare.append(buffer)
        self._parts.append(part)

    def close(self) -> StoredObject:
        if self._upload_id is None:
            return self._put_single()
        if self._filled:
            self._send_part(self._take_filled())
        while self._in_flight:
            self._collect(self._in_flight.popleft())
        response = self.s3.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
        )
        self._upload_id = None
        self._shutdown()
        expected = _b64(_crc32(b"".join(self._part_digests)))
        # S3 answers with the composite checksum of the parts ("<base64>-<parts>"), each part
        # already checked against the checksum sent with it: equal to ours, nothing is left
        # to read back. Without it (an older S3-compatible store, the local emulator), ask.
        returned = response.get(_CHECKSUM_FIELD)
        if returned is not None and returned.split("-")[0] == expected:
            return self._stored(response.get("VersionId"), returned)
        return self._confirm(response.get("VersionId"), expected, composite=True)

    def _put_single(self) -> StoredObject:
        body = self._buffer
        del body[self._filled:]
        digest = _crc32(body)
        kwargs: dict[str, Any] = {"IfNoneMatch": "*"} if self.if_absent else {}
        try:
            response = self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=body, ChecksumAlgorithm=CHECKSUM_ALGORITHM,
                                          Metadata=self.metadata, **{_CHECKSUM_FIELD: _b64(digest)}, **kwargs)
        except ClientError as error:
            if self.if_absent and error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                raise VaultKeyTaken(self.key) from None
            raise
        self._buffer, self._filled = bytearray(), 0
        expected = _b64(digest)
        returned = response.get(_CHECKSUM_FIELD)
        if returned is not None and returned == expected:
            return self._stored(response.get("VersionId"), returned)
        return self._confirm(response.get("VersionId"), expected, composite=False)

    def overwrite(self) -> StoredObject:
        """After `VaultKeyTaken`: store the same body without the condition (a new version)."""
        self.if_absent = False
        return self._put_single()

    def _confirm(self, version_id: str | None, expected: str, composite: bool) -> StoredObject:
        """Read back S3's own checksum of what it stored and compare it with ours."""
        kwargs = {"VersionId": version_id} if version_id and version_id != "null" else {}
        head = self.s3.head_object(Bucket=self.bucket, Key=self.key, ChecksumMode="ENABLED", **kwargs)
        stored = head.get(_CHECKSUM_FIELD) or ""
        # Composite checksums read "<base64>-<parts>" on S3; compare the digest part.
        digest = stored.split("-")[0] if composite else stored
        if head.get("ContentLength") != self._size or digest != expected:
            raise StorageVerificationError(
                f"s3://{self.bucket}/{self.key} was stored with size {head.get('ContentLength')} and checksum "
                f"{stored or 'none'}, expected {self._size} and {expected}; the source is kept"
            )
        return self._stored(version_id, stored)

    def _stored(self, version_id: str | None, checksum: str) -> StoredObject:
        return StoredObject(self.bucket, self.key, version_id, self._size, self._whole.hexdigest(), checksum)

    def abort(self) -> None:
        for future in self._in_flight:
            future.cancel()
        for future in self._in_flight:  # a part still uploading would land after the abort
            try:
                future.result()
            except Exception:  # the abort below is what matters now
                pass
        self._in_flight.clear()
        self._shutdown()
        if self._upload_id is None:
            return
        try:
            self.s3.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self._upload_id)
        except Exception:  # the bucket's lifecycle rule removes what we could not
            log.warning("could not abort multipart upload", extra={"vault_key": self.key}, exc_info=True)
        self._upload_id = None

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def abort_open_uploads(s3: Any, bucket: str, key: str) -> int:
    """Abort every multipart upload still open at exactly `key`; returns how many.

    A writer killed mid-upload (a Lambda that timed out or ran out of memory) cannot
    abort its own upload; its parts would be billed until the bucket's lifecycle rule
    removes them a day later.
    """
    aborted = 0
    for page in s3.get_paginator("list_multipart_uploads").paginate(Bucket=bucket, Prefix=key):
        for upload in page.get("Uploads", []):
            if upload["Key"] == key:
                s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"])
                aborted += 1
    return aborted


def other_versions(s3: Any, bucket: str, key: str, keep: str) -> list[str]:
    """The version ids stored at exactly `key` other than `keep` (delete markers excluded)."""
    found = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        found += [v["VersionId"] for v in page.get("Versions", []) if v["Key"] == key and v["VersionId"] != keep]
    return found
