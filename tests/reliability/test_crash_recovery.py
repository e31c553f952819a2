"""A delivery killed at any step: the retry completes with exactly one vault object, the
plaintext stays until its ciphertext is recorded, and no multipart upload is left open.

Each crash is a spawned process that dies with os._exit at its step (no cleanup code runs,
as when Lambda kills a timed-out instance); the retry is the next delivery of the same event.
"""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import replace
from typing import Any

import pytest

from atrest.flows.encrypt_object import EncryptPipeline, Outcome
from atrest.storage.records import ObjectStatus

from probes import (
    CRASH_EXIT, CRASH_POINTS, decrypt, encrypt_and_die, open_uploads, record_of, recording_key, source_versions,
    upload, vault_key_of, vault_versions,
)

pytestmark = pytest.mark.local_only("crashes processes mid-write")

PART = 5 * 1024 * 1024


@pytest.fixture(scope="module")
def crashed(settings: Any) -> dict[str, Any]:
    """One source per crash point, each with a delivery that died there (all at once)."""
    context = multiprocessing.get_context("spawn")
    small = replace(settings, part_size=PART)
    runs = {}
    for point in CRASH_POINTS:
        body = os.urandom(2 * PART + 1024) if point == "mid-upload" else os.urandom(64 * 1024)
        source = upload(settings, recording_key(settings), body)
        process = context.Process(target=encrypt_and_die, args=(small, source, point))
        process.start()
        runs[point] = (source, body, process)
    for source, body, process in runs.values():
        process.join(120)
    return {point: (source, body, process.exitcode) for point, (source, body, process) in runs.items()}


# What each crash leaves behind, before the retry: (vault versions, open uploads, record, plaintext kept)
LEFT_BEHIND = {
    "after-read": (0, 0, None, True),
    "mid-upload": (0, 1, None, True),
    "after-upload-before-record": (1, 0, None, True),
    "after-record-before-source-delete": (1, 0, ObjectStatus.ENCRYPTED, True),
    "during-source-delete": (1, 0, ObjectStatus.ENCRYPTED, False),
}


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_a_delivery_killed_at_each_step_keeps_the_plaintext_until_its_ciphertext_is_recorded(settings, crashed, point):
    source, _, exit_code = crashed[point]
    assert exit_code == CRASH_EXIT, f"the delivery did not die at {point} (exit {exit_code})"
    vault_key = vault_key_of(source)
    record = record_of(settings, vault_key)

    versions, uploads, status, plaintext_kept = LEFT_BEHIND[point]
    assert (len(vault_versions(settings, vault_key)), len(open_uploads(settings, vault_key))) == (versions, uploads)
    assert (record.status if record else None) is status
    assert (source_versions(settings, source.key) == [source.version_id]) is plaintext_kept
    if record is None:
        assert source_versions(settings, source.key) == [source.version_id], "plaintext gone before its record"


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_the_retry_after_a_crash_leaves_one_vault_object_no_open_upload_and_no_plaintext(settings, crashed, point, tmp_path):
    source, body, _ = crashed[point]
    vault_key = vault_key_of(source)

    outcome = EncryptPipeline.from_settings(replace(settings, part_size=PART)).encrypt(source)

    assert outcome.outcome is Outcome.ENCRYPTED
    record = record_of(settings, vault_key)
    assert vault_versions(settings, vault_key) == [record.vault_version_id]
    assert open_uploads(settings, vault_key) == []
    assert record.status is ObjectStatus.SOURCE_DELETED
    assert source_versions(settings, source.key) == []
    assert decrypt(settings, vault_key, tmp_path) == body
