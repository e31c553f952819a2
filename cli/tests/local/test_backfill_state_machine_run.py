"""The backfill state machine (statemachines/backfill.asl.json, as provisioned with its
DefinitionSubstitutions) run end to end by the local interpreter: Distributed Map over the
bucket listing, batches to the real EncryptObject handler in-process, Retry, the failure
threshold and the ResultWriter files."""

from __future__ import annotations

import dataclasses
import json
import math
from concurrent.futures import ThreadPoolExecutor

from pathlib import Path

import boto3
import pytest

from atrest.storage.record_keys import objects_only, vault_key_of
from atrest.storage.records import ObjectStatus
from atrest_cli.local.state_machine import UnsupportedDefinitionError, run_state_machine
from atrest_cli.operations.deployment import settings_from_outputs

pytestmark = pytest.mark.local_only("runs the backfill state machine with the local interpreter")

# The stack under test tolerates 34 % failed items (BackfillToleratedFailurePercentage; 5 % by
# default, which would take 500 objects for one failed batch of 25 to be tolerated): three
# batches, one failing, is within it; two, one failing, is not. Same definition, fewer objects.
TEMPLATE = Path(__file__).resolve().parents[3] / "template.yaml"
TOLERATED_PERCENTAGE = "34"
OBJECTS = 75
MACHINE = "BackfillStateMachine"
# Retry waits of the definition (5 s, backoff 2, 4 retries, full jitter) at 1/1000 of real time.
RETRY_SCALE = 0.001


@pytest.fixture(scope="module")
def backfill_stack(emulator):
    from atrest_cli.local.stack import provision

    return provision(TEMPLATE, emulator, stack_name="atrest-backfill",
                     parameters={"BackfillToleratedFailurePercentage": TOLERATED_PERCENTAGE})


@pytest.fixture
def clean_stack(backfill_stack, emulator):
    from atrest_cli.local.stack import empty_stack

    empty_stack(backfill_stack, emulator)
    return backfill_stack


@pytest.fixture
def settings(backfill_stack):
    return settings_from_outputs(backfill_stack.outputs, backfill_stack.account_id, backfill_stack.parameters)


def map_state(stack):
    definition = json.loads(stack.state_machine(MACHINE).definition)
    return next(state for state in definition["States"].values() if state["Type"] == "Map")


def batch_size(stack) -> int:
    return map_state(stack)["ItemBatcher"]["MaxItemsPerBatch"]


def tolerated_percentage(stack) -> float:
    return float(map_state(stack).get("ToleratedFailurePercentage", 0))


def recording_keys(settings, count):
    """Chat transcripts in the Amazon Connect layout; sorted as ListObjectsV2 returns them, so
    key n lands in batch n // MaxItemsPerBatch."""
    return sorted(f"{settings.connect_prefix}legacy/ChatTranscripts/2023/{n // 100 + 1:02d}/{(n % 28) + 1:02d}/"
                  f"{n:08d}-0000-4000-8000-000000000000_2023{n // 100 + 1:02d}{(n % 28) + 1:02d}T10:00_UTC.json"
                  for n in range(count))


@pytest.fixture
def existing_recordings(settings, clean_stack):
    """`existing_recordings(count, archived=())`: transcripts that were in the intake before
    atrest (their upload events dropped); the keys, sorted. The `archived` indexes are in
    S3 Glacier, where a lifecycle rule puts old recordings: GetObject fails with
    InvalidObjectState until someone restores them, so the real handler fails on them."""
    s3 = boto3.client("s3")

    def put(count, archived=()):
        keys = recording_keys(settings, count)
        archived_keys = {keys[n] for n in archived}

        def put_one(key):
            s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=b'{"Version":"2019-08-26","Transcript":[]}',
                          StorageClass="GLACIER" if key in archived_keys else "STANDARD")

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(put_one, keys))
        boto3.client("sqs").purge_queue(QueueUrl=clean_stack.outputs["EncryptQueueUrl"])
        return keys

    return put


def backfill_input(settings):
    return {"bucket": settings.intake_bucket, "prefix": f"{settings.connect_prefix}legacy/", "since": ""}


def object_records(settings):
    pages = boto3.client("dynamodb").get_paginator("scan").paginate(
        TableName=settings.metadata_table, **objects_only(),
        ProjectionExpression="pk, sk, source_key, #s", ExpressionAttributeNames={"#s": "status"})
    return [item for page in pages for item in page["Items"]]


def vault_keys(settings):
    pages = boto3.client("s3").get_paginator("list_object_versions").paginate(Bucket=settings.vault_bucket)
    return [v["Key"] for page in pages for v in page.get("Versions", [])]


def intake_keys(settings):
    pages = boto3.client("s3").get_paginator("list_object_versions").paginate(
        Bucket=settings.intake_bucket, Prefix=f"{settings.connect_prefix}legacy/")
    return {v["Key"] for page in pages for v in page.get("Versions", [])}


