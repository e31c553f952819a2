"""Errors a caller can act on. Each message says what happened and what to do next."""

from __future__ import annotations


class AtrestError(Exception):
    """Base class for every error atrest raises on purpose."""


class ConfigurationError(AtrestError):
    """The configuration is missing or invalid; the message names the variable."""


class MalformedEventError(AtrestError):
    """An event does not have the shape of the event it claims to be."""


class StorageVerificationError(AtrestError):
    """The stored ciphertext does not match what was written; nothing is deleted."""


class RecordNotFoundError(AtrestError):
    """No metadata record exists for a vault object."""


class DecryptRefusedError(AtrestError):
    """Decryption was refused: the object and its record disagree, or the key is gone."""


class ShredTooEarlyError(AtrestError):
    """A retired branch key version that some writer may still use as its active version."""


class RecordMismatchError(DecryptRefusedError):
    """A record's top-level fields (data class, source, instance, contact) disagree with what
    the verified message header proves; nothing was decrypted."""


class OutputPathError(AtrestError):
    """`atrest decrypt -o` names a place plaintext cannot or must not be written; nothing was read."""


class AmbiguousSourceError(AtrestError):
    """A source location names several encrypted versions; the message lists them."""
