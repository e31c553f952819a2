import json
from datetime import timedelta

import pytest

from atrest.catalog.data_classes import Classification, DataClassCatalog, DataClassifier, Exclusion, deployment_lifetimes
from atrest.catalog.scopes import BranchKeyScope
from atrest.core.errors import ConfigurationError
from atrest.core.settings import Settings

CONTACT = "58092a11-6075-4025-a57d-6ada88b26d5b"
FILE_ID = "0d8f7a3e-5b1c-4e2a-9f6d-3c4b5a697887"  # attachments are named by their file id
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
CATCH_ALL = {"name": "unclassified", "source": "s3", "catch_all": True, "scope": "account"}


def settings(**extra):
    return Settings.from_env({**ENV, **extra})


@pytest.fixture
def classifier():
    return DataClassifier.from_settings(settings())


def classified(classifier, key, size=None):
    found = classifier.classify(key, size)
    assert isinstance(found, Classification), f"{key!r} was excluded: {found}"
    return found


def test_connect_call_recording_is_a_recording_under_the_account_key(classifier):
    found = classified(classifier, f"connect/acme-support/CallRecordings/2026/11/30/{CONTACT}_20261130T05:00_UTC.wav")
    assert found.data_class == "call-recording"
    assert found.scope == BranchKeyScope.account(ACCOUNT)
    assert found.instance == "acme-support"
    assert found.contact_id == CONTACT


def test_connect_chat_transcript_is_a_transcript(classifier):
    found = classified(classifier, f"connect/acme/ChatTranscripts/2026/11/30/{CONTACT}_20261130T23:59_UTC.json")
    assert (found.data_class, found.instance, found.contact_id) == ("chat-transcript", "acme", CONTACT)


# One name in each shape the Amazon Connect and Contact Lens documentation shows
# (docs/data-classes.md cites the pages): class, instance alias, contact id.
DOCUMENTED = {
    f"connect/acme/CallRecordings/2026/11/30/{CONTACT}_20261130T05:00_UTC.wav": ("call-recording", "acme", CONTACT),
    f"connect/acme/ChatTranscripts/2026/11/30/{CONTACT}_20261130T05:00_UTC.json": ("chat-transcript", "acme", CONTACT),
    f"Analysis/Voice/2020/02/04/{CONTACT}_analysis_2020-02-04T21:14:16Z.json":
        ("contact-lens-voice-analysis", None, CONTACT),
    f"Analysis/Voice/Redacted/2020/02/04/{CONTACT}_analysis_redacted_2020-02-04T21:14:16Z.json":
        ("contact-lens-voice-analysis", None, CONTACT),
    f"Analysis/Voice/Redacted/2020/02/04/{CONTACT}_call_recording_redacted_2020-02-04T21:14:16Z.wav":
        ("redacted-call-recording", None, CONTACT),
    f"Analysis/Chat/2020/02/04/{CONTACT}_analysis_2020-02-04T21:14:16Z.json": ("contact-lens-chat-analysis", None, CONTACT),
    f"Analysis/Chat/Redacted/2020/02/04/{CONTACT}_analysis_redacted_2020-02-04T21:14:16Z.json":
        ("contact-lens-chat-analysis", None, CONTACT),
    f"Analysis/Email/2026/03/10/{CONTACT}_analysis_20260310T22:35_UTC.json": ("contact-lens-email-analysis", None, CONTACT),
    f"Analysis/Email/Redacted/2026/03/10/{CONTACT}_analysis_redacted_20260310T22:35_UTC.json":
        ("contact-lens-email-analysis", None, CONTACT),
    f"connect/acme/ScreenRecordings/2026/11/30/{CONTACT}_20261130T05:00_UTC.mp4": ("screen-recording", "acme", CONTACT),
    f"connect/acme/Attachments/chat/2023/07/13/{FILE_ID}_20230713T23:41_UTC.txt": ("attachment", "acme", None),
    f"connect/acme/Attachments/email/2026/11/30/{FILE_ID}_20261130T05:00_UTC.pdf": ("attachment", "acme", None),
    f"connect/acme/Attachments/case/2026/11/30/{FILE_ID}_20261130T05:00_UTC.png": ("attachment", "acme", None),
    f"connect/acme/EmailMessages/2026/11/30/{CONTACT}_20261130T05:00_UTC.eml": ("email-message", "acme", CONTACT),
    "knowledge/returns/policy 2026.pdf": ("knowledge-document", None, None),
    "integrations/crm/salesforce.json": ("integration-configuration", None, None),
    "voiceprints/enrollments/caller-1.bin": ("voiceprint", None, None),
}


