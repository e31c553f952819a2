"""`Settings`: the one typed configuration object, read from the environment once at start."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Mapping

from atrest.core.errors import ConfigurationError

MIN_CACHE_TTL_SECONDS = 60  # below ~10 s the MPL cache silently caches nothing; 60 s keeps KMS calls rare
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum multipart part size
MAX_FRAME_LENGTH = 2**31 - 1
# A KMS key per data class (docs/byok.md): the stack parameter and the variable carrying it.
DATA_CLASS_KMS_KEYS_PARAMETER = "DataClassKmsKeys"
DATA_CLASS_KMS_KEYS_VARIABLE = "ATREST_DATA_CLASS_KMS_KEYS"
# The template's KMS fence (KmsKeyFencePolicy) names each class key in a slot of its own: CloudFormation
# cannot turn a list of `<class>=<arn>` pairs into ARNs any other way. More keys than slots would
# be denied to every function role, so they are refused at start and at deploy.
MAX_DATA_CLASS_KMS_KEYS = 4
# The other KMS key of a key switch in progress (`atrest rekey`): the key moved to, declared
# before the rekey so that the fence lets the functions use it, then the key moved from until
# the switch is finished (docs/byok.md): the stack parameter and the variable carrying it.
REKEY_KMS_KEY_PARAMETER = "RekeyKmsKeyArn"
REKEY_KMS_KEY_VARIABLE = "ATREST_REKEY_KMS_KEY_ARN"
# A full key ARN, never an alias or key id: the key store records the ARN it wraps with.
KMS_KEY_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):kms:(?P<region>[a-z0-9-]+):(?P<account>[0-9]{12}):key/(?P<key_id>[A-Za-z0-9-]+)$")
# Amazon Connect contact event fields atrest needs readable (to find and join contacts):
# ids, channel, timestamps, queue, agent, initiation method, the instance. An allow-list,
# so it fails closed: every other field, including ones AWS adds later (today `name`,
# `description`, `segmentAttributes`, `tags`, `references`, `customerEndpoint`,
# `attributes`, ...), is encrypted under the instance key (docs/keys.md).
DEFAULT_CONTACT_CLEAR_FIELDS = (
    "contactId", "initialContactId", "previousContactId", "relatedContactId", "channel", "eventType",
    "instanceArn", "instanceARN", "initiationMethod", "initiationTimestamp", "connectedToSystemTimestamp",
    "disconnectTimestamp", "queueInfo", "agentInfo",
)


@dataclass(frozen=True)
class Settings:
    """Everything the pipeline needs to know about its deployment.

    Built by `from_env`, which validates every value and names the variable at fault.
    """

    account_id: str
    intake_bucket: str
    vault_bucket: str
    keystore_table: str
    keystore_name: str
    metadata_table: str
    kms_key_arn: str
    idempotency_table: str | None = None
    connect_prefix: str = "connect/"
    knowledge_prefix: str = "knowledge/"
    cache_ttl_seconds: int = 300
    frame_length: int = 1024 * 1024
    part_size: int = 8 * 1024 * 1024
    keep_source: bool = False
    # Key lifetimes (docs/keys.md): instance keys protect contact PII and are short-lived.
    instance_key_rotation_hours: int = 24
    account_key_rotation_days: int = 365
    instance_key_retention_days: int = 90
    account_key_retention_days: int = 365
    shred_instance_keys: bool = True
    shred_account_keys: bool = False
    contact_clear_fields: tuple[str, ...] = DEFAULT_CONTACT_CLEAR_FIELDS
    # The data class catalog (docs/data-classes.md); None: the one packaged with atrest.
    data_classes_file: str | None = None
    # Service-owned branch keys (voiceprints): their own key store under a KMS key the
    # stack always owns, never the customer's (docs/data-classes.md).
    service_keystore_table: str | None = None
    service_kms_key_arn: str | None = None
    # Audited reads (docs/audit.md): who read what, and where ReadObject hands plaintext back.
    audit_table: str | None = None
    retrieval_bucket: str | None = None
    retrieval_lifetime_minutes: int = 10
    # Data class name -> the KMS key its own branch key is created, rotated and re-wrapped
    # under (DataClassKmsKeys); a class not named here uses `kms_key_arn`. Checked against
    # the catalog by `atrest.crypto.keystore.KeyStores.from_settings` (docs/byok.md).
    data_class_kms_keys: Mapping[str, str] = field(default_factory=dict, hash=False)
    # The other KMS key of a key switch in progress (RekeyKmsKeyArn, docs/byok.md).
    rekey_kms_key_arn: str | None = None

    def fenced_kms_keys(self) -> frozenset[str]:
        """Every KMS key a key store item of this stack may name: the configured key (the
        stack's own or the customer's), the service key, each data class's own key and the
        other key of a declared key switch. The same set as the template's KmsKeyFencePolicy;
        a reader refuses an item naming any other key before calling KMS (`atrest.crypto.keystore`)."""
        keys = {self.kms_key_arn, *self.data_class_kms_keys.values()}
        keys |= {key for key in (self.service_kms_key_arn, self.rekey_kms_key_arn) if key}
        return frozenset(keys)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if environ is None else environ
        problems: list[str] = []

        def required(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                problems.append(f"{name} is not set")
            return value

        def integer(name: str, default: int, minimum: int, maximum: int | None = None) -> int:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                problems.append(f"{name}={raw!r} is not a whole number")
                return default
            if value < minimum or (maximum is not None and value > maximum):
                bound = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
                problems.append(f"{name}={value} must be {bound}")
            return value

        def boolean(name: str, default: bool) -> bool:
            raw = env.get(name, "").strip().lower()
            if not raw:
                return default
            if raw in ("true", "1", "yes"):
                return True
            if raw in ("false", "0", "no"):
                return False
            problems.append(f"{name}={raw!r} must be true or false")
            return default

        def prefix(name: str, default: str) -> str:
            value = env.get(name, default).strip() or default
            if value.startswith("/"):
                problems.append(f"{name}={value!r} must not start with '/' (S3 keys have no leading slash)")
            return value if value.endswith("/") else value + "/"

        def names(name: str, default: tuple[str, ...]) -> tuple[str, ...]:
            raw = env.get(name)
            if raw is None or not raw.strip():
                return default
            found = tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))
            bad = [part for part in found if not part.replace("_", "").isalnum()]
            if bad:
                problems.append(f"{name} has invalid field names {bad} (comma-separated event field names, e.g. customerEndpoint)")
            return found

        if env.get("ATREST_CONTACT_PII_FIELDS", "").strip():
            problems.append("ATREST_CONTACT_PII_FIELDS is no longer read: contact events are encrypted except for an "
                            "allow-list, ATREST_CONTACT_CLEAR_FIELDS (stack parameter ContactClearFields); remove it and "
                            "list the fields to keep readable there, if any beyond the default")
        keystore_table = required("ATREST_KEYSTORE_TABLE")
        kms_key_arn = required("ATREST_KMS_KEY_ARN")
        if kms_key_arn and not kms_key_arn.startswith("arn:"):
            problems.append(f"ATREST_KMS_KEY_ARN={kms_key_arn!r} must be a full key ARN (arn:aws:kms:...)")
        def optional(name: str) -> str | None:
            return env.get(name, "").strip() or None

        service_kms_key_arn = optional("ATREST_SERVICE_KMS_KEY_ARN")
        account_id = required("ATREST_ACCOUNT_ID")
        data_class_kms_keys, key_problems = parse_data_class_kms_keys(env.get(DATA_CLASS_KMS_KEYS_VARIABLE, ""), account_id)
        problems.extend(key_problems)
        if len(data_class_kms_keys) > MAX_DATA_CLASS_KMS_KEYS:
            problems.append(f"{DATA_CLASS_KMS_KEYS_VARIABLE} has {len(data_class_kms_keys)} entries; the template's KMS "
                            f"fence has a slot for at most {MAX_DATA_CLASS_KMS_KEYS} (docs/byok.md)")
        rekey_key = optional(REKEY_KMS_KEY_VARIABLE)
        if rekey_key and not KMS_KEY_ARN.match(rekey_key):
            problems.append(f"{REKEY_KMS_KEY_VARIABLE}={rekey_key!r} must be a full key ARN (arn:aws:kms:...)")
        if service_kms_key_arn and not service_kms_key_arn.startswith("arn:"):
            problems.append(f"ATREST_SERVICE_KMS_KEY_ARN={service_kms_key_arn!r} must be a full key ARN (arn:aws:kms:...)")
        settings = cls(
            account_id=account_id,
            intake_bucket=required("ATREST_INTAKE_BUCKET"),
            vault_bucket=required("ATREST_VAULT_BUCKET"),
            keystore_table=keystore_table,
            keystore_name=env.get("ATREST_KEYSTORE_NAME", "").strip() or keystore_table,
            metadata_table=required("ATREST_METADATA_TABLE"),
            kms_key_arn=kms_key_arn,
            idempotency_table=env.get("ATREST_IDEMPOTENCY_TABLE", "").strip() or None,
            connect_prefix=prefix("ATREST_CONNECT_PREFIX", "connect/"),
            knowledge_prefix=prefix("ATREST_KNOWLEDGE_PREFIX", "knowledge/"),
            cache_ttl_seconds=integer("ATREST_CACHE_TTL_SECONDS", 300, MIN_CACHE_TTL_SECONDS),
            frame_length=integer("ATREST_FRAME_LENGTH", 1024 * 1024, 1024, MAX_FRAME_LENGTH),
            part_size=integer("ATREST_PART_SIZE", 8 * 1024 * 1024, MIN_PART_SIZE),
            keep_source=boolean("ATREST_KEEP_SOURCE", False),
            instance_key_rotation_hours=integer("ATREST_INSTANCE_KEY_ROTATION_HOURS", 24, 1, 24 * 366),
            account_key_rotation_days=integer("ATREST_ACCOUNT_KEY_ROTATION_DAYS", 365, 1, 3650),
            instance_key_retention_days=integer("ATREST_INSTANCE_KEY_RETENTION_DAYS", 90, 1, 36500),
            account_key_retention_days=integer("ATREST_ACCOUNT_KEY_RETENTION_DAYS", 365, 1, 36500),
            shred_instance_keys=boolean("ATREST_SHRED_INSTANCE_KEYS", True),
            shred_account_keys=boolean("ATREST_SHRED_ACCOUNT_KEYS", False),
            contact_clear_fields=names("ATREST_CONTACT_CLEAR_FIELDS", DEFAULT_CONTACT_CLEAR_FIELDS),
            data_classes_file=optional("ATREST_DATA_CLASSES_FILE"),
            service_keystore_table=optional("ATREST_SERVICE_KEYSTORE_TABLE"),
            service_kms_key_arn=service_kms_key_arn,
            audit_table=optional("ATREST_AUDIT_TABLE"),
            retrieval_bucket=optional("ATREST_RETRIEVAL_BUCKET"),
            retrieval_lifetime_minutes=integer("ATREST_RETRIEVAL_LIFETIME_MINUTES", 10, 1, 60),
            data_class_kms_keys=data_class_kms_keys,
            rekey_kms_key_arn=rekey_key,
        )
        if problems:
            raise ConfigurationError(
                "atrest is not configured correctly: "
                + "; ".join(problems)
                + ". Set these in the function's environment (template.yaml) or your shell."
            )
        return settings


def parse_data_class_kms_keys(text: str, account_id: str | None = None) -> tuple[dict[str, str], list[str]]:
    """`<class name>=<full KMS key ARN>` pairs, comma-separated (the `DataClassKmsKeys`
    parameter as CloudFormation joins it), into class name -> key ARN, with a problem
    for each malformed entry naming it. Blank entries are skipped (a CommaDelimitedList
    left at its default is one empty string). With `account_id`, a key of another account
    is a problem too: the stack's grant function may take grants in its own account only.
    Whether each class may have a key of its own is the catalog's to say
    (`atrest.crypto.keystore.resolve_class_kms_keys`)."""
    keys: dict[str, str] = {}
    problems: list[str] = []
    where = f"{DATA_CLASS_KMS_KEYS_VARIABLE} (stack parameter {DATA_CLASS_KMS_KEYS_PARAMETER})"
    for entry in (part.strip() for part in (text or "").split(",")):
        if not entry:
            continue
        name, separator, arn = (part.strip() for part in entry.partition("="))
        match = KMS_KEY_ARN.match(arn)
        if not separator or not name or match is None:
            problems.append(f"{where} entry {entry!r} is not <data class name>=<full KMS key ARN> "
                            "(arn:aws:kms:<region>:<account>:key/<key id>; aliases and key ids are not accepted)")
            continue
        if name in keys and keys[name] != arn:
            problems.append(f"{where} names data class {name!r} twice, with {keys[name]} and {arn}; keep one")
            continue
        if account_id and match["account"] != account_id:
            problems.append(f"{where} entry {entry!r} names a key of account {match['account']}, not the stack's "
                            f"account {account_id}; use a key in the stack's account and region")
            continue
        keys[name] = arn
    return keys, problems
