"""The original object's Content-Type and user metadata (x-amz-meta-*) come back with its
plaintext: from `atrest decrypt` (printed, and as JSON with --metadata-file) and on
ReadObject's retrieval copies. The Content-Type is kept in clear, bounded; the user metadata
is sealed under the object's branch key, bound to that one object, and never logged.

Every test encrypts with a pipeline or function of its own (a cold start): a warm one may
hold branch keys that another test's `clean_stack` deleted from the key store.
"""

from __future__ import annotations

import io
import json
import logging
import stat
import subprocess
import sys
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus, unquote, urlsplit

import boto3
import pytest

from atrest.flows.encrypt_object import EncryptPipeline
from atrest.storage.audit import AuditOutcome
from atrest.storage.intake import SourceObject
from atrest.storage.record_keys import object_key
from atrest.storage.records import MetadataTable
from atrest_cli.demos.reads import catalog_with_decryptors, read_object_event, role_session_arn
from atrest_cli.demos.samples import call_recording_wav, connect_key

from audit_support import audit_rows

pytestmark = pytest.mark.local_only("invokes the functions' handlers in this process on intake objects")

WHEN = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)
# What a writer could put in user metadata: a caller's phone number, a customer's name.
METADATA = {"caller-phone": "+1-555-0100-7731", "customer-name": "Ada Example-Lovelace", "ticket": "INC-88"}
CONTENT_TYPE = "audio/x-wav; rate=8000"


def atrest(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "atrest_cli.main", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def recording_key(settings: Any) -> str:
    return connect_key(settings.connect_prefix, "acme", "CallRecordings", str(uuid.uuid4()), WHEN, "wav")


def upload(settings: Any, key: str, body: bytes, **extra: Any) -> str:
    return boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=body, **extra)["VersionId"]


def encrypt(settings: Any, key: str, body: bytes, pipeline: EncryptPipeline | None = None, **extra: Any) -> Any:
    """Upload `body` with `extra` (ContentType, Metadata) and encrypt it; the outcome."""
    version = upload(settings, key, body, **extra)
    outcome = (pipeline or EncryptPipeline.from_settings(settings)).encrypt(SourceObject(settings.intake_bucket, key, version))
    assert outcome.vault_key, outcome
    return outcome


def record_item(settings: Any, vault_key: str) -> dict[str, Any]:
    return boto3.client("dynamodb").get_item(TableName=settings.metadata_table, ConsistentRead=True,
                                             Key=object_key(vault_key))["Item"]


# --------------------------------------------------------------------------- atrest decrypt


def test_decrypt_prints_the_original_content_type_and_metadata_and_writes_them_with_metadata_file(
    settings, cli_environment, tmp_path
):
    audio = call_recording_wav(seconds=0.5)
    outcome = encrypt(settings, recording_key(settings), audio, ContentType=CONTENT_TYPE, Metadata=METADATA)
    uri = f"s3://{settings.vault_bucket}/{outcome.vault_key}"

    result = atrest(cli_environment, "decrypt", uri, "-o", "call.wav", "--metadata-file", "call.meta.json",
                    "--reason", "restore INC-88", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "call.wav").read_bytes() == audio
    assert f"content type: {CONTENT_TYPE}" in result.stdout
    assert all(f"{name}={value}" in result.stdout for name, value in METADATA.items())
    written = tmp_path / "call.meta.json"
    assert json.loads(written.read_text()) == {"ContentType": CONTENT_TYPE, "Metadata": METADATA}
    assert stat.S_IMODE(written.stat().st_mode) == 0o600  # it can hold customer data
    (row,) = audit_rows(settings, uri)
    assert row.outcome is AuditOutcome.RELEASED


def test_the_record_keeps_the_content_type_in_clear_and_never_the_metadata(settings):
    outcome = encrypt(settings, recording_key(settings), b"RIFF....WAVE", ContentType=CONTENT_TYPE, Metadata=METADATA)
    item = record_item(settings, outcome.vault_key)
    assert item["content_type"] == {"S": CONTENT_TYPE}
    assert "B" in item["metadata_ciphertext"]
    stored = json.dumps(item, default=repr)
    assert not any(value in stored for value in METADATA.values())
    assert not any(name in stored for name in METADATA)


