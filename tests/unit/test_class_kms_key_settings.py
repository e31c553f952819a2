"""A KMS key per data class: which classes may have one, checked against the catalog at
start (docs/byok.md), and which key a new branch key version is made under."""

from __future__ import annotations

from typing import Any

import pytest

from atrest.catalog.data_classes import SOURCE_S3, DataClassCatalog
from atrest.catalog.scopes import ScopeKind
from atrest.core.errors import ConfigurationError
from atrest.core.settings import Settings
from atrest.crypto.keystore import ClassKmsKey, KeyStores, class_branch_key, resolve_class_kms_keys

ACCOUNT = "111122223333"
STACK_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
CLASS_KEY = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/5678abcd-12ab-34cd-56ef-1234567890ab"
BASE = {
    "ATREST_ACCOUNT_ID": ACCOUNT, "ATREST_INTAKE_BUCKET": "intake", "ATREST_VAULT_BUCKET": "vault",
    "ATREST_KEYSTORE_TABLE": "atrest-keystore", "ATREST_METADATA_TABLE": "atrest-metadata", "ATREST_KMS_KEY_ARN": STACK_KEY,
    "ATREST_SERVICE_KEYSTORE_TABLE": "atrest-service-keystore",
    "ATREST_SERVICE_KMS_KEY_ARN": f"arn:aws:kms:us-east-1:{ACCOUNT}:key/9999abcd-12ab-34cd-56ef-1234567890ab",
}


@pytest.fixture(scope="module")
def catalog() -> DataClassCatalog:
    return DataClassCatalog.from_settings(Settings.from_env(BASE))


def _first(catalog: DataClassCatalog, **wanted: Any) -> str:
    """A class of the packaged catalog with these properties (the catalog evolves; the rules do not)."""
    def shares(spec: Any) -> bool:
        return any(o is not spec and o.scope_kind is ScopeKind.ACCOUNT and o.source == SOURCE_S3 and o.key == spec.key
                   for o in catalog.classes)
    for spec in catalog.classes:
        facts = {"scope": spec.scope_kind, "own_key": spec.key is not None and spec.source == SOURCE_S3 and not shares(spec)}
        if all(facts[name] == value for name, value in wanted.items()):
            return spec.name
    raise AssertionError(f"the packaged catalog has no class with {wanted}")


def test_an_account_class_with_a_branch_key_of_its_own_may_have_a_kms_key_of_its_own(catalog):
    own = _first(catalog, scope=ScopeKind.ACCOUNT, own_key=True)
    key = catalog.get(own).key

    (assigned,) = resolve_class_kms_keys(Settings.from_env({**BASE, "ATREST_DATA_CLASS_KMS_KEYS": f"{own}={CLASS_KEY}"}),
                                         catalog)

    assert assigned == ClassKmsKey(own, f"account/{ACCOUNT}/{key}", CLASS_KEY)


def test_without_class_keys_the_catalog_is_not_even_read():
    assert resolve_class_kms_keys(Settings.from_env(BASE), catalog=None) == []


@pytest.mark.parametrize("kind,reason", [
    ("shared", "one branch key cannot be wrapped by two KMS keys"),
    ("service", "is service-owned: its branch keys stay under the stack's service key"),
    ("instance", "one branch key per Amazon Connect instance"),
    ("unknown", "is not in the data class catalog"),
])
def test_a_class_that_cannot_have_a_kms_key_of_its_own_is_refused_at_start_saying_why(catalog, kind, reason):
    name = {
        "shared": lambda: _first(catalog, scope=ScopeKind.ACCOUNT, own_key=False),
        "service": lambda: _first(catalog, scope=ScopeKind.SERVICE),
        "instance": lambda: _first(catalog, scope=ScopeKind.INSTANCE),
        "unknown": lambda: "no-such-class",
    }[kind]()
    configured = Settings.from_env({**BASE, "ATREST_DATA_CLASS_KMS_KEYS": f"{name}={CLASS_KEY}"})

    with pytest.raises(ConfigurationError) as error:
        resolve_class_kms_keys(configured, catalog)

    assert reason in str(error.value) and repr(name) in str(error.value)
    assert "DataClassKmsKeys" in str(error.value)


def test_a_class_sharing_its_branch_key_is_refused_naming_the_classes_it_shares_with(catalog):
    shared = _first(catalog, scope=ScopeKind.ACCOUNT, own_key=False)
    branch_key_id = catalog.get(shared).scope(ACCOUNT).branch_key_id
    others = [s.name for s in catalog.classes if s.name != shared and s.scope_kind is ScopeKind.ACCOUNT
              and s.source == SOURCE_S3 and s.scope(ACCOUNT).branch_key_id == branch_key_id]

    with pytest.raises(ConfigurationError) as error:
        class_branch_key(catalog, shared, ACCOUNT)

    assert f"shares {branch_key_id}" in str(error.value)
    assert all(other in str(error.value) for other in others)


def test_every_problem_is_reported_at_once(catalog):
    service = _first(catalog, scope=ScopeKind.SERVICE)
    configured = Settings.from_env({**BASE, "ATREST_DATA_CLASS_KMS_KEYS": f"{service}={CLASS_KEY},nope={CLASS_KEY}"})

    with pytest.raises(ConfigurationError) as error:
        resolve_class_kms_keys(configured, catalog)

    assert "service-owned" in str(error.value) and "'nope'" in str(error.value)


def test_new_branch_keys_of_a_class_are_made_under_its_key_and_the_rest_under_the_stacks(catalog, monkeypatch):
    from atrest.core.clients import AwsClients

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")  # the MPL builds its clients; nothing is called
    own = _first(catalog, scope=ScopeKind.ACCOUNT, own_key=True)
    configured = Settings.from_env({**BASE, "ATREST_DATA_CLASS_KMS_KEYS": f"{own}={CLASS_KEY}"})

    stores = KeyStores.from_settings(configured, AwsClients(), catalog)

    own_branch_key = f"account/{ACCOUNT}/{catalog.get(own).key}"
    assert stores.kms_key_for(own_branch_key) == CLASS_KEY
    assert stores.kms_key_for(f"account/{ACCOUNT}") == STACK_KEY
    assert stores.kms_key_for("instance/i-1234") == STACK_KEY
    assert stores.kms_key_for(f"service/{_first_service_key(catalog)}") == BASE["ATREST_SERVICE_KMS_KEY_ARN"]
    assert stores.for_branch_key(own_branch_key).table_name == stores.customer.table_name  # one table, two writers
    assert len(stores.stores) == 2  # the class writer shares the customer's table: scanned once


def _first_service_key(catalog: DataClassCatalog) -> str:
    return next(s.key or s.name for s in catalog.classes if s.scope_kind is ScopeKind.SERVICE)
