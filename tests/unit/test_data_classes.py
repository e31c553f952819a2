import pytest

from atrest.data_classes import DataClass, DataClassifier, connect_rules, knowledge_rule
from atrest.scopes import BranchKeyScope

CONTACT = "58092a11-6075-4025-a57d-6ada88b26d5b"


@pytest.fixture
def classifier():
    return DataClassifier([*connect_rules("connect/"), knowledge_rule("knowledge/")], "111122223333")


def test_connect_call_recording_is_a_recording_under_the_account_key(classifier):
    found = classifier.classify(f"connect/acme-support/CallRecordings/2026/11/30/{CONTACT}_20261130T05:00_UTC.wav")
    assert found.data_class is DataClass.CALL_RECORDING
    assert found.scope == BranchKeyScope.account("111122223333")
    assert found.instance == "acme-support"
    assert found.contact_id == CONTACT


def test_connect_chat_transcript_is_a_transcript(classifier):
    found = classifier.classify(f"connect/acme/ChatTranscripts/2026/11/30/{CONTACT}_20261130T23:59_UTC.json")
    assert found.data_class is DataClass.CHAT_TRANSCRIPT
    assert found.instance == "acme"


def test_knowledge_documents_match_their_prefix_at_any_depth(classifier):
    assert classifier.classify("knowledge/returns/policy 2026.pdf").data_class is DataClass.KNOWLEDGE_DOCUMENT


@pytest.mark.parametrize(
    "key",
    [
        "reports/daily.csv",
        f"connect/acme/CallRecordings/2026/11/30/{CONTACT}_20261130T05:00_UTC.mp3",  # not the Connect format
        f"connect/acme/ChatTranscripts/2026/11/30/{CONTACT}_20261130T05:00_UTC.wav",  # wrong folder for a wav
        f"connect/acme/Reports/2026/11/30/{CONTACT}_20261130T05:00_UTC.json",
        "knowledge/",  # a folder marker is not a document
        f"xconnect/acme/CallRecordings/2026/11/30/{CONTACT}_20261130T05:00_UTC.wav",
        f"connect/acme/CallRecordings/2026/11/30/{CONTACT}_20261130T05:00_UTC.wav.tmp",
    ],
)
def test_keys_outside_every_data_class_are_left_alone(classifier, key):
    assert classifier.classify(key) is None


def test_configured_prefixes_replace_the_defaults():
    classifier = DataClassifier([*connect_rules("cc/prod/"), knowledge_rule("kb/")], "1")
    assert classifier.classify(f"cc/prod/a/CallRecordings/2026/01/02/{CONTACT}_20260102T00:00_UTC.wav")
    assert classifier.classify(f"connect/a/CallRecordings/2026/01/02/{CONTACT}_20260102T00:00_UTC.wav") is None
    assert classifier.classify("kb/faq.md").data_class is DataClass.KNOWLEDGE_DOCUMENT