def test_decrypt_refuses_to_replace_an_existing_metadata_file_and_decrypts_nothing(settings, cli_environment, tmp_path):
    outcome = encrypt(settings, recording_key(settings), b"RIFF....WAVE", Metadata=METADATA)
    uri = f"s3://{settings.vault_bucket}/{outcome.vault_key}"
    (tmp_path / "meta.json").write_text("keep me")
    result = atrest(cli_environment, "decrypt", uri, "-o", "call.wav", "--metadata-file", "meta.json",
                    "--reason", "r", cwd=tmp_path)
    assert result.returncode == 1 and "--force" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]
    assert (tmp_path / "meta.json").read_text() == "keep me" and audit_rows(settings, uri) == []


def test_an_object_without_user_metadata_seals_nothing_and_its_record_stores_nothing(
    settings, cli_environment, tmp_path
):
    pipeline = EncryptPipeline.from_settings(settings)
    sealed: list[Any] = []
    one_shot = pipeline.esdk.encrypt  # only sealed metadata is encrypted in one shot; objects stream

    def counting(*args: Any, **kwargs: Any) -> Any:
        sealed.append(kwargs.get("encryption_context"))
        return one_shot(*args, **kwargs)

    pipeline.esdk.encrypt = counting
    audio = call_recording_wav(seconds=0.25)
    outcome = encrypt(settings, recording_key(settings), audio, pipeline, ContentType="audio/wav")

    assert sealed == []
    item = record_item(settings, outcome.vault_key)
    assert "metadata_ciphertext" not in item and item["content_type"] == {"S": "audio/wav"}
    result = atrest(cli_environment, "decrypt", f"s3://{settings.vault_bucket}/{outcome.vault_key}", "-o", "a.wav",
                    "--metadata-file", "a.json", "--reason", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "a.wav").read_bytes() == audio
    assert "content type: audio/wav" in result.stdout and "metadata: none" in result.stdout
    assert json.loads((tmp_path / "a.json").read_text()) == {"ContentType": "audio/wav", "Metadata": {}}

    # ... and an object with metadata is sealed once, bound to its own context plus the part marker.
    encrypt(settings, recording_key(settings), audio, pipeline, Metadata=METADATA)
    (context,) = sealed
    assert context["atrest:part"] == "metadata" and context["atrest:data-class"] == "call-recording"


# --------------------------------------------------------------------------- tampering


def move_sealed_metadata(settings: Any, from_vault_key: str, to_vault_key: str) -> None:
    """What someone with write access to the metadata table could do."""
    blob = record_item(settings, from_vault_key)["metadata_ciphertext"]
    boto3.client("dynamodb").update_item(
        TableName=settings.metadata_table, Key=object_key(to_vault_key),
        UpdateExpression="SET metadata_ciphertext = :m", ExpressionAttributeValues={":m": blob})


def test_sealed_metadata_moved_from_another_object_s_record_is_refused_before_any_plaintext(
    settings, cli_environment, tmp_path
):
    pipeline = EncryptPipeline.from_settings(settings)
    # Same data class, instance and branch key: only the source key tells them apart.
    donor = encrypt(settings, recording_key(settings), b"RIFF donor", pipeline,
                    Metadata={"caller-phone": "+1-555-0199-0000"})
    victim = encrypt(settings, recording_key(settings), call_recording_wav(seconds=0.25), pipeline,
                     Metadata={"caller-phone": "+1-555-0100-1111"})
    move_sealed_metadata(settings, donor.vault_key, victim.vault_key)
    uri = f"s3://{settings.vault_bucket}/{victim.vault_key}"

    result = atrest(cli_environment, "decrypt", uri, "-o", "call.wav", "--metadata-file", "call.json",
                    "--reason", "r", cwd=tmp_path)

    assert result.returncode == 1, result.stdout
    assert "sealed metadata" in result.stderr and "Traceback" not in result.stderr
    assert "+1-555-0199-0000" not in result.stdout + result.stderr
    assert list(tmp_path.iterdir()) == []  # no plaintext, not even a partial file
    (row,) = audit_rows(settings, uri)
    assert row.outcome is AuditOutcome.REFUSED and "sealed metadata" in (row.detail or "")


