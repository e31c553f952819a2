"""`VaultReader`: turns a vault object back into plaintext, only when it matches its record.

The record in the metadata table is an index: it says where a vault object is and what
its sizes and checksums were. What the object *is* (its data class, source bucket, key
and version, instance and contact) is taken from the verified message header's encryption
context (`HeaderTruth`): that is what authorization and the audit trail use. A record whose
top-level fields disagree with the header is refused (`RecordMismatchError`), as is a
ciphertext whose encryption context, size or checksum disagrees with the record, or whose
plaintext's size or checksum does (the keyed `plaintext_hmac`, atrest.crypto.checksums; a record
written before keyed checksums is checked against its SHA-256), or whose sealed user
metadata is not bound to this very object (atrest.crypto.object_metadata). Nothing is left at the
output path: plaintext goes to a temporary file beside it and is moved into place only
after the whole message has verified.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from atrest.core.clients import AwsClients
from atrest.crypto.checksums import same_checksum
from atrest.crypto.envelope import (CTX_DATA_CLASS, CTX_INSTANCE, CTX_SOURCE_BUCKET, CTX_SOURCE_KEY, context_differences,
                             encryption_client)
from atrest.catalog.data_classes import DataClassCatalog, Exclusion
from atrest.core.errors import (AmbiguousSourceError, AtrestError, DecryptRefusedError, OutputPathError,
                                RecordMismatchError, RecordNotFoundError)
from atrest.core.settings import Settings
from atrest.crypto.keystore import BranchKeyStore, KeyStores
from atrest.crypto.object_metadata import ObjectMetadata, bounded_content_type, open_metadata
from atrest.storage.records import KeyVersionRecord, KeyVersionState, MetadataTable, ObjectRecord
from atrest.storage.vault_keys import VaultKey

CHUNK = 1024 * 1024


@dataclass(frozen=True)
class HeaderTruth:
    """What a vault object is, as its verified message header proves it.

    Class, source bucket and key and instance are the header's encryption context (bound to
    the ciphertext by the ESDK: a changed value does not decrypt). The source version is the
    record's, proven by the vault key (a hash of class, bucket, key and version). The contact
    is read from the header's source key with the data class's key pattern, as the pipeline
    read it when it encrypted."""

    data_class: str
    source_bucket: str
    source_key: str
    source_version_id: str | None
    instance: str | None
    contact_id: str | None


@dataclass(frozen=True)
class DecryptResult:
    record: ObjectRecord
    output: Path
    plaintext_size: int
    truth: HeaderTruth | None = None
    # SHA-256 of the plaintext this decrypt wrote (for the caller who holds it, e.g. a
    # retrieval manifest); never read from the record, which holds no unsalted hash.
    plaintext_sha256: str | None = None
    # What to restore with the plaintext: the recorded Content-Type (None in records written
    # before atrest kept it) and the user metadata, opened from its sealed message.
    content_type: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def described(self) -> ObjectMetadata:
        return ObjectMetadata(self.content_type, self.metadata)


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
    def __init__(self, clients: AwsClients, keystore: BranchKeyStore | KeyStores, records: MetadataTable,
                 catalog: Any = None) -> None:
        self.clients = clients
        self.keystore = keystore
        self.records = records
        # The data class catalog (`DataClassCatalog`): where a class's key pattern says the contact is.
        self.catalog = catalog
        self.esdk = encryption_client()

    @classmethod
    def from_settings(cls, settings: Settings, clients: AwsClients | None = None, catalog: Any = None) -> "VaultReader":
        clients = clients or AwsClients()
        keystore = KeyStores.from_settings(settings, clients)
        return cls(clients, keystore, MetadataTable(clients.dynamodb, settings.metadata_table),
                   catalog or DataClassCatalog.from_settings(settings))

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

    def header_truth(self, record: ObjectRecord, context: dict[str, str]) -> HeaderTruth:
        """What the verified header's encryption context says the object is (see `HeaderTruth`)."""
        data_class = context.get(CTX_DATA_CLASS, "")
        source_key = context.get(CTX_SOURCE_KEY, "")
        return HeaderTruth(
            data_class=data_class,
            source_bucket=context.get(CTX_SOURCE_BUCKET, ""),
            source_key=source_key,
            source_version_id=record.source_version_id,
            instance=context.get(CTX_INSTANCE),
            contact_id=self._contact_in(data_class, source_key),
        )

    def _contact_in(self, data_class: str, source_key: str) -> str | None:
        spec = self.catalog.get(data_class) if self.catalog is not None else None
        found = spec.pattern.match(source_key) if spec is not None and spec.pattern is not None else None
        return found.groupdict().get("contact") if found else None

    def newer_versions(self, record: ObjectRecord) -> tuple[str, ...]:
        """Version ids stored at the record's vault key after the recorded version, newest
        first. Nothing but the pipeline writes the vault, and it removes its own redundant
        copies, so any such version is a tamper signal (docs/reliability.md)."""
        recorded = record.vault_version_id
        if recorded in (None, "null"):
            return ()
        newer: list[str] = []
        paginator = self.clients.s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=record.vault_bucket, Prefix=record.vault_key):
            # S3 lists a key's versions newest first, delete markers apart.
            entries = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            for entry in sorted((e for e in entries if e["Key"] == record.vault_key),
                                key=lambda e: e["LastModified"], reverse=True):
                if entry["VersionId"] == recorded:
                    return tuple(newer)
                newer.append(entry["VersionId"])
        return tuple(newer)

    def decrypt_record(self, record: ObjectRecord, output: str | os.PathLike[str],
                       progress: Callable[[int], None] | None = None,
                       before_plaintext: Callable[[HeaderTruth], None] | None = None,
                       overwrite: bool = True) -> DecryptResult:
        """Decrypt the vault object `record` describes; for callers that already looked the
        record up and checked its key version (`record_for`, `refuse_if_shredded`).

        Once the message header has verified and the record agrees with it, and before the
        first byte of plaintext is decrypted, `before_plaintext(truth)` is called: the place
        to authorize on the header's data class and to write the audit record. Raising there
        stops the read with nothing written. The record's sealed user metadata is opened
        right after, as part of the audited read: metadata not bound to this object refuses
        the read (`DecryptRefusedError`) before any plaintext. With `overwrite=False` an
        existing file at `output` is never replaced (`OutputPathError`)."""
        bucket, key = record.vault_bucket, record.vault_key
        target = Path(output)
        truth: HeaderTruth | None = None
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
        plaintext_hmac = None  # only for records with a keyed checksum (older ones hold a SHA-256)
        metadata: dict[str, str] = {}
        try:
            with os.fdopen(descriptor, "wb") as sink:
                try:
                    keyring = self.keystore.keyring(record.branch_key_id)
                    # The record's context is compared with the header's below, field by field
                    # first (the refusal names the edited field and the audit the header's
                    # word), then whole; both before the first byte of plaintext. A record
                    # rebuilds its context from those fields, so an edited field is a context
                    # mismatch too, and handing the ESDK the context to require would refuse
                    # it without saying which field.
                    with self.esdk.stream(mode="d", source=body, keyring=keyring) as decryptor:
                        header_context = dict(decryptor.header.encryption_context)
                        truth = self.header_truth(record, header_context)
                        disagreements = record_disagreements(record, truth)
                        if disagreements:
                            refusal = RecordMismatchError(_record_edited(bucket, key, disagreements, truth))
                            refusal.truth = truth  # what the audit records: the header's word, not the record's
                            raise refusal
                        differences = context_differences(record.encryption_context, header_context)
                        if differences:
                            raise DecryptRefusedError(_mismatch(bucket, key, differences))
                        if record.plaintext_hmac is not None:
                            plaintext_hmac = self.keystore.checksum_key(record.branch_key_id).new()
                        if before_plaintext is not None:
                            before_plaintext(truth)
                        if record.metadata_ciphertext is not None:
                            # Bound to the verified header's context: a blob from another
                            # object's record does not open.
                            metadata = open_metadata(self.esdk, keyring, record.metadata_ciphertext, header_context,
                                                     f"s3://{bucket}/{key}")
                        while chunk := decryptor.read(CHUNK):
                            sink.write(chunk)
                            plaintext_sha256.update(chunk)
                            if plaintext_hmac is not None:
                                plaintext_hmac.update(chunk)
                            written += len(chunk)
                            if progress:
                                progress(written)
                except (DecryptRefusedError, OutputPathError):
                    raise
                except Exception as error:
                    if truth is not None and before_plaintext is not None and _is_failure(error):
                        raise  # not a verdict on the message: the caller records a failure, not a refusal
                    raise DecryptRefusedError(_explain(bucket, key, error)) from error
            if body.size != record.ciphertext_size or body.sha256.hexdigest() != record.ciphertext_sha256:
                raise DecryptRefusedError(
                    f"s3://{bucket}/{key} is not the ciphertext its record describes (size or checksum differs); "
                    "it was replaced or altered after encryption"
                )
            computed = plaintext_hmac.hexdigest() if plaintext_hmac is not None else plaintext_sha256.hexdigest()
            expected = record.plaintext_hmac if plaintext_hmac is not None else record.plaintext_sha256
            if written != record.plaintext_size or not same_checksum(expected, computed):
                raise DecryptRefusedError(
                    f"s3://{bucket}/{key} decrypted to plaintext whose size or checksum differs from its record "
                    "(or the record holds no checksum); "
                    "the record was edited or belongs to another object, so nothing was kept"
                )
            move_into_place(temporary, target, overwrite)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        return DecryptResult(record, target, written, truth, plaintext_sha256.hexdigest(),
                             bounded_content_type(record.content_type), metadata)


