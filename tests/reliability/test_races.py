"""Races between the pipeline and the intake bucket: new versions and deletions that land
while an object is being encrypted or before its event is processed. (Two first-ever
objects for a new scope at once: test_duplicate_deliveries.py.)"""

from __future__ import annotations

import boto3
import pytest

from atrest.core.clients import AwsClients
from atrest.flows.encrypt_object import EncryptPipeline, Outcome
from atrest.storage.vault_keys import VaultKey

from probes import decrypt, object_records, queue_bodies, record_of, recording_key, source_versions, upload

pytestmark = pytest.mark.local_only("races the local runner's functions on an emptied stack")


def test_a_new_version_uploaded_while_the_old_one_is_encrypted_leaves_both_encrypted_and_neither_plaintext_lost(
    settings, clean_stack, local_runner, tmp_path
):
    key = recording_key(settings)
    old = upload(settings, key, b"first take")
    newer = []

    def upload_a_new_version_meanwhile(params, **_):
        if params["Bucket"] == settings.vault_bucket and not newer:
            newer.append(upload(settings, key, b"second take"))

    clients = AwsClients()
    clients.s3.meta.events.register("before-parameter-build.s3.PutObject", upload_a_new_version_meanwhile)
    # The old version's delivery is in flight (its ciphertext about to be stored) when the new version lands.
    assert EncryptPipeline.from_settings(settings, clients).encrypt(old).outcome is Outcome.ENCRYPTED
    assert source_versions(settings, key) == [newer[0].version_id], "the newer plaintext must survive the older one's delete"

    local_runner.drain(timeout=60)  # both events: the old one (already done) and the new one

    for version, body in ((old, b"first take"), (newer[0], b"second take")):
        vault_key = str(VaultKey.of_source("call-recording", settings.intake_bucket, key, version.version_id))
        assert record_of(settings, vault_key) is not None
        assert decrypt(settings, vault_key, tmp_path) == body
    assert source_versions(settings, key) == []


def test_a_source_deleted_before_its_event_is_processed_is_skipped_once_and_not_retried(
    settings, clean_stack, local_runner
):
    source = upload(settings, recording_key(settings), b"withdrawn")
    boto3.client("s3").delete_object(Bucket=source.bucket, Key=source.key, VersionId=source.version_id)

    stats = local_runner.drain(timeout=30)

    assert (stats.invocations, stats.failed_invocations) == (1, 0)
    assert object_records(settings) == []
    assert queue_bodies(clean_stack.outputs["EncryptDeadLetterQueueUrl"]) == []
