"""`Settings`: the one typed configuration object, read from the environment once at start."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping

from atrest.errors import ConfigurationError

MIN_CACHE_TTL_SECONDS = 60  # below ~10 s the MPL cache silently caches nothing; 60 s keeps KMS calls rare
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum multipart part size
MAX_FRAME_LENGTH = 2**31 - 1
# Amazon Connect contact event fields that carry customer data: encrypted under the
# instance key. Everything else in an event (ids, timestamps, queue and agent ARNs) is
# stored readable so contacts can be found without decrypting.
DEFAULT_CONTACT_PII_FIELDS = ("customerEndpoint", "systemEndpoint", "attributes", "contactDetails", "customerId")


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
    contact_pii_fields: tuple[str, ...] = DEFAULT_CONTACT_PII_FIELDS
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

        keystore_table = required("ATREST_KEYSTORE_TABLE")
        kms_key_arn = required("ATREST_KMS_KEY_ARN")
        if kms_key_arn and not kms_key_arn.startswith("arn:"):
            problems.append(f"ATREST_KMS_KEY_ARN={kms_key_arn!r} must be a full key ARN (arn:aws:kms:...)")
        def optional(name: str) -> str | None:
            return env.get(name, "").strip() or None

        service_kms_key_arn = optional("ATREST_SERVICE_KMS_KEY_ARN")
        if service_kms_key_arn and not service_kms_key_arn.startswith("arn:"):
            problems.append(f"ATREST_SERVICE_KMS_KEY_ARN={service_kms_key_arn!r} must be a full key ARN (arn:aws:kms:...)")
        settings = cls(
            account_id=required("ATREST_ACCOUNT_ID"),
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
            contact_pii_fields=names("ATREST_CONTACT_PII_FIELDS", DEFAULT_CONTACT_PII_FIELDS),
            data_classes_file=optional("ATREST_DATA_CLASSES_FILE"),
            service_keystore_table=optional("ATREST_SERVICE_KEYSTORE_TABLE"),
            service_kms_key_arn=service_kms_key_arn,
            audit_table=optional("ATREST_AUDIT_TABLE"),
            retrieval_bucket=optional("ATREST_RETRIEVAL_BUCKET"),
            retrieval_lifetime_minutes=integer("ATREST_RETRIEVAL_LIFETIME_MINUTES", 10, 1, 60),
        )
        if problems:
            raise ConfigurationError(
                "atrest is not configured correctly: "
                + "; ".join(problems)
                + ". Set these in the function's environment (template.yaml) or your shell."
            )
        return settings