def test_a_sealed_blob_added_to_a_record_that_had_none_is_refused(settings, cli_environment, tmp_path):
    pipeline = EncryptPipeline.from_settings(settings)
    donor = encrypt(settings, recording_key(settings), b"RIFF donor", pipeline, Metadata={"note": "x"})
    plain = encrypt(settings, recording_key(settings), b"RIFF plain", pipeline)
    move_sealed_metadata(settings, donor.vault_key, plain.vault_key)
    result = atrest(cli_environment, "decrypt", f"s3://{settings.vault_bucket}/{plain.vault_key}", "-o", "a.wav",
                    "--reason", "r", cwd=tmp_path)
    assert result.returncode == 1 and "sealed metadata" in result.stderr
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- hostile Content-Type


@pytest.mark.parametrize("content_type", [
    "audio/wav; x=" + "a" * 400,  # longer than any real MIME type: would bloat every record
    "text/plain\x1b]0;owned\x07",  # a terminal escape sequence
    "text/plain\t\x7f",
])
def test_a_content_type_that_is_no_plausible_header_is_not_kept(settings, cli_environment, tmp_path, content_type,
                                                                caplog):
    caplog.set_level(logging.DEBUG, logger="atrest")
    audio = call_recording_wav(seconds=0.25)
    outcome = encrypt(settings, recording_key(settings), audio, ContentType=content_type, Metadata={"ticket": "T-1"})
    assert "content_type" not in record_item(settings, outcome.vault_key)
    assert "Content-Type is not a plausible header" in caplog.text and content_type not in caplog.text

    result = atrest(cli_environment, "decrypt", f"s3://{settings.vault_bucket}/{outcome.vault_key}", "-o", "a.wav",
                    "--reason", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "a.wav").read_bytes() == audio
    assert "content type: not recorded" in result.stdout and "ticket=T-1" in result.stdout
    assert "\x1b" not in result.stdout + result.stderr


# --------------------------------------------------------------------------- ReadObject


@pytest.fixture(scope="module")
def function_log() -> io.StringIO:
    """Everything ReadObjectFunction prints or logs (Powertools logs to stdout)."""
    return io.StringIO()


@pytest.fixture(scope="module")
def read_object(local_stack: Any, emulator: Any, tmp_path_factory: Any, function_log: io.StringIO) -> Any:
    from atrest_cli.local.lambda_runtime import InProcessFunction

    catalog = catalog_with_decryptors(tmp_path_factory.mktemp("catalog") / "data-classes.json", {
        "call-recording": ["QaReviewer"], "chat-transcript": ["QaReviewer"]})
    environment = {**emulator.environment(), "ATREST_DATA_CLASSES_FILE": str(catalog), "POWERTOOLS_LOG_LEVEL": "DEBUG"}
    return InProcessFunction(local_stack.function("ReadObjectFunction"), environment, stdout=function_log)


def read_one(read_object: Any, local_stack: Any, vault_key: str) -> dict[str, Any]:
    """ReadObject for one vault object, as QaReviewer; the answer's one entry."""
    caller = role_session_arn(local_stack.account_id, "QaReviewer", "jane")
    invocation = read_object.invoke(read_object_event(caller, {"reason": "restore INC-88", "object": vault_key},
                                                      account_id=local_stack.account_id, region=local_stack.region))
    assert invocation.succeeded, invocation.error
    response = invocation.response
    assert response["statusCode"] == 200, response["body"]
    (entry,) = json.loads(response["body"])["objects"]
    return entry


def retrieval_key(url: str, bucket: str) -> str:
    """The object key of a presigned URL (path style or virtual-hosted)."""
    parts = urlsplit(url)
    path = unquote(parts.path).lstrip("/")
    return path[len(bucket) + 1:] if path.startswith(f"{bucket}/") else path


