"""`atrest decrypt s3://<intake bucket>/<key>`: from where an object was uploaded to its vault
object, after the pipeline deleted the encrypted version from the intake (the metadata
table's `by-source` index), with or without the source version."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import boto3
import pytest

from atrest.flows.encrypt_object import EncryptPipeline
from atrest.storage.audit import AuditOutcome
from atrest.storage.intake import SourceObject
from atrest_cli.demos.samples import call_recording_wav, connect_key

from audit_support import audit_rows

pytestmark = pytest.mark.local_only("encrypts intake objects in this process, which the deployed EncryptObject function would take too")

WHEN = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)


def atrest(env: dict[str, str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "atrest_cli.main", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def recording_key(settings: Any) -> str:
    return connect_key(settings.connect_prefix, "acme", "CallRecordings", str(uuid.uuid4()), WHEN, "wav")


def encrypt_versions(settings: Any, key: str, *bodies: bytes) -> list[str]:
    """Upload and encrypt each body in turn at `key` (a pipeline of its own: a cold start);
    the pipeline deletes each encrypted version from the intake. The source version ids."""
    s3, pipeline, versions = boto3.client("s3"), EncryptPipeline.from_settings(settings), []
    for body in bodies:
        version = s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=body)["VersionId"]
        outcome = pipeline.encrypt(SourceObject(settings.intake_bucket, key, version))
        assert outcome.vault_key, outcome
        versions.append(version)
    return versions


def intake_versions(settings: Any, key: str) -> list[Any]:
    return boto3.client("s3").list_object_versions(Bucket=settings.intake_bucket, Prefix=key).get("Versions", [])


def test_decrypt_of_an_intake_key_without_a_version_finds_its_object_after_the_intake_version_was_deleted(
    settings, cli_environment, tmp_path
):
    key = recording_key(settings)
    audio = call_recording_wav(seconds=0.5)
    (version,) = encrypt_versions(settings, key, audio)
    assert intake_versions(settings, key) == []  # nothing left to list: only the record knows
    uri = f"s3://{settings.intake_bucket}/{key}"

    result = atrest(cli_environment, "decrypt", uri, "-o", "call.wav", "--reason", "restore INC-88", cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "call.wav").read_bytes() == audio
    assert f"from {uri}?versionId={version}" in result.stdout
    (row,) = audit_rows(settings, uri)
    assert row.outcome is AuditOutcome.RELEASED and row.source_version_id == version


def test_decrypt_of_an_intake_key_with_two_encrypted_versions_lists_both_and_decrypts_neither(
    settings, cli_environment, tmp_path
):
    key = recording_key(settings)
    versions = encrypt_versions(settings, key, b"RIFF first take", b"RIFF second take")
    assert intake_versions(settings, key) == []

    result = atrest(cli_environment, "decrypt", f"s3://{settings.intake_bucket}/{key}", "-o", "call.wav",
                    "--reason", "r", cwd=tmp_path)

    assert result.returncode == 1, result.stdout
    assert "2 encrypted versions" in result.stderr and "--version-id" in result.stderr
    assert all(f"versionId={version}" in result.stderr for version in versions)
    assert "Traceback" not in result.stderr and list(tmp_path.iterdir()) == []


def test_a_version_id_picks_one_of_several_encrypted_versions(settings, cli_environment, tmp_path):
    key = recording_key(settings)
    first, second = encrypt_versions(settings, key, b"RIFF first take", b"RIFF second take")
    uri = f"s3://{settings.intake_bucket}/{key}"

    by_query = atrest(cli_environment, "decrypt", f"{uri}?versionId={first}", "-o", "first.wav", "--reason", "r",
                      cwd=tmp_path)
    by_option = atrest(cli_environment, "decrypt", uri, "--version-id", second, "-o", "second.wav", "--reason", "r",
                       cwd=tmp_path)

    assert by_query.returncode == 0, by_query.stderr
    assert by_option.returncode == 0, by_option.stderr
    assert (tmp_path / "first.wav").read_bytes() == b"RIFF first take"
    assert (tmp_path / "second.wav").read_bytes() == b"RIFF second take"


def test_decrypt_of_an_intake_key_that_was_never_encrypted_says_so_and_audits_not_found(
    settings, cli_environment, tmp_path
):
    uri = f"s3://{settings.intake_bucket}/{recording_key(settings)}"

    result = atrest(cli_environment, "decrypt", uri, "-o", "call.wav", "--reason", "r", cwd=tmp_path)

    assert result.returncode == 1, result.stdout
    assert f"{uri} has no atrest record" in result.stderr and "by-source index" in result.stderr
    assert "Traceback" not in result.stderr and list(tmp_path.iterdir()) == []
    (row,) = audit_rows(settings, uri)
    assert row.outcome is AuditOutcome.NOT_FOUND


def test_an_unknown_version_of_an_encrypted_key_is_not_found_and_not_mistaken_for_another(
    settings, cli_environment, tmp_path
):
    key = recording_key(settings)
    encrypt_versions(settings, key, b"RIFF the only take")
    result = atrest(cli_environment, "decrypt", f"s3://{settings.intake_bucket}/{key}", "--version-id", "no-such-version",
                    "-o", "call.wav", "--reason", "r", cwd=tmp_path)
    assert result.returncode == 1, result.stdout
    assert "version no-such-version has no atrest record" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_object_encrypted_under_a_data_class_the_catalog_no_longer_gives_its_key_is_found_by_source(
    settings, cli_environment, tmp_path
):
    """The vault key derives from the data class the catalog gives a key; the index does not.
    After the catalog moved `integrations/` out of integration-configuration, an object
    encrypted before is still found from its intake location, with or without its version."""
    document = json.loads(resources.files("atrest.catalog").joinpath("data_classes.json").read_text(encoding="utf-8"))
    (moved,) = [entry for entry in document["classes"] if entry["name"] == "integration-configuration"]
    key = f"integrations/{uuid.uuid4()}/crm.json"
    (version,) = encrypt_versions(settings, key, b'{"endpoint": "https://crm.example.com"}')
    moved["prefix"] = "integrations-v2/"
    catalog = tmp_path / "data-classes.json"
    catalog.write_text(json.dumps(document), encoding="utf-8")
    environment = {**cli_environment, "ATREST_DATA_CLASSES_FILE": str(catalog)}

    for args in (["--version-id", version], []):
        result = atrest(environment, "decrypt", f"s3://{settings.intake_bucket}/{key}", *args, "-o", "-",
                        "--reason", "r", cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout == '{"endpoint": "https://crm.example.com"}'
        assert "integration-configuration" in result.stderr
