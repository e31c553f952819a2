"""`atrest demo`: the encrypt pipeline and time-limited instance keys, end to end on the
embedded emulator.

Starts the emulator, provisions template.yaml, sends an Amazon Connect contact event
(ProtectContact encrypts its PII under the instance key and learns the instance alias),
uploads a call recording and a chat transcript under the Amazon Connect layout, lets
S3 -> EventBridge -> SQS -> the EncryptObject handler do the work, then reads every
record back, decrypts every vault object and compares it with what was uploaded.
Objects of the main data classes are uploaded (recording, transcript, Contact Lens
analysis, knowledge document, integration configuration, voiceprint), each under its
own scope, and a file no class names (a customer list dropped at uploads/), which the
catch-all class encrypts too: nothing lands in the intake and stays plaintext. A QA
reviewer reads the contact's recording and transcript through ReadObject (audited), and
a contractor's read is denied (403, audited too). Then, on a manual clock, ExpireKeys
rotates the instance key (+25 h) and, 90 days later, shreds the old version: the first
contact's PII is refused with the date.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from atrest.core.settings import Settings
from atrest.storage.records import ObjectRecord
from atrest_cli import terminal
from atrest_cli.operations.deployment import settings_from_outputs
from atrest_cli.progress import human_bytes

ROOT = Path(__file__).resolve().parents[3]
DEMO_ALIAS = "acme-support"
DEMO_PHONE = "+12065550100"
# The data class the demo puts on a KMS key of its own.
OWN_KEY_CLASS = "integration-configuration"


@dataclass
class Upload:
    key: str
    body: bytes
    version_id: str


def _say(label: str, text: str) -> None:
    print(f"  {label:<10} {text}", flush=True)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width // 2 - 1] + "..." + text[-(width - width // 2 - 2):]


def render_table(records: list[ObjectRecord]) -> str:
    header = ("object", "data class", "scope", "key version", "plaintext", "ciphertext", "ms")
    rows = [
        (
            _shorten(r.source_key, 110),
            r.data_class,
            r.scope,
            r.branch_key_version[:8],
            human_bytes(r.plaintext_size),
            human_bytes(r.ciphertext_size),
            str(r.duration_ms if r.duration_ms is not None else ""),
        )
        for r in records
    ]
    return terminal.render_table(header, rows, right=(4, 5, 6))


def describe_scopes(settings: Settings, records: list[ObjectRecord], instance_id: str) -> str:
    """Which key store and KMS key protect each scope the demo's data landed in: the KMS key
    read from the branch key's active item (what wraps it), named by why it is that key."""
    import boto3

    from atrest.crypto.keystore_format import ACTIVE_TYPE, KMS_ARN, item_key

    own_keys = {arn: name for name, arn in settings.data_class_kms_keys.items()}
    scopes = sorted({r.scope for r in records} | {f"instance/{instance_id}"})
    lines = ["scopes (one branch key each) and what wraps them:"]
    dynamodb = boto3.client("dynamodb")
    for scope in scopes:
        service = scope.startswith("service/")
        table = settings.service_keystore_table if service else settings.keystore_table
        item = dynamodb.get_item(TableName=table, ConsistentRead=True,
                                 Key=item_key(scope, ACTIVE_TYPE)).get("Item", {})
        arn = item.get(KMS_ARN, {}).get("S", "(no branch key yet)")
        if service:
            where = f"service key store {table}, stack-owned KMS key {arn}"
        elif arn in own_keys:
            where = f"key store {table}, {own_keys[arn]}'s own KMS key {arn}"
        else:
            where = f"key store {table}, KMS key {arn}"
        lines.append(f"  {scope:<52} {where}")
    return "\n".join(lines)


