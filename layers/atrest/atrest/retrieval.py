"""`RetrievalStore`: the retrieval bucket, where ReadObject leaves a plaintext copy for a
caller to fetch with a presigned URL, and the sweep that deletes copies older than
`RetrievalLifetimeMinutes` (SweepRetrievals, every 5 minutes). Plaintext rests there at
most lifetime + sweep period; the bucket's 1-day lifecycle rule is the backstop if the
sweep stops (docs/audit.md)."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from botocore.config import Config

from atrest.clock import Clock, SystemClock, to_text
from atrest.errors import AtrestError, ConfigurationError
from atrest.records import ObjectRecord

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

    def put(self, path: Path, record: ObjectRecord, request_id: str) -> Retrieval:
        name = file_name(record)
        key = f"{uuid.uuid4().hex}/{name}"
        self.s3.upload_file(
            str(path), self.bucket, key,
            ExtraArgs={
                "ContentType": _CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream"),
                "ContentDisposition": f'attachment; filename="{name}"',
                "ServerSideEncryption": "AES256",
                "Metadata": {"atrest-request-id": request_id[:128]},
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


