import json
from datetime import timedelta

import pytest

from atrest.data_classes import DataClassCatalog, DataClassifier
from atrest.errors import ConfigurationError
from atrest.lifetimes import KeyLifetimes
from atrest.scopes import BranchKeyScope
from atrest.settings import Settings

CONTACT = "58092a11-6075-4025-a57d-6ada88b26d5b"
ACCOUNT = "111122223333"
ENV = {
    "ATREST_ACCOUNT_ID": ACCOUNT,
    "ATREST_INTAKE_BUCKET": "intake",
    "ATREST_VAULT_BUCKET": "vault",
    "ATREST_KEYSTORE_TABLE": "keystore",
    "ATREST_METADATA_TABLE": "metadata",
    "ATREST_KMS_KEY_ARN": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/customer",
    "ATREST_SERVICE_KEYSTORE_TABLE": "service-keystore",
    "ATREST_SERVICE_KMS_KEY_ARN": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/service",
}


def settings(**extra):
    return Settings.from_env({**ENV, **extra})


@pytest.fixture
def classifier():
    return DataClassifier.from_settings(settings())


def test_connect_call_recording_is_a_recording_under_the_account_key(classifier):
    found = classifier.classify(f"connect/acme-support/CallRecordings/2026/11/30/{CONTACT}_20261130T05:00_UTC.wav")
    assert found.data_class == "call-recording"
    assert found.scope == BranchKeyScope.account(ACCOUNT)
    assert found.instance == "acme-support"
    assert found.contact_id == CONTACT


def test_connect_chat_transcript_is_a_transcript(classifier):
    found = classifier.classify(f"connect/acme/ChatTranscripts/2026/11/30/{CONTACT}_20261130T23:59_UTC.json")
    assert found.data_class == "chat-transcript"
    assert found.instance == "acme"


def test_knowledge_documents_match_their_prefix_at_any_depth(classifier):
    assert classifier.classify("knowledge/returns/policy 2026.pdf").data_class == "knowledge-document"


def test_integration_configuration_has_an_account_key_of_its_own(classifier):
    found = classifier.classify("integrations/crm/salesforce.json")
    assert found.data_class == "integration-configuration"
    assert found.scope.branch_key_id == f"account/{ACCOUNT}/integration-configuration"
    assert found.scope != BranchKeyScope.account(ACCOUNT)


def test_voiceprints_are_under_a_service_scope_never_the_account(classifier):
    found = classifier.classify("voiceprints/enrollments/caller-1.bin")
    assert found.data_class == "voiceprint"
    assert found.scope.branch_key_id == "service/voiceprint"
    assert found.scope.is_service


@pytest.mark.parametrize(
    "key",
    [
        "reports/daily.csv",
        f"connect/acme/CallRecordings/2026/11/30/{CONTACT}_20261130T05:00_UTC.mp3",  # not the Connect format
        f"connect/acme/ChatTranscripts/2026/11/30/{CONTACT}_20261130T05:00_UTC.wav",  # wrong folder for a wav
        f"connect/acme/Reports/2026/11/30/{CONTACT}_20261130T05:00_UTC.json",
        "knowledge/",  # a folder marker is not a document
        "voiceprints/",
        "integrations/crm/readme.txt",  # integration configuration is JSON documents
        f"xconnect/acme/CallRecordings/2026/11/30/{CONTACT}_20261130T05:00_UTC.wav",
        f"connect/acme/CallRecordings/2026/11/30/{CONTACT}_20261130T05:00_UTC.wav.tmp",
    ],
)
def test_keys_outside_every_data_class_are_left_alone(classifier, key):
    assert classifier.classify(key) is None


def test_configured_prefixes_fill_the_catalog_placeholders():
    classifier = DataClassifier.from_settings(settings(ATREST_CONNECT_PREFIX="cc/prod/", ATREST_KNOWLEDGE_PREFIX="kb/"))
    assert classifier.classify(f"cc/prod/a/CallRecordings/2026/01/02/{CONTACT}_20260102T00:00_UTC.wav")
    assert classifier.classify(f"connect/a/CallRecordings/2026/01/02/{CONTACT}_20260102T00:00_UTC.wav") is None
    assert classifier.classify("kb/faq.md").data_class == "knowledge-document"


def test_listing_prefixes_cover_every_s3_class_once():
    catalog = DataClassCatalog.from_settings(settings())
    assert catalog.listing_prefixes() == ["connect/", "integrations/", "knowledge/", "voiceprints/"]


def test_each_class_brings_its_lifetime_to_the_expiry_policy():
    lifetimes = KeyLifetimes.for_deployment(settings(ATREST_ACCOUNT_KEY_ROTATION_DAYS="200"))
    own = lifetimes.for_branch_key(f"account/{ACCOUNT}/integration-configuration")
    assert (own.rotate_after, own.retain_for, own.shred) == (timedelta(days=30), timedelta(days=90), True)
    assert lifetimes.for_branch_key(f"account/{ACCOUNT}").rotate_after == timedelta(days=200)
    assert lifetimes.for_branch_key("service/voiceprint").shred is False


def _catalog(*classes):
    return json.dumps({"schema": 1, "classes": list(classes)})


