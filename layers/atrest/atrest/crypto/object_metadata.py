"""What S3 says about an object besides its bytes: its Content-Type and its user metadata
(`x-amz-meta-*`), kept with the vault object's record so that `atrest decrypt` and
ReadObject's retrieval copies can give them back.

- Content-Type is a MIME type, not customer content: the record holds it in clear
  (`ObjectRecord.content_type`), bounded so that a hostile upload cannot bloat the record.
- User metadata is whatever the writer chose, a caller's phone number included: it is never
  stored in clear. It is sealed as a small ESDK message under the object's own branch key,
  bound to the object's encryption context plus `atrest:part = metadata`
  (`ObjectRecord.metadata_ciphertext`), so a sealed blob moved to another object's record,
  or put in place of a vault object, does not open. An object without user metadata costs
  no extra crypto call and stores nothing.

Nothing here logs a value, a key name or a content type.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from atrest.core.errors import DecryptRefusedError
from atrest.crypto.envelope import SUITE, context_differences, message_key

log = logging.getLogger(__name__)

CTX_PART = "atrest:part"
METADATA_PART = "metadata"
MAX_CONTENT_TYPE_LENGTH = 256
# S3 allows 2 KB of user metadata (keys and values); as JSON that is at most a few hundred
# bytes more. Anything larger did not come from S3.
MAX_METADATA_BYTES = 8 * 1024
# The sealed message: a header with the object's context (its source key <= 1 KiB), one
# data key, the JSON and the frames' tags. A larger blob in a record was not written by atrest.
MAX_SEALED_BYTES = 16 * 1024
# A header value: printable ASCII, no control characters (a record edited to hold an escape
# sequence or a newline is not handed to S3 or a terminal).
_CONTENT_TYPE = re.compile(r"[\x21-\x7e][\x20-\x7e]*")


@dataclass(frozen=True)
class ObjectMetadata:
    """What to restore with the plaintext: the Content-Type (None when the record predates
    it) and the user metadata (empty when the object had none)."""

    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """The `--metadata-file` document, in S3's own names."""
        return {"ContentType": self.content_type, "Metadata": dict(self.metadata)}


def bounded_content_type(value: Any) -> str | None:
    """`value` when it can be a Content-Type header (at most 256 printable ASCII characters),
    else None: readers then fall back to a type from the file name."""
    if not isinstance(value, str) or len(value) > MAX_CONTENT_TYPE_LENGTH or not _CONTENT_TYPE.fullmatch(value):
        return None
    return value


def metadata_context(object_context: Mapping[str, str]) -> dict[str, str]:
    """The encryption context of an object's sealed metadata: the object's, plus the part marker."""
    return {**object_context, CTX_PART: METADATA_PART}


def seal_metadata(esdk: Any, keyring: Any, object_context: Mapping[str, str],
                  metadata: Mapping[str, str]) -> tuple[bytes, str] | None:
    """The sealed message and the branch key version it is under, or None when there is
    nothing to keep: no user metadata, or more than S3 allows (the object is still
    encrypted; only its metadata is not kept, and a warning without values says so)."""
    if not metadata:
        return None
    plaintext = json.dumps(dict(metadata), sort_keys=True, ensure_ascii=False).encode("utf-8")
    if len(plaintext) > MAX_METADATA_BYTES:
        log.warning("user metadata larger than S3 allows; not kept", extra={
            "metadata_bytes": len(plaintext), "metadata_keys": len(metadata)})
        return None
    ciphertext, header = esdk.encrypt(source=plaintext, keyring=keyring,
                                      encryption_context=metadata_context(object_context), algorithm=SUITE)
    return ciphertext, message_key(header).branch_key_version


def open_metadata(esdk: Any, keyring: Any, sealed: bytes, object_context: Mapping[str, str],
                  where: str) -> dict[str, str]:
    """The user metadata in `sealed`. `object_context` is the vault object's verified header
    context; the sealed message must be bound to exactly that plus the part marker, else
    `DecryptRefusedError` (`where` names the object in its message)."""
    if len(sealed) > MAX_SEALED_BYTES:
        raise DecryptRefusedError(f"refusing to decrypt {where}: its record's sealed metadata is larger than "
                                  "atrest writes; the record was edited")
    # The ESDK's own reserved keys (aws-crypto-*) are not part of what atrest binds.
    expected = metadata_context({k: v for k, v in object_context.items() if not k.startswith("aws-crypto-")})
    try:
        plaintext, header = esdk.decrypt(source=sealed, keyring=keyring, encryption_context=expected)
    except Exception as error:
        raise DecryptRefusedError(
            f"refusing to decrypt {where}: its record's sealed metadata does not open for this object "
            f"({type(error).__name__}); it was edited or moved from another object's record") from error
    differences = context_differences(expected, header.encryption_context)
    if differences:
        raise DecryptRefusedError(
            f"refusing to decrypt {where}: its record's sealed metadata belongs to another object "
            f"({', '.join(differences)} differ); the record was edited")
    try:
        metadata = json.loads(plaintext)
    except ValueError as error:
        raise DecryptRefusedError(f"refusing to decrypt {where}: its sealed metadata is not what atrest writes") from error
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise DecryptRefusedError(f"refusing to decrypt {where}: its sealed metadata is not what atrest writes")
    return metadata