def test_a_retrieval_copy_carries_the_original_content_type_and_user_metadata(
    read_object, local_stack, settings
):
    audio = call_recording_wav(seconds=0.5)
    outcome = encrypt(settings, recording_key(settings), audio, ContentType=CONTENT_TYPE, Metadata=METADATA)

    entry = read_one(read_object, local_stack, outcome.vault_key)

    head = boto3.client("s3").head_object(Bucket=settings.retrieval_bucket, Key=retrieval_key(entry["url"], settings.retrieval_bucket))
    assert head["ContentType"] == CONTENT_TYPE
    assert {k: v for k, v in head["Metadata"].items() if k != "atrest-request-id"} == METADATA
    assert head["Metadata"]["atrest-request-id"]
    with urllib.request.urlopen(entry["url"], timeout=10) as fetched:  # noqa: S310 - a presigned URL we just made
        assert fetched.read() == audio
        assert fetched.headers["Content-Type"] == CONTENT_TYPE
        assert fetched.headers["x-amz-meta-caller-phone"] == METADATA["caller-phone"]


# Not kept (implausible), or S3's default for an upload that named none: the name says more.
@pytest.mark.parametrize("content_type", ["x" * 300, "binary/octet-stream"])
def test_a_retrieval_copy_of_an_object_without_a_telling_content_type_is_typed_by_its_name(
    read_object, local_stack, settings, content_type
):
    outcome = encrypt(settings, recording_key(settings), call_recording_wav(seconds=0.25), ContentType=content_type)
    entry = read_one(read_object, local_stack, outcome.vault_key)
    head = boto3.client("s3").head_object(Bucket=settings.retrieval_bucket, Key=retrieval_key(entry["url"], settings.retrieval_bucket))
    assert head["ContentType"] == "audio/wav"
    assert set(head["Metadata"]) == {"atrest-request-id"}


def test_read_object_refuses_sealed_metadata_moved_from_another_object_with_422(read_object, local_stack, settings):
    pipeline = EncryptPipeline.from_settings(settings)
    donor = encrypt(settings, recording_key(settings), b"RIFF donor", pipeline, Metadata={"note": "donor"})
    victim = encrypt(settings, recording_key(settings), b"RIFF victim", pipeline, Metadata={"note": "victim"})
    move_sealed_metadata(settings, donor.vault_key, victim.vault_key)
    caller = role_session_arn(local_stack.account_id, "QaReviewer", "jane")
    invocation = read_object.invoke(read_object_event(caller, {"reason": "r", "object": victim.vault_key},
                                                      account_id=local_stack.account_id, region=local_stack.region))
    assert invocation.succeeded, invocation.error
    assert invocation.response["statusCode"] == 422
    assert '"url"' not in invocation.response["body"]


# --------------------------------------------------------------------------- logs


def test_metadata_values_never_reach_the_logs(local_stack, emulator, settings, read_object, function_log, atrest,
                                              tmp_path, caplog):
    """The encrypt function (a cold start of its own), `atrest decrypt` and ReadObject log what
    happened, never a metadata value or name."""
    from atrest_cli.local.lambda_runtime import InProcessFunction

    caplog.set_level(logging.DEBUG, logger="atrest")
    caplog.set_level(logging.INFO)
    marker = uuid.uuid4().hex
    secret = {f"phone-{marker[:8]}": f"+1-555-{marker}", "customer-name": f"Grace {marker} Hopper"}
    key = recording_key(settings)
    version = upload(settings, key, call_recording_wav(seconds=0.25), ContentType=CONTENT_TYPE, Metadata=secret)
    encrypt_log = io.StringIO()
    function = InProcessFunction(local_stack.function("EncryptObjectFunction"), emulator.environment(),
                                 stdout=encrypt_log)
    detail = {"version": "0", "bucket": {"name": settings.intake_bucket},
              "object": {"key": quote_plus(key, safe="/"), "size": 0, "etag": "0" * 32, "version-id": version,
                         "sequencer": "0"}, "request-id": "R", "requester": local_stack.account_id, "reason": "PutObject"}
    invocation = function.invoke({"version": "0", "id": str(uuid.uuid4()), "detail-type": "Object Created",
                                  "source": "aws.s3", "account": local_stack.account_id, "time": "2026-11-30T05:00:00Z",
                                  "region": local_stack.region, "resources": [f"arn:aws:s3:::{settings.intake_bucket}"],
                                  "detail": detail})
    assert invocation.succeeded, invocation.error
    (record,) = MetadataTable(boto3.client("dynamodb"), settings.metadata_table).objects_from_source(
        settings.intake_bucket, key)
    assert record.metadata_ciphertext is not None

    code, out, err = atrest("decrypt", f"s3://{settings.vault_bucket}/{record.vault_key}",
                            "-o", str(tmp_path / "a.wav"), "--reason", "r")
    assert code == 0, err
    assert secret["customer-name"] in out  # printed for the operator ...
    entry = read_one(read_object, local_stack, record.vault_key)
    assert entry["status"] == 200

    logged = encrypt_log.getvalue() + function_log.getvalue() + caplog.text
    assert record.vault_key in logged  # ... while the logs do say what happened
    assert marker not in logged
    assert not any(name in logged or value in logged for name, value in secret.items())


