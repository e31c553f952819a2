"""Keyed plaintext checksums: what an object record holds to prove a decrypt gave back the
bytes that were encrypted, without telling anyone who reads the metadata table what they were.

An unsalted SHA-256 of the plaintext lets anyone with read access to the table confirm a
guessed document (a short transcript, a form letter). The record holds instead
`plaintext_hmac`: HMAC-SHA256 of the plaintext under a `ChecksumKey`, which is derived from
the branch key's beacon key (the MPL key store keeps one per branch key, `beacon:ACTIVE`,
wrapped by KMS like the branch key versions; rotation keeps it, only forgetting the whole
branch key deletes it). Without KMS Decrypt on the key store's key, a checksum confirms nothing.

The beacon key is not used raw: the MPL made it for searchable-encryption beacons, and a key
bound to one purpose (`PURPOSE`) cannot be confused with another use of it.

Records written before this (`plaintext_sha256`) still verify with SHA-256 (docs/reliability.md).
"""

from __future__ import annotations

import hashlib
import hmac
import io
from typing import Any, Protocol

# Changing the derivation means a new label and a new record attribute; never reuse this one.
PURPOSE = b"atrest plaintext checksum v1"


class _Digest(Protocol):
    def update(self, data: bytes) -> None: ...

    def hexdigest(self) -> str: ...


class ChecksumKey:
    """The purpose-bound key of one branch key. Its `repr` and `str` never show the key."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        self._key = bytes(key)

    @classmethod
    def from_beacon_key(cls, beacon_key: bytes | bytearray) -> "ChecksumKey":
        if len(beacon_key) < 32:
            raise ValueError("a beacon key is 32 bytes; the key store returned a shorter one")
        return cls(hmac.new(bytes(beacon_key), PURPOSE, hashlib.sha256).digest())

    def new(self) -> "hmac.HMAC":
        """A fresh HMAC-SHA256 to feed the plaintext to."""
        return hmac.new(self._key, digestmod=hashlib.sha256)

    def __repr__(self) -> str:
        return "ChecksumKey(<hidden>)"

    __str__ = __repr__


def same_checksum(expected: str | None, actual: str) -> bool:
    """Constant-time comparison; False when there is nothing to compare with."""
    return expected is not None and hmac.compare_digest(expected.lower(), actual.lower())


class ChecksummedStream(io.RawIOBase):
    """Feeds every byte read through `source` to `digest` (the ESDK pulls plaintext from it)."""

    def __init__(self, source: Any, digest: _Digest) -> None:
        self._source = source
        self.digest = digest

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        chunk = self._source.read(size)
        self.digest.update(chunk)
        return chunk

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)
