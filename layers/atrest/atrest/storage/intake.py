"""`SourceObject`: one version of one object in the intake bucket, and a counted, hashed reader over it."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SourceObject:
    """An object version to encrypt, as an event or a listing describes it (key already decoded)."""

    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None

    def describe(self) -> str:
        version = f" (version {self.version_id})" if self.version_id else ""
        return f"s3://{self.bucket}/{self.key}{version}"

    def as_dict(self) -> dict[str, Any]:
        return {"bucket": self.bucket, "key": self.key, "version_id": self.version_id, "etag": self.etag, "size": self.size}


class PlaintextStream(io.RawIOBase):
    """Reads a streaming S3 body after a peeked prefix, counting what passes (the keyed
    checksum is taken where the plaintext enters the encryption stream: atrest.crypto.checksums).

    The ESDK pulls from this object frame by frame; nothing holds more than one read.
    """

    def __init__(self, prefix: bytes, body: Any) -> None:
        self._prefix = prefix
        self._body = body
        self.size = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        if self._prefix:
            if size is None or size < 0 or size >= len(self._prefix):
                chunk, self._prefix = self._prefix, b""
                if size is not None and size > len(chunk):
                    chunk += self._body.read(size - len(chunk))
                elif size is None or size < 0:
                    chunk += self._body.read()
            else:
                chunk, self._prefix = self._prefix[:size], self._prefix[size:]
        else:
            chunk = self._body.read(size) if size is not None and size >= 0 else self._body.read()
        self.size += len(chunk)
        return chunk

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)