def run(args: argparse.Namespace | None = None) -> int:
    import boto3

    from atrest.catalog.data_classes import Classification, DataClassifier
    from atrest.flows.decrypt_object import VaultReader
    from atrest.storage.records import MetadataTable
    from atrest_cli.demos.reads import show_audited_reads
    from atrest_cli.local.emulator import Emulator
    from atrest_cli.local.runner import Runner
    from atrest_cli.local.stack import create_data_class_kms_keys, data_class_kms_keys_parameter, provision
    from atrest_cli.demos.samples import (
        call_recording_wav, chat_transcript, connect_key, contact_event, contact_lens_key, contact_lens_voice_analysis,
    )
    from atrest.storage.vault_keys import VaultKey

    from atrest_cli.local.lambda_runtime import library_log

    template = Path(getattr(args, "template", None) or ROOT / "template.yaml")
    print("atrest demo: encryption at rest on the embedded AWS emulator", flush=True)
    work = Path(tempfile.mkdtemp(prefix="atrest-demo-"))
    # The functions' log handlers keep writing to it after their invocations (atrest's loggers
    # share their configuration), so it stays open until the demo ends.
    function_log = (work / "functions.log").open("w")
    # The domain library's own logs (the key expiry the demo runs directly) join the functions'.
    with Emulator() as emulator, function_log, library_log(function_log):
        os.environ.update(emulator.environment())
        _say("emulator", f"{emulator.endpoint} (moto server on loopback, in this process)")
        # One data class on a KMS key of its own, made first as a customer would (docs/byok.md):
        # the stack takes grants on it for its roles (the KmsGrants custom resource, run locally).
        class_keys = create_data_class_kms_keys(emulator, [OWN_KEY_CLASS])
        state = provision(template, emulator, stack_name="atrest",
                          parameters={"DataClassKmsKeys": data_class_kms_keys_parameter(class_keys)})
        _say("stack", f"{state.stack_name}: {len(state.resources)} resources from {template.name}")
        _say("own key", f"data class {OWN_KEY_CLASS} on KMS key {class_keys[OWN_KEY_CLASS]} (DataClassKmsKeys); "
                        f"KMS grants: {state.resources['KmsGrants'].attributes.get('GrantCount', '?')}")
        settings = settings_from_outputs(state.outputs, state.account_id, state.parameters)

        s3 = boto3.client("s3")
        contact = str(uuid.uuid4())
        # Amazon Connect's side: the instance (its alias names the S3 prefix) and a contact event.
        instance_id = boto3.client("connect").create_instance(
            IdentityManagementType="CONNECT_MANAGED", InstanceAlias=DEMO_ALIAS, InboundCallsEnabled=True,
            OutboundCallsEnabled=True)["Id"]
        put_contact_event(contact_event(settings.account_id, state.region, instance_id, contact, "CONNECTED_TO_AGENT",
                                        phone=DEMO_PHONE, attributes={"customerName": "Jane Doe"}))
        # Contact events come first (a recording lands after its call ends): this one teaches the alias.
        Runner(state, function_stdout=function_log, functions=["ProtectContactFunction"]).drain(timeout=60)
        _say("contact", f"event {contact[:8]} of instance {instance_id} (alias {DEMO_ALIAS}) protected by ProtectContactFunction")
        when = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        # The main S3 data classes of the catalog (layers/atrest/atrest/catalog/data_classes.json), and
        # an object no class names, for the catch-all.
        objects = [
            (connect_key(settings.connect_prefix, DEMO_ALIAS, "CallRecordings", contact, when, "wav"), call_recording_wav(3.0)),
            (connect_key(settings.connect_prefix, DEMO_ALIAS, "ChatTranscripts", contact, when, "json"),
             chat_transcript(settings.account_id, instance_id, contact, when)),
            (contact_lens_key("Voice", contact, when), contact_lens_voice_analysis(settings.account_id, instance_id, contact)),
            ("uploads/customer-list.csv", b"name,segment\nJane Doe,gold\nJohn Roe,silver\n"),
            (f"{settings.knowledge_prefix}returns/refund-policy.md", b"# Refunds\nWithin 30 days, with the receipt.\n"),
            ("integrations/crm/salesforce.json",
             json.dumps({"instanceUrl": "https://example.my.salesforce.com", "clientId": "3MVG9demo"}).encode()),
            (f"voiceprints/{contact}.vp", bytes(range(256)) * 16),
        ]
        uploads = []
        for key, body in objects:
            version = s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=body)["VersionId"]
            uploads.append(Upload(key, body, version))
        _say("uploaded", f"{len(uploads)} objects, of {len(objects) - 1} data classes and one no class names, "
                         f"to s3://{settings.intake_bucket}/")

        log_path = Path(function_log.name)
        started = time.monotonic()
        stats = Runner(state, function_stdout=function_log).drain(timeout=120)
        _say("processed", f"{stats.invocations} invocation(s) of EncryptObjectFunction via S3 -> EventBridge -> SQS "
                          f"in {time.monotonic() - started:.1f} s (function logs: {log_path})")

        table = MetadataTable(boto3.client("dynamodb"), settings.metadata_table)
        reader = VaultReader.from_settings(settings)
        classifier = DataClassifier.from_settings(settings)
        records, verified, problems = [], 0, []
        for upload in uploads:
            classification = classifier.classify(upload.key, len(upload.body))
            assert isinstance(classification, Classification), upload.key
            record = table.get_object(VaultKey.of_source(classification.data_class, settings.intake_bucket,
                                                             upload.key, upload.version_id))
            if record is None:
                problems.append(f"no record for {upload.key}")
                continue
            records.append(record)
            out = work / Path(upload.key).name.replace(":", "-")
            reader.decrypt_to_file(record.vault_bucket, record.vault_key, out)
            if out.read_bytes() == upload.body:
                verified += 1
            else:
                problems.append(f"{upload.key} decrypted to different bytes")
            out.unlink()
        leftover = s3.list_object_versions(Bucket=settings.intake_bucket).get("Versions", [])

        print()
        print(render_table(records))
        print()
        print(describe_scopes(settings, records, instance_id))
        print()
        if problems or verified != len(uploads):
            print(f"FAILED: {verified} of {len(uploads)} objects verified; " + "; ".join(problems))
            return 1
        plaintext_note = "no plaintext is left in the intake bucket" if not leftover else f"{len(leftover)} source version(s) kept"
        print(f"every object decrypted back to its original bytes ({verified} of {len(uploads)}); {plaintext_note}")
        print(f"vault objects are in s3://{settings.vault_bucket}/ as ESDK messages; records in {settings.metadata_table}")
        tied = {r.instance_id for r in records if r.instance}  # the Connect layout's objects name an alias
        print(f"recordings under connect/{DEMO_ALIAS}/ are tied to instance {instance_id}: "
              f"{'yes' if tied == {instance_id} else 'NO'} (learned from the contact event)")
        reads = show_audited_reads(Runner(state, function_stdout=function_log), settings, contact,
                                   {u.key: u.body for u in uploads}, _say, work, stdout=function_log)
        return show_instance_key_lifetimes(state, settings, instance_id, contact, function_log) or reads


