"""`atrest status`: every object in the intake bucket accounted for, and the keys behind them."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import replace
from datetime import datetime, timezone

import boto3
import pytest

from atrest.catalog.data_classes import DataClassCatalog, DataClassifier, Exclusion
from atrest.flows.encrypt_object import EncryptPipeline
from atrest.storage.intake import SourceObject
from atrest_cli.commands.status import printable
from atrest_cli.demos.samples import connect_key
from atrest_cli.operations.status import FailedSources, class_kms_key, expected_kms_key
from atrest_cli.progress import ListingProgress

COUNTS_AN_EMPTIED_STACK = pytest.mark.local_only("counts every object and key version of an emptied stack, encrypting intake objects in this process")

WHEN = datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc)


@pytest.fixture
def intake(settings, clean_stack):
    """An intake bucket with an object in every state (keys by role), and what the catalog
    says of them. Two objects are encrypted through the pipeline: one with its plaintext
    deleted (gone from the intake), one kept; a dead letter names one object in the intake
    and one that is not there."""
    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    bucket = settings.intake_bucket
    keys = {
        "recording": connect_key(settings.connect_prefix, "acme", "CallRecordings", str(uuid.uuid4()), WHEN, "wav"),
        "kept": f"uploads/kept-{uuid.uuid4()}.csv",
        "catch_all": "uploads/customer list.csv",
        "root": "notes été.txt",
        # A tab, a right-to-left override and a trailing space. (Other control characters are
        # valid in S3 keys, but moto's ListObjectVersions answers them with a 500; the unit
        # test of `printable` below covers them.)
        "odd": "uploads/tab\there\u202eexe.txt ",
        "long": "uploads/" + "é" * 508,  # 1,024 bytes, S3's longest key
        "pending": connect_key(settings.connect_prefix, "acme", "ChatTranscripts", str(uuid.uuid4()), WHEN, "json"),
        "failed": connect_key(settings.connect_prefix, "acme", "ChatTranscripts", str(uuid.uuid4()), WHEN, "json"),
        "report": f"{settings.connect_prefix}acme/Reports/daily.csv",
        "marker": "uploads/",
    }
    assert len(keys["long"].encode()) == 1024
    versions = {role: s3.put_object(Bucket=bucket, Key=key, Body=b"" if role == "marker" else b"x" * 10)["VersionId"]
                for role, key in keys.items()}
    EncryptPipeline.from_settings(settings).encrypt(SourceObject(bucket, keys["recording"], versions["recording"]))
    EncryptPipeline.from_settings(replace(settings, keep_source=True)).encrypt(
        SourceObject(bucket, keys["kept"], versions["kept"]))
    dlq = clean_stack.outputs["EncryptDeadLetterQueueUrl"]
    for key, version in ((keys["failed"], versions["failed"]), ("uploads/deleted-since.csv", "v1")):
        sqs.send_message(QueueUrl=dlq, MessageBody=json.dumps({
            "source": "aws.s3", "detail-type": "Object Created",
            "detail": {"bucket": {"name": bucket}, "object": {"key": key, "size": 10, "version-id": version}}}))

    classifier = DataClassifier.from_settings(settings)
    catch_all = classifier.classify(keys["catch_all"]).data_class
    assert classifier.classify(keys["recording"]).data_class == "call-recording"
    assert classifier.classify(keys["root"]).data_class == catch_all != "call-recording"
    report, marker = classifier.classify(keys["report"]), classifier.classify(keys["marker"], size=0)
    assert isinstance(report, Exclusion) and isinstance(marker, Exclusion)
    return keys, catch_all, {"report": report.reason, "marker": marker.reason}


@COUNTS_AN_EMPTIED_STACK
def test_status_accounts_for_every_intake_object_per_class_and_says_the_totals_add_up(settings, intake, atrest):
    keys, catch_all, reasons = intake

    code, out, err = atrest("status", "--json")

    assert code == 0, err
    report = json.loads(out)
    classes = {c["data_class"]: c for c in report["classes"]}
    assert report["listed"] == report["totals"]["accounted"] == len(keys) - 1  # the recording's plaintext is gone
    assert {k: classes["call-recording"][k] for k in ("encrypted", "source_deleted", "in_intake")} == {
        "encrypted": 1, "source_deleted": 1, "in_intake": 0}
    assert {k: classes[catch_all][k] for k in ("encrypted", "source_kept", "in_intake", "in_intake_encrypted", "pending")} == {
        "encrypted": 1, "source_kept": 1, "in_intake": 5, "in_intake_encrypted": 1, "pending": 4}
    assert {k: classes["chat-transcript"][k] for k in ("in_intake", "pending", "failed")} == {
        "in_intake": 2, "pending": 1, "failed": 1}
    assert classes["chat-transcript"]["oldest_pending"]
    assert report["excluded"] == {reasons["report"]: 1, reasons["marker"]: 1}
    assert report["totals"] | {"listed": 0, "accounted": 0} == {
        "listed": 0, "accounted": 0, "encrypted_in_intake": 1, "pending": 5, "failed": 1, "vault_copies": 0,
        "excluded": 2, "encrypted": 2, "source_deleted": 1, "source_kept": 1, "source_not_removed": 0}
    assert report["dead_letters"]["EncryptDeadLetterQueue"] == 2 and report["dead_letters_elsewhere"] == 1
    assert classes["call-recording"]["kms_key"] == settings.kms_key_arn
    scope = f"account/{settings.account_id}"
    assert report["kms_keys"][scope] == report["expected_kms_keys"][scope] == settings.kms_key_arn
    versions = [v for v in report["key_versions"] if v["branch_key_id"] == scope]
    assert versions and versions[0]["state"] == "ACTIVE" and versions[0]["objects"] == 2

    code, text, _ = atrest("status")

    assert code == 0
    assert (f"summary: s3://{settings.intake_bucket} holds 9 objects, all accounted for: 1 encrypted (plaintext kept "
            "or not yet removed) + 5 pending + 1 failed + 0 vault copies + 2 excluded") in text
    assert f"  1  {reasons['report']}\n" in text and "key versions" in text and "dead-letter queues" in text
    assert f"  {settings.kms_key_arn} (the stack's key): " in text and "differs" not in text
    assert "\u202e" not in text


@COUNTS_AN_EMPTIED_STACK
def test_status_plaintext_lists_every_plaintext_key_once_with_its_class_or_reason_printed_safely(intake, atrest):
    keys, catch_all, reasons = intake

    code, out, err = atrest("status", "--plaintext")

    assert code == 0, err
    lines = out.splitlines()
    assert sorted(lines) == sorted([
        f"kept\t{catch_all}\t{keys['kept']}",
        f"pending\t{catch_all}\tuploads/customer list.csv",
        f"pending\t{catch_all}\tnotes été.txt",
        f"pending\t{catch_all}\tuploads/tab\\there\\u202eexe.txt\\x20",
        f"pending\t{catch_all}\t{keys['long']}",
        f"pending\tchat-transcript\t{keys['pending']}",
        f"failed\tchat-transcript\t{keys['failed']}",
        f"excluded\t{reasons['report']}\t{keys['report']}",
        f"excluded\t{reasons['marker']}\tuploads/",
    ])
    assert "9 objects in plaintext" in err and "5 pending, 1 failed, 2 excluded, 1 kept" in err

    code, out, _ = atrest("status", "--plaintext", "--json")

    listed = {entry["key"]: entry["label"] for entry in map(json.loads, out.splitlines())}
    assert listed == {keys[role]: label for role, label in (
        ("kept", "kept"), ("catch_all", "pending"), ("root", "pending"), ("odd", "pending"), ("long", "pending"),
        ("pending", "pending"), ("failed", "failed"), ("report", "excluded"), ("marker", "excluded"))}


@COUNTS_AN_EMPTIED_STACK
def test_status_shows_the_service_owned_key_on_service_scopes_apart_from_the_customers(settings, clean_stack, atrest):
    s3 = boto3.client("s3")
    pipeline = EncryptPipeline.from_settings(settings)
    key = f"voiceprints/{uuid.uuid4()}.vp"
    version = s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=b"v" * 64)["VersionId"]
    pipeline.encrypt(SourceObject(settings.intake_bucket, key, version))

    report = json.loads(atrest("status", "--json")[1])
    text = atrest("status")[1]

    assert report["kms_keys"]["service/voiceprint"] == settings.service_kms_key_arn != settings.kms_key_arn
    assert report["service_kms_key"] == settings.service_kms_key_arn
    assert {c["data_class"]: c["kms_key"] for c in report["classes"]}["voiceprint"] == settings.service_kms_key_arn
    assert f"  service/voiceprint: {settings.service_kms_key_arn}\n" in text  # no "differs" warning
    assert f"  {settings.service_kms_key_arn} (service-owned): voiceprint\n" in text
    assert report["class_kms_keys"]["contact-pii"] == settings.kms_key_arn


def test_a_data_class_with_a_kms_key_of_its_own_shows_it_and_its_scope_expects_it(settings):
    own = f"arn:aws:kms:us-east-1:{settings.account_id}:key/00000000-0000-4000-8000-00000000c1a5"
    configured = replace(settings, data_class_kms_keys={"integration-configuration": own})
    catalog = DataClassCatalog.from_settings(configured)

    assert class_kms_key(catalog.get("integration-configuration"), configured) == own
    assert class_kms_key(catalog.get("call-recording"), configured) == settings.kms_key_arn
    assert class_kms_key(catalog.get("voiceprint"), configured) == settings.service_kms_key_arn
    assert expected_kms_key(f"account/{settings.account_id}/integration-configuration", catalog, configured) == own
    assert expected_kms_key(f"account/{settings.account_id}", catalog, configured) == settings.kms_key_arn
    assert expected_kms_key("instance/i-1", catalog, configured) == settings.kms_key_arn


def test_a_dead_letter_marks_failed_only_the_version_it_names_and_counts_what_it_matched():
    failures = FailedSources([SourceObject("b", "a.wav", "v1"), SourceObject("b", "any.wav", None),
                              SourceObject("b", "a.wav", "v1")], letters=4)

    assert failures.failed("a.wav", "v1") and failures.failed("any.wav", "v7")
    assert not failures.failed("a.wav", "v2") and not failures.failed("other.wav", "v1")
    assert failures.unmatched() == 1  # the fourth letter named no object


def test_printable_keys_cannot_break_lines_or_drive_the_terminal_and_stay_unambiguous():
    assert printable("a b/été 日本.wav") == "a b/été 日本.wav"
    assert printable("x\ny\r\x00\x1b[2J\u202e\u2028\u00a0") == "x\\ny\\r\\x00\\x1b[2J\\u202e\\u2028\\xa0"
    assert printable("back\\slash") == "back\\\\slash" and printable("end  ") == "end\\x20\\x20"


def test_listing_progress_goes_to_its_own_stream_a_line_at_a_time_when_not_a_terminal():
    stream = io.StringIO()
    progress = ListingProgress(stream, every=0)

    progress("intake objects", 1000)
    progress("intake objects", 2000)
    progress.finish()

    lines = stream.getvalue().splitlines()
    assert [line.split(" (")[0] for line in lines] == ["status: 1,000 intake objects read", "status: 2,000 intake objects read"]


def _row(text: str, first_cell: str) -> list[str]:
    (row,) = [line for line in text.splitlines() if line.startswith(first_cell)]
    return row.split()


@COUNTS_AN_EMPTIED_STACK
def test_status_shows_the_same_key_versions_expiry_and_object_counts_as_keys_list(settings, clean_stack, atrest):
    """One source of truth: a version recorded with no expiry and a contact under it once
    showed `expires -` and `objects 0` in status while `keys list` had the date and 1."""
    from atrest.events.shapes import contact_event_from_eventbridge
    from atrest.flows.protect_contact import ContactProtector
    from atrest_cli.demos.samples import contact_event

    instance = str(uuid.uuid4())
    event = contact_event(settings.account_id, "us-east-1", instance, str(uuid.uuid4()))
    version = ContactProtector.from_settings(settings).protect(contact_event_from_eventbridge(event)).branch_key_version
    scope = f"instance/{instance}"

    listed = _row(atrest("keys", "list", "--scope", scope)[1], scope)
    code, out, err = atrest("status")
    report = json.loads(atrest("status", "--json")[1])

    assert code == 0, err
    assert listed[2] == "ACTIVE" and listed[-1] == "1" and listed[5] != "-"
    shown = _row(out, scope)
    assert shown[1] == version[:8] and shown[2] == "ACTIVE"
    assert shown[3:] == listed[3:]  # created, expires and objects, as `keys list` prints them
    (entry,) = [v for v in report["key_versions"] if v["branch_key_id"] == scope]
    assert entry["objects"] == 1 and entry["expires"] and entry["version"] == version


@COUNTS_AN_EMPTIED_STACK
def test_a_vault_object_copied_into_the_intake_is_a_vault_copy_naming_its_record_not_pending(
        settings, clean_stack, atrest):
    s3 = boto3.client("s3")
    key = f"uploads/original-{uuid.uuid4()}.csv"
    version = s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=b"a,b\n1,2\n")["VersionId"]
    outcome = EncryptPipeline.from_settings(settings).encrypt(SourceObject(settings.intake_bucket, key, version))
    vault_key = outcome.vault_key
    copy_key = f"uploads/restored-{uuid.uuid4()}.csv.esdk"
    s3.copy_object(Bucket=settings.intake_bucket, Key=copy_key,
                   CopySource={"Bucket": settings.vault_bucket, "Key": vault_key})
    skipped = EncryptPipeline.from_settings(settings).encrypt(SourceObject(settings.intake_bucket, copy_key, None))
    assert skipped.reason == "already-atrest-message"  # what the pipeline does with it: nothing, forever

    report = json.loads(atrest("status", "--json")[1])
    code, text, _ = atrest("status")
    plaintext = atrest("status", "--plaintext")[1]

    assert report["totals"]["vault_copies"] == 1 and report["totals"]["pending"] == 0
    assert report["listed"] == report["totals"]["accounted"] == 1
    assert code == 0 and "+ 0 pending + 0 failed + 1 vault copies +" in text
    assert copy_key not in plaintext
    from atrest.catalog.data_classes import DataClassifier as Classifier
    from atrest.core.clients import AwsClients
    from atrest_cli.operations.status import VaultCopyFinder, survey_intake

    clients = AwsClients()
    (found,) = survey_intake(settings, clients, Classifier.from_settings(settings), None, None,
                             VaultCopyFinder(settings, clients))
    assert found.state.value == "vault-copy" and found.copies == vault_key


@COUNTS_AN_EMPTIED_STACK
def test_status_counts_a_vault_object_overwritten_after_it_was_recorded_as_a_tamper_signal(
        settings, clean_stack, atrest):
    s3 = boto3.client("s3")
    key = f"uploads/{uuid.uuid4()}.csv"
    version = s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=b"x" * 10)["VersionId"]
    vault_key = EncryptPipeline.from_settings(settings).encrypt(
        SourceObject(settings.intake_bucket, key, version)).vault_key
    assert json.loads(atrest("status", "--json", "--survey")[1])["vault_overwritten"] == []

    s3.put_object(Bucket=settings.vault_bucket, Key=vault_key, Body=b"not what was recorded")

    report = json.loads(atrest("status", "--json", "--survey")[1])
    code, text, _ = atrest("status", "--survey")
    assert report["vault_overwritten"] == [vault_key] and report["vault_overwritten_checked"] is None
    assert code == 0 and "vault objects overwritten: 1  <- TAMPER SIGNAL" in text and vault_key in text
    # Without --survey the vault (which grows with the archive) is not listed, and status says so.
    unsurveyed = json.loads(atrest("status", "--json")[1])
    assert unsurveyed["vault_overwritten"] == [] and "--survey" in unsurveyed["vault_overwritten_checked"]
    assert "vault objects overwritten: not checked (not surveyed" in atrest("status")[1]


@COUNTS_AN_EMPTIED_STACK
def test_status_lists_a_bounded_part_of_a_large_intake_and_says_so(settings, clean_stack):
    """The listing stops at its limit (in key order: the oldest Connect keys first) and the
    report says the intake holds more; --survey lists it all."""
    from atrest.core.clients import AwsClients
    from atrest_cli.commands.status import summary
    from atrest_cli.operations.status import collect_status

    s3 = boto3.client("s3")
    keys = sorted(connect_key(settings.connect_prefix, "acme", "ChatTranscripts", str(uuid.uuid4()), WHEN, "json")
                  for _ in range(5))
    for key in keys:
        s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=b"{}")
    queues = {"EncryptDeadLetterQueue": clean_stack.outputs["EncryptDeadLetterQueueUrl"]}

    bounded = collect_status(settings, queues, AwsClients(), listing_limit=3,
                             encrypt_queue=clean_stack.outputs["EncryptQueueUrl"])
    whole = collect_status(settings, queues, AwsClients(), listing_limit=3, survey=True)
    exact = collect_status(settings, queues, AwsClients(), listing_limit=5)

    assert (bounded.listed, bounded.listing_complete, bounded.totals()["pending"]) == (3, False, 3)
    assert bounded.queued == 5  # their events, waiting in EncryptQueue (no runner here)
    assert "(in key order; it holds more)" in summary(bounded)[0] and "--survey" in summary(bounded)[0]
    assert (whole.listed, whole.listing_complete, whole.totals()["pending"]) == (5, True, 5)
    assert (exact.listed, exact.listing_complete) == (5, True)  # exactly the limit: nothing more to say