def record_disagreements(record: ObjectRecord, truth: HeaderTruth) -> list[str]:
    """The record's top-level fields that say something other than the verified header."""
    found = [name for name, recorded, proven in (
        ("data_class", record.data_class, truth.data_class),
        ("source_bucket", record.source_bucket, truth.source_bucket),
        ("source_key", record.source_key, truth.source_key),
        ("instance", record.instance or None, truth.instance or None),
        ("contact_id", record.contact_id or None, truth.contact_id or None),
    ) if recorded != proven]
    # The vault key is a hash of class, bucket, key and version: it proves the recorded version.
    if not found and record.vault_key != str(VaultKey.of_source(truth.data_class, truth.source_bucket, truth.source_key,
                                                                record.source_version_id)):
        found.append("source_version_id")
    return found


def move_into_place(temporary: str, target: Path, overwrite: bool) -> None:
    """Rename `temporary` to `target`; without `overwrite`, never over an existing file."""
    if overwrite:
        os.replace(temporary, target)
        return
    # A hard link fails if the name exists, atomically: a file that appeared since the
    # command checked is not replaced either.
    try:
        os.link(temporary, target)
    except FileExistsError:
        raise OutputPathError(f"{target} exists; nothing was written (use --force to replace it)") from None
    os.unlink(temporary)


