"""ProtectContact: Amazon Connect contact events become contact records whose PII is
encrypted under the instance's branch key, searchable by everything else, and never logged."""

from __future__ import annotations

import io
import json
import logging
import uuid
from datetime import datetime, timezone

import boto3
import pytest

from atrest.core.errors import DecryptRefusedError
from atrest.flows.protect_contact import ContactReader
from atrest.storage.contact_records import sealed_attribute
from atrest.storage.record_keys import contact_key
from atrest.storage.records import MetadataTable
from atrest.storage.vault_keys import VaultKey
from atrest_cli.demos.samples import call_recording_wav, connect_key, contact_event
from atrest_cli.local.runner import Runner

pytestmark = pytest.mark.local_only("runs ProtectContactFunction with the local runner on an emptied stack")

PHONE = "+12065550123"


@pytest.fixture
def connect_instance(emulator):
    """An Amazon Connect instance in the emulator (moto gives it a random id)."""
    alias = f"acme-{uuid.uuid4().hex[:8]}"
    created = boto3.client("connect").create_instance(
        IdentityManagementType="CONNECT_MANAGED", InstanceAlias=alias, InboundCallsEnabled=True, OutboundCallsEnabled=True
    )
    return created["Id"], alias


class _EverythingHandler(logging.Handler):
    """Writes every attribute of every record (message, arguments, extras), whatever the formatter."""

    def __init__(self, stream):
        super().__init__(logging.DEBUG)
        self.stream = stream

    def emit(self, record):
        self.stream.write(json.dumps(record.__dict__, default=str) + "\n")


@pytest.fixture
def every_log_record():
    """What the functions log, caught at the `atrest` logger: Powertools' own handler writes
    to the stream of the first cold start in this process, which may be another test's."""
    stream = io.StringIO()
    handler = _EverythingHandler(stream)
    logger = logging.getLogger("atrest")
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


def put_contact_event(event):
    """Amazon Connect's side: the event on the default bus."""
    response = boto3.client("events").put_events(Entries=[{
        "Source": event["source"], "Resources": event["resources"], "DetailType": event["detail-type"],
        "Detail": json.dumps(event["detail"]), "EventBusName": "default",
    }])
    assert response["FailedEntryCount"] == 0


def contact_item(settings, instance_id, contact_id):
    return boto3.client("dynamodb").get_item(
        TableName=settings.metadata_table, Key=contact_key(instance_id, contact_id), ConsistentRead=True
    ).get("Item")


def test_a_contact_event_on_the_default_bus_is_stored_with_its_pii_encrypted_and_the_rest_readable(
        clean_stack, settings, connect_instance, capfd, every_log_record):
    instance_id, alias = connect_instance
    contact_id = str(uuid.uuid4())
    logs = io.StringIO()
    runner = Runner(clean_stack, retry_delay_seconds=1, function_stdout=logs)
    put_contact_event(contact_event(settings.account_id, "us-east-1", instance_id, contact_id, phone=PHONE,
                                    attributes={"customerName": "Jane Doe", "accountNumber": "4000123412341234"}))

    stats = runner.drain(timeout=30)

    assert stats.invocations == 1 and stats.failed_invocations == 0, [e.error for e in stats.errors]
    item = contact_item(settings, instance_id, contact_id)
    stored = json.dumps({k: str(v) for k, v in item.items()})
    assert "2065550123" not in stored and "Jane Doe" not in stored and "4000123412341234" not in stored
    assert set(item) >= {sealed_attribute(name) for name in ("customerEndpoint", "systemEndpoint", "attributes")}
    assert item["channel"] == {"S": "VOICE"} and item["instance_alias"] == {"S": alias}
    assert item["queueInfo"]["M"]["queueType"] == {"S": "STANDARD"}  # searchable without a key

    view = ContactReader.from_settings(settings).reveal(instance_id, contact_id)
    assert view.pii["customerEndpoint"]["address"] == PHONE
    assert view.pii["attributes"]["customerName"] == "Jane Doe"
    key_version = view.key_versions["customerEndpoint"]
    records = MetadataTable(boto3.client("dynamodb"), settings.metadata_table)
    assert records.count_under(f"instance/{instance_id}", key_version) == 1

    out, err = capfd.readouterr()
    captured = logs.getvalue() + out + err + every_log_record.getvalue()
    assert "contact protected" in captured
    assert "2065550123" not in captured and "Jane Doe" not in captured, "PII reached the logs"


