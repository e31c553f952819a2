import json
from pathlib import Path

import pytest

from atrest.errors import MalformedEventError
from atrest.eventshapes import source_from_object_created, source_from_sqs_body

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
