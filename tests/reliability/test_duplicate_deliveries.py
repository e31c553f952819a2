"""S3, EventBridge and SQS deliver at least once: every event delivered three times, in
turn and at the same instant from separate processes, yields exactly one vault object and
one record per source version."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace

import boto3
import pytest

from atrest.core.clients import AwsClients
from atrest.crypto.keystore_format import TYPE, VERSION, item_kind, items_of
from atrest.flows.encrypt_object import EncryptPipeline, Outcome
from atrest.storage.records import ObjectStatus
from atrest_cli.demos.samples import call_recording_wav, chat_transcript

from probes import (
    decrypt, encrypt_at, invoke_handler_at, object_created, object_records, queue_bodies, record_of, recording_key,
    source_versions, transcript_key, upload, vault_headers, vault_key_of, vault_versions,
)

pytestmark = pytest.mark.local_only("delivers messages again with the local runner on an emptied stack")


def test_every_event_delivered_three_times_through_the_queue_yields_one_vault_object_and_one_record(
    settings, clean_stack, local_runner, tmp_path
):
    sources = {
        "call-recording": upload(settings, recording_key(settings), call_recording_wav(0.5)),
        "chat-transcript": upload(settings, transcript_key(settings), chat_transcript(settings.account_id, "i-1", "c-1")),
        "knowledge-document": upload(settings, f"{settings.knowledge_prefix}returns {uuid.uuid4()}.pdf", b"%PDF-1.7"),
    }
    queue_url = clean_stack.outputs["EncryptQueueUrl"]
    bodies = queue_bodies(queue_url)
    assert len(bodies) == len(sources), "each upload should have put one event on the queue"
    for body in bodies:
        for _ in range(2):  # two more deliveries of the very same event
            boto3.client("sqs").send_message(QueueUrl=queue_url, MessageBody=body)

    stats = local_runner.drain(timeout=60)

    assert stats.failed_invocations == 0
    assert len(object_records(settings)) == len(sources)
    for data_class, source in sources.items():
        vault_key = vault_key_of(source, data_class)
        record = record_of(settings, vault_key)
        assert vault_versions(settings, vault_key) == [record.vault_version_id], data_class
        assert record.status is ObjectStatus.SOURCE_DELETED
        assert source_versions(settings, source.key) == []
        assert decrypt(settings, vault_key, tmp_path)
    assert queue_bodies(clean_stack.outputs["EncryptDeadLetterQueueUrl"]) == []
    # Nothing but ciphertext reached the vault: every version is an ESDK message bound to its source.
    headers = vault_headers(settings)
    assert len(headers) == len(sources)
    for (vault_key, _), header in headers.items():
        assert header is not None, f"{vault_key} is not an ESDK message"
        assert header.encryption_context["atrest:source-key"] == record_of(settings, vault_key).source_key


def test_three_processes_encrypting_the_same_versions_at_once_leave_one_vault_object_and_one_record_each(
    settings, worker_processes, tmp_path
):
    """The domain's own guarantee, at the pipeline: the handler adds no idempotency layer
    of its own (the handler-level twin is the test after this one)."""
    bodies = [f"call {n} ".encode() * 5000 for n in range(4)]
    sources = [upload(settings, recording_key(settings), body) for body in bodies]
    start_at = time.time() + 1.5
    futures = {source: [worker_processes.submit(encrypt_at, settings, source, start_at) for _ in range(3)]
               for source in sources}

    for source, body in zip(sources, bodies):
        outcomes = [future.result(timeout=120) for future in futures[source]]
        assert [o["outcome"] for o in outcomes] == ["encrypted"] * 3
        assert sorted(o["repeated"] for o in outcomes) == [False, True, True], "exactly one delivery did the work"
        vault_key = vault_key_of(source)
        assert vault_versions(settings, vault_key) == [record_of(settings, vault_key).vault_version_id]
        assert source_versions(settings, source.key) == []
        assert decrypt(settings, vault_key, tmp_path) == body


def test_two_handler_instances_given_the_same_event_at_once_leave_one_vault_object_and_one_record(
    settings, worker_processes, local_stack, emulator, tmp_path
):
    """The handler keeps no idempotency record of its own: two Lambda instances handed the
    same event at the same instant both run the pipeline, and its conditional record write
    picks one (the other discards its copy and reports the object encrypted, repeated)."""
    bodies = [f"call {n} ".encode() * 5000 for n in range(3)]
    sources = [upload(settings, recording_key(settings), body) for body in bodies]
    function = local_stack.function("EncryptObjectFunction")
    start_at = time.time() + 3  # after both instances' cold start and warm-up
    futures = {source: [worker_processes.submit(invoke_handler_at, function, emulator.environment(),
                                                object_created(settings.intake_bucket, source.key, source.version_id),
                                                start_at) for _ in range(2)]
               for source in sources}

    for source, body in zip(sources, bodies):
        outcomes = [future.result(timeout=120) for future in futures[source]]
        assert [o["outcome"] for o in outcomes] == ["encrypted"] * 2, outcomes
        assert sorted(o["repeated"] for o in outcomes) == [False, True], "exactly one delivery did the work"
        vault_key = vault_key_of(source)
        assert vault_versions(settings, vault_key) == [record_of(settings, vault_key).vault_version_id]
        assert record_of(settings, vault_key).status is ObjectStatus.SOURCE_DELETED
        assert source_versions(settings, source.key) == []
        assert decrypt(settings, vault_key, tmp_path) == body


def test_a_duplicate_that_finds_the_plaintext_already_deleted_by_the_first_delivery_reports_it_encrypted(settings):
    source = upload(settings, recording_key(settings), b"delivered twice")
    clients = AwsClients()
    finished_first = []

    def first_delivery_finishes_meanwhile(params, **_):
        # Between the duplicate's "no record yet" and its read, the first delivery does everything.
        if params["Bucket"] == settings.intake_bucket and not finished_first:
            finished_first.append(EncryptPipeline.from_settings(settings).encrypt(source))

    clients.s3.meta.events.register("before-parameter-build.s3.GetObject", first_delivery_finishes_meanwhile)

    duplicate = EncryptPipeline.from_settings(settings, clients).encrypt(source)

    assert finished_first[0].outcome is Outcome.ENCRYPTED and not finished_first[0].repeated
    assert duplicate.outcome is Outcome.ENCRYPTED and duplicate.repeated  # not "skipped: source-missing"
    assert vault_versions(settings, vault_key_of(source)) == [record_of(settings, vault_key_of(source)).vault_version_id]


def test_two_first_ever_objects_for_a_new_scope_at_once_get_one_branch_key(settings, worker_processes, tmp_path):
    """Pipeline-level twin of tests/integration/test_branch_keys.py (four processes racing ensure())."""
    new_account = replace(settings, account_id=str(uuid.uuid4().int)[:12])
    sources = [upload(settings, recording_key(settings), f"first call {n}".encode()) for n in range(2)]
    start_at = time.time() + 1.5
    futures = [worker_processes.submit(encrypt_at, new_account, source, start_at) for source in sources]
    outcomes = [future.result(timeout=120) for future in futures]

    assert {o["scope"] for o in outcomes} == {f"account/{new_account.account_id}"}
    assert len({o["branch_key_version"] for o in outcomes}) == 1, outcomes
    items = boto3.client("dynamodb").query(
        TableName=settings.keystore_table, **items_of(f"account/{new_account.account_id}"))["Items"]
    assert sorted(item_kind(item[TYPE]["S"]) for item in items) == ["active", "beacon", "version"], \
        [(item[TYPE]["S"], item.get(VERSION, {}).get("S")) for item in items]
    for source in sources:
        assert decrypt(new_account, vault_key_of(source), tmp_path).startswith(b"first call")
