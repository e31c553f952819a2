import pytest

from atrest.core.errors import ConfigurationError
from atrest.core.settings import Settings

BASE = {
    "ATREST_ACCOUNT_ID": "111122223333",
    "ATREST_INTAKE_BUCKET": "intake",
    "ATREST_VAULT_BUCKET": "vault",
    "ATREST_KEYSTORE_TABLE": "atrest-keystore",
    "ATREST_METADATA_TABLE": "atrest-metadata",
    "ATREST_KMS_KEY_ARN": "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab",
}


def test_defaults_are_the_documented_ones():
    settings = Settings.from_env(BASE)
    assert settings.cache_ttl_seconds == 300
    assert settings.frame_length == 1024 * 1024
    assert settings.connect_prefix == "connect/"
    assert settings.knowledge_prefix == "knowledge/"
    assert settings.keep_source is False
    assert settings.keystore_name == "atrest-keystore"


def test_every_missing_variable_is_named_in_one_error():
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env({})
    for name in BASE:
        assert name in str(error.value)


@pytest.mark.parametrize("ttl", ["10", "59", "0"])
def test_cache_ttl_below_a_minute_is_refused_because_short_ttls_cache_nothing(ttl):
    with pytest.raises(ConfigurationError, match="ATREST_CACHE_TTL_SECONDS"):
        Settings.from_env({**BASE, "ATREST_CACHE_TTL_SECONDS": ttl})


def test_part_size_below_the_s3_minimum_is_refused():
    with pytest.raises(ConfigurationError, match="ATREST_PART_SIZE"):
        Settings.from_env({**BASE, "ATREST_PART_SIZE": str(1024 * 1024)})


def test_non_numeric_and_non_boolean_values_are_explained():
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env({**BASE, "ATREST_FRAME_LENGTH": "big", "ATREST_KEEP_SOURCE": "maybe"})
    assert "ATREST_FRAME_LENGTH='big'" in str(error.value)
    assert "ATREST_KEEP_SOURCE='maybe'" in str(error.value)


def test_a_key_alias_instead_of_an_arn_is_refused():
    with pytest.raises(ConfigurationError, match="full key ARN"):
        Settings.from_env({**BASE, "ATREST_KMS_KEY_ARN": "alias/atrest"})


def test_prefixes_gain_a_trailing_slash_so_a_prefix_cannot_match_a_sibling_folder():
    settings = Settings.from_env({**BASE, "ATREST_CONNECT_PREFIX": "cc", "ATREST_KEEP_SOURCE": "true"})
    assert settings.connect_prefix == "cc/"
    assert settings.keep_source is True


# -- a KMS key per data class (DataClassKmsKeys) ------------------------------------------------

CLASS_KEY = "arn:aws:kms:us-east-1:111122223333:key/5678abcd-12ab-34cd-56ef-1234567890ab"
OTHER_KEY = "arn:aws:kms:us-east-1:111122223333:key/9999abcd-12ab-34cd-56ef-1234567890ab"


def test_no_class_keys_by_default_and_an_empty_parameter_is_none():
    assert Settings.from_env(BASE).data_class_kms_keys == {}
    # A CommaDelimitedList left at its default, joined by the template: an empty string.
    assert Settings.from_env({**BASE, "ATREST_DATA_CLASS_KMS_KEYS": ""}).data_class_kms_keys == {}


def test_class_keys_are_read_as_class_name_to_key_arn_pairs():
    settings = Settings.from_env({**BASE, "ATREST_DATA_CLASS_KMS_KEYS":
                                  f" integration-configuration = {CLASS_KEY} ,, crm-exports={OTHER_KEY},"})

    assert settings.data_class_kms_keys == {"integration-configuration": CLASS_KEY, "crm-exports": OTHER_KEY}


@pytest.mark.parametrize("entry", [
    "integration-configuration",  # no key
    f"={CLASS_KEY}",  # no class
    "integration-configuration=alias/crm",  # an alias
    "integration-configuration=5678abcd-12ab-34cd-56ef-1234567890ab",  # a key id
    f"integration-configuration:{CLASS_KEY}",  # another separator
])
def test_a_malformed_class_key_entry_is_refused_naming_the_entry_and_the_parameter(entry):
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env({**BASE, "ATREST_DATA_CLASS_KMS_KEYS": f"crm-exports={OTHER_KEY},{entry}"})

    message = str(error.value)
    assert repr(entry) in message and "DataClassKmsKeys" in message and "ATREST_DATA_CLASS_KMS_KEYS" in message
    assert "<data class name>=<full KMS key ARN>" in message


def test_a_class_named_twice_with_two_keys_and_a_key_of_another_account_are_refused():
    foreign = "arn:aws:kms:us-east-1:444455556666:key/5678abcd-12ab-34cd-56ef-1234567890ab"
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env({**BASE, "ATREST_DATA_CLASS_KMS_KEYS":
                           f"crm-exports={CLASS_KEY},crm-exports={OTHER_KEY},integration-configuration={foreign}"})

    message = str(error.value)
    assert "names data class 'crm-exports' twice" in message
    assert "account 444455556666, not the stack's account 111122223333" in message


