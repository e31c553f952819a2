"""`ReadObjectService`: audited reads of vault objects, handed back as short-lived presigned URLs.

A caller (authenticated by the function URL's AWS_IAM auth) asks for a contact's objects
or for one vault object, and gives a reason. `ReadObjectService.read`:

1. parses the request (400 with what is wrong);
2. finds the objects and checks the caller against the decryptors of each object's data
   class (`atrest.catalog.access`). An unauthorized caller gets 403 `{"message": "Forbidden"}`
   whether or not the object or contact exists; an authorized caller asking for
   something that is not there gets 404;
3. per object, opens the message and verifies its header; the data class, source,
   instance and contact are taken from the header (`atrest.flows.decrypt_object.HeaderTruth`), a record
   that disagrees is refused, and the caller is authorized again on the header's class;
4. records a REQUESTED audit item *before* any plaintext exists (no record, no read),
   decrypts with `VaultReader` to local storage (it checks encryption context, size and
   checksum before the file is kept, and opens the object's sealed user metadata), copies it
   to the retrieval bucket with its original Content-Type and metadata, deletes the local
   file and concludes the attempt RELEASED (or REFUSED / FAILED): one outcome per attempt;
5. answers with a presigned GET URL per object that expires in at most 5 minutes.

A vault key with versions newer than the recorded one is logged (no content) and counted
(`ApiResponse.overwritten`, metric `VaultObjectOverwritten`): only the recorded version is read.

The copy in the retrieval bucket is deleted by `RetrievalSweeper` (SweepRetrievals, every
5 minutes) once older than `RetrievalLifetimeMinutes`, and by the bucket's 1-day lifecycle
rule if the sweep stops: plaintext rests there at most lifetime + sweep period (docs/audit.md).
Denied, not-found and refused reads are audited too. Nothing here logs the reason, a URL or content.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from atrest.catalog.access import Principal, is_decryptor, parse_principal
from atrest.catalog.data_classes import DataClassCatalog
from atrest.core.errors import DecryptRefusedError, RecordMismatchError
from atrest.events.read_requests import FORBIDDEN, ApiResponse, BadReadRequest, ReadRequest, contact_named_in, parse_read_request
from atrest.flows.decrypt_object import VaultReader
from atrest.storage.audit import AuditOutcome, AuditRecord, AuditTrail, Channel
from atrest.storage.records import MetadataTable, ObjectRecord
from atrest.storage.retrieval import Retrieval, RetrievalStore, file_name
from atrest.storage.vault_keys import VaultKey

log = logging.getLogger(__name__)

# Room left on local storage beside the plaintext (the ESDK, Python and the runtime use some).
STAGING_HEADROOM_BYTES = 64 * 1024 * 1024
# A REQUESTED attempt with no outcome after this reads "no outcome (crashed?)": Lambda's
# longest timeout, so no invocation can still be working on it.
READ_ALLOWANCE = timedelta(minutes=15)


class _NotAuthorizedForHeader(Exception):
    """The verified header names a class the caller may not read (raised before any plaintext)."""

    def __init__(self, truth: Any) -> None:
        super().__init__(truth.data_class)
        self.truth = truth


@dataclass
class _Target:
    record: ObjectRecord
    status: int = 0
    retrieval: Retrieval | None = None
    message: str | None = None
    truth: Any = None  # HeaderTruth, once the header verified
    newer: tuple[str, ...] = ()  # versions stored at the vault key after the recorded one
    sha256: str | None = None  # of the plaintext staged, computed as it was decrypted (the record holds none)

    def as_dict(self) -> dict[str, Any]:
        described = self.truth or self.record
        entry: dict[str, Any] = {
            "object": self.record.vault_key,
            "data_class": described.data_class,
            "contact_id": described.contact_id,
            "status": self.status,
        }
        if self.retrieval is not None:
            entry.update(size=self.record.plaintext_size, sha256=self.sha256,
                         name=file_name(self.record), url=self.retrieval.url, expires_at=self.retrieval.expires_at)
        else:
            entry["message"] = self.message
        return entry


class ReadObjectService:
    """Authorizes, audits, decrypts and stages reads. One per function instance."""

    def __init__(self, settings: Any, catalog: Any, reader: Any, records: MetadataTable, audit: AuditTrail,
                 store: RetrievalStore, work_dir: str | None = None) -> None:
        self.settings = settings
        self.catalog = catalog
        self.reader = reader
        self.records = records
        self.audit = audit
        self.store = store
        # One staging directory per function instance (on Lambda: per execution environment,
        # whose /tmp outlives invocations). Each read empties it first, so plaintext left by
        # an invocation that timed out mid-read lasts only until the next read.
        self.work_dir = tempfile.mkdtemp(prefix="atrest-read-", dir=work_dir)

    @classmethod
    def from_settings(cls, settings: Any, clients: Any) -> "ReadObjectService":
        catalog = DataClassCatalog.from_settings(settings)
        reader = VaultReader.from_settings(settings, clients, catalog)
        return cls(
            settings,
            catalog,
            reader,
            reader.records,
            AuditTrail.for_table(clients.dynamodb, settings.audit_table),
            RetrievalStore.from_settings(settings, clients),
        )

    # -- the request ---------------------------------------------------------------------

    def read(self, caller_arn: str | None, body: str | None, request_id: str, is_base64: bool = False) -> ApiResponse:
        self._clear_staging()
        principal = parse_principal(caller_arn)
        try:
            request = parse_read_request(body, is_base64)
        except BadReadRequest as error:
            self._audit(principal, request_id, AuditOutcome.DENIED, "", "malformed request", detail=f"malformed: {error}",
                        contact_id=contact_named_in(body, is_base64))
            return ApiResponse(400, {"message": str(error)}, Counter({AuditOutcome.DENIED: 1}))
        readable = self.readable_classes(principal)
        if request.object_key is not None:
            return self._read_object(principal, request, readable, request_id)
        return self._read_contact(principal, request, readable, request_id)

    def readable_classes(self, principal: Principal) -> set[str]:
        return {spec.name for spec in self.catalog.classes
                if is_decryptor(principal, spec.decryptors, self.settings.account_id)}

    def _read_object(self, principal: Principal, request: ReadRequest, readable: set[str], request_id: str) -> ApiResponse:
        key = request.object_key or ""
        record = self.records.get_object(key)
        if record is not None and record.vault_bucket != self.settings.vault_bucket:
            record = None
        # The class of a missing object is read from its key, so that a caller gets the same
        # answer for a missing object as for an existing one it may not read.
        data_class = record.data_class if record is not None else VaultKey.parse(key).data_class
        known_class = self.catalog.get(data_class) is not None
        authorized = data_class in readable if (record is not None or known_class) else bool(readable)
        if not authorized:
            return self._deny(principal, request, request_id, 403, "not a decryptor" + (f" of {data_class}" if known_class else ""),
                              record)
        if record is None:
            return self._deny(principal, request, request_id, 404, "no such object")
        return self._deliver(principal, request, [record], request_id, readable)

    def _read_contact(self, principal: Principal, request: ReadRequest, readable: set[str], request_id: str) -> ApiResponse:
        wanted = {request.data_class} if request.data_class else readable
        allowed = wanted & readable
        if not allowed:
            detail = f"not a decryptor of {request.data_class}" if request.data_class else "not a decryptor of any class"
            return self._deny(principal, request, request_id, 403, detail)
        # Objects of classes the caller may not read are left out, as if not asked for: a caller
        # learns nothing about them (and may have asked in good faith for "this contact").
        records = [r for r in self.records.objects_of_contact(request.contact_id or "") if r.data_class in allowed
                   and r.vault_bucket == self.settings.vault_bucket]
        if not records:
            return self._deny(principal, request, request_id, 404, "no objects for this contact")
        return self._deliver(principal, request, records, request_id, allowed)

    # -- outcomes --------------------------------------------------------------------------

    def _deny(self, principal: Principal, request: ReadRequest, request_id: str, status: int, detail: str,
              record: ObjectRecord | None = None) -> ApiResponse:
        # A decryptor asking for what is not there is told so (404); the audit says NOT_FOUND, not DENIED.
        outcome = AuditOutcome.DENIED if status == 403 else AuditOutcome.NOT_FOUND
        self._audit(principal, request_id, outcome, request.reason, request.requested, detail=detail,
                    record=record, contact_id=request.contact_id)
        log.info("read denied" if status == 403 else "read not found",
                 extra={"principal": principal.arn, "requested": request.requested, "status": status,
                        "request_id": request_id, "detail": detail})
        body = FORBIDDEN if status == 403 else {"message": "Not found"}
        return ApiResponse(status, dict(body), Counter({outcome: 1}))

    def _deliver(self, principal: Principal, request: ReadRequest, records: list[ObjectRecord], request_id: str,
                 allowed: set[str]) -> ApiResponse:
        outcomes: Counter = Counter()
        targets = [_Target(record) for record in records]
        overwritten = 0
        for target in targets:
            overwritten += self._note_overwritten(target, request_id)
            outcome = self._deliver_one(principal, request, target, request_id, allowed)
            outcomes[outcome] += 1
        delivered = [t for t in targets if t.retrieval is not None]
        status = 200 if delivered else targets[0].status
        body: dict[str, Any] = {
            "request_id": request_id,
            "objects": [t.as_dict() for t in targets],
            "url_expires_in_seconds": self.store.url_seconds,
            "copy_deleted_within_minutes": int(self.store.lifetime.total_seconds() // 60) + 5,
        }
        if not delivered:
            body["message"] = targets[0].message
        return ApiResponse(status, body, outcomes, overwritten)

    def _note_overwritten(self, target: _Target, request_id: str) -> int:
        """1 (and a warning without content) when the vault key holds versions newer than the
        recorded one; the recorded version is still the one read."""
        record = target.record
        newer = target.newer = self.reader.newer_versions(record)
        if not newer:
            return 0
        log.warning("vault object overwritten after encryption", extra={
            "vault_key": record.vault_key, "recorded_version": record.vault_version_id,
            "newer_versions": list(newer), "request_id": request_id})
        return 1

    def _deliver_one(self, principal: Principal, request: ReadRequest, target: _Target, request_id: str,
                     allowed: set[str]) -> AuditOutcome:
        record = target.record
        requested: list[AuditRecord] = []  # the REQUESTED item, once written

        def settle(outcome: AuditOutcome, status: int, message: str | None, detail: str | None) -> AuditOutcome:
            target.status, target.message = status, message
            if requested:
                self.audit.conclude(requested[0], outcome, detail)
            else:
                self._audit(principal, request_id, outcome, request.reason, request.requested, detail=detail,
                            record=record, truth=target.truth)
            if outcome is not AuditOutcome.RELEASED:
                log.warning(f"read {outcome.value.lower().replace('_', ' ')}", extra={
                    "principal": principal.arn, "vault_key": record.vault_key, "status": status,
                    "request_id": request_id, "detail": detail})
            return outcome

        def refuse(status: int, message: str, detail: str) -> AuditOutcome:
            return settle(AuditOutcome.REFUSED, status, message, detail)

        def begin(truth: Any) -> None:
            """The header verified and agrees with the record: authorize on its class and record
            the attempt, all before the first byte of plaintext."""
            target.truth = truth
            if truth.data_class not in allowed:
                raise _NotAuthorizedForHeader(truth)
            if request.contact_id is not None and truth.contact_id != request.contact_id:
                raise RecordMismatchError(f"the message header's source belongs to contact {truth.contact_id}, "
                                          f"not {request.contact_id}: the contact index entry was edited")
            requested.append(self.audit.begin(
                AuditRecord.of_read(principal.arn or "(no caller identity)", Channel.API, AuditOutcome.REQUESTED,
                                    request.reason, request.requested, record, request_id=request_id, truth=truth),
                READ_ALLOWANCE))

        version = self.reader.shredded_version(record)
        if version is not None:
            return refuse(410, f"the key that protected this object was shredded on {version.shredded_at}; "
                               "it can never be read again", f"key version shredded on {version.shredded_at}")
        free = shutil.disk_usage(self.work_dir).free - STAGING_HEADROOM_BYTES
        if record.plaintext_size > free:
            return refuse(413, f"this object ({record.plaintext_size} bytes) is larger than ReadObject can stage "
                               f"({max(free, 0)} bytes); read it with `atrest decrypt` under a decryptor role",
                          "too large to stage")
        staging = Path(tempfile.mkdtemp(prefix="object-", dir=self.work_dir))
        try:
            plaintext = staging / "plaintext"
            try:
                # Checks the header against the record, then context, sizes and both checksums,
                # before the file is kept; `begin` runs between the header and the first frame.
                result = self.reader.decrypt_record(record, plaintext, before_plaintext=begin)
                target.sha256 = result.plaintext_sha256
            except _NotAuthorizedForHeader as denial:
                return settle(AuditOutcome.DENIED, 403, FORBIDDEN["message"],
                              f"not a decryptor of {denial.truth.data_class} (the message header's class)")
            except DecryptRefusedError as error:
                target.truth = target.truth or getattr(error, "truth", None)  # a refused record: the header's word
                return refuse(422, "this object does not verify against its record and was not decrypted; "
                                   f"report request {request_id} to the stack's operators", f"decrypt refused: {error}")
            # The copy gets the original's Content-Type and user metadata back.
            target.retrieval = self.store.put(plaintext, record, request_id, result.content_type, result.metadata)
            settle(AuditOutcome.RELEASED, 200, None,
                   f"vault key overwritten after encryption: newer versions {', '.join(target.newer)}; "
                   "the recorded version was read" if target.newer else None)
        except BaseException as error:
            if requested and target.status == 0:
                # Started and broke (staging, storage, a timeout's signal): nothing was handed out.
                settle(AuditOutcome.FAILED, 500, "internal error", f"{type(error).__name__}")
            raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("read released", extra={"principal": principal.arn, "vault_key": record.vault_key,
                                         "data_class": target.truth.data_class, "request_id": request_id,
                                         "retrieval_key": target.retrieval.key})
        return AuditOutcome.RELEASED

    def _clear_staging(self) -> None:
        for leftover in Path(self.work_dir).iterdir():
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)

    def _audit(self, principal: Principal, request_id: str, outcome: AuditOutcome, reason: str, requested: str,
               detail: str | None = None, record: ObjectRecord | None = None, contact_id: str | None = None,
               truth: Any = None) -> None:
        self.audit.record(AuditRecord.of_read(principal.arn or "(no caller identity)", Channel.API, outcome, reason,
                                              requested, record, detail, contact_id, request_id, truth=truth))
