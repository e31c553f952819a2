"""`ReadObjectService`: audited reads of vault objects, handed back as short-lived presigned URLs.

A caller (authenticated by the function URL's AWS_IAM auth) asks for a contact's objects
or for one vault object, and gives a reason. `ReadObjectService.read`:

1. parses the request (400 with what is wrong);
2. finds the objects and checks the caller against the decryptors of each object's data
   class (`atrest.access`). An unauthorized caller gets 403 `{"message": "Forbidden"}`
   whether or not the object or contact exists; an authorized caller asking for
   something that is not there gets 404;
3. records an ALLOWED audit item per object *before* any plaintext exists (no record, no
   read), decrypts with `VaultReader` to local storage (it checks encryption context, size
   and checksum before the file is kept), checks the plaintext SHA-256 against the record,
   copies it to the retrieval bucket and deletes the local file;
4. answers with a presigned GET URL per object that expires in at most 5 minutes.

The copy in the retrieval bucket is deleted by `RetrievalSweeper` (SweepRetrievals, every
5 minutes) once older than `RetrievalLifetimeMinutes`, and by the bucket's 1-day lifecycle
rule if the sweep stops: plaintext rests there at most lifetime + sweep period (docs/audit.md).
Denied and refused reads are audited too. Nothing here logs the reason, a URL or content.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atrest.access import Principal, is_decryptor, parse_principal
from atrest.audit import AuditOutcome, AuditRecord, AuditTrail, Channel
from atrest.errors import DecryptRefusedError
from atrest.read_requests import FORBIDDEN, ApiResponse, BadReadRequest, ReadRequest, contact_named_in, parse_read_request
from atrest.records import MetadataTable, ObjectRecord
from atrest.retrieval import Retrieval, RetrievalStore, file_name

log = logging.getLogger(__name__)

# Room left on local storage beside the plaintext (the ESDK, Python and the runtime use some).
STAGING_HEADROOM_BYTES = 64 * 1024 * 1024


@dataclass
class _Target:
    record: ObjectRecord
    status: int = 0
    retrieval: Retrieval | None = None
    message: str | None = None

    def as_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "object": self.record.vault_key,
            "data_class": self.record.data_class,
            "contact_id": self.record.contact_id,
            "status": self.status,
        }
        if self.retrieval is not None:
            entry.update(size=self.record.plaintext_size, sha256=self.record.plaintext_sha256,
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
        from atrest.data_classes import DataClassCatalog
        from atrest.reader import VaultReader

        reader = VaultReader.from_settings(settings, clients)
        return cls(
            settings,
            DataClassCatalog.from_settings(settings),
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
        # The class of a missing object is read from its key (vault keys are <class>/<hash>.esdk), so
        # that a caller gets the same answer for a missing object as for an existing one it may not read.
        data_class = record.data_class if record is not None else key.split("/", 1)[0]
        known_class = self.catalog.get(data_class) is not None
        authorized = data_class in readable if (record is not None or known_class) else bool(readable)
        if not authorized:
            return self._deny(principal, request, request_id, 403, "not a decryptor" + (f" of {data_class}" if known_class else ""),
                              record)
        if record is None:
            return self._deny(principal, request, request_id, 404, "no such object")
        return self._deliver(principal, request, [record], request_id)

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
        return self._deliver(principal, request, records, request_id)

    # -- outcomes --------------------------------------------------------------------------

    def _deny(self, principal: Principal, request: ReadRequest, request_id: str, status: int, detail: str,
              record: ObjectRecord | None = None) -> ApiResponse:
        self._audit(principal, request_id, AuditOutcome.DENIED, request.reason, request.requested, detail=detail,
                    record=record, contact_id=request.contact_id)
        log.info("read denied", extra={"principal": principal.arn, "requested": request.requested, "status": status,
                                       "request_id": request_id, "detail": detail})
        body = FORBIDDEN if status == 403 else {"message": "Not found"}
        return ApiResponse(status, dict(body), Counter({AuditOutcome.DENIED: 1}))

    def _deliver(self, principal: Principal, request: ReadRequest, records: list[ObjectRecord], request_id: str) -> ApiResponse:
        outcomes: Counter = Counter()
        targets = [_Target(record) for record in records]
        for target in targets:
            outcome = self._deliver_one(principal, request, target, request_id)
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
        return ApiResponse(status, body, outcomes)

    def _deliver_one(self, principal: Principal, request: ReadRequest, target: _Target, request_id: str) -> AuditOutcome:
        record = target.record

        def refuse(status: int, message: str, detail: str) -> AuditOutcome:
            target.status, target.message = status, message
            self._audit(principal, request_id, AuditOutcome.REFUSED, request.reason, request.requested,
                        detail=detail, record=record)
            log.warning("read refused", extra={"principal": principal.arn, "vault_key": record.vault_key,
                                               "status": status, "request_id": request_id, "detail": detail})
            return AuditOutcome.REFUSED

        version = self.reader.shredded_version(record)
        if version is not None:
            return refuse(410, f"the key that protected this object was shredded on {version.shredded_at}; "
                               "it can never be read again", f"key version shredded on {version.shredded_at}")
        free = shutil.disk_usage(self.work_dir).free - STAGING_HEADROOM_BYTES
        if record.plaintext_size > free:
            return refuse(413, f"this object ({record.plaintext_size} bytes) is larger than ReadObject can stage "
                               f"({max(free, 0)} bytes); read it with `atrest decrypt` under a decryptor role",
                          "too large to stage")
        # The record comes first: a read that cannot be recorded does not happen.
        self._audit(principal, request_id, AuditOutcome.ALLOWED, request.reason, request.requested, record=record)
        staging = Path(tempfile.mkdtemp(prefix="object-", dir=self.work_dir))
        try:
            plaintext = staging / "plaintext"
            try:
                # Checks context, sizes and both checksums against the record before keeping the file.
                self.reader.decrypt_record(record, plaintext)
            except DecryptRefusedError as error:
                return refuse(422, "this object does not verify against its record and was not decrypted; "
                                   f"report request {request_id} to the stack's operators", f"decrypt refused: {error}")
            try:
                target.retrieval = self.store.put(plaintext, record, request_id)
            except Exception as error:
                # Recorded as ALLOWED already: say that nothing was handed out after all.
                refuse(500, "internal error", f"staging failed: {type(error).__name__}")
                raise
            target.status = 200
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        log.info("read allowed", extra={"principal": principal.arn, "vault_key": record.vault_key,
                                        "data_class": record.data_class, "request_id": request_id,
                                        "retrieval_key": target.retrieval.key})
        return AuditOutcome.ALLOWED

    def _clear_staging(self) -> None:
        for leftover in Path(self.work_dir).iterdir():
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink(missing_ok=True)

    def _audit(self, principal: Principal, request_id: str, outcome: AuditOutcome, reason: str, requested: str,
               detail: str | None = None, record: ObjectRecord | None = None, contact_id: str | None = None) -> None:
        self.audit.record(AuditRecord.of_read(principal.arn or "(no caller identity)", Channel.API, outcome, reason,
                                              requested, record, detail, contact_id, request_id))
