"""Whether bytes that look like an atrest message are one: `verify_message` and its `Verdict`.

The pipeline leaves an intake object alone when it is already an atrest message (a vault
object copied back: encrypting it again would hide it behind two keys, deleting it would
lose it). A header proves nothing by itself: anyone who may write to the intake can copy
one from a vault object in front of plaintext. So "already an atrest message" means what
decrypt would accept: the branch key its header names is in this stack's key store(s),
the data key unwraps under it, the key commitment and the header authenticate, every
frame authenticates, in order, up to the final frame, and nothing follows that frame.

The whole object is stream-decrypted a frame at a time and the plaintext is dropped as
it is produced: never held whole, never logged. A failure is reported as one of a few
categories (`Verdict`), never with content, key material or the library's error text.
Failures of the services behind the key store (KMS, DynamoDB) and of reading the object
are raised instead: a throttled key store is retried, not taken as proof of forgery.
The bytes of a message cannot cause such a failure: the key store is asked only for a
branch key that exists in it, and its items are not the object writer's to change.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Any

import aws_encryption_sdk
from aws_encryption_sdk.exceptions import SerializationError
from aws_encryption_sdk.identifiers import ContentType
from botocore.exceptions import BotoCoreError, ClientError

from atrest.core.errors import AtrestError
from atrest.crypto.envelope import CTX_DATA_CLASS, encryption_client, message_key, read_header
from atrest.crypto.keystore import BranchKeyStore, KeyStores

# The largest frame length template.yaml's FrameLengthBytes allows. A longer frame is not
# one atrest writes by default, and reading one would hold that much in memory.
LARGEST_FRAME_LENGTH = 16 * 1024 * 1024

# How the MPL reports what its key store could not do: its errors wrap the AWS SDK's, by name.
_SERVICE_ERRORS = {"KMS": "ComAmazonawsKms(", "DynamoDB": "ComAmazonawsDynamodb("}
_AWS_ERROR_CODE = re.compile(r"An error occurred \((\w+)\)")
_NO_SUCH_VERSION = "No item found for corresponding branch key identifier"


class Verdict(str, Enum):
    """What verifying an object found; the value is safe to log (a category, nothing more)."""

    VERIFIED = "verified"
    UNKNOWN_BRANCH_KEY = "unknown-branch-key"  # not in this stack's key stores: foreign, made up, forgotten or shredded
    NOT_ATREST_FORMAT = "not-atrest-format"  # unframed, frames too long, not one hierarchical-keyring data key
    NOT_AUTHENTIC = "does-not-authenticate"  # data key, key commitment, header or a frame fails to authenticate
    TRUNCATED = "truncated"  # the object ends before the message's final frame
    TRAILING_BYTES = "trailing-bytes"  # bytes follow the final frame


class _ObjectBytes:
    """The object as the ESDK reads it: the peeked prefix, then the rest of the body.

    Records whether the body ran out (a truncated message, not a forged one) and any error
    reading it (S3's, to be retried; not the message's fault).
    """

    def __init__(self, prefix: bytes, body: Any) -> None:
        self._prefix = prefix
        self._body = body
        self.exhausted = False
        self.error: BaseException | None = None

    def read(self, size: int | None = -1) -> bytes:
        wanted = None if size is None or size < 0 else size
        chunk, self._prefix = (self._prefix, b"") if wanted is None else (self._prefix[:wanted], self._prefix[wanted:])
        if wanted is None or len(chunk) < wanted:
            try:
                more = self._body.read() if wanted is None else self._body.read(wanted - len(chunk))
            except BaseException as error:
                self.error = error
                raise
            self.exhausted = self.exhausted or not more or wanted is None
            chunk += more
        return chunk


def verify_message(
    prefix: bytes,
    body: Any,
    keystore: BranchKeyStore | KeyStores,
    esdk: aws_encryption_sdk.EncryptionSDKClient | None = None,
    max_frame_length: int = LARGEST_FRAME_LENGTH,
) -> Verdict:
    """Whether an object (its first bytes `prefix`, then the rest of the stream `body`) is
    an atrest message this stack's keys decrypt, whole and with nothing after it.

    Consumes `body` (the caller re-opens the object to use its bytes again). Raises only
    what a retry may cure: what reading `body` raised, or `KeyStoreUnavailableError`
    when KMS or DynamoDB did not answer.
    """
    header = read_header(prefix)
    if header is None or CTX_DATA_CLASS not in header.encryption_context:
        return Verdict.NOT_ATREST_FORMAT
    # Unframed messages are read whole, and frame length decides what one read holds:
    # atrest writes neither an unframed message nor frames this long.
    if header.content_type is not ContentType.FRAMED_DATA or header.frame_length > max_frame_length:
        return Verdict.NOT_ATREST_FORMAT
    try:
        branch_key_id = message_key(header).branch_key_id
    except ValueError:
        return Verdict.NOT_ATREST_FORMAT
    try:
        # One GetItem, no KMS: a made-up id never gets a keyring (the keyring cache holds
        # one per branch key for the life of the process).
        known = keystore.describe_active(branch_key_id) is not None
    except AtrestError:  # not a scope's id, or a service key where the deployment has no service key store
        known = False
    if not known:
        return Verdict.UNKNOWN_BRANCH_KEY

    source = _ObjectBytes(prefix, body)
    esdk = esdk or encryption_client()
    try:
        # Not a `with` block: on a failure its exit logs "Footer not read" with a traceback.
        decryptor = esdk.stream(mode="d", source=source, keyring=keystore.keyring(branch_key_id),
                                max_body_length=max_frame_length)
        while decryptor.read(header.frame_length):
            pass  # authenticated and dropped, frame by frame
        decryptor.close()
    except Exception as error:
        if source.error is not None:
            raise source.error from None
        return _verdict_for(error, source)
    if source.read(1):
        return Verdict.TRAILING_BYTES
    return Verdict.VERIFIED


class KeyStoreUnavailableError(AtrestError):
    """KMS or DynamoDB did not answer while verifying: nothing is known about the object yet."""


def _verdict_for(error: Exception, source: _ObjectBytes) -> Verdict:
    """What a decrypt failure says about the message; failures of the services are raised."""
    text = repr(error)  # the MPL's errors name the AWS SDK error they wrap
    services = [name for name, marker in _SERVICE_ERRORS.items() if marker in text]
    if services or isinstance(error, (BotoCoreError, ClientError, OSError)):
        code = _AWS_ERROR_CODE.search(text)
        raise KeyStoreUnavailableError(
            f"could not verify an object that looks like an atrest message: the key store's "
            f"{' and '.join(services) or 'AWS'} request failed ({code.group(1) if code else type(error).__name__}); "
            "the object stays in the intake and its delivery is retried (after the queue's retries it waits "
            "in the dead-letter queue: `atrest dlq redrive` once the key store answers)"
        ) from error
    if _NO_SUCH_VERSION in text:
        return Verdict.UNKNOWN_BRANCH_KEY  # the branch key is ours, the version is not (shredded or made up)
    if isinstance(error, SerializationError) and source.exhausted:
        return Verdict.TRUNCATED
    # Everything else (bad tags, a failed key commitment or header authentication, frames
    # out of order, a refused suite) is a message this stack cannot vouch for.
    return Verdict.NOT_AUTHENTIC