@pytest.mark.parametrize("key", list(DOCUMENTED))
def test_each_documented_layout_belongs_to_its_class_with_its_instance_and_contact(classifier, key):
    found = classified(classifier, key)
    assert (found.data_class, found.instance, found.contact_id) == DOCUMENTED[key]


def test_contact_lens_output_under_the_instance_prefix_also_names_the_instance(classifier):
    found = classified(classifier, f"connect/acme/Analysis/Voice/2020/02/04/{CONTACT}_analysis_2020-02-04T21:14:16Z.json")
    assert (found.data_class, found.instance, found.contact_id) == ("contact-lens-voice-analysis", "acme", CONTACT)


def test_every_class_of_a_contact_carries_its_contact_id_for_audited_reads(classifier):
    by_contact = {classified(classifier, key).data_class for key, (_, _, contact) in DOCUMENTED.items() if contact}
    assert by_contact == {"call-recording", "chat-transcript", "contact-lens-voice-analysis", "redacted-call-recording",
                          "contact-lens-chat-analysis", "contact-lens-email-analysis", "screen-recording",
                          "email-message"}


RECORDINGS = "connect/acme/CallRecordings"
LONG = f"{RECORDINGS}/2026/12/01/{CONTACT}_"
ODD_RECORDING_NAMES = {
    "copy suffix": (f"{RECORDINGS}/2026/12/01/{CONTACT}_20261201T10:00_UTC (1).wav", CONTACT),
    ".mp3": (f"{RECORDINGS}/2026/12/01/{CONTACT}_20261201T10:00_UTC.mp3", CONTACT),
    ".WAV": (f"{RECORDINGS}/2026/12/01/{CONTACT}_20261201T10:00_UTC.WAV", CONTACT),
    "upper-case contact id": (f"{RECORDINGS}/2026/12/01/{CONTACT.upper()}_20261201T10:00_UTC.wav", CONTACT.upper()),
    "no date folders": (f"{RECORDINGS}/{CONTACT}_20261201T10:00_UTC.wav", CONTACT),
    "no extension": (f"{RECORDINGS}/2026/12/01/{CONTACT}", CONTACT),
    "temporary copy": (f"{RECORDINGS}/2026/12/01/{CONTACT}_20261201T10:00_UTC.wav.tmp", CONTACT),
    "1,024-byte key": (LONG + "x" * (1024 - len(LONG) - 4) + ".wav", CONTACT),
    "spaces, plus, percent, colon": (f"{RECORDINGS}/2026/12/01/call 1:2+3 %41 (final).wav", None),
    "unicode": (f"{RECORDINGS}/2026/12/01/appel-été-通話-{CONTACT}.wav", None),
    "newline": (f"{RECORDINGS}/2026/12/01/two\nlines.wav", None),
    "no contact id": (f"{RECORDINGS}/2026/12/01/customer-callback.wav", None),
    "an id that is not a contact id": (f"{RECORDINGS}/2026/12/01/{CONTACT}x_20261201T10:00_UTC.wav", None),
    "lower-case folder": (f"connect/acme/callrecordings/2026/12/01/{CONTACT}.wav", CONTACT),
}


@pytest.mark.parametrize("key, contact", list(ODD_RECORDING_NAMES.values()), ids=list(ODD_RECORDING_NAMES))
def test_odd_recording_names_are_still_recordings_with_the_contact_when_the_name_starts_with_one(classifier, key, contact):
    found = classified(classifier, key)
    assert (found.data_class, found.instance, found.contact_id) == ("call-recording", "acme", contact)


def test_the_1024_byte_key_of_the_odd_names_is_s3s_longest():
    assert len(ODD_RECORDING_NAMES["1,024-byte key"][0].encode()) == 1024


def test_a_recording_copied_under_another_folder_is_still_a_recording_without_an_instance(classifier):
    found = classified(classifier, f"restore/2026/connect/acme/CallRecordings/{CONTACT}_20261201T10:00_UTC.wav")
    assert (found.data_class, found.instance, found.contact_id) == ("call-recording", None, CONTACT)


