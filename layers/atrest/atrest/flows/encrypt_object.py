"""`EncryptPipeline`: one source object version in, one recorded vault object out.

Order of work, and why:
1. classify the key (every object is encrypted unless the catalog excludes it by name);
2. stream the source version through the ESDK into the vault (its Content-Type kept for the
   record, its user metadata sealed: atrest.crypto.object_metadata): one PutObject, made only
   if nothing is at the vault key yet (an S3 conditional write tells a repeated delivery), or
   parts uploading while the next ones are encrypted (atrest.storage.vault);
3. confirm S3's checksum of the ciphertext;
4. commit the metadata record (conditional: a retry finds it and moves on; a concurrent
   delivery that loses the write discards its ciphertext); a kept source's record is
   written final here, in one write;
5. only then delete the plaintext, and only the version that was encrypted, and mark the record.
A crash anywhere before 5 leaves the plaintext in place; the retried event repeats the
missing steps and writes the same vault key, so nothing is lost or duplicated.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from enum import Enum
from typing import Any, Mapping

from botocore.exceptions import ClientError

from atrest.catalog.data_classes import Classification, DataClassCatalog, DataClassifier, Exclusion
from atrest.core.clients import AwsClients
from atrest.crypto.envelope import (
    SUITE, context_differences, encryption_client, encryption_context, is_atrest_message, message_key, read_header,
)
from atrest.core.errors import AtrestError
from atrest.core.settings import Settings
from atrest.crypto.framing import encrypt_frames
from atrest.crypto.keystore import BranchKeyStore, KeyStores
from atrest.crypto.object_metadata import ObjectMetadata, bounded_content_type, seal_metadata
from atrest.crypto.verification import LARGEST_FRAME_LENGTH, Verdict, verify_message
from atrest.storage.instances import InstanceDirectory
from atrest.storage.intake import PlaintextStream, SourceObject
from atrest.storage.records import MetadataTable, ObjectRecord, ObjectStatus, utc_now
from atrest.storage.vault import MultipartWriter, VaultKeyTaken, abort_open_uploads, other_versions, part_size_for
from atrest.storage.vault_keys import VaultKey

log = logging.getLogger(__name__)

PEEK_BYTES = 64 * 1024  # enough for any ESDK header atrest writes (context includes a <=1024-byte key)
_GONE = {"NoSuchKey", "NoSuchVersion", "NotFound", "404", "MethodNotAllowed"}  # MethodNotAllowed: version is a delete marker
# Unversioned bytes overwritten since the event/listing: what it described no longer exists,
# and the replacement has an event of its own.
_REPLACED = {"PreconditionFailed", "412"}


class Outcome(str, Enum):
    ENCRYPTED = "encrypted"
    SKIPPED = "skipped"


class SkipReason(str, Enum):
    NOT_INTAKE_BUCKET = "not-intake-bucket"
    EXCLUDED = "excluded"  # the data class catalog names it as holding no customer content
    SOURCE_MISSING = "source-missing"
    SOURCE_REPLACED = "source-replaced"
    ALREADY_ATREST_MESSAGE = "already-atrest-message"


@dataclass(frozen=True)
class EncryptOutcome:
    """What happened to one source object; safe to log (no content, no key material)."""

    outcome: Outcome
    source: SourceObject
    reason: str | None = None
    vault_key: str | None = None
    data_class: str | None = None
    scope: str | None = None
    branch_key_version: str | None = None
    plaintext_size: int | None = None
    ciphertext_size: int | None = None
    source_status: str | None = None
    duration_ms: int | None = None
    repeated: bool = False  # the object had already been encrypted by an earlier delivery
    detail: str | None = None  # why it was skipped, e.g. the catalog's exclusion reason (never content)

    def as_dict(self) -> dict[str, Any]:
        result = {k: v for k, v in self.__dict__.items() if v is not None and k != "source"}
        result["outcome"] = self.outcome.value
        result["source"] = self.source.as_dict()
        return result


class EncryptPipeline:
    def __init__(
        self,
        settings: Settings,
        clients: AwsClients,
        keystore: BranchKeyStore | KeyStores,
        records: MetadataTable,
        classifier: DataClassifier,
    ) -> None:
        self.settings = settings
        self.clients = clients
        self.keystore = keystore
        self.records = records
        self.classifier = classifier
        self.esdk = encryption_client()
        self._recorded_versions: set[tuple[str, str]] = set()
        # Recordings sit under connect/<alias>/; contact events teach which instance that is.
        self.instances = InstanceDirectory(records.dynamodb, records.table_name)

    @classmethod
    def from_settings(cls, settings: Settings, clients: AwsClients | None = None) -> "EncryptPipeline":
        clients = clients or AwsClients()
        catalog = DataClassCatalog.from_settings(settings)  # once per cold start: the key stores check class keys on it
        keystore = KeyStores.from_settings(settings, clients, catalog)
        return cls(settings, clients, keystore, MetadataTable(clients.dynamodb, settings.metadata_table),
                   DataClassifier.from_settings(settings, catalog))

    def encrypt(self, source: SourceObject, may_be_retry: bool = True) -> EncryptOutcome:
        """Encrypt one source object version (see the module's docstring for the order of work).

        `may_be_retry`: False only when the caller knows this is the event's first delivery
        (SQS's receive count is 1); a killed earlier attempt may then not have left an open
        multipart upload to look for (a LIST request per large object, saved)."""
        started = time.monotonic()
        if source.bucket != self.settings.intake_bucket:
            return self._skip(source, SkipReason.NOT_INTAKE_BUCKET)
        classification = self.classifier.classify(source.key, source.size)
        if isinstance(classification, Exclusion):
            return self._skip(source, SkipReason.EXCLUDED, classification.reason)

        if source.version_id is None:
            # Listings and some events name no version: pin the version the ETag names, so the
            # event path and the backfill path agree on one identity (and one vault key).
            try:
                source = self._pin_version(source)
            except ClientError as error:
                return self._skip_unavailable(source, error)

        vault_key = str(VaultKey.of_source(classification.data_class, source.bucket, source.key, source.version_id))
        # Has an earlier delivery written ciphertext at our vault key? The record is written
        # only after its upload, so only then can one exist (a first delivery reads no record).
        # Ciphertext that fits one PutObject is written only if the key is free (an S3
        # conditional write): S3 answers the question, no HEAD is needed. Parts are worth a
        # HEAD first, before the source is read: an earlier delivery's whole upload is not
        # repeated. The stored size decides (the event's may be missing or wrong).
        probed = not self._fits_one_put(source.size) and source.size is not None
        earlier_write = False
        if probed:
            earlier_write, existing = self._written_earlier(vault_key)
            if existing is not None:  # an earlier delivery got as far as the record: only the source step can be missing
                return self._finish_source(existing, source, started, repeated=True)

        try:
            response = self._open(source)
        except ClientError as error:
            # A concurrent delivery may have recorded it and deleted the plaintext since our check.
            if (recorded := self.records.get_object(vault_key)) is not None:
                return self._finish_source(recorded, source, started, repeated=True)
            return self._skip_unavailable(source, error)
        # The stored size, not the event's claim, decides the part size (S3 allows 10,000 parts).
        source = replace(source, size=response.get("ContentLength", source.size))
        body = response["Body"]
        try:
            conditional = self._fits_one_put(source.size) and not earlier_write
            if not conditional and not probed:
                # Parts after all (the event gave no size, or too small a one): ask before reading.
                earlier_write, existing = self._written_earlier(vault_key)
                if existing is not None:
                    return self._finish_source(existing, source, started, repeated=True)
            prefix = body.read(PEEK_BYTES)
            if is_atrest_message(prefix):
                # A vault object copied into the intake: encrypting it again would hide it
                # behind two keys, and deleting it would lose it. But a header is easy to put
                # in front of plaintext: only a message that verifies under this stack's keys
                # (atrest.crypto.verification) is left alone; anything else is plaintext.
                verdict = verify_message(prefix, body, self.keystore, self.esdk,
                                         max(LARGEST_FRAME_LENGTH, self.settings.frame_length))
                if verdict is Verdict.VERIFIED:
                    return self._skip(source, SkipReason.ALREADY_ATREST_MESSAGE)
                log.warning("object looks like an atrest message but does not verify; encrypting it as plaintext",
                            extra={"reason": verdict.value, "source": source.as_dict()})
                body.close()
                try:  # verifying consumed the body: read the same version again, from its first byte
                    response = self._open(source)
                except ClientError as error:
                    if (recorded := self.records.get_object(vault_key)) is not None:
                        return self._finish_source(recorded, source, started, repeated=True)
                    return self._skip_unavailable(source, error)
                body, prefix = response["Body"], b""
            version_id = source.version_id or _real_version(response.get("VersionId"))
            # earlier_write without a record: an attempt died after its upload (or a concurrent
            # one has not recorded yet); its copy is removed once a record exists.
            try:
                record, overwrote = self._encrypt_stream(source, version_id, classification, vault_key,
                                                         PlaintextStream(prefix, body), started, _described(response),
                                                         conditional)
            except _RecordedMeanwhile as recorded:
                # Our conditional write found an earlier delivery's ciphertext, and its record:
                # nothing of ours was stored; only the source step can be missing.
                return self._finish_source(recorded.record, source, started, repeated=True)
            earlier_write = earlier_write or overwrote
        finally:
            body.close()

        if self._keeps_source(record):
            # Nothing more will happen to the source: the record is written once, final
            # (a write and an update before; a crash can only come before or after this write).
            record = replace(record, status=ObjectStatus.SOURCE_KEPT, source_removed_at=record.encrypted_at)
        if not self.records.put_object(record):
            # A concurrent delivery recorded first; ours is a redundant copy of the same bytes.
            self._discard_duplicate(record)
            return self._finish_source(self.records.get_object(vault_key), source, started, repeated=True)
        version = (record.branch_key_id, record.branch_key_version)
        if version not in self._recorded_versions:  # one conditional write per version per process, not per object
            self.records.record_key_version(*version)
            self._recorded_versions.add(version)
        return self._finish_source(record, source, started, repeated=False, earlier_write=earlier_write,
                                   may_be_retry=may_be_retry)

    def _fits_one_put(self, size: int | None) -> bool:
        """Whether the ciphertext of `size` plaintext bytes goes up in one PutObject."""
        expected = _ciphertext_bound(size, self.settings.frame_length)
        return expected is not None and expected < self.settings.part_size

    def _pin_version(self, source: SourceObject) -> SourceObject:
        kwargs: dict[str, Any] = {"Bucket": source.bucket, "Key": source.key}
        if source.etag:
            kwargs["IfMatch"] = f'"{source.etag}"'  # the quoted form HTTP defines (S3 accepts both; moto only this)
        head = self.clients.s3.head_object(**kwargs)
        return replace(source, version_id=_real_version(head.get("VersionId")), etag=source.etag or head["ETag"].strip('"'))

    def _open(self, source: SourceObject) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"Bucket": source.bucket, "Key": source.key}
        if source.version_id:
            kwargs["VersionId"] = source.version_id
        elif source.etag:
            # Without a version id, only the bytes the event described will do.
            kwargs["IfMatch"] = f'"{source.etag}"'
        return self.clients.s3.get_object(**kwargs)

    def _encrypt_stream(
        self,
        source: SourceObject,
        version_id: str | None,
        classification: Classification,
        vault_key: str,
        plaintext: PlaintextStream,
        started: float,
        described: ObjectMetadata,
        conditional: bool,
    ) -> tuple[ObjectRecord, bool]:
        """The record of the ciphertext written at `vault_key`, and whether it was written over
        an earlier delivery's unrecorded ciphertext (its conditional write found one)."""
        context = encryption_context(
            self.settings.account_id, classification.instance, classification.data_class, source.bucket, source.key
        )
        branch_key_id = classification.scope.branch_key_id
        self.keystore.ensure(classification.scope)
        keyring = self.keystore.keyring(branch_key_id)
        # Keyed, not a plain SHA-256: the record must not let a reader of the table confirm a
        # guessed plaintext (atrest.crypto.checksums).
        checksum = self.keystore.checksum_key(branch_key_id).new()
        # Sealed before the object, under the same keyring: see _check_metadata_version.
        sealed = seal_metadata(self.esdk, keyring, context, described.metadata)
        metadata = {"atrest-data-class": classification.data_class, "atrest-format": "esdk"}
        part_size = part_size_for(_ciphertext_bound(source.size, self.settings.frame_length), self.settings.part_size)
        overwrote = False
        with MultipartWriter(self.clients.s3, self.settings.vault_bucket, vault_key, part_size, metadata,
                             if_absent=conditional) as writer:
            # Frame by frame into the writer, which batches parts (atrest.crypto.framing).
            header = encrypt_frames(self.esdk, plaintext, writer.write, keyring=keyring, encryption_context=context,
                                    frame_length=self.settings.frame_length, checksum=checksum)
            try:
                stored = writer.close()
            except VaultKeyTaken:
                if (recorded := self.records.get_object(vault_key)) is not None:
                    raise _RecordedMeanwhile(recorded) from None
                # An attempt died after its upload, before its record (or a concurrent one has
                # not recorded yet): ours goes up as a new version; the other is removed once
                # a record exists (_remove_unrecorded_ciphertext).
                stored = writer.overwrite()
                overwrote = True
        key = message_key(header)
        if sealed is not None:
            sealed = self._check_metadata_version(sealed, key.branch_key_version, keyring, context, described.metadata)
        return ObjectRecord(
            vault_bucket=stored.bucket,
            vault_key=stored.key,
            vault_version_id=stored.version_id,
            source_bucket=source.bucket,
            source_key=source.key,
            source_version_id=version_id,
            source_etag=source.etag,
            data_class=classification.data_class,
            scope=branch_key_id,
            branch_key_id=key.branch_key_id,
            branch_key_version=key.branch_key_version,
            suite=SUITE.name,
            frame_length=self.settings.frame_length,
            plaintext_size=plaintext.size,
            ciphertext_size=stored.size,
            plaintext_hmac=checksum.hexdigest(),
            ciphertext_sha256=stored.sha256,
            s3_checksum=stored.s3_checksum,
            encryption_context=context,
            encrypted_at=utc_now(),
            instance=classification.instance,
            contact_id=classification.contact_id,
            instance_id=self.instances.instance_id_for_alias(classification.instance) if classification.instance else None,
            duration_ms=int((time.monotonic() - started) * 1000),
            content_type=described.content_type,
            metadata_ciphertext=sealed[0] if sealed is not None else None,
        ), overwrote

    def _check_metadata_version(self, sealed: tuple[bytes, str], object_version: str, keyring: Any,
                                context: dict[str, str], metadata: Mapping[str, str]) -> tuple[bytes, str]:
        """The sealed metadata, under the object's branch key version.

        The record is indexed under the object's version (shredding counts and destroys by
        it), so the metadata must be under that version too. Sealing it first, then the
        object, they differ only if the keyring's cache moved to a newer active version in
        between: the object is then under the newer one, and sealing again (from the same,
        refreshed cache) matches it."""
        if sealed[1] == object_version:
            return sealed
        again = seal_metadata(self.esdk, keyring, context, metadata)
        if again is None or again[1] != object_version:
            # Two rotations within one object's encryption: raising leaves the plaintext in
            # place; the retried delivery encrypts both again (the ciphertext of this attempt
            # is cleaned up as after any crash before the record).
            raise AtrestError(f"branch key version changed while encrypting (object {object_version}); retried")
        return again

    def _finish_source(self, record: ObjectRecord, source: SourceObject, started: float, repeated: bool,
                       earlier_write: bool = False, may_be_retry: bool = True) -> EncryptOutcome:
        self._remove_unrecorded_ciphertext(record, look_for_versions=repeated or earlier_write,
                                           look_for_uploads=repeated or earlier_write or may_be_retry)
        if record.status is ObjectStatus.ENCRYPTED:
            if self._keeps_source(record):  # a record written ENCRYPTED before sources were recorded kept at once
                self.records.mark_source(record, ObjectStatus.SOURCE_KEPT)
                record.status = ObjectStatus.SOURCE_KEPT
            else:
                self._delete_source_version(record)
                self.records.mark_source(record, ObjectStatus.SOURCE_DELETED)
                record.status = ObjectStatus.SOURCE_DELETED
        outcome = EncryptOutcome(
            outcome=Outcome.ENCRYPTED,
            source=source,
            vault_key=record.vault_key,
            data_class=record.data_class,
            scope=record.scope,
            branch_key_version=record.branch_key_version,
            plaintext_size=record.plaintext_size,
            ciphertext_size=record.ciphertext_size,
            source_status=record.status.value,
            duration_ms=int((time.monotonic() - started) * 1000),
            repeated=repeated,
        )
        log.info("object encrypted", extra={"outcome": outcome.as_dict()})
        return outcome

    def _keeps_source(self, record: ObjectRecord) -> bool:
        """Kept by configuration (the stack's KeepSourceObjects or the class's source_removal),
        or without a version id we cannot name the exact bytes we encrypted, so we keep them."""
        spec = self.classifier.catalog.get(record.data_class)
        return self.settings.keep_source or (spec is not None and spec.keeps_source) or not record.source_version_id

    def _delete_source_version(self, record: ObjectRecord) -> None:
        # Deleting by version id removes exactly the bytes we encrypted; a newer version of
        # the same key, uploaded meanwhile, stays (it has an event of its own).
        try:
            self.clients.s3.delete_object(
                Bucket=record.source_bucket, Key=record.source_key, VersionId=record.source_version_id
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in _GONE:
                raise

    def _discard_duplicate(self, record: ObjectRecord) -> None:
        if record.vault_version_id and record.vault_version_id != "null":
            try:
                self.clients.s3.delete_object(Bucket=record.vault_bucket, Key=record.vault_key, VersionId=record.vault_version_id)
            except ClientError as error:  # the winner's clean-up may have removed it already
                if error.response.get("Error", {}).get("Code") not in _GONE:
                    raise

    def _written_earlier(self, vault_key: str) -> tuple[bool, ObjectRecord | None]:
        """Whether ciphertext is stored at `vault_key` already, and its record if it has one."""
        if not self._vault_object_exists(vault_key):
            return False, None
        return True, self.records.get_object(vault_key)

    def _vault_object_exists(self, vault_key: str) -> bool:
        try:
            self.clients.s3.head_object(Bucket=self.settings.vault_bucket, Key=vault_key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in _GONE:
                return False
            raise
        return True

    def _remove_unrecorded_ciphertext(self, record: ObjectRecord, look_for_versions: bool, look_for_uploads: bool) -> None:
        """Leave exactly one ciphertext at the vault key: the version the record names.

        An attempt that died after its upload but before its record (or mid-upload) left
        a ciphertext version (or an open multipart upload) that no record names; the retry
        then wrote its own. Once a record exists, those leftovers are redundant copies of
        recorded bytes. A version is deleted only when it is provably such a copy: not the
        recorded version, and an atrest message bound to the same source (its header's
        encryption context equals the record's). Anything else is left alone and logged.
        Running this only after the record is committed keeps it safe against concurrent
        deliveries: whatever they still write at this key is already redundant.

        Versions are listed only when some may exist (`look_for_versions`): a repeated
        delivery, or a first one that found ciphertext at its key before uploading. A
        first delivery that found none has nothing to list (ListObjectVersions is a LIST
        request on AWS, and costs the local emulator a copy of the whole bucket).

        Open multipart uploads are listed (a LIST request too) only when an earlier attempt
        may have died mid-upload (`look_for_uploads`): not on an event's first delivery. One
        missed anyway is aborted by the vault bucket's lifecycle rule a day later.
        """
        s3, bucket, key = self.clients.s3, record.vault_bucket, record.vault_key
        # Smaller ciphertext goes up in one PutObject: no attempt at it opened a multipart upload.
        if look_for_uploads and record.ciphertext_size >= self.settings.part_size and abort_open_uploads(s3, bucket, key):
            log.info("aborted unfinished uploads of an earlier attempt", extra={"vault_key": key})
        if not look_for_versions or not record.vault_version_id or record.vault_version_id == "null":
            return  # nothing else was written here, or an unversioned vault keeps one object per key anyway
        for version_id in other_versions(s3, bucket, key, keep=record.vault_version_id):
            try:
                head = s3.get_object(Bucket=bucket, Key=key, VersionId=version_id, Range=f"bytes=0-{PEEK_BYTES - 1}")
                header = read_header(head["Body"].read())
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") in _GONE:
                    continue  # a concurrent delivery discarded its own copy meanwhile
                raise
            if header is None or context_differences(record.encryption_context, header.encryption_context):
                log.warning("left a vault version that is not a copy of this record alone",
                            extra={"vault_key": key, "version_id": version_id})
                continue
            self._discard_duplicate(replace(record, vault_version_id=version_id))
            log.info("removed ciphertext of an earlier attempt", extra={"vault_key": key, "version_id": version_id})

    def _skip_unavailable(self, source: SourceObject, error: ClientError) -> EncryptOutcome:
        """Skip a source whose described bytes no longer exist; re-raise anything else (retried)."""
        code = error.response.get("Error", {}).get("Code")
        if code in _GONE:
            return self._skip(source, SkipReason.SOURCE_MISSING)
        if code in _REPLACED:
            return self._skip(source, SkipReason.SOURCE_REPLACED)
        raise error

    def _skip(self, source: SourceObject, reason: SkipReason, detail: str | None = None) -> EncryptOutcome:
        outcome = EncryptOutcome(Outcome.SKIPPED, source, reason=reason.value, detail=detail)
        log.info("object skipped", extra={"outcome": outcome.as_dict()})
        return outcome


def _described(response: dict[str, Any]) -> ObjectMetadata:
    """What the GetObject response says about the source besides its bytes (atrest.crypto.object_metadata)."""
    given = response.get("ContentType")
    content_type = bounded_content_type(given)
    if given is not None and content_type is None:
        # Its length only: a hostile value is not for the log either.
        log.warning("source Content-Type is not a plausible header; not kept", extra={"content_type_length": len(given)})
    return ObjectMetadata(content_type, response.get("Metadata") or {})


class _RecordedMeanwhile(Exception):
    """A conditional vault write found an earlier delivery's ciphertext, and its record."""

    def __init__(self, record: ObjectRecord) -> None:
        super().__init__(record.vault_key)
        self.record = record


def _ciphertext_bound(size: int | None, frame_length: int) -> int | None:
    """At most how many bytes the message of `size` plaintext bytes takes: header (< PEEK_BYTES)
    + per frame at most 36 bytes (sequence number, IV, tag, final frame's length)."""
    return None if size is None else size + (size // frame_length + 1) * 36 + PEEK_BYTES


def _real_version(version_id: str | None) -> str | None:
    return None if version_id in (None, "null") else version_id
