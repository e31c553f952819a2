"""`VaultReader`: turns a vault object back into plaintext, only when it matches its record.

The record in the metadata table is the authority on what a vault object is. A
ciphertext whose encryption context, size or checksum disagrees with the record, or
whose plaintext's size or checksum does, is refused, and nothing is left at the output path: plaintext goes to a temporary file
beside it and is renamed into place only after the whole message has verified.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from botocore.exceptions import ClientError

from atrest.clients import AwsClients
from atrest.envelope import context_differences, encryption_client
from atrest.errors import DecryptRefusedError, RecordNotFoundError
from atrest.keystore import BranchKeyStore, KeyStores
from atrest.records import KeyVersionRecord, KeyVersionState, MetadataTable, ObjectRecord
from atrest.settings import Settings

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class DecryptResult:
    record: ObjectRecord
    output: Path
    plaintext_size: int


class _HashingBody:
    """Counts and hashes ciphertext as the ESDK reads it, to compare with the record."""

    def __init__(self, body: Any) -> None:
        self.body = body
        self.size = 0
        self.sha256 = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self.body.read(size if size is not None and size >= 0 else None)
        self.size += len(chunk)
        self.sha256.update(chunk)
        return chunk


class VaultReader:
    def __init__(self, clients: AwsClients, keystore: BranchKeyStore | KeyStores, records: MetadataTable) -> None:
        self.clients = clients
        self.keystore = keystore
        self.records = records
        self.esdk = encryption_client()

    @classmethod
    def from_settings(cls, settings: Settings, clients: AwsClients | None = None) -> "VaultReader":
        clients = clients or AwsClients()
        keystore = KeyStores.from_settings(settings, clients)
        return cls(clients, keystore, MetadataTable(clients.dynamodb, settings.metadata_table))

    def record_for(self, bucket: str, key: str) -> ObjectRecord:
        record = self.records.get_object(key)
        if record is None or record.vault_bucket != bucket:
            raise RecordNotFoundError(
                f"s3://{bucket}/{key} has no atrest record; it is not a vault object this stack wrote "
                "(check the bucket and key, e.g. with `aws s3 ls` on the vault bucket)"
            )
        return record

    def shredded_version(self, record: ObjectRecord) -> KeyVersionRecord | None:
        """The record's key version when it was shredded (from the metadata: no key store call)."""
        version = self.records.key_version(record.branch_key_id, record.branch_key_version)
        return version if version is not None and version.state is KeyVersionState.SHREDDED else None

    def refuse_if_shredded(self, record: ObjectRecord) -> None:
        """Say when and that the key is gone, from the metadata, before the key store is asked."""
        version = self.shredded_version(record)
        if version is not None:
            raise DecryptRefusedError(
                f"refusing to decrypt s3://{record.vault_bucket}/{record.vault_key}: key {record.branch_key_id} "
                f"version {record.branch_key_version} was shredded on {version.shredded_at}; this object is "
                "permanently unreadable (see `atrest keys list`)"
            )

    def decrypt_to_file(self, bucket: str, key: str, output: str | os.PathLike[str],
                        progress: Callable[[int], None] | None = None) -> DecryptResult:
        record = self.record_for(bucket, key)
        self.refuse_if_shredded(record)
        return self.decrypt_record(record, output, progress)

    def decrypt_record(self, record: ObjectRecord, output: str | os.PathLike[str],
                       progress: Callable[[int], None] | None = None) -> DecryptResult:
        """Decrypt the vault object `record` describes; for callers that already looked the
        record up and checked its key version (`record_for`, `refuse_if_shredded`)."""
        bucket, key = record.vault_bucket, record.vault_key
        target = Path(output)
        kwargs = {"VersionId": record.vault_version_id} if record.vault_version_id not in (None, "null") else {}
        try:
            body = _HashingBody(self.clients.s3.get_object(Bucket=bucket, Key=key, **kwargs)["Body"])
        except ClientError as error:
            raise DecryptRefusedError(
                f"cannot read s3://{bucket}/{key}: {error.response.get('Error', {}).get('Code')}; "
                "check that your role is one of the stack's decryptor roles"
            ) from error

        descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent or ".")
        written = 0
        plaintext_sha256 = hashlib.sha256()
        try:
            with os.fdopen(descriptor, "wb") as sink:
                try:
                    with self.esdk.stream(
                        mode="d",
                        source=body,
                        keyring=self.keystore.keyring(record.branch_key_id),
                        encryption_context=record.encryption_context,
                    ) as decryptor:
                        differences = context_differences(record.encryption_context, decryptor.header.encryption_context)
                        if differences:
                            raise DecryptRefusedError(_mismatch(bucket, key, differences))
                        while chunk := decryptor.read(CHUNK):
                            sink.write(chunk)
                            plaintext_sha256.update(chunk)
                            written += len(chunk)
                            if progress:
                                progress(written)
                except DecryptRefusedError:
                    raise
                except Exception as error:
                    raise DecryptRefusedError(_explain(bucket, key, error)) from error
            if body.size != record.ciphertext_size or body.sha256.hexdigest() != record.ciphertext_sha256:
                raise DecryptRefusedError(
                    f"s3://{bucket}/{key} is not the ciphertext its record describes (size or checksum differs); "
                    "it was replaced or altered after encryption"
                )
            if written != record.plaintext_size or plaintext_sha256.hexdigest() != record.plaintext_sha256:
                raise DecryptRefusedError(
                    f"s3://{bucket}/{key} decrypted to plaintext whose size or checksum differs from its record; "
                    "the record was edited or belongs to another object, so nothing was kept"
                )
            os.replace(temporary, target)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return DecryptResult(record, target, written)


def _mismatch(bucket: str, key: str, differences: list[str]) -> str:
    return (
        f"refusing to decrypt s3://{bucket}/{key}: its encryption context does not match its record "
        f"({', '.join(differences)} differ). The object was moved, copied or its record edited."
    )


def _explain(bucket: str, key: str, error: Exception) -> str:
    text = str(error)
    if "reproduced encryption context" in text or "Encryption context does not match" in text:
        return _mismatch(bucket, key, ["encryption context"])
    if "No item found" in text:
        return f"refusing to decrypt s3://{bucket}/{key}: its branch key version no longer exists in the key store"
    if "AccessDenied" in text or "not authorized" in text.lower():
        return f"refusing to decrypt s3://{bucket}/{key}: KMS denied the key store's unwrap; ask for a decryptor role"
    return f"refusing to decrypt s3://{bucket}/{key}: the message does not verify ({type(error).__name__}: {text[:200]})"