STACK_KEY = "arn:aws:kms:us-east-1:111122223333:key/1111aaaa-1111-1111-1111-111111111111"
SERVICE_KEY = "arn:aws:kms:us-east-1:111122223333:key/2222bbbb-2222-2222-2222-222222222222"
REKEY_KEY = "arn:aws:kms:us-east-1:111122223333:key/3333cccc-3333-3333-3333-333333333333"


def _class_key(n: int) -> str:
    return f"arn:aws:kms:us-east-1:111122223333:key/4444dddd-4444-4444-4444-44444444444{n}"


def test_the_fence_holds_the_configured_service_class_and_declared_rekey_keys_and_nothing_else():
    settings = Settings.from_env({**BASE, "ATREST_KMS_KEY_ARN": STACK_KEY, "ATREST_SERVICE_KMS_KEY_ARN": SERVICE_KEY,
                                  "ATREST_DATA_CLASS_KMS_KEYS": f"integration-configuration={_class_key(0)}",
                                  "ATREST_REKEY_KMS_KEY_ARN": REKEY_KEY})

    assert settings.rekey_kms_key_arn == REKEY_KEY
    assert settings.fenced_kms_keys() == {STACK_KEY, SERVICE_KEY, _class_key(0), REKEY_KEY}
    assert Settings.from_env({**BASE, "ATREST_KMS_KEY_ARN": STACK_KEY}).fenced_kms_keys() == {STACK_KEY}


def test_a_rekey_key_that_is_not_a_full_key_arn_is_refused():
    with pytest.raises(ConfigurationError, match="ATREST_REKEY_KMS_KEY_ARN='alias/next'"):
        Settings.from_env({**BASE, "ATREST_REKEY_KMS_KEY_ARN": "alias/next"})


def test_more_class_keys_than_the_fence_has_slots_for_are_refused():
    from atrest.core.settings import MAX_DATA_CLASS_KMS_KEYS

    pairs = ",".join(f"class-{n}={_class_key(n)}" for n in range(MAX_DATA_CLASS_KMS_KEYS + 1))
    with pytest.raises(ConfigurationError, match="slot for at most"):
        Settings.from_env({**BASE, "ATREST_DATA_CLASS_KMS_KEYS": pairs})
    fits = ",".join(f"class-{n}={_class_key(n)}" for n in range(MAX_DATA_CLASS_KMS_KEYS))
    assert len(Settings.from_env({**BASE, "ATREST_DATA_CLASS_KMS_KEYS": fits}).data_class_kms_keys) == MAX_DATA_CLASS_KMS_KEYS


# -- a settings model per function (FUNCTION_SETTINGS) -------------------------------------------


def test_a_function_reads_only_its_own_settings_and_ignores_the_others():
    # SweepRetrievals needs the retrieval bucket and lifetime: no key store, no account; a
    # variable it does not read cannot stop it, however wrong.
    settings = Settings.for_function("SweepRetrievalsFunction", {
        "ATREST_RETRIEVAL_BUCKET": "copies", "ATREST_RETRIEVAL_LIFETIME_MINUTES": "5",
        "ATREST_CACHE_TTL_SECONDS": "1", "ATREST_KMS_KEY_ARN": "alias/atrest"})

    assert (settings.retrieval_bucket, settings.retrieval_lifetime_minutes) == ("copies", 5)
    assert settings.cache_ttl_seconds == 300 and settings.kms_key_arn == ""  # not read: their defaults


def test_a_function_missing_its_settings_names_each_and_only_its_own():
    with pytest.raises(ConfigurationError) as error:
        Settings.for_function("EncryptObjectFunction", {"ATREST_RETRIEVAL_LIFETIME_MINUTES": "0"})

    message = str(error.value)
    for name in BASE:
        assert f"{name} is not set" in message
    assert "ATREST_RETRIEVAL_LIFETIME_MINUTES" not in message  # ReadObject's and SweepRetrievals', not EncryptObject's


def test_a_retired_variable_is_refused_where_its_successor_is_read():
    retired = {**BASE, "ATREST_CONTACT_PII_FIELDS": "customerEndpoint"}
    with pytest.raises(ConfigurationError, match="ATREST_CONTACT_CLEAR_FIELDS"):
        Settings.for_function("ProtectContactFunction", retired)
    assert Settings.for_function("EncryptObjectFunction", retired).account_id == BASE["ATREST_ACCOUNT_ID"]


def test_the_catalog_placeholders_are_the_prefix_settings():
    settings = Settings.from_env({**BASE, "ATREST_CONNECT_PREFIX": "cc", "ATREST_KNOWLEDGE_PREFIX": "kb/"})
    prefixes = settings.catalog_prefixes()
    assert (prefixes["connect_prefix"], prefixes["knowledge_prefix"]) == ("cc/", "kb/")
    assert all(value.endswith("/") for value in prefixes.values())


def test_the_grant_functions_allow_lists_are_comma_separated_and_its_own():
    settings = Settings.for_function("KmsGrantFunction", {"ATREST_GRANTEE_ROLE_ARNS": " a, b,,a ",
                                                          "ATREST_RETIRING_PRINCIPAL": "c"})
    assert (settings.grantee_role_arns, settings.retiring_principal) == (("a", "b"), "c")
    # The operator CLI has no use for them.
    assert Settings.from_env({**BASE, "ATREST_GRANTEE_ROLE_ARNS": "a"}).grantee_role_arns == ()
