"""The MPL key store item format atrest relies on to re-wrap branch keys (`atrest rekey`).

The Material Providers Library (MPL) owns the key store table; it has no operation to
move branch keys to another KMS key. `atrest_cli.operations.rekey` does it by KMS ReEncrypt of each
item's `enc` attribute, so it depends on two things the MPL's specification fixes
(aws-encryption-sdk-specification, framework/branch-key-store.md, "Record Format" and
"AWS KMS Branch Key Encryption Context"; framework/structures.md, "Branch Key Materials"):

- the items of one branch key: `branch:ACTIVE` (a copy of the active version, with a
  `version` attribute naming it), one `branch:version:<uuid>` per version, and
  `beacon:ACTIVE`; each with `branch-key-id`, `type`, `create-time`, `kms-arn`,
  `hierarchy-version` (1), `enc` (the KMS ciphertext of the key material) and the
  custom encryption context as `aws-crypto-ec:<name>` attributes;
- the KMS encryption context of `enc`: every attribute of the item except `enc`, as
  strings, plus `tablename` = the logical key store name.

`check_item` refuses an item that differs (an attribute we do not know, one missing, a
hierarchy version other than 1), and `check_library_version` refuses an MPL other than
the one this format was verified against: a rekey must fail loudly, before any change,
rather than re-wrap an item into something the MPL cannot read.

The names and item types below are the only spelling of the format in atrest: the key store
wrapper (`atrest.crypto.keystore`), the rekey and the tests read items through them.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Mapping

from atrest.core.errors import AtrestError

# The MPL release this format was read from and tested against (requirements pin it).
VERIFIED_MPL_VERSION = "1.11.3"
MPL_DISTRIBUTION = "aws-cryptographic-material-providers"

# Item types (the table's sort key).
ACTIVE_TYPE = "branch:ACTIVE"
BEACON_TYPE = "beacon:ACTIVE"
VERSION_TYPE_PREFIX = "branch:version:"

# Attributes.
BRANCH_KEY_ID = "branch-key-id"  # the table's partition key
TYPE = "type"  # the table's sort key
CREATE_TIME = "create-time"
KMS_ARN = "kms-arn"
HIERARCHY_VERSION_ATTRIBUTE = "hierarchy-version"
ENC = "enc"
VERSION = "version"  # ACTIVE items only: the type of the version item it copies
CUSTOM_CONTEXT_PREFIX = "aws-crypto-ec:"

TABLE_NAME_CONTEXT = "tablename"
HIERARCHY_VERSION = "1"

# attribute -> DynamoDB type, for every item type; ACTIVE items also carry `version`.
COMMON_ATTRIBUTES = {
    BRANCH_KEY_ID: "S",
    TYPE: "S",
    CREATE_TIME: "S",
    KMS_ARN: "S",
    HIERARCHY_VERSION_ATTRIBUTE: "N",
    ENC: "B",
}
ACTIVE_ONLY_ATTRIBUTES = {VERSION: "S"}


class KeyStoreFormatError(AtrestError):
    """A key store item is not in the format atrest was built against: nothing was changed."""


def item_key(branch_key_id: str, item_type: str) -> dict[str, Any]:
    return {BRANCH_KEY_ID: {"S": branch_key_id}, TYPE: {"S": item_type}}


def version_type(version: str) -> str:
    """The item type of one version's item."""
    return VERSION_TYPE_PREFIX + version


def version_of(item_type: str) -> str:
    """The version a version item's type (or an ACTIVE item's `version`) names."""
    return item_type.removeprefix(VERSION_TYPE_PREFIX)


def items_of(branch_key_id: str) -> dict[str, Any]:
    """Query arguments for every item of one branch key (its versions, ACTIVE and beacon)."""
    return {"KeyConditionExpression": "#id = :id", "ExpressionAttributeNames": {"#id": BRANCH_KEY_ID},
            "ExpressionAttributeValues": {":id": {"S": branch_key_id}}}


def text_of(item: Mapping[str, Any], name: str, default: str = "") -> str:
    """A string attribute of a raw item, `default` when it has none."""
    return str(item.get(name, {}).get("S", default))


def item_kind(item_type: str) -> str:
    """'active', 'version' or 'beacon' for a key store item's `type`."""
    if item_type == ACTIVE_TYPE:
        return "active"
    if item_type == BEACON_TYPE:
        return "beacon"
    if item_type.startswith(VERSION_TYPE_PREFIX):
        return "version"
    raise KeyStoreFormatError(f"unknown key store item type {item_type!r} (expected {ACTIVE_TYPE}, {BEACON_TYPE} "
                              f"or {VERSION_TYPE_PREFIX}<uuid>); the MPL's key store format may have changed")


def check_item(item: Mapping[str, Any]) -> None:
    """Raise `KeyStoreFormatError` unless `item` (a raw DynamoDB item) has exactly the
    attributes and types of the MPL key store format described in this module."""
    where = f"key store item {text_of(item, BRANCH_KEY_ID, '?')} / {text_of(item, TYPE, '?')}"
    expected = dict(COMMON_ATTRIBUTES)
    if TYPE in item and item_kind(item[TYPE]["S"]) == "active":
        expected.update(ACTIVE_ONLY_ATTRIBUTES)
    problems = []
    for name, kind in expected.items():
        if name not in item:
            problems.append(f"missing {name!r}")
        elif kind not in item[name]:
            problems.append(f"{name!r} is {next(iter(item[name]))}, expected {kind}")
    for name, value in item.items():
        if name in expected:
            continue
        if not name.startswith(CUSTOM_CONTEXT_PREFIX):
            problems.append(f"unknown attribute {name!r}")
        elif "S" not in value:
            problems.append(f"custom context {name!r} is not a string")
    version = item.get(HIERARCHY_VERSION_ATTRIBUTE, {}).get("N")
    if version is not None and version != HIERARCHY_VERSION:
        problems.append(f"hierarchy-version {version} (only {HIERARCHY_VERSION} is known)")
    if problems:
        raise KeyStoreFormatError(
            f"{where} is not in the MPL key store format atrest re-wraps ({'; '.join(problems)}); "
            f"nothing was changed. See docs/byok.md (verified with {MPL_DISTRIBUTION} {VERIFIED_MPL_VERSION})."
        )


def kms_encryption_context(item: Mapping[str, Any], logical_key_store_name: str, kms_arn: str | None = None) -> dict[str, str]:
    """The encryption context the MPL used (and will use) with KMS for this item's `enc`:
    every attribute but `enc`, as text, plus `tablename`. `kms_arn` replaces the item's
    `kms-arn` (the context of the same item re-wrapped under another key)."""
    context = {}
    for name, value in item.items():
        if name == ENC:
            continue
        context[name] = value.get("S", value.get("N"))
    context[TABLE_NAME_CONTEXT] = logical_key_store_name
    if kms_arn is not None:
        context[KMS_ARN] = kms_arn
    return context


def installed_mpl_version() -> str:
    return metadata.version(MPL_DISTRIBUTION)


def check_library_version(installed: str | None = None) -> None:
    """Refuse to re-wrap with an MPL this format was not verified against."""
    installed = installed or installed_mpl_version()
    if installed != VERIFIED_MPL_VERSION:
        raise KeyStoreFormatError(
            f"{MPL_DISTRIBUTION} {installed} is installed; atrest's re-wrap was verified against "
            f"{VERIFIED_MPL_VERSION} only (its key store item format, docs/byok.md). Check the MPL's "
            "branch-key-store specification for format changes, run tests/unit/test_keystore_format.py and "
            "tests/integration/test_rekey.py, then update VERIFIED_MPL_VERSION."
        )