@pytest.mark.parametrize("arn_key", ["instanceArn", "instanceARN"])
def test_both_spellings_of_the_instance_arn_are_protected_alike(local_runner, settings, connect_instance, arn_key):
    instance_id, _ = connect_instance
    contact_id = str(uuid.uuid4())
    event = contact_event(settings.account_id, "us-east-1", instance_id, contact_id, "DISCONNECTED", phone=PHONE,
                          arn_key=arn_key)

    invocation = local_runner.invoke("ProtectContactFunction", event)

    assert invocation.succeeded, invocation.error
    assert invocation.response["branch_key_id"] == f"instance/{instance_id}"
    assert contact_item(settings, instance_id, contact_id)["last_event_type"] == {"S": "DISCONNECTED"}


def test_a_later_event_adds_to_the_contact_and_pii_moved_to_another_contact_does_not_decrypt(
        local_runner, settings, connect_instance):
    instance_id, _ = connect_instance
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    for contact, event_type in ((first, "INITIATED"), (first, "CONNECTED_TO_AGENT"), (second, "INITIATED")):
        event = contact_event(settings.account_id, "us-east-1", instance_id, contact, event_type, phone=PHONE)
        assert local_runner.invoke("ProtectContactFunction", event).succeeded
    item = contact_item(settings, instance_id, first)
    assert {"event:INITIATED", "event:CONNECTED_TO_AGENT"} <= set(item)

    # Copy the first contact's encrypted number onto the second contact's record.
    boto3.client("dynamodb").update_item(
        TableName=settings.metadata_table, Key=contact_key(instance_id, second),
        UpdateExpression="SET #p = :p", ExpressionAttributeNames={"#p": sealed_attribute("customerEndpoint")},
        ExpressionAttributeValues={":p": item[sealed_attribute("customerEndpoint")]},
    )
    with pytest.raises(DecryptRefusedError, match="customerEndpoint"):
        ContactReader.from_settings(settings).reveal(instance_id, second)


def test_a_malformed_contact_event_fails_and_says_which_field_is_wrong(local_runner, settings):
    event = contact_event(settings.account_id, "us-east-1", "x", str(uuid.uuid4()))
    event["detail"]["instanceArn"] = "not-an-arn"

    invocation = local_runner.invoke("ProtectContactFunction", event)

    assert not invocation.succeeded
    assert "instanceArn" in json.dumps(invocation.error)


def test_recordings_under_an_alias_are_tied_to_its_instance_once_a_contact_event_taught_it(
        local_runner, settings, connect_instance):
    instance_id, alias = connect_instance
    contact_id = str(uuid.uuid4())
    assert local_runner.invoke(
        "ProtectContactFunction", contact_event(settings.account_id, "us-east-1", instance_id, contact_id)
    ).succeeded
    key = connect_key(settings.connect_prefix, alias, "CallRecordings", contact_id,
                      datetime.now(timezone.utc).replace(second=0, microsecond=0), "wav")
    version = boto3.client("s3").put_object(Bucket=settings.intake_bucket, Key=key, Body=call_recording_wav(0.2))["VersionId"]

    local_runner.drain(timeout=30)

    record = MetadataTable(boto3.client("dynamodb"), settings.metadata_table).get_object(
        VaultKey.of_source("call-recording", settings.intake_bucket, key, version))
    assert record.instance_id == instance_id and record.instance == alias
    assert record.branch_key_id == f"account/{settings.account_id}"  # recordings stay under the account key