def _is_failure(error: Exception) -> bool:
    """An error of the machinery (disk, network, the audit write), not a verdict on the message."""
    return isinstance(error, (OSError, BotoCoreError, ClientError, AtrestError))


def _mismatch(bucket: str, key: str, differences: list[str]) -> str:
    return (
        f"refusing to decrypt s3://{bucket}/{key}: its encryption context does not match its record "
        f"({', '.join(differences)} differ). The object was moved, copied or its record edited."
    )


def _record_edited(bucket: str, key: str, fields_: list[str], truth: HeaderTruth) -> str:
    return (
        f"refusing to decrypt s3://{bucket}/{key}: its record's {', '.join(fields_)} disagree with the verified "
        f"message header (the ciphertext is {truth.data_class} from s3://{truth.source_bucket}/{truth.source_key}). "
        "The record was edited or belongs to another object; compare it with the metadata table's backups "
        "(point-in-time recovery) before trusting it"
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


def source_record(records: MetadataTable, s3: Any, classifier: Any, vault_bucket: str, bucket: str, key: str,
                  version_id: str | None) -> ObjectRecord:
    """The record of an intake object, from where it came from.

    Found two ways: the vault key derived from the class the catalog gives `key`, the
    bucket, the key and the version (one GetItem), and the `by-source` index (every record
    written since it existed, whatever the data class catalog says today). With a version,
    the index is asked only when the derived key has no record (the catalog changed), so an
    operator without `dynamodb:Query` on the index still finds a named version. Without a
    version, the index's records and those of the versions the intake still lists count
    (encrypted versions are usually deleted from the intake). One record is returned,
    several raise `AmbiguousSourceError` listing them, none raises `RecordNotFoundError`
    saying what to give."""
    location = f"s3://{bucket}/{key}"
    found: dict[str, ObjectRecord] = {}
    classification = classifier.classify(key)
    if not isinstance(classification, Exclusion):
        candidates = [version_id] if version_id else _listed_versions(s3, bucket, key) + [None]
        for candidate in candidates:
            record = records.get_object(VaultKey.of_source(classification.data_class, bucket, key, candidate))
            if record is not None and record.vault_bucket == vault_bucket:
                found[record.vault_key] = record
    if version_id is None or not found:
        for record in records.objects_from_source(bucket, key):
            if record.vault_bucket == vault_bucket and (version_id is None or record.source_version_id == version_id):
                found[record.vault_key] = record
    if isinstance(classification, Exclusion) and not found:
        raise RecordNotFoundError(
            f"{location} is excluded from encryption ({classification.reason}); it has no atrest record")
    mine = sorted(found.values(), key=lambda r: r.encrypted_at)
    if len(mine) == 1:
        return mine[0]
    if mine:
        listed = "; ".join(f"versionId={r.source_version_id} (encrypted {r.encrypted_at})" for r in mine)
        raise AmbiguousSourceError(f"{location} has {len(mine)} encrypted versions: {listed}. Name one with "
                                   "--version-id ID (or ?versionId=ID)")
    if version_id:
        raise RecordNotFoundError(
            f"{location} version {version_id} has no atrest record (check the version id; an object encrypted "
            "before the metadata table's by-source index existed, under a data class the catalog no longer gives "
            "this key, is found by its vault location s3://<vault bucket>/<key>)")
    raise RecordNotFoundError(
        f"{location} has no atrest record: none in the metadata table's by-source index, none for the versions the "
        "intake still lists. Objects encrypted before that index existed are found only with their version: give "
        "the version the pipeline encrypted with --version-id ID (the S3 event or the source's version history "
        "names it), or the vault location")


def _listed_versions(s3: Any, bucket: str, key: str) -> list[str]:
    try:
        pages = list(s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key))
    except ClientError:
        return []  # no s3:ListBucketVersions on the intake: only an explicit version can be found
    return [v["VersionId"] for page in pages for v in page.get("Versions", [])
            if v["Key"] == key and v["VersionId"] != "null"]