# What a new user found left in plaintext before every object had to belong to a class.
REPORTED = {
    f"{RECORDINGS}/2026/12/01/{CONTACT}_20261201T10:00_UTC (1).wav": "call-recording",
    f"{RECORDINGS}/2026/12/01/{CONTACT}_20261201T10:00_UTC.mp3": "call-recording",
    f"{RECORDINGS}/2026/12/01/{CONTACT}_20261201T10:00_UTC.WAV": "call-recording",
    f"{RECORDINGS}/{CONTACT}_20261201T10:00_UTC.wav": "call-recording",
    LONG + "y" * 900 + ".wav": "call-recording",
    f"Analysis/Voice/2026/12/01/{CONTACT}_analysis_2026-12-01T10:00:00Z.json": "contact-lens-voice-analysis",
    f"Analysis/Chat/2026/12/01/{CONTACT}_analysis_2026-12-01T10:00:00Z.json": "contact-lens-chat-analysis",
    f"Analysis/Voice/Redacted/2026/12/01/{CONTACT}_call_recording_redacted_2026-12-01T10:00:00Z.wav":
        "redacted-call-recording",
    f"connect/acme/ScreenRecordings/2026/12/01/{CONTACT}_20261201T10:00_UTC.mp4": "screen-recording",
    f"connect/acme/Attachments/chat/2026/12/01/{FILE_ID}_20261201T10:00_UTC.pdf": "attachment",
    f"connect/acme/EmailMessages/2026/12/01/{CONTACT}_20261201T10:00_UTC.eml": "email-message",
    "integrations/crm/secrets.yaml": "integration-configuration",
    "uploads/customer-list.csv": "unclassified",
    "customer-list.csv": "unclassified",
}


@pytest.mark.parametrize("key", list(REPORTED))
def test_nothing_the_new_user_found_stays_in_plaintext(classifier, key):
    assert classified(classifier, key, size=1234).data_class == REPORTED[key]


def test_integration_configuration_has_an_account_key_of_its_own_for_every_object_under_integrations(classifier):
    for key in ("integrations/crm/salesforce.json", "integrations/crm/secrets.yaml", "integrations/readme.txt"):
        found = classified(classifier, key)
        assert found.data_class == "integration-configuration"
        assert found.scope.branch_key_id == f"account/{ACCOUNT}/integration-configuration"


def test_voiceprints_are_under_a_service_scope_never_the_account(classifier):
    found = classified(classifier, "voiceprints/enrollments/caller-1.bin")
    assert found.data_class == "voiceprint"
    assert found.scope.branch_key_id == "service/voiceprint"
    assert found.scope.is_service


def test_a_prefix_class_wins_over_a_connect_folder_inside_it(classifier):
    assert classified(classifier, "voiceprints/CallRecordings/caller-1.bin").data_class == "voiceprint"
    assert classified(classifier, "integrations/ChatTranscripts/crm.json").data_class == "integration-configuration"


@pytest.mark.parametrize("key", ["uploads/customer-list.csv", "customer-list.csv", "reports/daily.csv",
                                 f"connect/acme/Reports/{CONTACT}.wav", "connect/acme/Unknown/x.bin", "élan/ü.txt"])
def test_objects_no_class_names_fall_to_the_catch_all_under_the_account_key(classifier, key):
    found = classified(classifier, key, size=10)
    assert (found.data_class, found.scope, found.instance, found.contact_id) == (
        "unclassified", BranchKeyScope.account(ACCOUNT), None, None)
    assert found.spec.catch_all


def test_connect_scheduled_reports_are_excluded_with_their_reason(classifier):
    found = classifier.classify("connect/acme/Reports/my-prefix/Agent performance-2026-12-01T10:00:00Z.csv", 2048)
    assert isinstance(found, Exclusion)
    assert "no customer content" in found.reason and "Reports" in found.rule


def test_an_empty_folder_marker_is_excluded_but_a_key_ending_in_a_slash_with_content_is_encrypted(classifier):
    assert isinstance(classifier.classify("connect/acme/CallRecordings/", 0), Exclusion)
    assert isinstance(classifier.classify("knowledge/", 0), Exclusion)
    assert classified(classifier, "knowledge/", size=12).data_class == "unclassified"
    # Without a size the limit cannot be checked: fail closed.
    assert classified(classifier, "knowledge/").data_class == "unclassified"


def test_a_class_match_beats_an_exclusion(classifier):
    # Under the reports folder, but in a recordings folder: a class names it, so no exclusion applies.
    found = classified(classifier, f"connect/acme/Reports/CallRecordings/{CONTACT}.csv", size=10)
    assert found.data_class == "call-recording"


