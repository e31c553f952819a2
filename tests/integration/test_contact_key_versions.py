"""A contact event whose fields are sealed under two branch key versions (issue 15,
finding 4): the keyring's cache may refresh between two fields of one event, just after
a rotation, so each field records the version its own message header names, each version
counts the contact, and a shred refuses exactly the fields under the shredded version,
naming that version. Records written before versions were kept per field (one version
for all fields) still read, and are refused with the version their headers name."""

from __future__ import annotations

import uuid

import boto3
import pytest

from atrest.core.clients import AwsClients
from atrest.core.clock import ManualClock
from atrest.core.errors import DecryptRefusedError
from atrest.crypto.envelope import message_key, read_header
from atrest.crypto.keystore import BranchKeyStore
from atrest.events.shapes import contact_event_from_eventbridge
from atrest.flows.expire_keys import KeyLifecycle
from atrest.flows.protect_contact import ContactProtector, ContactReader
from atrest.storage.contact_records import read_contact, version_attribute
from atrest.storage.instances import InstanceDirectory
from atrest.storage.record_keys import contact_key, contact_version_key
from atrest.storage.records import MetadataTable
from atrest_cli.demos.samples import contact_event

pytestmark = pytest.mark.local_only("rotates under a fake clock (ManualClock) on an emptied stack")

# At 10 s or less the MPL's cache keeps nothing: every field asks the key store for the
# active version, as a warm function does when its cache entry expires mid-event.
NO_CACHE_TTL = 1


class RotationAfterTheFirstField:
    """The real ESDK client; a rotation (by another process) lands after the first field."""

    def __init__(self, esdk, rotate):
        self.esdk, self.rotate, self.fields = esdk, rotate, 0

    def encrypt(self, **kwargs):
        result = self.esdk.encrypt(**kwargs)
        self.fields += 1
        if self.fields == 1:
            self.rotate()
        return result


@pytest.fixture
def event_sealed_across_a_rotation(settings, clean_stack):
    instance, contact_id = str(uuid.uuid4()), str(uuid.uuid4())
    branch_key_id = f"instance/{instance}"
    clients = AwsClients()
    keystore = BranchKeyStore(clients, settings.keystore_table, settings.keystore_name, settings.kms_key_arn,
                              NO_CACHE_TTL)
    protector = ContactProtector(settings, keystore, MetadataTable(clients.dynamodb, settings.metadata_table),
                                 InstanceDirectory(clients.dynamodb, settings.metadata_table,
                                                   lambda: clients.client("connect")))
    clock = ManualClock()
    expiry = KeyLifecycle.from_settings(settings, clock=clock)
    rotations = []
    protector.esdk = RotationAfterTheFirstField(protector.esdk, lambda: rotations.append(expiry.rotate(branch_key_id)))
    raw = contact_event(settings.account_id, "us-east-1", instance, contact_id, phone="+12065550100",
                        attributes={"account": "12-34"})
    outcome = protector.protect(contact_event_from_eventbridge(raw))
    (report,) = rotations
    (rotation,) = report.rotated
    stored = read_contact(MetadataTable(boto3.client("dynamodb"), settings.metadata_table), instance, contact_id)
    headers = {name: message_key(read_header(message)).branch_key_version for name, message in stored.sealed.items()}
    return {"instance": instance, "contact": contact_id, "branch_key_id": branch_key_id, "outcome": outcome,
            "v1": rotation.retired_version, "v2": rotation.active_version, "stored": stored, "headers": headers,
            "expiry": expiry, "clock": clock}


def under(sealed, version):
    return sorted(name for name, v in sealed["headers"].items() if v == version)


def shred_first_version(settings, sealed):
    sealed["clock"].advance(seconds=settings.cache_ttl_seconds, minutes=5)  # writers have let it go
    return sealed["expiry"].shred(sealed["branch_key_id"], sealed["v1"])


def test_each_pii_field_records_the_key_version_its_own_header_names(settings, event_sealed_across_a_rotation):
    sealed = event_sealed_across_a_rotation
    first, rest = under(sealed, sealed["v1"]), under(sealed, sealed["v2"])
    assert len(first) == 1 and rest, "the rotation must land between two fields"

    assert sealed["stored"].recorded_versions == sealed["headers"]
    assert sealed["outcome"].key_versions == sealed["headers"]
    view = ContactReader.from_settings(settings).reveal(sealed["instance"], sealed["contact"])
    assert view.key_versions == sealed["headers"]
    assert view.pii["customerEndpoint"]["address"] == "+12065550100" and view.pii["attributes"] == {"account": "12-34"}


def test_both_versions_count_the_contact_and_a_shred_refuses_only_the_fields_under_it(
        settings, event_sealed_across_a_rotation):
    sealed = event_sealed_across_a_rotation
    records = MetadataTable(boto3.client("dynamodb"), settings.metadata_table)
    assert records.count_under(sealed["branch_key_id"], sealed["v1"]) == 1
    assert records.count_under(sealed["branch_key_id"], sealed["v2"]) == 1

    (shred,) = shred_first_version(settings, sealed)

    assert shred.objects_unreadable == 1
    reader = ContactReader.from_settings(settings)
    (gone,) = under(sealed, sealed["v1"])
    with pytest.raises(DecryptRefusedError, match=rf"{gone}: key \S+ version {sealed['v1']} was shredded on"):
        reader.reveal(sealed["instance"], sealed["contact"], fields=lambda name: name == gone)
    kept = reader.reveal(sealed["instance"], sealed["contact"], fields=lambda name: name != gone)
    assert sorted(kept.pii) == under(sealed, sealed["v2"])


def test_a_record_from_before_per_field_versions_still_reads_and_is_refused_under_the_right_version(
        settings, event_sealed_across_a_rotation):
    sealed = event_sealed_across_a_rotation
    # As earlier versions wrote it: the last field's version for every field, one index item.
    dynamodb = boto3.client("dynamodb")
    names = {f"#v{n}": version_attribute(name) for n, name in enumerate(sealed["headers"])}
    dynamodb.update_item(TableName=settings.metadata_table, Key=contact_key(sealed["instance"], sealed["contact"]),
                         UpdateExpression="SET " + ", ".join(f"{n} = :one" for n in names),
                         ExpressionAttributeNames=names, ExpressionAttributeValues={":one": {"S": sealed["v2"]}})
    dynamodb.delete_item(TableName=settings.metadata_table,
                         Key=contact_version_key(sealed["instance"], sealed["contact"], sealed["v1"]))
    reader = ContactReader.from_settings(settings)
    assert reader.reveal(sealed["instance"], sealed["contact"]).key_versions == sealed["headers"]

    shred_first_version(settings, sealed)

    (gone,) = under(sealed, sealed["v1"])
    with pytest.raises(DecryptRefusedError, match=rf"version {sealed['v1']} was shredded on"):
        reader.reveal(sealed["instance"], sealed["contact"], fields=lambda name: name == gone)
    assert sorted(reader.reveal(sealed["instance"], sealed["contact"], fields=lambda name: name != gone).pii) \
        == under(sealed, sealed["v2"])
