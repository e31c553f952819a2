"""Audited reads in the demo: one read through ReadObject that is allowed, one that is denied.

`show_audited_reads` is called by `atrest demo` once a contact's recording and transcript
are in the vault. It runs ReadObjectFunction in-process (as the local runner does) with
a data class catalog that names a QA reviewer role as decryptor of recordings and
transcripts, asks for the contact as that reviewer, fetches every presigned URL from
the emulator and compares the bytes with what was uploaded; then asks as a contractor
role that is no decryptor, and gets 403. Both reads are in the audit trail, printed last.

`read_object_event` builds the event a function URL (AuthType AWS_IAM) gives the
function: tests and the demo use it to say who the caller is (locally SigV4 is not checked).
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
import uuid
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Mapping

QA_REVIEWER_ROLE = "atrest-demo-qa-reviewer"
CONTRACTOR_ROLE = "atrest-demo-contractor"
DEMO_READABLE_CLASSES = ("call-recording", "chat-transcript")


def read_object_event(caller_arn: str, body: Any, *, account_id: str = "123456789012", region: str = "us-east-1",
                      method: str = "POST", url_id: str = "abcdefghijklmnopqrstuvwxyz012345") -> dict[str, Any]:
    """A Lambda function URL event (payload 2.0) from an IAM-authenticated caller."""
    now = datetime.now(timezone.utc)
    role_session = caller_arn.rsplit("/", 1)[-1]
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": "/",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "host": f"{url_id}.lambda-url.{region}.on.aws",
            "x-amz-date": now.strftime("%Y%m%dT%H%M%SZ"),
            "x-forwarded-proto": "https",
            "user-agent": "atrest-demo",
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": url_id,
            "authorizer": {
                "iam": {
                    "accessKey": "ASIAEXAMPLEEXAMPLE00",
                    "accountId": caller_arn.split(":")[4] if caller_arn.count(":") >= 5 else account_id,
                    "callerId": f"AROAEXAMPLEEXAMPLE000:{role_session}",
                    "cognitoIdentity": None,
                    "principalOrgId": None,
                    "userArn": caller_arn,
                    "userId": f"AROAEXAMPLEEXAMPLE000:{role_session}",
                }
            },
            "domainName": f"{url_id}.lambda-url.{region}.on.aws",
            "domainPrefix": url_id,
            "http": {"method": method, "path": "/", "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1", "userAgent": "atrest-demo"},
            "requestId": str(uuid.uuid4()),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
            "timeEpoch": int(now.timestamp() * 1000),
        },
        "body": body if isinstance(body, str) or body is None else json.dumps(body),
        "isBase64Encoded": False,
    }


def role_session_arn(account_id: str, role: str, session: str) -> str:
    return f"arn:aws:sts::{account_id}:assumed-role/{role}/{session}"


def catalog_with_decryptors(path: Path, decryptors: Mapping[str, list[str]]) -> Path:
    """The packaged data class catalog with `decryptors` filled in per class, written to `path`."""
    document = json.loads(resources.files("atrest.catalog").joinpath("data_classes.json").read_text(encoding="utf-8"))
    for entry in document["classes"]:
        if entry["name"] in decryptors:
            entry["decryptors"] = list(decryptors[entry["name"]])
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return path


def fetch(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - a presigned URL we just made
        return bytes(response.read())


def show_audited_reads(runner: Any, settings: Any, contact_id: str, originals: Mapping[str, bytes],
                       say: Callable[[str, str], None], work_dir: Path, stdout: Any = None) -> int:
    """One allowed and one denied read of `contact_id` through ReadObjectFunction, and their audit
    records. `originals`: intake key -> uploaded bytes. Returns 0 when both behaved, else 1."""
    from atrest.core.clients import AwsClients
    from atrest.storage.audit import AuditTrail
    from atrest_cli.commands.audit import render_audit_table
    from atrest_cli.local.lambda_runtime import InProcessFunction

    state = runner.state
    catalog = catalog_with_decryptors(Path(work_dir) / "data-classes.demo.json",
                                      {name: [QA_REVIEWER_ROLE] for name in DEMO_READABLE_CLASSES})
    read_object = InProcessFunction(state.function("ReadObjectFunction"),
                                    {**runner.aws_environment, "ATREST_DATA_CLASSES_FILE": str(catalog)}, stdout=stdout)
    print()
    print(f"audited reads through ReadObject (function URL, AuthType AWS_IAM; decryptors of "
          f"{', '.join(DEMO_READABLE_CLASSES)}: role {QA_REVIEWER_ROLE}):")
    problems: list[str] = []

    reviewer = role_session_arn(state.account_id, QA_REVIEWER_ROLE, "jane")
    allowed = read_object.invoke(read_object_event(reviewer, {
        "reason": "QA review of a disputed refund call", "contact_id": contact_id}, account_id=state.account_id,
        region=state.region))
    response = allowed.response or {}
    body = json.loads(response.get("body") or "{}")
    if not allowed.succeeded or response.get("statusCode") != 200:
        problems.append(f"the reviewer's read answered {response.get('statusCode')}: {body or allowed.error}")
    else:
        matched = 0
        for entry in body["objects"]:
            started = time.monotonic()
            content = fetch(entry["url"])
            same = hashlib.sha256(content).hexdigest() == entry["sha256"] and content in originals.values()
            matched += same
            say("read", f"{entry['data_class']:<16} {len(content):>7} bytes via presigned URL "
                        f"({body['url_expires_in_seconds']} s, fetched in {time.monotonic() - started:.2f} s): "
                        f"{'identical to the upload' if same else 'DIFFERENT from the upload'}")
        if matched != len(body["objects"]) or not body["objects"]:
            problems.append("a presigned URL did not give back the uploaded bytes")
        say("allowed", f"{QA_REVIEWER_ROLE}/jane: 200, {len(body['objects'])} objects; copies deleted within "
                       f"{body['copy_deleted_within_minutes']} min (SweepRetrievals)")

    contractor = role_session_arn(state.account_id, CONTRACTOR_ROLE, "sam")
    denied = read_object.invoke(read_object_event(contractor, {
        "reason": "curious", "contact_id": contact_id}, account_id=state.account_id, region=state.region))
    denied_response = denied.response or {}
    say("denied", f"{CONTRACTOR_ROLE}/sam: {denied_response.get('statusCode')} {denied_response.get('body')}")
    if denied_response.get("statusCode") != 403 or json.loads(denied_response.get("body") or "{}") != {"message": "Forbidden"}:
        problems.append("the contractor's read was not refused with a bare 403")

    records = AuditTrail.for_table(AwsClients().dynamodb, settings.audit_table).for_contact(contact_id)
    print()
    print(render_audit_table(records))
    print()
    if problems:
        print("FAILED: " + "; ".join(problems))
        return 1
    print(f"both reads are in the audit trail ({settings.audit_table}; `atrest audit --contact {contact_id}`); "
          "the reason was recorded, never logged")
    return 0