def test_an_exclusion_never_hides_what_a_configured_class_names():
    catalog = DataClassCatalog.parse(json.dumps({
        "schema": 1,
        "classes": [{"name": "evaluation-form", "prefix": "evaluations/forms/", "scope": "account"}, CATCH_ALL],
        "exclude": [{"prefix": "evaluations/", "reason": "QA tooling scratch files"}],
    }), settings())
    classifier = DataClassifier.from_settings(settings(), catalog)
    assert classified(classifier, "evaluations/forms/2026/form.pdf").data_class == "evaluation-form"
    assert classifier.classify("evaluations/tmp/x.lock") == Exclusion("QA tooling scratch files",
                                                                      "prefix 'evaluations/'")


def test_configured_prefixes_fill_the_catalog_placeholders():
    classifier = DataClassifier.from_settings(settings(ATREST_CONNECT_PREFIX="cc/prod/", ATREST_KNOWLEDGE_PREFIX="kb/"))
    assert classified(classifier, f"cc/prod/a/CallRecordings/2026/01/02/{CONTACT}_20260102T00:00_UTC.wav").instance == "a"
    elsewhere = classified(classifier, f"connect/a/CallRecordings/2026/01/02/{CONTACT}_20260102T00:00_UTC.wav")
    assert (elsewhere.data_class, elsewhere.instance) == ("call-recording", None)  # the alias is read only under the prefix
    assert classified(classifier, "kb/faq.md").data_class == "knowledge-document"
    assert isinstance(classifier.classify("cc/prod/a/Reports/daily.csv", 10), Exclusion)


def test_pathological_keys_are_classified_without_runaway_backtracking(classifier):
    # Each is a 1,024-byte key shaped to make the folder patterns try every split.
    keys = ["a/" * 511 + "b", "connect/" + "Analysis/" * 113 + "x", "x/" * 450 + "Analysis/Voice/Redacted/" * 5 + "y",
            "CallRecordings/" * 68 + "z" * 4]
    for key in keys:
        assert isinstance(classifier.classify(key, 1), Classification)


def test_listing_covers_the_whole_bucket_when_a_catch_all_exists():
    assert DataClassCatalog.from_settings(settings()).listing_prefixes() == [""]


def test_each_class_brings_its_lifetime_to_the_expiry_policy():
    lifetimes = deployment_lifetimes(settings(ATREST_ACCOUNT_KEY_ROTATION_DAYS="200"))
    own = lifetimes.for_branch_key(f"account/{ACCOUNT}/integration-configuration")
    assert (own.rotate_after, own.retain_for, own.shred) == (timedelta(days=30), timedelta(days=90), True)
    assert lifetimes.for_branch_key(f"account/{ACCOUNT}").rotate_after == timedelta(days=200)
    assert lifetimes.for_branch_key("service/voiceprint").shred is False


def _catalog(*classes, catch_all=True, **top):
    return json.dumps({"schema": 1, "classes": [*classes, *([CATCH_ALL] if catch_all else [])], **top})


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


def test_leaving_unclassified_objects_in_plaintext_takes_an_explicit_exclusion():
    catalog = DataClassCatalog.parse(_catalog(
        {"name": "evaluation-form", "prefix": "evaluations/", "scope": "account"},
        exclude=[{"pattern": ".*", "reason": "this bucket also holds exports that are not ours"}]), settings())
    classifier = DataClassifier.from_settings(settings(), catalog)
    assert classified(classifier, "evaluations/a.pdf").data_class == "evaluation-form"
    assert classifier.classify("exports/a.csv").reason == "this bucket also holds exports that are not ours"


@pytest.mark.parametrize(
    "entry, says",
    [
        ({"name": "x1", "scope": "account"}, 'exactly one of "prefix"'),
        ({"name": "x1", "prefix": "a/", "pattern": "a/.*", "scope": "account"}, 'exactly one of "prefix"'),
        ({"name": "x1", "prefix": "/a/", "scope": "account"}, "without a leading '/'"),
        ({"name": "x1", "prefix": "${connect_path}a/", "scope": "account"}, "are regular expressions: use \"pattern\""),
        ({"name": "x1", "pattern": "a/(", "scope": "account"}, "not a valid regular expression"),
        ({"name": "x1", "pattern": "a/(?P<who>.*)", "scope": "account"}, "named groups ['who']"),
        ({"name": "x1", "pattern": "${contact_file}/${contact_file}", "scope": "account"}, "not a valid regular expression"),
        ({"name": "x1", "pattern": "${nope}/.*", "scope": "account"}, "unknown placeholder(s) ['nope']"),
        # A prefix placeholder no setting declares is named, never matched as literal text.
        ({"name": "x1", "prefix": "${nope_prefix}", "scope": "account"}, "unknown placeholder(s) ['nope_prefix']"),
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
        ({"name": "x1", "prefix": "a/", "scope": "account", "catch_all": "yes"}, '"catch_all" must be true or false'),
    ],
)
def test_a_bad_class_is_refused_at_start_naming_the_class_and_field(entry, says):
    with pytest.raises(ConfigurationError) as refused:
        DataClassCatalog.parse(_catalog(entry), settings(), "test.json")
    assert says in str(refused.value)
    assert "test.json" in str(refused.value) and "docs/data-classes.md" in str(refused.value)


