"""Vault keys: where the ciphertext of one source version lives in the vault bucket.

The only place that knows their format (docs/design.md, "Vault layout"): every writer
derives a key with `VaultKey.of_source`, every reader that needs what a key names parses
it with `VaultKey.parse`. The metadata table and S3 carry the key as text (`str(key)`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

_SEPARATOR = "/"
_SUFFIX = ".esdk"


@dataclass(frozen=True)
class VaultKey:
    """`<data class>/<name>`: the class first, so a key says which class's readers may ask for it.

    `name` is None only for text parsed from outside that has no separator (a read request
    may name anything); such a key names its class and no object.
    """

    data_class: str
    name: str | None

    @classmethod
    def of_source(cls, data_class: str, bucket: str, key: str, version_id: str | None) -> "VaultKey":
        """The vault key of a source version: stable across retries, short whatever the source key.

        Hashing (rather than embedding) the source key keeps vault keys under S3's 1024-byte
        limit and keeps contact identifiers out of the vault's listing; the first two hex
        digits as a folder spread a class's objects over prefixes.
        """
        digest = hashlib.sha256("\0".join((bucket, key, version_id or "")).encode("utf-8")).hexdigest()
        return cls(data_class, f"{digest[:2]}{_SEPARATOR}{digest}{_SUFFIX}")

    @classmethod
    def parse(cls, text: str) -> "VaultKey":
        """Any text read back as a vault key; `str()` gives the same text again.

        Never refuses: a request for an object that does not exist is answered by the class
        its key names, the same answer as for one that exists (flows/read_object.py).
        """
        data_class, separator, name = text.partition(_SEPARATOR)
        return cls(data_class, name if separator else None)

    @staticmethod
    def example(data_class: str) -> str:
        """An abbreviated key of `data_class`, for help and error texts."""
        return f"{data_class}{_SEPARATOR}ab{_SEPARATOR}ab12..{_SUFFIX}"  # "...esdk": two dots and the suffix

    def __str__(self) -> str:
        return self.data_class if self.name is None else f"{self.data_class}{_SEPARATOR}{self.name}"
