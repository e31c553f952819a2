"""ReadObject: audited reads of vault objects, handed back as short-lived presigned URLs.

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

import base64
import binascii
import hashlib
import json
import logging
import re
import shutil
import tempfile
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from botocore.config import Config

from atrest.access import Principal, is_decryptor, parse_principal
from atrest.audit import MAX_REASON_LENGTH, AuditOutcome, AuditRecord, AuditTrail, Channel
from atrest.clock import Clock, SystemClock, to_text
from atrest.errors import AtrestError, ConfigurationError, DecryptRefusedError
from atrest.records import KeyVersionState, MetadataTable, ObjectRecord

log = logging.getLogger(__name__)

# A presigned URL is a bearer token for plaintext: short-lived, and never longer than the copy.
MAX_URL_SECONDS = 300
MAX_BODY_BYTES = 16 * 1024
# Room left on local storage beside the plaintext (the ESDK, Python and the runtime use some).
STAGING_HEADROOM_BYTES = 64 * 1024 * 1024
FORBIDDEN: dict[str, Any] = {"message": "Forbidden"}
_CONTACT_ID = re.compile(r"^[A-Za-z0-9-]{1,128}$")
_CLASS_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
_REQUEST_FIELDS = {"reason", "contact_id", "data_class", "object"}
_CONTENT_TYPES = {".wav": "audio/wav", ".json": "application/json", ".txt": "text/plain", ".pdf": "application/pdf"}


class BadReadRequest(AtrestError):
    """The request body is not a valid ReadObject request; the message says what to send."""


@dataclass(frozen=True)
class ReadRequest:
    reason: str
    contact_id: str | None = None
    data_class: str | None = None
    object_key: str | None = None

    @property
    def requested(self) -> str:
        if self.object_key is not None:
            return f"object:{self.object_key}"
        return f"contact:{self.contact_id}" + (f"/{self.data_class}" if self.data_class else "")


def parse_read_request(body: str | None, is_base64: bool = False) -> ReadRequest:
    """The request a function URL body holds. Raises `BadReadRequest` naming what is wrong."""
    if body is None or body == "":
        raise BadReadRequest('send a JSON body: {"reason": "...", "contact_id": "..."} or {"reason": "...", "object": "<vault key>"}')
    if is_base64:
        try:
            body = base64.b64decode(body, validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise BadReadRequest("the body is not UTF-8 JSON") from None
    if len(body.encode("utf-8")) > MAX_BODY_BYTES:
        raise BadReadRequest(f"the body is larger than {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(body)
    except json.JSONDecodeError:
        raise BadReadRequest("the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise BadReadRequest("the body must be a JSON object")
    unknown = sorted(set(document) - _REQUEST_FIELDS)
    if unknown:
        raise BadReadRequest(f"unknown field(s) {unknown}; send reason and either contact_id (+ data_class) or object")
    reason = document.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        raise BadReadRequest('"reason" is required: say why you need this data (it is kept in the audit trail)')
    if len(reason) > MAX_REASON_LENGTH:
        raise BadReadRequest(f'"reason" is longer than {MAX_REASON_LENGTH} characters')
    contact_id, data_class, key = document.get("contact_id"), document.get("data_class"), document.get("object")
    if (contact_id is None) == (key is None):
        raise BadReadRequest('send exactly one of "contact_id" (all of a contact\'s objects) or "object" (one vault key)')
    if key is not None:
        if data_class is not None:
            raise BadReadRequest('"data_class" narrows a "contact_id" request; an object has its own class')
        if not isinstance(key, str) or not 0 < len(key.encode("utf-8")) <= 1024 or key.startswith(("s3://", "/")):
            raise BadReadRequest('"object" must be a vault key as the metadata names it, e.g. "call-recording/<hash>.esdk"')
        return ReadRequest(reason, object_key=key)
    if not isinstance(contact_id, str) or not _CONTACT_ID.match(contact_id):
        raise BadReadRequest('"contact_id" must be an Amazon Connect contact id (letters, digits and -)')
    if data_class is not None and (not isinstance(data_class, str) or not _CLASS_NAME.match(data_class)):
        raise BadReadRequest('"data_class" must be a data class name, e.g. "call-recording"')
    return ReadRequest(reason, contact_id=contact_id, data_class=data_class)


@dataclass
class ApiResponse:
    """What ReadObject answers, and how many objects each audit outcome counted (for metrics)."""

    status: int
    body: dict[str, Any]
    outcomes: Counter = field(default_factory=Counter)

    def for_function_url(self) -> dict[str, Any]:
        return {
            "statusCode": self.status,
            # The body can hold presigned URLs: no cache may keep it.
            "headers": {"content-type": "application/json", "cache-control": "no-store"},
            "body": json.dumps(self.body),
        }


# -- the retrieval bucket ----------------------------------------------------------------


@dataclass(frozen=True)
class Retrieval:
    key: str
    url: str
    expires_at: str


@dataclass(frozen=True)
class SweepReport:
    deleted: int
    kept: int
    oldest_deleted_seconds: float | None = None  # how old the oldest deleted copy was (a late sweep shows here)

    def as_dict(self) -> dict[str, Any]:
        return {"deleted": self.deleted, "kept": self.kept, "oldest_deleted_seconds": self.oldest_deleted_seconds}


def _file_name(record: ObjectRecord) -> str:
    name = record.source_key.rsplit("/", 1)[-1] or "object"
    return re.sub(r"[^A-Za-z0-9._-]", "-", name)[:200]


class RetrievalStore:
    """Plaintext copies for presigned URLs: written by ReadObject, deleted by the sweep."""

    def __init__(self, s3: Any, presigner: Any, bucket: str, lifetime_minutes: int, clock: Clock | None = None) -> None:
        self.s3 = s3
        self.presigner = presigner
        self.bucket = bucket
        self.lifetime = timedelta(minutes=lifetime_minutes)
        self.clock = clock or SystemClock()

    @classmethod
    def from_settings(cls, settings: Any, clients: Any, clock: Clock | None = None) -> "RetrievalStore":
        if not settings.retrieval_bucket:
            raise ConfigurationError(
                "ReadObject needs ATREST_RETRIEVAL_BUCKET (stack output RetrievalBucketName) to hand plaintext back"
            )
        # Presigned URLs are signed with SigV4 explicitly (whatever the SDK's default for the region).
        presigner = clients.session.client("s3", config=Config(signature_version="s3v4"))
        return cls(clients.s3, presigner, settings.retrieval_bucket, settings.retrieval_lifetime_minutes, clock)

    @property
    def url_seconds(self) -> int:
        return int(min(MAX_URL_SECONDS, self.lifetime.total_seconds()))

    def put(self, path: Path, record: ObjectRecord, request_id: str) -> Retrieval:
        name = _file_name(record)
        key = f"{uuid.uuid4().hex}/{name}"
        self.s3.upload_file(
            str(path), self.bucket, key,
            ExtraArgs={
                "ContentType": _CONTENT_TYPES.get(Path(name).suffix.lower(), "application/octet-stream"),
                "ContentDisposition": f'attachment; filename="{name}"',
                "ServerSideEncryption": "AES256",
                "Metadata": {"atrest-request-id": request_id[:128]},
            },
        )
        seconds = self.url_seconds
        url = self.presigner.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=seconds
        )
        return Retrieval(key, url, to_text(self.clock.now() + timedelta(seconds=seconds)))

    def sweep(self) -> SweepReport:
        """Delete every copy older than the lifetime (by S3's LastModified, not the writer's clock)."""
        now = self.clock.now()
        cutoff = now - self.lifetime
        doomed: list[dict[str, str]] = []
        kept = 0
        oldest: float | None = None
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                if item["LastModified"] <= cutoff:
                    doomed.append({"Key": item["Key"]})
                    age = (now - item["LastModified"]).total_seconds()
                    oldest = age if oldest is None else max(oldest, age)
                else:
                    kept += 1
        for start in range(0, len(doomed), 1000):
            response = self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": doomed[start:start + 1000], "Quiet": True})
            errors = response.get("Errors", [])
            if errors:
                raise AtrestError(
                    f"could not delete {len(errors)} expired retrieval copies "
                    f"({errors[0].get('Code')}); the next sweep retries them"
                )
        return SweepReport(len(doomed), kept, oldest)


# -- the service ---------------------------------------------------------------------------


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
                         name=_file_name(self.record), url=self.retrieval.url, expires_at=self.retrieval.expires_at)
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
                        contact_id=_contact_named_in(body, is_base64))
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

        version = self.records.key_version(record.branch_key_id, record.branch_key_version)
        if version is not None and version.state is KeyVersionState.SHREDDED:
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
                self.reader.decrypt_to_file(record.vault_bucket, record.vault_key, plaintext)
            except DecryptRefusedError as error:
                return refuse(422, "this object does not verify against its record and was not decrypted; "
                                   f"report request {request_id} to the stack's operators", f"decrypt refused: {error}")
            if _sha256(plaintext) != record.plaintext_sha256:
                return refuse(422, "this object's plaintext does not match its recorded checksum and was not "
                                   f"handed out; report request {request_id} to the stack's operators",
                              "plaintext checksum differs from the record")
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
        self.audit.record(AuditRecord(
            principal=principal.arn or "(no caller identity)",
            channel=Channel.API,
            outcome=outcome,
            reason=reason,
            requested=requested[:1100],
            vault_key=record.vault_key if record else None,
            data_class=record.data_class if record else None,
            branch_key_id=record.branch_key_id if record else None,
            branch_key_version=record.branch_key_version if record else None,
            contact_id=(record.contact_id if record else None) or contact_id,
            detail=detail[:500] if detail else None,
            request_id=request_id,
        ))


def _contact_named_in(body: str | None, is_base64: bool) -> str | None:
    """The contact id a malformed request names, if it names a well-formed one: so that
    `atrest audit --contact` shows that attempt too. (The reason is not kept: it was not valid.)"""
    try:
        text = base64.b64decode(body or "").decode("utf-8") if is_base64 else (body or "")
        document = json.loads(text) if len(text) <= MAX_BODY_BYTES else None
    except (ValueError, binascii.Error):
        return None
    contact_id = document.get("contact_id") if isinstance(document, dict) else None
    return contact_id if isinstance(contact_id, str) and _CONTACT_ID.match(contact_id) else None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()