@pytest.mark.parametrize(
    "classes, says",
    [
        ([{"name": "a1", "prefix": "a/", "scope": "account"}],
         'needs exactly one catch-all class, e.g. {"name": "unclassified"'),
        ([CATCH_ALL, {**CATCH_ALL, "name": "rest"}], "only one class may be the catch-all (found ['unclassified', 'rest'])"),
        ([{**CATCH_ALL, "prefix": "a/"}], 'the catch-all class matches every key no other class or exclusion does; remove'),
        ([{**CATCH_ALL, "pattern": ".*"}], 'remove "prefix" and "pattern"'),
        ([{**CATCH_ALL, "source": "contact-events", "scope": "instance"}], 'its "source" is "s3"'),
        ([{**CATCH_ALL, "scope": "instance"}], "instance keys protect contact events"),
    ],
)
def test_the_catch_all_class_is_required_once_and_matches_everything_else(classes, says):
    with pytest.raises(ConfigurationError) as refused:
        DataClassCatalog.parse(_catalog(*classes, catch_all=False), settings(), "test.json")
    assert says in str(refused.value)


def test_a_catch_all_with_a_mistake_is_not_also_reported_missing():
    with pytest.raises(ConfigurationError) as refused:
        DataClassCatalog.parse(_catalog({**CATCH_ALL, "scope": "galaxy"}, catch_all=False), settings())
    assert '"scope" must be one of' in str(refused.value) and "needs exactly one catch-all" not in str(refused.value)


@pytest.mark.parametrize(
    "exclude, says",
    [
        ({"prefix": "reports/"}, 'exclude[0]: "reason" must say why these objects hold no customer content'),
        ({"prefix": "reports/", "reason": "  "}, 'exclude[0]: "reason" must say why'),
        ({"reason": "r"}, 'exclude[0]: an exclusion needs exactly one of "prefix"'),
        ({"prefix": "a/", "pattern": "a/.*", "reason": "r"}, 'exclude[0]: an exclusion needs exactly one of "prefix"'),
        ({"pattern": "a/(", "reason": "r"}, 'exclude[0]: "pattern" is not a valid regular expression'),
        ({"pattern": "${nope}", "reason": "r"}, "exclude[0]: unknown placeholder(s) ['nope']"),
        ({"prefix": "a/", "reason": "r", "why": "typo"}, "exclude[0]: unknown field(s) ['why']"),
        ({"pattern": ".*/", "reason": "r", "max_bytes": -1}, 'exclude[0]: "max_bytes" must be a byte count'),
        ({"pattern": ".*/", "reason": "r", "max_bytes": True}, 'exclude[0]: "max_bytes" must be a byte count'),
        ("reports/", 'exclude[0] must be an object with "prefix" or "pattern" and a "reason"'),
    ],
)
def test_a_bad_exclusion_is_refused_at_start_naming_the_entry_and_field(exclude, says):
    with pytest.raises(ConfigurationError) as refused:
        DataClassCatalog.parse(_catalog(exclude=[exclude]), settings(), "test.json")
    assert says in str(refused.value)


def test_the_exclude_list_and_the_top_level_are_checked_too():
    with pytest.raises(ConfigurationError, match='"exclude" must be a list'):
        DataClassCatalog.parse(_catalog(exclude={"prefix": "a/", "reason": "r"}), settings())
    with pytest.raises(ConfigurationError, match=r"unknown top-level field\(s\) \['exclusions'\]"):
        DataClassCatalog.parse(_catalog(exclusions=[]), settings())


def test_every_problem_is_reported_at_once():
    with pytest.raises(ConfigurationError) as refused:
        DataClassCatalog.parse(_catalog({"name": "a1", "prefix": "a/", "scope": "galaxy"},
                                        {"name": "a1", "prefix": "b/", "scope": "account", "source_removal": "x"},
                                        catch_all=False, exclude=[{"prefix": "r/"}]),
                               settings())
    text = str(refused.value)
    assert "class 'a1': \"scope\" must be one of" in text and '"delete" or "keep"' in text
    assert "exactly one catch-all" in text and 'exclude[0]: "reason"' in text


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
