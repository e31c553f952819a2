"""The message format: ESDK messages with a committing, non-signing suite and large frames,
and the encryption context that binds each message to its source."""

from __future__ import annotations

import io
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

import aws_encryption_sdk
from aws_encryption_sdk import CommitmentPolicy
from aws_encryption_sdk.identifiers import Algorithm, SerializationVersion
from aws_encryption_sdk.internal.formatting.deserialize import deserialize_header

# The context every message is bound to (defined below crypto: records rebuild it too).
from atrest.catalog.bindings import (
    CTX_ACCOUNT, CTX_DATA_CLASS, CTX_INSTANCE, CTX_SOURCE_BUCKET, CTX_SOURCE_KEY, encryption_context,
)
from atrest.core.errors import AtrestError

# Committing (key commitment) but not signing: every reader is also trusted to write,
# so signatures add cost (an ECDSA key per message) without adding a guarantee.
SUITE = Algorithm.AES_256_GCM_HKDF_SHA512_COMMIT_KEY
HIERARCHY_PROVIDER_ID = "aws-kms-hierarchy"

# The message format versions atrest reads headers of (aws-encryption-sdk-specification,
# data-format/message-header.md): 1 (non-committing suites) and 2 (committing suites: what
# atrest writes). `message_key` reads the data key's layout of these versions only.
KNOWN_MESSAGE_VERSIONS = frozenset({1, 2})
# The first byte of a header: a version the installed ESDK can parse. Other bytes are plaintext.
_PARSEABLE_VERSIONS = frozenset(version.value for version in SerializationVersion)



def encryption_client() -> aws_encryption_sdk.EncryptionSDKClient:
    # One data key per message: refusing more bounds the work a hostile message can cause.
    return aws_encryption_sdk.EncryptionSDKClient(
        commitment_policy=CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT,
        max_encrypted_data_keys=1,
    )


@dataclass(frozen=True)
class MessageKey:
    """Which branch key version wrapped a message's data key (read from its header)."""

    branch_key_id: str
    branch_key_version: str


def message_key(header: Any) -> MessageKey:
    """Read the branch key id and version from a hierarchical-keyring message header.

    The EDK ciphertext is salt (16) | IV (12) | branch key version (16, UUID) | wrapped key,
    per the Material Providers specification (aws-kms-hierarchical-keyring.md).
    """
    keys = [k for k in header.encrypted_data_keys if k.key_provider.provider_id == HIERARCHY_PROVIDER_ID]
    if len(keys) != 1:
        raise ValueError("message does not have exactly one hierarchical-keyring data key")
    edk = keys[0]
    version = uuid.UUID(bytes=bytes(edk.encrypted_data_key[28:44]))
    return MessageKey(edk.key_provider.key_info.decode("utf-8"), str(version))


class MessageFormatError(AtrestError):
    """A well-formed ESDK message header of a format version atrest was not built against."""


def read_header(prefix: bytes) -> Any | None:
    """Parse an ESDK message header from the first bytes of an object, or None if it is not one.

    Raises `MessageFormatError` for a header the installed ESDK parses but whose format
    version atrest does not know (an ESDK upgrade that added one): what atrest reads from a
    header (`message_key`, the context) may not mean the same there, so it is refused rather
    than guessed at, as `atrest.crypto.keystore_format` refuses a key store item it does not know.
    """
    if len(prefix) < 2 or prefix[0] not in _PARSEABLE_VERSIONS:
        return None
    try:
        header, _ = deserialize_header(io.BytesIO(prefix), max_encrypted_data_keys=1)
    except Exception:  # anything that is not a well-formed header is plaintext to us
        return None
    check_message_version(header)
    return header


def check_message_version(header: Any) -> None:
    """Raise `MessageFormatError` unless `header` (a parsed ESDK header) is of a known version."""
    version = header.version.value
    if version not in KNOWN_MESSAGE_VERSIONS:
        raise MessageFormatError(
            f"ESDK message format version {version} (atrest reads versions "
            f"{', '.join(map(str, sorted(KNOWN_MESSAGE_VERSIONS)))}); nothing was read from the message. Check the "
            "ESDK's message format specification for what changed, then add the version to KNOWN_MESSAGE_VERSIONS "
            "in atrest.crypto.envelope"
        )


def is_atrest_message(prefix: bytes) -> bool:
    """True when the bytes start an ESDK message that atrest wrote (its context names a data class)."""
    header = read_header(prefix)
    return header is not None and CTX_DATA_CLASS in header.encryption_context


def context_differences(expected: Mapping[str, str], actual: Mapping[str, str]) -> list[str]:
    """Names of atrest context keys whose values differ (ESDK-reserved keys are ignored)."""
    names = {k for k in (*expected, *actual) if not k.startswith("aws-crypto-")}
    return sorted(k for k in names if expected.get(k) != actual.get(k))
