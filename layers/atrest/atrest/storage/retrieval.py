"""`RetrievalStore`: the retrieval bucket, where ReadObject leaves a plaintext copy for a
caller to fetch with a presigned URL, and the sweep that deletes copies older than
`RetrievalLifetimeMinutes` (SweepRetrievals, every 5 minutes). Plaintext rests there at
most lifetime + sweep period; the bucket's 1-day lifecycle rule is the backstop if the
sweep stops (docs/audit.md).

A copy carries the original object's Content-Type and user metadata, as `atrest decrypt`
restored them from the record (atrest.crypto.object_metadata), so whoever fetches it gets what
was uploaded; `atrest-request-id` names the read that made it."""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

from botocore.config import Config

from atrest.core.clock import Clock, SystemClock, to_text
from atrest.core.errors import AtrestError, ConfigurationError
from atrest.storage.records import ObjectRecord

log = logging.getLogger(__name__)

REQUEST_ID_KEY = "atrest-request-id"
# S3 user metadata: the UTF-8 bytes of every key and value, at most 2 KB.
MAX_USER_METADATA_BYTES = 2 * 1024
# A presigned URL is a bearer token for plaintext: short-lived, and never longer than the copy.
MAX_URL_SECONDS = 300
_CONTENT_TYPES = {".wav": "audio/wav", ".json": "application/json", ".txt": "text/plain", ".pdf": "application/pdf"}


@dataclass(frozen=True)
class Retrieval:
    key: str
    url: str
    expires_at: str


@dataclass(frozen=True)
class SweepReport:
    deleted: int
    kept: int
    oldest_deleted_seconds: float | None = None  # how old the oldest deleted copy was (a late sweep shows here)

    def as_dict(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "kept": self.kept, "oldest_deleted_seconds": self.oldest_deleted_seconds}


def copy_metadata(original: Mapping[str, str] | None, request_id: str) -> dict[str, str]:
    """A retrieval copy's user metadata: the original object's, and `atrest-request-id`,
    which no original key replaces (S3 metadata keys are case-insensitive). When both do
    not fit S3's 2 KB, the request id is kept and the original's left out (a warning
    without values): the copy must name its read; `atrest decrypt` still restores them."""
    ours = {REQUEST_ID_KEY: request_id[:128]}
    theirs = {k: v for k, v in (original or {}).items() if k.lower() != REQUEST_ID_KEY}
    merged = {**theirs, **ours}
    if sum(len(k.encode("utf-8")) + len(v.encode("utf-8")) for k, v in merged.items()) > MAX_USER_METADATA_BYTES:
        log.warning("original user metadata left off a retrieval copy: with its request id it exceeds S3's 2 KB",
                    extra={"metadata_keys": len(theirs)})
        return ours
    return merged


# What S3 (and most SDKs) record for an upload that named no type: it says nothing, so the
# file name's extension is a better answer for whoever opens the copy.
_GENERIC_CONTENT_TYPES = frozenset({"binary/octet-stream", "application/octet-stream"})


def _copy_content_type(recorded: str | None, name: str) -> str:
    if recorded and recorded.lower() not in _GENERIC_CONTENT_TYPES:
        return recorded
    return _CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")


def file_name(record: ObjectRecord) -> str:
    name = record.source_key.rsplit("/", 1)[-1] or "object"
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:200]


class RetrievalStore:
    """Plaintext copies for presigned URLs: written by ReadObject, deleted by the sweep."""

    def __init__(self, s3: Any, presigner: Any, bucket: str, lifetime_minutes: int, clock: Clock | None = None) -> None:
        self.s3 = s3
        self.presigner = presigner
        self.bucket = bucket
        self.lifetime = timedelta(minutes=lifetime_minutes)
        self.clock = clock or SystemClock()

    @classmethod
    def from_settings(cls, settings: Any, clients: Any, clock: Clock | None = None) -> "RetrievalStore":
        if not settings.retrieval_bucket:
            raise ConfigurationError(
                "ReadObject needs ATREST_RETRIEVAL_BUCKET (stack output RetrievalBucketName) to hand plaintext back"
            )
        # Presigned URLs are signed with SigV4 explicitly (whatever the SDK's default for the region).
        presigner = clients.session.client("s3", config=Config(signature_version="s3v4"))
        return cls(clients.s3, presigner, settings.retrieval_bucket, settings.retrieval_lifetime_minutes, clock)

    @property
    def url_seconds(self) -> int:
        return int(min(MAX_URL_SECONDS, self.lifetime.total_seconds()))

    def put(self, path: Path, record: ObjectRecord, request_id: str, content_type: str | None = None,
            metadata: Mapping[str, str] | None = None) -> Retrieval:
        """Copy the plaintext at `path` for the caller. `content_type` and `metadata` are the
        original object's (`DecryptResult`); without a recorded Content-Type, or with S3's
        generic default, the file name's extension decides."""
        name = file_name(record)
        key = f"{uuid.uuid4().hex}/{name}"
        self.s3.upload_file(
            str(path), self.bucket, key,
            ExtraArgs={
                "ContentType": _copy_content_type(content_type, name),
                "ContentDisposition": f'attachment; filename="{name}"',
                "ServerSideEncryption": "AES256",
                "Metadata": copy_metadata(metadata, request_id),
            },
        )
        seconds = self.url_seconds
        url = self.presigner.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=seconds
        )
        return Retrieval(key, url, to_text(self.clock.now() + timedelta(seconds=seconds)))

    def sweep(self) -> SweepReport:
        """Delete every copy older than the lifetime (by S3's LastModified, not the writer's clock)."""
        now = self.clock.now()
        cutoff = now - self.lifetime
        doomed: list[dict[str, str]] = []
        kept = 0
        oldest: float | None = None
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                if item["LastModified"] <= cutoff:
                    doomed.append({"Key": item["Key"]})
                    age = (now - item["LastModified"]).total_seconds()
                    oldest = age if oldest is None else max(oldest, age)
                else:
                    kept += 1
        for start in range(0, len(doomed), 1000):
            response = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": doomed[start:start + 1000], "Quiet": True})
            errors = response.get("Errors", [])
            if errors:
                raise AtrestError(
                    f"could not delete {len(errors)} expired retrieval copies "
                    f"({errors[0].get('Code')}); the next sweep retries them"
                )
        return SweepReport(len(doomed), kept, oldest)