def result_files(run):
    s3 = boto3.client("s3")
    results = run.map_run.results
    manifest = json.loads(s3.get_object(Bucket=results.bucket, Key=results.manifest_key)["Body"].read())
    files = {status: [entry for f in entries for entry in json.loads(s3.get_object(Bucket=manifest["DestinationBucket"],
                                                                                   Key=f["Key"])["Body"].read())]
             for status, entries in manifest["ResultFiles"].items()}
    return manifest, files


def assert_encrypted_exactly_once(settings, keys):
    records = object_records(settings)
    assert sorted(r["source_key"]["S"] for r in records) == sorted(keys)
    assert {r["status"]["S"] for r in records} == {ObjectStatus.SOURCE_DELETED.value}
    assert sorted(vault_keys(settings)) == sorted(vault_key_of(r) for r in records)


def test_backfill_state_machine_encrypts_every_existing_object_once_and_lists_an_archived_one_it_tolerates(
        settings, clean_stack, existing_recordings):
    size = batch_size(clean_stack)
    assert size * 100.0 / OBJECTS <= tolerated_percentage(clean_stack), f"one failed batch of {OBJECTS} objects should be tolerated"
    keys = existing_recordings(OBJECTS, archived=[5])  # one object of the first batch: that batch fails after its retries
    archived = keys[5]

    run = run_state_machine(clean_stack, MACHINE, backfill_input(settings), retry_interval_scale=RETRY_SCALE)

    assert (run.status, run.error, run.cause) == ("SUCCEEDED", None, None)
    batches = math.ceil(OBJECTS / size)
    assert (run.map_run.items, run.map_run.batches_succeeded, run.map_run.batches_failed) == (OBJECTS, batches - 1, 1)
    retry = map_state(clean_stack)["ItemProcessor"]["States"]["EncryptBatch"]["Retry"][0]
    assert run.invocations == batches + retry["MaxAttempts"]  # only the failed batch was retried, as often as the definition says
    failed_batch = next(child for child in run.map_run.children if child.status == "FAILED")
    assert failed_batch.error == "BackfillBatchError"  # the function's errorType, as the Lambda integration reports it
    # Every other object (the failed batch's others too: encrypted on its first attempt, passed
    # over on its retries) has one record and one vault object, and its plaintext is gone.
    assert_encrypted_exactly_once(settings, [key for key in keys if key != archived])
    assert intake_keys(settings) == {archived}

    results = run.map_run.results
    assert run.output == {"MapRunArn": run.map_run.map_run_arn,
                          "ResultWriterDetails": {"Bucket": results.bucket, "Key": results.manifest_key}}
    assert results.bucket == map_state(clean_stack)["ResultWriter"]["Parameters"]["Bucket"]
    manifest, files = result_files(run)
    assert manifest["MapRunArn"] == run.map_run.map_run_arn
    assert len(files["SUCCEEDED"]) == batches - 1 and len(files["FAILED"]) == 1
    outputs = [json.loads(entry["Output"]) for entry in files["SUCCEEDED"]]
    assert sum(output["outcomes"].get("encrypted", 0) for output in outputs) == OBJECTS - size
    failure = files["FAILED"][0]
    assert failure["Error"] == "BackfillBatchError" and archived in json.loads(failure["Cause"])["errorMessage"]
    assert [item["Key"] for item in json.loads(failure["Input"])["Items"]] == keys[:size]


def test_backfill_state_machine_fails_with_exceed_tolerated_failure_threshold_when_too_many_objects_fail(
        settings, clean_stack, existing_recordings):
    size = batch_size(clean_stack)
    # Few enough objects that one failed batch is more than the tolerated percentage.
    objects = 2 * size
    assert size * 100.0 / objects > tolerated_percentage(clean_stack)
    existing_recordings(objects, archived=[0])

    run = run_state_machine(clean_stack, MACHINE, backfill_input(settings), retry_interval_scale=RETRY_SCALE)

    assert (run.status, run.error) == ("FAILED", "States.ExceedToleratedFailureThreshold")
    assert run.map_run.batches_failed == 1
    _, files = result_files(run)  # results are written for a failed map run too
    assert [entry["Error"] for entry in files["FAILED"]] == ["BackfillBatchError"]


def test_a_definition_outside_the_interpreters_subset_is_refused_naming_the_state_and_field(local_stack):
    machine = local_stack.state_machine(MACHINE)
    definition = json.loads(machine.definition)
    definition["States"]["EncryptExistingObjects"]["ItemSelector"] = {"key.$": "$$.Map.Item.Value.Key"}
    stack = dataclasses.replace(local_stack, state_machines={MACHINE: dataclasses.replace(machine, definition=json.dumps(definition))})

    with pytest.raises(UnsupportedDefinitionError, match="EncryptExistingObjects: field 'ItemSelector'"):
        run_state_machine(stack, MACHINE, {}, invoke=lambda arn, payload: pytest.fail("nothing may run"))
