"""ReadObject's request and response: what a caller may send to the function URL, and
what it gets back. Request validation answers 400 with what to fix; nothing here logs
the body (it holds the caller's reason)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from atrest.core.errors import AtrestError
from atrest.storage.audit import check_reason
from atrest.storage.vault_keys import VaultKey

MAX_BODY_BYTES = 16 * 1024
FORBIDDEN: dict[str, Any] = {"message": "Forbidden"}
_CONTACT_ID = re.compile(r"^[A-Za-z0-9-]{1,128}$")
_CLASS_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
_REQUEST_FIELDS = {"reason", "contact_id", "data_class", "object"}


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
    reason = check_reason(document.get("reason"), BadReadRequest, '"reason"', 'a "reason" in the JSON body')
    contact_id, data_class, key = document.get("contact_id"), document.get("data_class"), document.get("object")
    if (contact_id is None) == (key is None):
        raise BadReadRequest('send exactly one of "contact_id" (all of a contact\'s objects) or "object" (one vault key)')
    if key is not None:
        if data_class is not None:
            raise BadReadRequest('"data_class" narrows a "contact_id" request; an object has its own class')
        if not isinstance(key, str) or not 0 < len(key.encode("utf-8")) <= 1024 or key.startswith(("s3://", "/")):
            raise BadReadRequest(f'"object" must be a vault key as the metadata names it, e.g. "{VaultKey.example("call-recording")}"')
        return ReadRequest(reason, object_key=key)
    if not isinstance(contact_id, str) or not _CONTACT_ID.match(contact_id):
        raise BadReadRequest('"contact_id" must be an Amazon Connect contact id (letters, digits and -)')
    if data_class is not None and (not isinstance(data_class, str) or not _CLASS_NAME.match(data_class)):
        raise BadReadRequest('"data_class" must be a data class name, e.g. "call-recording"')
    return ReadRequest(reason, contact_id=contact_id, data_class=data_class)


@dataclass
class ApiResponse:
    """What ReadObject answers, how many objects each audit outcome counted and how many
    were overwritten in the vault (for metrics)."""

    status: int
    body: dict[str, Any]
    outcomes: Counter = field(default_factory=Counter)
    # Objects whose vault key holds versions newer than the recorded one (a tamper signal).
    overwritten: int = 0

    def for_function_url(self) -> dict[str, Any]:
        return {
            "statusCode": self.status,
            # The body can hold presigned URLs: no cache may keep it.
            "headers": {"content-type": "application/json", "cache-control": "no-store"},
            "body": json.dumps(self.body),
        }




def contact_named_in(body: str | None, is_base64: bool) -> str | None:
    """The contact id a malformed request names, if it names a well-formed one: so that
    `atrest audit --contact` shows that attempt too. (The reason is not kept: it was not valid.)"""
    try:
        text = base64.b64decode(body or "").decode("utf-8") if is_base64 else (body or "")
        document = json.loads(text) if len(text) <= MAX_BODY_BYTES else None
    except (ValueError, binascii.Error):
        return None
    contact_id = document.get("contact_id") if isinstance(document, dict) else None
    return contact_id if isinstance(contact_id, str) and _CONTACT_ID.match(contact_id) else None

