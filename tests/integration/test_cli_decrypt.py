"""`atrest decrypt`: what an operator sees."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import datetime, timezone

import boto3

from atrest.pipeline import EncryptPipeline
from atrest.samples import call_recording_wav, connect_key
from atrest.source import SourceObject


def atrest(env, *args, cwd):
    return subprocess.run([sys.executable, "-m", "atrest.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def encrypted_recording(settings):
    key = connect_key(settings.connect_prefix, "acme", "CallRecordings", str(uuid.uuid4()),
                      datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc), "wav")
    audio = call_recording_wav(seconds=0.5)
    version = boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=audio)["VersionId"]
    outcome = EncryptPipeline.from_settings(settings).encrypt(SourceObject(settings.intake_bucket, key, version))
    return outcome, audio


def test_decrypt_writes_the_original_bytes_and_says_what_it_decrypted(settings, cli_environment, tmp_path):
    outcome, audio = encrypted_recording(settings)
    result = atrest(cli_environment, "decrypt", f"s3://{settings.vault_bucket}/{outcome.vault_key}", "-o", "call.wav",
                    "--reason", "test: decrypt a recording", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "call.wav").read_bytes() == audio
    assert "call-recording" in result.stdout and outcome.source.key in result.stdout


def test_decrypt_refuses_with_a_reason_and_a_non_zero_exit_when_the_record_disagrees(settings, cli_environment, tmp_path):
    outcome, _ = encrypted_recording(settings)
    boto3.client("dynamodb").update_item(
        TableName=settings.metadata_table, Key={"pk": {"S": f"OBJ#{outcome.vault_key}"}, "sk": {"S": "OBJECT"}},
        UpdateExpression="SET encryption_context.#k = :v", ExpressionAttributeNames={"#k": "atrest:instance"},
        ExpressionAttributeValues={":v": {"S": "another-instance"}})
    result = atrest(cli_environment, "decrypt", f"s3://{settings.vault_bucket}/{outcome.vault_key}", "-o", "call.wav",
                    "--reason", "test: decrypt a recording", cwd=tmp_path)
    assert result.returncode == 1
    assert "encryption context does not match its record" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_a_malformed_uri_is_explained(cli_environment, tmp_path):
    result = atrest(cli_environment, "decrypt", "vault/key", "-o", "x", "--reason", "test", cwd=tmp_path)
    assert result.returncode == 1 and "not an s3://bucket/key URI" in result.stderr
