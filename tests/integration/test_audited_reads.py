"""Audited reads: ReadObjectFunction (a function URL, AuthType AWS_IAM) run in-process on the
stack of template.yaml, `atrest decrypt`, `atrest audit` and SweepRetrievalsFunction.

Objects are encrypted by the real pipeline; reads go through the real handler with a
function-URL event that names the caller (locally SigV4 is not checked: the event says
who); presigned URLs are fetched from the emulator over HTTP. The data class catalog the
function reads names the decryptors:

- call-recording: role contact-center/QaReviewer (by ARN, with a path);
- chat-transcript: QaReviewer and Supervisor (bare names: the stack's account);
- integration-configuration: QaReviewer.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import time
import urllib.error
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import boto3
import pytest

from atrest.core.clock import ManualClock
from atrest.flows.encrypt_object import EncryptPipeline
from atrest.storage.audit import AuditOutcome, AuditRecord, AuditWriteError, Channel
from atrest.storage.intake import SourceObject
from atrest.storage.record_keys import key_version_key, object_key
from atrest.storage.records import MetadataTable
from atrest.storage.vault_keys import VaultKey
from atrest_cli.demos.reads import catalog_with_decryptors, fetch, read_object_event, role_session_arn
from atrest_cli.demos.samples import call_recording_wav, chat_transcript, connect_key

pytestmark = pytest.mark.local_only("runs ReadObjectFunction and the sweep in this process with emulator-minted role credentials")

FORBIDDEN = {"message": "Forbidden"}


@pytest.fixture(scope="module")
def catalog_file(local_stack: Any, tmp_path_factory: Any) -> Path:
    account = local_stack.account_id
    return catalog_with_decryptors(tmp_path_factory.mktemp("catalog") / "data-classes.json", {
        "call-recording": [f"arn:aws:iam::{account}:role/contact-center/QaReviewer"],
        "chat-transcript": ["QaReviewer", "Supervisor"],
        "integration-configuration": ["QaReviewer"],
    })


@pytest.fixture(scope="module")
def function_log() -> io.StringIO:
    """Everything ReadObjectFunction prints or logs (Powertools logs to stdout)."""
    return io.StringIO()


@pytest.fixture(scope="module")
def read_object(local_stack: Any, emulator: Any, catalog_file: Path, function_log: io.StringIO) -> Any:
    from atrest_cli.local.lambda_runtime import InProcessFunction

    environment = {**emulator.environment(), "ATREST_DATA_CLASSES_FILE": str(catalog_file),
                   # Every log line the function could write, for the tests that read the log.
                   "POWERTOOLS_LOG_LEVEL": "DEBUG"}
    return InProcessFunction(local_stack.function("ReadObjectFunction"), environment, stdout=function_log)


@pytest.fixture(scope="module")
def callers(local_stack: Any) -> dict[str, str]:
    account = local_stack.account_id
    return {
        "qa": role_session_arn(account, "QaReviewer", "jane"),
        "supervisor": role_session_arn(account, "Supervisor", "sam"),
        "contractor": role_session_arn(account, "Contractor", "eve"),
    }


@pytest.fixture
def read(read_object: Any, local_stack: Any):
    """POST a body to ReadObject as `caller`; returns (status, body, headers)."""

    def call(caller: str, body: Any, method: str = "POST") -> tuple[int, dict[str, Any], dict[str, str]]:
        invocation = read_object.invoke(read_object_event(caller, body, account_id=local_stack.account_id,
                                                          region=local_stack.region, method=method))
        assert invocation.succeeded, invocation.error
        response = invocation.response
        return response["statusCode"], json.loads(response["body"]), response["headers"]

    return call


def encrypt(settings: Any, key: str, body: bytes) -> str:
    version = boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=body)["VersionId"]
    outcome = EncryptPipeline.from_settings(settings).encrypt(SourceObject(settings.intake_bucket, key, version))
    assert outcome.vault_key, outcome
    return outcome.vault_key


@pytest.fixture
def contact(settings: Any) -> dict[str, Any]:
    """A new contact with a call recording and a chat transcript in the vault."""
    contact_id = str(uuid.uuid4())
    when = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)
    audio = call_recording_wav(seconds=0.5)
    transcript = chat_transcript(settings.account_id, "11111111-2222-3333-4444-555555555555", contact_id, when)
    return {
        "id": contact_id,
        "call-recording": (encrypt(settings, connect_key(settings.connect_prefix, "acme", "CallRecordings", contact_id, when, "wav"), audio), audio),
        "chat-transcript": (encrypt(settings, connect_key(settings.connect_prefix, "acme", "ChatTranscripts", contact_id, when, "json"), transcript), transcript),
    }


def missing_object(data_class: str) -> str:
    """A well-formed vault key of `data_class` that no object has."""
    return str(VaultKey.of_source(data_class, "no-such-intake", str(uuid.uuid4()), None))


def staged_files(read_object: Any) -> list[Path]:
    """What the function instance has on local storage (its staging directory)."""
    return [p for p in Path(read_object.module.service.work_dir).rglob("*")]


# --------------------------------------------------------------------------- allowed reads


def test_a_decryptor_reads_a_contact_through_presigned_urls_that_give_back_the_original_bytes(read, read_object, callers, contact, trail, settings):
    status, body, headers = read(callers["qa"], {"reason": "QA review of ticket 4711", "contact_id": contact["id"]})

    assert status == 200, body
    assert headers["cache-control"] == "no-store"
    assert {entry["data_class"] for entry in body["objects"]} == {"call-recording", "chat-transcript"}
    for entry in body["objects"]:
        vault_key, original = contact[entry["data_class"]]
        assert entry["object"] == vault_key and entry["contact_id"] == contact["id"] and entry["status"] == 200
        assert entry["size"] == len(original)
        assert fetch(entry["url"]) == original
        expires = datetime.fromisoformat(entry["expires_at"].replace("Z", "+00:00"))
        assert timedelta(0) < expires - datetime.now(timezone.utc) <= timedelta(minutes=5)
        assert "X-Amz-Expires=300" in entry["url"]
    assert body["url_expires_in_seconds"] == 300
    assert staged_files(read_object) == [], "the local plaintext must be deleted once copied"

    records = trail.for_contact(contact["id"])
    assert [(r.outcome, r.data_class) for r in records] == [
        (AuditOutcome.RELEASED, "call-recording"), (AuditOutcome.RELEASED, "chat-transcript")]
    recording = MetadataTable(boto3.client("dynamodb"), settings.metadata_table).get_object(contact["call-recording"][0])
    first = records[0]
    assert first.principal == callers["qa"] and first.channel is Channel.API
    assert first.reason == "QA review of ticket 4711" and first.requested == f"contact:{contact['id']}"
    assert (first.vault_key, first.branch_key_id, first.branch_key_version) == (
        recording.vault_key, recording.branch_key_id, recording.branch_key_version)
    assert first.request_id == records[1].request_id == body["request_id"]


def test_plaintext_left_by_an_invocation_that_died_is_removed_by_the_next_read(read, read_object, callers):
    read(callers["contractor"], {"reason": "warm up", "contact_id": "c1"})  # loads the function
    leftover = Path(read_object.module.service.work_dir) / "object-timedout" / "plaintext"
    leftover.parent.mkdir()
    leftover.write_bytes(b"plaintext of a read that timed out")
    assert read(callers["contractor"], {"reason": "r", "contact_id": "c2"})[0] == 403
    assert staged_files(read_object) == []


def test_a_decryptor_reads_one_object_by_its_vault_key(read, callers, contact):
    transcript_key, transcript = contact["chat-transcript"]
    status, body, _ = read(callers["supervisor"], {"reason": "supervisor check", "object": transcript_key})
    assert status == 200, body
    (entry,) = body["objects"]
    assert entry["object"] == transcript_key and fetch(entry["url"]) == transcript


def test_data_class_narrows_a_contact_read(read, callers, contact):
    status, body, _ = read(callers["qa"], {"reason": "listen only", "contact_id": contact["id"], "data_class": "call-recording"})
    assert status == 200
    assert [entry["data_class"] for entry in body["objects"]] == ["call-recording"]


def test_a_contact_read_leaves_out_the_classes_the_caller_may_not_read(read, callers, contact):
    # Supervisor may read transcripts but not recordings: the recording is simply not there.
    status, body, _ = read(callers["supervisor"], {"reason": "chat QA", "contact_id": contact["id"]})
    assert status == 200
    assert [entry["data_class"] for entry in body["objects"]] == ["chat-transcript"]
    assert "call-recording" not in json.dumps(body)


# --------------------------------------------------------------------------- denied reads


def test_a_caller_who_is_no_decryptor_gets_a_bare_403_and_is_audited(read, callers, contact, trail):
    status, body, headers = read(callers["contractor"], {"reason": "just curious", "contact_id": contact["id"]})
    assert (status, body) == (403, FORBIDDEN)
    assert headers["content-type"] == "application/json"

    (denied,) = [r for r in trail.for_contact(contact["id"]) if r.outcome is AuditOutcome.DENIED]
    assert denied.principal == callers["contractor"] and denied.reason == "just curious"
    assert denied.requested == f"contact:{contact['id']}" and denied.detail == "not a decryptor of any class"


def test_a_decryptor_of_one_class_is_denied_another_class_s_object(read, callers, contact, trail):
    recording_key, _ = contact["call-recording"]
    assert read(callers["supervisor"], {"reason": "r", "object": recording_key})[:2] == (403, FORBIDDEN)
    (denied,) = [r for r in trail.for_contact(contact["id"]) if r.outcome is AuditOutcome.DENIED]
    assert denied.vault_key == recording_key and denied.data_class == "call-recording"


def test_an_unauthorized_caller_cannot_tell_what_exists(read, callers, contact):
    recording_key, _ = contact["call-recording"]
    asks = [
        {"reason": "r", "object": recording_key},  # exists
        {"reason": "r", "object": missing_object("call-recording")},  # does not
        {"reason": "r", "object": missing_object("no-such-class")},
        {"reason": "r", "contact_id": contact["id"]},  # has objects
        {"reason": "r", "contact_id": str(uuid.uuid4())},  # has none
        {"reason": "r", "contact_id": contact["id"], "data_class": "call-recording"},
        {"reason": "r", "contact_id": str(uuid.uuid4()), "data_class": "no-such-class"},
    ]
    answers = [read(callers["contractor"], ask) for ask in asks]
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0][:2] == (403, FORBIDDEN)


def test_a_decryptor_asking_for_something_missing_gets_404(read, callers, trail):
    missing_contact = str(uuid.uuid4())
    assert read(callers["qa"], {"reason": "r", "contact_id": missing_contact})[:2] == (404, {"message": "Not found"})
    assert read(callers["qa"], {"reason": "r", "object": missing_object("call-recording")})[0] == 404
    (missing,) = trail.for_contact(missing_contact)
    assert missing.outcome is AuditOutcome.NOT_FOUND and missing.detail == "no objects for this contact"


@pytest.mark.parametrize(("body", "says"), [
    ({"contact_id": "c1"}, '"reason" is required'),
    ({"reason": "", "contact_id": "c1"}, '"reason" is required'),
    ("{not json", "not valid JSON"),
    ({"reason": "r"}, "exactly one of"),
])
def test_a_malformed_request_gets_400_saying_what_to_send_and_is_audited(read, callers, trail, body, says):
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    status, answer, _ = read(callers["contractor"], body)
    assert status == 400 and says in answer["message"]
    mine = [r for r in trail.since(started) if r.principal == callers["contractor"] and r.requested == "malformed request"]
    assert mine and mine[-1].outcome is AuditOutcome.DENIED and says in (mine[-1].detail or "")


def test_a_malformed_request_for_a_contact_is_found_under_that_contact(read, callers, trail):
    contact_id = str(uuid.uuid4())
    assert read(callers["contractor"], {"contact_id": contact_id})[0] == 400
    (denied,) = trail.for_contact(contact_id)
    assert (denied.outcome, denied.requested, denied.reason) == (AuditOutcome.DENIED, "malformed request", "")


def test_only_post_is_accepted(read, callers):
    assert read(callers["qa"], None, method="GET")[0] == 405


# --------------------------------------------------------------------------- refused reads


def test_a_shredded_key_version_is_refused_with_410_and_audited(read, callers, settings, trail):
    records = MetadataTable(boto3.client("dynamodb"), settings.metadata_table)
    vault_key = encrypt(settings, f"integrations/{uuid.uuid4()}/crm.json", b'{"endpoint": "https://crm.example.com"}')
    record = records.get_object(vault_key)
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    # Only the version's record is marked (as ExpireKeys does before deleting the key store items),
    # on the integration-configuration class's own key, so no other test's objects are affected.
    assert records.mark_shredded(record.branch_key_id, record.branch_key_version, "2026-01-02T03:04:05.000Z", 1)
    try:
        status, body, _ = read(callers["qa"], {"reason": "audit of integrations", "object": vault_key})
    finally:
        boto3.client("dynamodb").delete_item(TableName=settings.metadata_table,
                                             Key=key_version_key(record.branch_key_id, record.branch_key_version))
    assert status == 410 and "shredded on 2026-01-02" in body["message"]
    assert '"url":' not in json.dumps(body)
    (refused,) = [r for r in trail.since(started) if r.vault_key == vault_key]
    assert refused.outcome is AuditOutcome.REFUSED and "shredded" in (refused.detail or "")
    # Not refused for the unauthorized: they still learn nothing.
    assert read(callers["contractor"], {"reason": "r", "object": vault_key})[:2] == (403, FORBIDDEN)


# --------------------------------------------------------------------------- the trail itself


def test_audit_records_are_never_overwritten(trail):
    record = AuditRecord(principal="arn:aws:sts::123456789012:assumed-role/QaReviewer/jane", channel=Channel.API,
                         outcome=AuditOutcome.ALLOWED, reason="the first reason", requested="contact:x",
                         contact_id=f"overwrite-{uuid.uuid4()}")
    trail.record(record)
    forged = AuditRecord(**{**record.as_dict(), "channel": Channel.API, "outcome": AuditOutcome.DENIED,
                            "reason": "a forged reason"})
    assert forged.sort_key == record.sort_key
    with pytest.raises(AuditWriteError, match="never overwritten"):
        trail.record(forged)
    with pytest.raises(AuditWriteError):
        trail.record(record)  # a retry of the same write is refused too
    assert trail.for_contact(record.contact_id) == [record]


def test_no_reason_url_or_plaintext_reaches_the_logs(read, callers, contact, function_log, caplog):
    caplog.set_level(logging.DEBUG, logger="atrest")
    caplog.set_level(logging.INFO)
    secret_reasons = [f"reason-{uuid.uuid4()}" for _ in range(4)]
    status, body, _ = read(callers["qa"], {"reason": secret_reasons[0], "contact_id": contact["id"]})
    assert status == 200
    read(callers["contractor"], {"reason": secret_reasons[1], "contact_id": contact["id"]})
    read(callers["qa"], {"reason": secret_reasons[2], "object": missing_object("call-recording")})
    read(callers["qa"], {"reason": secret_reasons[3] + "x" * 600, "contact_id": contact["id"]})  # too long: 400

    logged = function_log.getvalue() + caplog.text
    assert "read released" in logged and "read denied" in logged  # the log does say what happened
    for reason in secret_reasons:
        assert reason not in logged
    for entry in body["objects"]:
        assert entry["url"].split("?")[1] not in logged
    assert "X-Amz-Signature" not in logged
    transcript = contact["chat-transcript"][1].decode()
    for message in json.loads(transcript)["Transcript"]:
        if "Content" in message:
            assert message["Content"] not in logged


# --------------------------------------------------------------------------- the sweep


def test_the_sweep_deletes_copies_older_than_their_lifetime_and_keeps_fresh_ones(local_stack, settings):
    from atrest.core.clients import AwsClients
    from atrest.storage.retrieval import RetrievalStore

    s3 = boto3.client("s3")
    prefix = f"sweep-test-{uuid.uuid4().hex}/"
    s3.put_object(Bucket=settings.retrieval_bucket, Key=prefix + "old", Body=b"old")
    time.sleep(2.1)  # S3 times are whole seconds
    s3.put_object(Bucket=settings.retrieval_bucket, Key=prefix + "fresh", Body=b"fresh")
    listed = {o["Key"]: o["LastModified"] for o in s3.list_objects_v2(Bucket=settings.retrieval_bucket, Prefix=prefix)["Contents"]}
    lifetime = timedelta(minutes=settings.retrieval_lifetime_minutes)
    clock = ManualClock(listed[prefix + "fresh"] + lifetime - timedelta(seconds=1))
    report = RetrievalStore.from_settings(settings, AwsClients(), clock=clock).sweep()

    left = [o["Key"] for o in s3.list_objects_v2(Bucket=settings.retrieval_bucket, Prefix=prefix).get("Contents", [])]
    assert left == [prefix + "fresh"]
    assert report.deleted >= 1 and report.kept >= 1
    assert report.oldest_deleted_seconds is not None and report.oldest_deleted_seconds > lifetime.total_seconds()


def test_the_scheduled_sweep_keeps_fresh_copies_and_deletes_them_once_expired(read, callers, contact, local_stack, settings):
    from atrest_cli.local.runner import Runner

    status, body, _ = read(callers["qa"], {"reason": "sweep check", "contact_id": contact["id"]})
    assert status == 200
    urls = [entry["url"] for entry in body["objects"]]
    runner = Runner(local_stack, functions=["SweepRetrievalsFunction"], function_stdout=io.StringIO())

    (first,) = runner.fire_schedules()  # moto never fires schedules; the runner plays them
    assert first.succeeded, first.error
    assert all(fetch(url) for url in urls), "fresh copies must survive a sweep"

    sweep = runner.function("SweepRetrievalsFunction")
    sweep.module.sweeper.clock = ManualClock(datetime.now(timezone.utc) + timedelta(minutes=settings.retrieval_lifetime_minutes, seconds=5))
    (second,) = runner.fire_schedules()
    assert second.succeeded and second.response["deleted"] >= len(urls)
    for url in urls:
        with pytest.raises(urllib.error.HTTPError) as gone:
            fetch(url)
        assert gone.value.code == 404


# --------------------------------------------------------------------------- the CLI


def atrest(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "atrest_cli.main", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)


def test_atrest_decrypt_requires_a_reason_and_records_every_attempt(cli_environment, settings, contact, trail, tmp_path):
    recording_key, audio = contact["call-recording"]
    uri = f"s3://{settings.vault_bucket}/{recording_key}"
    without = atrest(cli_environment, "decrypt", uri, "-o", "call.wav", cwd=tmp_path)
    assert without.returncode == 2 and "--reason" in without.stderr
    assert not (tmp_path / "call.wav").exists()

    done = atrest(cli_environment, "decrypt", uri, "-o", "call.wav", "--reason", "legal hold request 12", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "call.wav").read_bytes() == audio
    identity = boto3.client("sts").get_caller_identity()["Arn"]
    assert f"recorded in the audit trail ({settings.audit_table}) as {identity}" in done.stdout

    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    missing = f"s3://{settings.vault_bucket}/{missing_object('call-recording')}"
    refused = atrest(cli_environment, "decrypt", missing, "-o", "x.wav", "--reason", "typo", cwd=tmp_path)
    assert refused.returncode == 1 and "no atrest record" in refused.stderr

    (released,) = trail.for_contact(contact["id"])
    assert (released.outcome, released.channel, released.principal) == (AuditOutcome.RELEASED, Channel.CLI, identity)
    assert released.reason == "legal hold request 12" and released.vault_key == recording_key
    (not_found,) = [r for r in trail.since(started) if r.requested == f"object:{missing}"]
    assert not_found.outcome is AuditOutcome.NOT_FOUND and not_found.channel is Channel.CLI


def test_atrest_audit_lists_a_contact_s_reads_since_a_time_and_as_json(cli_environment, read, callers, contact, tmp_path):
    assert read(callers["qa"], {"reason": "QA \x1b[31mreview", "contact_id": contact["id"]})[0] == 200
    assert read(callers["contractor"], {"reason": "nosy", "contact_id": contact["id"]})[0] == 403

    table = atrest(cli_environment, "audit", "--contact", contact["id"], cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["time", "(UTC)", "outcome"]
    assert sum("RELEASED" in line and "QaReviewer/jane" in line for line in lines) == 2
    assert sum("DENIED" in line and "Contractor/eve" in line for line in lines) == 1
    assert not any("REQUESTED" in line for line in lines), "a finished attempt is one row"
    assert "\x1b" not in table.stdout and "QA ?[31mreview" in table.stdout
    assert lines[-1] == (f"3 read attempts (contact {contact['id']}): 2 released, 0 refused, 1 denied, "
                         "0 not found, 0 failed")

    as_json = atrest(cli_environment, "audit", "--contact", contact["id"], "--json", cwd=tmp_path)
    document = json.loads(as_json.stdout)
    assert document["summary"] == {"attempts": 3, "released": 2, "refused": 0, "denied": 1, "not_found": 0,
                                   "failed": 0, "no_outcome": 0, "in_progress": 0}
    assert {r["reason"] for r in document["records"]} == {"QA \x1b[31mreview", "nosy"}

    recent = atrest(cli_environment, "audit", "--since", "10m", "--json", cwd=tmp_path)
    assert recent.returncode == 0, recent.stderr
    assert sum(r["contact_id"] == contact["id"] for r in json.loads(recent.stdout)["records"]) == 3

    future = atrest(cli_environment, "audit", "--since", "2999-01-01", cwd=tmp_path)
    assert future.returncode == 1 and "in the future" in future.stderr


# --------------------------------------------------------------------------- the header is the truth


def edit_record(settings: Any, vault_key: str, **values: str) -> None:
    """What someone with write access to the metadata table could do."""
    boto3.client("dynamodb").update_item(
        TableName=settings.metadata_table, Key=object_key(vault_key),
        UpdateExpression="SET " + ", ".join(f"#{i} = :{i}" for i in range(len(values))),
        ExpressionAttributeNames={f"#{i}": name for i, name in enumerate(values)},
        ExpressionAttributeValues={f":{i}": {"S": value} for i, value in enumerate(values.values())})


def test_a_record_relabelled_to_a_class_the_caller_may_read_is_refused_and_audited_as_the_header_s_class(
    read, callers, contact, trail, settings
):
    # Supervisor may read transcripts, not recordings: relabelling the recording's record does not help.
    recording_key, _ = contact["call-recording"]
    edit_record(settings, recording_key, data_class="chat-transcript")
    status, body, _ = read(callers["supervisor"], {"reason": "r", "object": recording_key})
    assert status == 422 and '"url":' not in json.dumps(body)
    (row,) = [r for r in trail.for_contact(contact["id"]) if r.vault_key == recording_key]
    assert row.outcome is AuditOutcome.REFUSED and row.data_class == "call-recording"
    assert "data_class" in (row.detail or "") and row.principal == callers["supervisor"]


@pytest.mark.parametrize("edit", [
    {"source_key": "connect/acme/ChatTranscripts/2026/11/30/someone-else.json"},
    {"instance": "another-instance"},
    {"contact_id": "00000000-0000-0000-0000-000000000000"},
])
def test_read_object_refuses_a_record_whose_source_instance_or_contact_was_edited(read, callers, contact, trail, settings, edit):
    transcript_key, _ = contact["chat-transcript"]
    edit_record(settings, transcript_key, **edit)
    status, body, _ = read(callers["qa"], {"reason": "r", "object": transcript_key})
    assert status == 422, body
    (row,) = [r for r in trail.for_contact(contact["id"]) if r.vault_key == transcript_key]
    assert row.outcome is AuditOutcome.REFUSED and next(iter(edit)) in (row.detail or "")
    assert row.source_key != edit.get("source_key") and row.instance == "acme" and row.contact_id == contact["id"]


def test_a_vault_object_overwritten_after_encryption_is_logged_and_counted_and_the_recorded_version_read(
    read, callers, contact, function_log, trail, settings
):
    transcript_key, transcript = contact["chat-transcript"]
    forged = boto3.client("s3").put_object(Bucket=settings.vault_bucket, Key=transcript_key,
                                           Body=b"forged transcript")["VersionId"]
    before = function_log.tell()
    status, body, _ = read(callers["qa"], {"reason": "r", "object": transcript_key})
    assert status == 200 and fetch(body["objects"][0]["url"]) == transcript
    logged = function_log.getvalue()[before:]
    assert "vault object overwritten after encryption" in logged and forged in logged
    assert '"VaultObjectOverwritten"' in logged
    assert "forged transcript" not in logged
    (row,) = [r for r in trail.for_contact(contact["id"]) if r.vault_key == transcript_key]
    assert row.outcome is AuditOutcome.RELEASED and forged in (row.detail or "")


# --------------------------------------------------------------------------- one attempt, one outcome


def test_a_read_that_breaks_after_it_started_is_one_failed_row(read, read_object, callers, contact, trail, monkeypatch):
    transcript_key, _ = contact["chat-transcript"]
    read(callers["qa"], {"reason": "warm up", "contact_id": str(uuid.uuid4())})  # loads the function

    def broken_put(*_: Any, **__: Any) -> Any:
        raise OSError("the retrieval bucket is unreachable")

    monkeypatch.setattr(read_object.module.service.store, "put", broken_put)
    status, body, _ = read(callers["qa"], {"reason": "r", "object": transcript_key})
    assert status == 500 and "internal error" in body["message"]
    (row,) = [r for r in trail.for_contact(contact["id"]) if r.vault_key == transcript_key]
    assert row.outcome is AuditOutcome.FAILED and row.state() == "FAILED"


def test_an_attempt_that_recorded_its_start_and_crashed_shows_as_no_outcome(trail, cli_environment, tmp_path):
    contact_id = f"crashed-{uuid.uuid4()}"
    started = trail.begin(AuditRecord(principal="arn:aws:sts::123456789012:assumed-role/QaReviewer/jane",
                                      channel=Channel.CLI, outcome=AuditOutcome.REQUESTED, reason="r",
                                      requested="object:x", contact_id=contact_id), timedelta(0))
    time.sleep(0.01)
    table = atrest(cli_environment, "audit", "--contact", contact_id, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    assert "no outcome (crashed?)" in table.stdout
    assert "1 without an outcome (crashed?)" in table.stdout.splitlines()[-1]

    trail.conclude(started, AuditOutcome.FAILED, "finished late")
    (row,) = trail.for_contact(contact_id)
    assert row.outcome is AuditOutcome.FAILED and row.sort_key == started.sort_key
    with pytest.raises(AuditWriteError):
        trail.conclude(started, AuditOutcome.RELEASED)  # one outcome per attempt


def test_a_refused_decrypt_writes_one_refused_row_and_nothing_allowed(cli_environment, settings, contact, trail, tmp_path):
    recording_key, _ = contact["call-recording"]
    edit_record(settings, recording_key, source_key="connect/acme/CallRecordings/elsewhere.wav")
    refused = atrest(cli_environment, "decrypt", f"s3://{settings.vault_bucket}/{recording_key}", "-o", "x.wav",
                     "--reason", "r", cwd=tmp_path)
    assert refused.returncode == 1
    assert [r.outcome for r in trail.for_contact(contact["id"])] == [AuditOutcome.REFUSED]
