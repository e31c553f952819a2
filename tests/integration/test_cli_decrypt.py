"""`atrest decrypt`: what an operator sees."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import datetime, timezone

import boto3
import pytest

from atrest.flows.encrypt_object import EncryptPipeline
from atrest.storage.intake import SourceObject
from atrest.storage.record_keys import BY_SOURCE_INDEX, INDEX_ATTRIBUTES, object_key
from atrest_cli.demos.samples import call_recording_wav, connect_key

from audit_support import audit_rows

ENCRYPTS_INTAKE_OBJECTS_HERE = pytest.mark.local_only("encrypts intake objects in this process, which the deployed EncryptObject function would take too")


def atrest(env, *args, cwd):
    return subprocess.run([sys.executable, "-m", "atrest_cli.main", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def encrypted_recording(settings):
    key = connect_key(settings.connect_prefix, "acme", "CallRecordings", str(uuid.uuid4()),
                      datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc), "wav")
    audio = call_recording_wav(seconds=0.5)
    version = boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=audio)["VersionId"]
    outcome = EncryptPipeline.from_settings(settings).encrypt(SourceObject(settings.intake_bucket, key, version))
    return outcome, audio


@ENCRYPTS_INTAKE_OBJECTS_HERE
def test_decrypt_writes_the_original_bytes_and_says_what_it_decrypted(settings, cli_environment, tmp_path):
    outcome, audio = encrypted_recording(settings)
    result = atrest(cli_environment, "decrypt", f"s3://{settings.vault_bucket}/{outcome.vault_key}", "-o", "call.wav",
                    "--reason", "test: decrypt a recording", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "call.wav").read_bytes() == audio
    assert "call-recording" in result.stdout and outcome.source.key in result.stdout


@ENCRYPTS_INTAKE_OBJECTS_HERE
def test_decrypt_refuses_with_a_reason_and_a_non_zero_exit_when_the_record_disagrees(settings, cli_environment, tmp_path):
    outcome, _ = encrypted_recording(settings)
    # A record that holds its context whole (as records written before rebuilding it did), edited.
    context = {"atrest:account": settings.account_id, "atrest:instance": "another-instance",
               "atrest:data-class": "call-recording", "atrest:source-bucket": settings.intake_bucket,
               "atrest:source-key": outcome.source.key}
    boto3.client("dynamodb").update_item(
        TableName=settings.metadata_table, Key=object_key(outcome.vault_key),
        UpdateExpression="SET encryption_context = :v",
        ExpressionAttributeValues={":v": {"M": {k: {"S": v} for k, v in context.items()}}})
    result = atrest(cli_environment, "decrypt", f"s3://{settings.vault_bucket}/{outcome.vault_key}", "-o", "call.wav",
                    "--reason", "test: decrypt a recording", cwd=tmp_path)
    assert result.returncode == 1
    assert "encryption context does not match its record" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_malformed_uri_is_explained(cli_environment, tmp_path):
    result = atrest(cli_environment, "decrypt", "vault/key", "-o", "x", "--reason", "test", cwd=tmp_path)
    assert result.returncode == 1 and "not an s3://bucket/key URI" in result.stderr


# --------------------------------------------------------------------------- the header is the truth


def edit_record(settings, vault_key, **values):
    """What someone with write access to the metadata table could do."""
    names = {f"#{i}": name for i, name in enumerate(values)}
    boto3.client("dynamodb").update_item(
        TableName=settings.metadata_table, Key=object_key(vault_key),
        UpdateExpression="SET " + ", ".join(f"#{i} = :{i}" for i in range(len(values))),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues={f":{i}": {"S": value} for i, value in enumerate(values.values())})


@ENCRYPTS_INTAKE_OBJECTS_HERE
@pytest.mark.parametrize("edit", [
    {"source_key": "connect/acme/CallRecordings/2026/11/30/someone-else.wav"},
    {"data_class": "chat-transcript"},
    {"instance": "another-instance"},
    {"contact_id": "00000000-0000-0000-0000-000000000000"},
])
def test_decrypt_refuses_a_record_whose_top_level_fields_were_edited_and_audits_the_header_s_truth(
    settings, cli_environment, tmp_path, edit
):
    from atrest.storage.audit import AuditOutcome

    outcome, _ = encrypted_recording(settings)
    edit_record(settings, outcome.vault_key, **edit)
    uri = f"s3://{settings.vault_bucket}/{outcome.vault_key}"
    result = atrest(cli_environment, "decrypt", uri, "-o", "call.wav", "--reason", "test: edited record", cwd=tmp_path)

    assert result.returncode == 1, result.stdout
    assert "disagree with the verified message header" in result.stderr and next(iter(edit)) in result.stderr
    assert "Traceback" not in result.stderr and list(tmp_path.iterdir()) == []
    (row,) = audit_rows(settings, uri)
    assert row.outcome is AuditOutcome.REFUSED and next(iter(edit)) in row.detail
    assert (row.data_class, row.source_key, row.instance) == ("call-recording", outcome.source.key, "acme")
    assert row.contact_id == outcome.source.key.rsplit("/", 1)[1].split("_")[0]


@ENCRYPTS_INTAKE_OBJECTS_HERE
def test_a_decrypted_object_s_audit_row_names_its_source_and_version_from_the_header(settings, cli_environment, tmp_path):
    from atrest.storage.audit import AuditOutcome

    outcome, _ = encrypted_recording(settings)
    uri = f"s3://{settings.vault_bucket}/{outcome.vault_key}"
    assert atrest(cli_environment, "decrypt", uri, "-o", "call.wav", "--reason", "r", cwd=tmp_path).returncode == 0
    (row,) = audit_rows(settings, uri)
    assert row.outcome is AuditOutcome.RELEASED and row.decided_at
    assert (row.source_bucket, row.source_key, row.source_version_id) == (
        settings.intake_bucket, outcome.source.key, outcome.source.version_id)


# --------------------------------------------------------------------------- tamper signal


@ENCRYPTS_INTAKE_OBJECTS_HERE
def test_decrypt_warns_of_a_vault_key_overwritten_after_encryption_and_reads_the_recorded_version(
    settings, cli_environment, tmp_path
):
    outcome, audio = encrypted_recording(settings)
    forged = boto3.client("s3").put_object(Bucket=settings.vault_bucket, Key=outcome.vault_key, Body=b"forged")["VersionId"]
    uri = f"s3://{settings.vault_bucket}/{outcome.vault_key}"
    result = atrest(cli_environment, "decrypt", uri, "-o", "call.wav", "--reason", "r", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert "warning" in result.stderr and outcome.vault_key in result.stderr and forged in result.stderr
    assert "Decrypting the recorded version" in result.stderr
    assert (tmp_path / "call.wav").read_bytes() == audio
    (row,) = audit_rows(settings, uri)
    assert forged in (row.detail or "")


# --------------------------------------------------------------------------- -o


@ENCRYPTS_INTAKE_OBJECTS_HERE
@pytest.mark.parametrize(("output", "says"), [
    ("missing-dir/call.wav", "does not exist"),
    (".", "is a directory"),
])
def test_decrypt_to_an_impossible_output_says_why_and_neither_decrypts_nor_audits(
    settings, cli_environment, tmp_path, output, says
):
    outcome, _ = encrypted_recording(settings)
    uri = f"s3://{settings.vault_bucket}/{outcome.vault_key}"
    result = atrest(cli_environment, "decrypt", uri, "-o", output, "--reason", "r", cwd=tmp_path)
    assert result.returncode == 1 and says in result.stderr and "Traceback" not in result.stderr
    assert audit_rows(settings, uri) == []
    assert list(tmp_path.iterdir()) == []


@ENCRYPTS_INTAKE_OBJECTS_HERE
def test_decrypt_refuses_to_overwrite_a_file_unless_forced(settings, cli_environment, tmp_path):
    outcome, audio = encrypted_recording(settings)
    uri = f"s3://{settings.vault_bucket}/{outcome.vault_key}"
    (tmp_path / "call.wav").write_bytes(b"keep me")
    refused = atrest(cli_environment, "decrypt", uri, "-o", "call.wav", "--reason", "r", cwd=tmp_path)
    assert refused.returncode == 1 and "--force" in refused.stderr
    assert (tmp_path / "call.wav").read_bytes() == b"keep me" and audit_rows(settings, uri) == []

    forced = atrest(cli_environment, "decrypt", uri, "-o", "call.wav", "--force", "--reason", "r", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (tmp_path / "call.wav").read_bytes() == audio


@ENCRYPTS_INTAKE_OBJECTS_HERE
def test_decrypt_to_dash_writes_the_exact_bytes_to_stdout_and_messages_to_stderr(settings, cli_environment, tmp_path):
    outcome, audio = encrypted_recording(settings)
    uri = f"s3://{settings.vault_bucket}/{outcome.vault_key}"
    result = subprocess.run([sys.executable, "-m", "atrest_cli.main", "decrypt", uri, "-o", "-", "--reason", "r"],
                            env=cli_environment, cwd=tmp_path, capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout == audio
    assert b"decrypted" in result.stderr and list(tmp_path.iterdir()) == []


def test_decrypt_and_audit_explain_themselves_in_help(cli_environment, tmp_path):
    decrypt = atrest(cli_environment, "decrypt", "--help", cwd=tmp_path)
    assert "verified message header" in decrypt.stdout and "-o -" in decrypt.stdout
    audit = atrest(cli_environment, "audit", "--help", cwd=tmp_path)
    assert "one row per attempt" in audit.stdout and "crashed" in audit.stdout


# --------------------------------------------------------------------------- source locations


@ENCRYPTS_INTAKE_OBJECTS_HERE
def test_decrypt_finds_the_record_from_the_intake_location_and_version(settings, cli_environment, tmp_path):
    outcome, audio = encrypted_recording(settings)
    source = f"s3://{settings.intake_bucket}/{outcome.source.key}"
    by_query = atrest(cli_environment, "decrypt", f"{source}?versionId={outcome.source.version_id}", "-o", "a.wav",
                      "--reason", "r", cwd=tmp_path)
    assert by_query.returncode == 0, by_query.stderr
    assert (tmp_path / "a.wav").read_bytes() == audio and outcome.vault_key in by_query.stdout
    by_option = atrest(cli_environment, "decrypt", source, "--version-id", outcome.source.version_id, "-o", "b.wav",
                       "--reason", "r", cwd=tmp_path)
    assert by_option.returncode == 0, by_option.stderr
    assert (tmp_path / "b.wav").read_bytes() == audio


@ENCRYPTS_INTAKE_OBJECTS_HERE
def test_decrypt_of_an_intake_location_without_a_version_says_to_give_one_for_a_record_from_before_the_by_source_index(
    settings, cli_environment, tmp_path
):
    outcome, _ = encrypted_recording(settings)  # the pipeline deleted the source version
    # A record written before the by-source index existed (tests/integration/test_source_lookup.py: after).
    boto3.client("dynamodb").update_item(
        TableName=settings.metadata_table, Key=object_key(outcome.vault_key),
        UpdateExpression="REMOVE " + ", ".join(INDEX_ATTRIBUTES[BY_SOURCE_INDEX]))
    result = atrest(cli_environment, "decrypt", f"s3://{settings.intake_bucket}/{outcome.source.key}", "-o", "a.wav",
                    "--reason", "r", cwd=tmp_path)
    assert result.returncode == 1 and "--version-id" in result.stderr and "Traceback" not in result.stderr


@ENCRYPTS_INTAKE_OBJECTS_HERE
def test_decrypt_of_an_intake_location_lists_several_encrypted_versions_and_asks_for_one(settings, cli_environment, tmp_path):
    from dataclasses import replace

    kept = replace(settings, keep_source=True)  # both versions stay listed in the intake
    key = connect_key(settings.connect_prefix, "acme", "CallRecordings", str(uuid.uuid4()),
                      datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc), "wav")
    versions = []
    for body in (b"first take", b"second take"):
        version = boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=body)["VersionId"]
        EncryptPipeline.from_settings(kept).encrypt(SourceObject(settings.intake_bucket, key, version))
        versions.append(version)
    result = atrest(cli_environment, "decrypt", f"s3://{settings.intake_bucket}/{key}", "-o", "a.wav",
                    "--reason", "r", cwd=tmp_path)
    assert result.returncode == 1 and "2 encrypted versions" in result.stderr
    assert all(version in result.stderr for version in versions)
