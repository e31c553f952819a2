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