# --------------------------------------------------------------------------- rotation while encrypting


def test_metadata_sealed_under_a_version_the_object_did_not_use_is_sealed_again_under_the_object_s(
    settings, cli_environment, tmp_path, monkeypatch
):
    """A branch key rotation between sealing the metadata and encrypting the object leaves them
    under different versions; the record must hold both under the object's (it is indexed,
    counted and shredded by that version)."""
    import atrest.flows.encrypt_object as pipeline_module

    real_seal = pipeline_module.seal_metadata
    calls: list[str] = []

    def seal_as_if_rotated(*args: Any, **kwargs: Any) -> Any:
        ciphertext, version = real_seal(*args, **kwargs)
        calls.append(version)
        return (ciphertext, "a-version-retired-meanwhile") if len(calls) == 1 else (ciphertext, version)

    monkeypatch.setattr(pipeline_module, "seal_metadata", seal_as_if_rotated)
    outcome = encrypt(settings, recording_key(settings), b"RIFF rotated", Metadata={"ticket": "T-2"})
    assert len(calls) == 2

    result = atrest(cli_environment, "decrypt", f"s3://{settings.vault_bucket}/{outcome.vault_key}", "-o", "a.wav",
                    "--reason", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ticket=T-2" in result.stdout


def test_two_rotations_within_one_object_s_encryption_leave_the_plaintext_for_the_retry(
    settings, cli_environment, tmp_path, monkeypatch
):
    import atrest.flows.encrypt_object as pipeline_module
    from atrest.core.errors import AtrestError

    real_seal = pipeline_module.seal_metadata
    monkeypatch.setattr(pipeline_module, "seal_metadata",
                        lambda *a, **k: (real_seal(*a, **k)[0], "a-version-retired-meanwhile"))
    key = recording_key(settings)
    version = upload(settings, key, b"RIFF twice", Metadata={"ticket": "T-3"})
    source = SourceObject(settings.intake_bucket, key, version)
    with pytest.raises(AtrestError, match="branch key version changed"):
        EncryptPipeline.from_settings(settings).encrypt(source)
    s3 = boto3.client("s3")
    assert s3.get_object(Bucket=settings.intake_bucket, Key=key, VersionId=version)["Body"].read() == b"RIFF twice"
    assert MetadataTable(boto3.client("dynamodb"), settings.metadata_table).objects_from_source(settings.intake_bucket, key) == []

    monkeypatch.setattr(pipeline_module, "seal_metadata", real_seal)
    retried = EncryptPipeline.from_settings(settings).encrypt(source)  # the redelivered message
    assert retried.vault_key
    vault = s3.list_object_versions(Bucket=settings.vault_bucket, Prefix=retried.vault_key).get("Versions", [])
    assert len(vault) == 1  # the failed attempt's unrecorded ciphertext is gone
    result = atrest(cli_environment, "decrypt", f"s3://{settings.vault_bucket}/{retried.vault_key}", "-o", "a.wav",
                    "--reason", "r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "a.wav").read_bytes() == b"RIFF twice" and "ticket=T-3" in result.stdout
