"""The MPL key store item format `atrest rekey` re-wraps (atrest.crypto.keystore_format, docs/byok.md).

If the MPL changes its items, these fail before a rekey could write something it cannot
read. tests/integration/test_rekey.py checks the same format against items the installed
MPL really writes (a rekey plan checks every item) and reads them back after re-wrapping.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from atrest.crypto.keystore_format import (
    VERIFIED_MPL_VERSION,
    KeyStoreFormatError,
    check_item,
    check_library_version,
    installed_mpl_version,
    kms_encryption_context,
)

REPO = Path(__file__).resolve().parents[2]
ARN = "arn:aws:kms:us-east-1:123456789012:key/0e23f7b3-0070-470f-a398-92eede8a112c"


def _item(item_type: str = "branch:version:c83de75a-40ec-4469-adb3-36db7a02f882", **extra):
    item = {
        "branch-key-id": {"S": "account/123456789012"}, "type": {"S": item_type},
        "create-time": {"S": "2026-11-30T01:53:57.542610Z"}, "kms-arn": {"S": ARN}, "hierarchy-version": {"N": "1"},
        "enc": {"B": b"ciphertext"}, "aws-crypto-ec:atrest-scope": {"S": "account/123456789012"},
    }
    if item_type == "branch:ACTIVE":
        item["version"] = {"S": "branch:version:c83de75a-40ec-4469-adb3-36db7a02f882"}
    item.update(extra)
    return item


@pytest.mark.parametrize("item_type", ["branch:ACTIVE", "beacon:ACTIVE", "branch:version:c83de75a-40ec-4469-adb3-36db7a02f882"])
def test_items_as_the_mpl_writes_them_are_accepted(item_type):
    check_item(_item(item_type))


@pytest.mark.parametrize("change, reason", [
    ({"hierarchy-version": {"N": "2"}}, "hierarchy-version 2"),
    ({"kms-configuration": {"S": "x"}}, "unknown attribute 'kms-configuration'"),
    ({"enc": {"S": "text"}}, "'enc' is S, expected B"),
])
def test_an_item_in_another_format_is_refused_loudly_with_the_difference(change, reason):
    with pytest.raises(KeyStoreFormatError, match="nothing was changed") as refused:
        check_item(_item(**change))
    assert reason in str(refused.value)


def test_an_item_missing_its_kms_arn_is_refused():
    item = _item()
    del item["kms-arn"]
    with pytest.raises(KeyStoreFormatError, match="missing 'kms-arn'"):
        check_item(item)


def test_an_unknown_item_type_is_refused():
    with pytest.raises(KeyStoreFormatError, match="unknown key store item type"):
        check_item(_item("branch:mutation"))


def test_the_kms_context_is_every_attribute_but_enc_plus_the_logical_table_name():
    context = kms_encryption_context(_item("branch:ACTIVE"), "atrest-keystore")

    assert context == {
        "branch-key-id": "account/123456789012", "type": "branch:ACTIVE", "create-time": "2026-11-30T01:53:57.542610Z",
        "kms-arn": ARN, "hierarchy-version": "1", "aws-crypto-ec:atrest-scope": "account/123456789012",
        "version": "branch:version:c83de75a-40ec-4469-adb3-36db7a02f882", "tablename": "atrest-keystore",
    }
    assert kms_encryption_context(_item(), "t", kms_arn="arn:new")["kms-arn"] == "arn:new"


def test_the_installed_mpl_is_the_version_the_format_was_verified_against():
    assert installed_mpl_version() == VERIFIED_MPL_VERSION


def test_another_mpl_version_is_refused_until_the_format_is_checked_again():
    with pytest.raises(KeyStoreFormatError, match="verified against 1.11.3 only"):
        check_library_version("1.12.0")


def test_the_requirements_pin_the_verified_mpl_version():
    pins = (REPO / "layers/atrest/requirements.txt").read_text() + (REPO / "constraints.txt").read_text()
    assert f"aws-cryptographic-material-providers=={VERIFIED_MPL_VERSION}" in pins
    dependencies = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    assert any(d.startswith("aws-cryptographic-material-providers") and VERIFIED_MPL_VERSION in d for d in dependencies)