def put_contact_event(event: dict) -> None:
    import boto3

    boto3.client("events").put_events(Entries=[{
        "Source": event["source"], "DetailType": event["detail-type"], "Resources": event["resources"],
        "Detail": json.dumps(event["detail"]), "EventBusName": "default",
    }])


def show_instance_key_lifetimes(state: Any, settings: Settings, instance_id: str, contact: str, function_log: Any) -> int:
    """Rotation and shredding of the instance key, on a manual clock (hours and days in no time)."""
    from atrest.core.clock import ManualClock
    from atrest.core.errors import DecryptRefusedError
    from atrest.flows.expire_keys import KeyLifecycle
    from atrest.flows.protect_contact import ContactReader
    from atrest_cli.commands.keys import render_versions
    from atrest_cli.demos.samples import contact_event
    from atrest_cli.local.runner import Runner
    from atrest_cli.operations.key_inventory import key_inventory

    print()
    print(f"contact PII under the time-limited key instance/{instance_id}:")
    reader = ContactReader.from_settings(settings)
    first = reader.reveal(instance_id, contact)
    version = first.key_versions["customerEndpoint"]
    _say("protected", f"contact {contact[:8]}: customerEndpoint, systemEndpoint, attributes stored as ESDK messages "
                      f"(version {version[:8]}); channel, queue, agent readable")
    _say("revealed", f"customer {first.pii['customerEndpoint']['address']} (decrypted on request, never logged)")

    clock = ManualClock()
    expiry = KeyLifecycle.from_settings(settings, clock=clock)
    clock.advance(hours=25)
    rotated = [r for r in expiry.run().rotated if r.branch_key_id == f"instance/{instance_id}"]
    if not rotated:
        print("FAILED: the instance key was not rotated after 25 h")
        return 1
    _say("rotated", f"+25 h: ExpireKeys retired {rotated[0].retired_version[:8]}, new data uses {rotated[0].active_version[:8]}")

    later = str(uuid.uuid4())
    put_contact_event(contact_event(settings.account_id, state.region, instance_id, later, phone="+12065550177"))
    Runner(state, function_stdout=function_log, functions=["ProtectContactFunction"]).drain(timeout=60)
    second = reader.reveal(instance_id, later)
    _say("protected", f"contact {later[:8]} under version {second.key_versions['customerEndpoint'][:8]} (a new function instance)")

    clock.advance(days=90, hours=1)
    shredded = expiry.run().shredded
    _say("shredded", f"+90 d after retirement: version {version[:8]} deleted from the key store, "
                     f"{sum(s.objects_unreadable for s in shredded)} contact(s) made unreadable")
    try:
        reader.reveal(instance_id, contact)
    except DecryptRefusedError as refused:
        _say("refused", str(refused))
    else:
        print("FAILED: PII under a shredded version still decrypted")
        return 1
    if reader.reveal(instance_id, later).pii["customerEndpoint"]["address"] != "+12065550177":
        print("FAILED: PII under a newer version no longer decrypts")
        return 1
    _say("unaffected", f"contact {later[:8]} (newer version) still decrypts to what was sent")
    print()
    print("$ atrest keys list")
    print(render_versions(key_inventory(expiry)))
    return 0