def test_a_new_class_is_configuration_only(tmp_path):
    path = tmp_path / "classes.json"
    path.write_text(_catalog(
        {"name": "quality-evaluation", "source": "s3", "prefix": "evaluations/", "scope": "account",
         "key": "evaluations", "lifetime": {"rotate_every": "12h", "retain_for": "7d", "shred": True},
         "source_removal": "keep", "decryptors": ["qa-reviewer", f"arn:aws:iam::{ACCOUNT}:role/team/supervisor"]},
    ))
    catalog = DataClassCatalog.from_settings(settings(ATREST_DATA_CLASSES_FILE=str(path)))
    spec = catalog.get("quality-evaluation")
    assert spec.keeps_source and spec.decryptors == ("qa-reviewer", f"arn:aws:iam::{ACCOUNT}:role/team/supervisor")
    found = DataClassifier.from_settings(settings(), catalog).classify("evaluations/2026/form.pdf")
    assert found.scope.branch_key_id == f"account/{ACCOUNT}/evaluations"
    assert catalog.own_lifetimes(ACCOUNT)[f"account/{ACCOUNT}/evaluations"].rotate_after == timedelta(hours=12)


@pytest.mark.parametrize(
    "entry, says",
    [
        ({"name": "x1", "scope": "account"}, 'exactly one of "prefix"'),
        ({"name": "x1", "prefix": "a/", "pattern": "a/.*", "scope": "account"}, 'exactly one of "prefix"'),
        ({"name": "x1", "prefix": "/a/", "scope": "account"}, "without a leading '/'"),
        ({"name": "x1", "pattern": "a/(", "scope": "account"}, "not a valid regular expression"),
        ({"name": "x1", "pattern": "a/(?P<who>.*)", "scope": "account"}, "named groups ['who']"),
        ({"name": "x1", "pattern": "${nope}/.*", "scope": "account"}, "unknown placeholder(s) ['nope']"),
        ({"name": "x1", "prefix": "a/", "scope": "galaxy"}, '"scope" must be one of'),
        ({"name": "x1", "prefix": "a/", "scope": "instance"}, "instance keys protect contact events"),
        ({"name": "x1", "prefix": "a/", "scope": "account", "lifetime": {"rotate_every": "30d"}}, 'needs its own "key"'),
        ({"name": "x1", "prefix": "a/", "scope": "account", "key": "k", "lifetime": {"rotate_every": "3w"}}, '"24h" or "30d"'),
        ({"name": "x1", "prefix": "a/", "scope": "account", "lifetime": "instance"}, "cannot use the instance lifetime"),
        ({"name": "x1", "prefix": "a/", "scope": "account", "source_removal": "shred"}, '"delete" or "keep"'),
        ({"name": "x1", "prefix": "a/", "scope": "account", "decryptors": ["*"]}, "wildcards are not accepted"),
        ({"name": "x1", "prefix": "a/", "scope": "account", "prefx": "typo"}, "unknown field(s) ['prefx']"),
        ({"name": "Bad Name", "prefix": "a/", "scope": "account"}, '"name" must be lowercase'),
        ({"name": "x1", "source": "contact-events", "scope": "account"}, 'must have "instance" scope'),
        ({"name": "x1", "source": "ftp", "prefix": "a/", "scope": "account"}, '"source" must be'),
    ],
)
def test_a_bad_class_is_refused_at_start_naming_the_class_and_field(entry, says):
    with pytest.raises(ConfigurationError) as refused:
        DataClassCatalog.parse(_catalog(entry), settings(), "test.json")
    assert says in str(refused.value)
    assert "test.json" in str(refused.value) and "docs/data-classes.md" in str(refused.value)


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigurationError) as refused:
        DataClassCatalog.parse(_catalog({"name": "a1", "prefix": "a/", "scope": "galaxy"},
                                        {"name": "a1", "prefix": "b/", "scope": "account", "source_removal": "x"}),
                               settings())
    text = str(refused.value)
    assert "class 'a1': \"scope\" must be one of" in text and '"delete" or "keep"' in text


def test_classes_sharing_a_key_must_share_its_lifetime():
    with pytest.raises(ConfigurationError, match="share branch key service/shared"):
        DataClassCatalog.parse(_catalog(
            {"name": "a1", "prefix": "a/", "scope": "service", "key": "shared"},
            {"name": "b1", "prefix": "b/", "scope": "service", "key": "shared",
             "lifetime": {"rotate_every": "10d"}},
        ), settings())


def test_a_service_class_without_the_service_key_store_is_refused():
    env = {k: v for k, v in ENV.items() if "SERVICE" not in k}
    with pytest.raises(ConfigurationError, match="ATREST_SERVICE_KEYSTORE_TABLE"):
        DataClassCatalog.from_settings(Settings.from_env(env))


def test_an_unreadable_or_malformed_catalog_file_says_what_to_fix(tmp_path):
    with pytest.raises(ConfigurationError, match="cannot read the data class catalog .*ATREST_DATA_CLASSES_FILE"):
        DataClassCatalog.from_settings(settings(ATREST_DATA_CLASSES_FILE=str(tmp_path / "missing.json")))
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigurationError, match="is not JSON"):
        DataClassCatalog.from_settings(settings(ATREST_DATA_CLASSES_FILE=str(tmp_path / "bad.json")))
