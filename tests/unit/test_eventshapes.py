import json
from pathlib import Path

import pytest

from atrest.core.errors import MalformedEventError
from atrest.events.shapes import source_from_object_created, source_from_sqs_body

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures"  # copies of the published AWS samples


def event(key, **object_fields):
    return {
        "version": "0", "source": "aws.s3", "detail-type": "Object Created", "account": "111122223333",
        "region": "us-east-1", "resources": ["arn:aws:s3:::intake"],
        "detail": {"version": "0", "bucket": {"name": "intake"},
                   "object": {"key": key, "size": 5, "etag": "b1946ac92492d2347c6235b4d2611184",
                              "version-id": "v1", **object_fields},
                   "reason": "PutObject"},
    }


def test_url_encoded_keys_are_decoded_as_s3_encodes_them():
    source = source_from_object_created(event("connect/my+alias/CallRecordings/x_20261130T05%3A00_UTC.wav"))
    assert source.key == "connect/my alias/CallRecordings/x_20261130T05:00_UTC.wav"


def test_a_literal_plus_and_percent_and_unicode_survive_decoding():
    source = source_from_object_created(event("knowledge/a%2Bb%25c%C3%A9.pdf"))
    assert source.key == "knowledge/a+b%cé.pdf"


def test_version_etag_and_size_are_carried():
    source = source_from_object_created(event("k", etag='"abc-12"'))
    assert (source.bucket, source.version_id, source.etag, source.size) == ("intake", "v1", "abc-12", 5)


def test_the_published_sample_event_parses():
    sample = json.loads((SAMPLES / "s3-object-created.eventbridge.json").read_text())
    source = source_from_object_created(sample)
    assert source.bucket == "amzn-s3-demo-bucket1" and source.key == "example-key"
    assert source.version_id == "IYV3p45BT0ac8hjHg1houSdS1a.Mro8e"


@pytest.mark.parametrize(
    "broken, message",
    [
        ({"source": "aws.s3", "detail-type": "Object Deleted", "detail": {}}, "Object Created"),
        ({"source": "aws.connect", "detail-type": "Object Created", "detail": {}}, "aws.s3"),
        ({"source": "aws.s3", "detail-type": "Object Created"}, "no detail"),
        ({"source": "aws.s3", "detail-type": "Object Created", "detail": {"bucket": {"name": "b"}}}, "object.key"),
        ({"source": "aws.s3", "detail-type": "Object Created",
          "detail": {"bucket": {"name": "b"}, "object": {"key": "k", "size": -1}}}, "size"),
        ([], "EventBridge event object"),
    ],
)
def test_malformed_events_name_what_is_wrong(broken, message):
    with pytest.raises(MalformedEventError, match=message):
        source_from_object_created(broken)


def test_an_sqs_body_that_is_not_json_is_malformed():
    with pytest.raises(MalformedEventError, match="not JSON"):
        source_from_sqs_body("{not json")


# --------------------------------------------------------------------------- backfill batches

from datetime import datetime, timezone  # noqa: E402

from atrest.events.shapes import is_backfill_batch, sources_from_backfill_batch  # noqa: E402


def batch(*items, since=""):
    """What the backfill Distributed Map hands EncryptObject: ItemBatcher's Items + BatchInput."""
    return {"Items": list(items), "BatchInput": {"bucket": "intake", "since": since}}


def listed(key="connect/acme/CallRecordings/2022/11/17/c1_20221117T15:44_UTC.wav", **fields):
    """An ItemReader item over S3 ListObjectsV2, as AWS documents it (Step Functions
    developer guide, ItemReader: "LastModified": 1668699881, a quoted "Etag")."""
    return {"Etag": '"05704fbdccb224cb01c59005bebbad28"', "Key": key, "LastModified": 1668699881,
            "Size": 34910, "StorageClass": "STANDARD", **fields}


def test_a_batch_in_aws_documented_item_shape_with_epoch_seconds_parses():
    event = batch(listed())
    assert is_backfill_batch(event)
    (source,) = sources_from_backfill_batch(event)
    assert (source.bucket, source.key, source.version_id, source.etag, source.size) == (
        "intake", "connect/acme/CallRecordings/2022/11/17/c1_20221117T15:44_UTC.wav", None,
        "05704fbdccb224cb01c59005bebbad28", 34910)


@pytest.mark.parametrize(
    "last_modified",
    [1668699881, 1668699881.25, "1668699881", "2022-11-17T15:44:41Z", "2022-11-17T15:44:41+00:00",
     "2022-11-17T15:44:41.000Z", "2022-11-17T15:44:41"],
)
def test_last_modified_as_epoch_seconds_or_iso_8601_is_compared_with_since(last_modified):
    kept = sources_from_backfill_batch(batch(listed(LastModified=last_modified), since="2022-11-17"))
    dropped = sources_from_backfill_batch(batch(listed(LastModified=last_modified), since="2022-11-18T00:00:00Z"))
    assert len(kept) == 1 and dropped == []


def test_epoch_seconds_are_utc_and_an_epoch_of_zero_is_a_time_not_missing():
    # 1970-01-01 is before any `since`: the item is dropped, not treated as "no time known".
    assert sources_from_backfill_batch(batch(listed(LastModified=0), since="2000-01-01")) == []
    from atrest.events.shapes import _timestamp

    assert _timestamp(1668699881, "t") == datetime(2022, 11, 17, 15, 44, 41, tzinfo=timezone.utc)


def test_an_eight_digit_string_is_an_iso_date_not_epoch_seconds():
    from atrest.events.shapes import _timestamp

    assert _timestamp("20221117", "t") == datetime(2022, 11, 17, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("last_modified", "message"),
    [
        ("yesterday", "not a time"),
        (True, "not a time"),
        ([1668699881], "not a time"),
        ({"epoch": 1668699881}, "not a time"),
        (1668699881000, "milliseconds"),  # epoch milliseconds: year 54000, refused rather than misread
        ("2022-13-45T99:00:00Z", "not a time"),
    ],
)
def test_a_last_modified_that_is_no_time_is_malformed_and_names_the_object(last_modified, message):
    with pytest.raises(MalformedEventError, match=message) as raised:
        sources_from_backfill_batch(batch(listed(key="k/one.wav", LastModified=last_modified)))
    assert "k/one.wav" in str(raised.value)


def test_a_since_that_is_no_time_is_malformed():
    with pytest.raises(MalformedEventError, match="BatchInput.since"):
        sources_from_backfill_batch(batch(listed(), since="last week"))


def test_a_batch_item_without_a_key_or_with_a_bad_size_is_malformed():
    with pytest.raises(MalformedEventError, match="lacks Key"):
        sources_from_backfill_batch(batch({"LastModified": 1668699881}))
    with pytest.raises(MalformedEventError, match="Size"):
        sources_from_backfill_batch(batch(listed(Size="34910")))


def test_the_sample_backfill_batch_event_parses():
    sample = json.loads((Path(__file__).resolve().parents[2] / "events" / "backfill-batch.json").read_text())
    sources = sources_from_backfill_batch(sample)
    assert sources and all(s.etag and not s.etag.startswith('"') for s in sources)
