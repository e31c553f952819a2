"""`Settings`: the one typed configuration object, and the one declaration of every setting.

Each field of `Settings` is declared once, by `setting(...)`: the environment variable that
carries it, how it is read and checked (its `Reader`), its default, what it means, and the
stack output or parameter that feeds it. Everything else is derived from these declarations:
- each function reads only the settings it needs (`FUNCTION_SETTINGS`, `Settings.for_function`);
- the operator CLI turns a stack's outputs and parameters into the same variables
  (`atrest_cli.operations.deployment`), from `output=` / `parameter=`;
- the data class catalog's prefix placeholders are the `Prefix` settings, by field name
  (`CATALOG_PLACEHOLDERS`: `${connect_prefix}` is `connect_prefix`);
- tests/infrastructure/test_function_settings.py checks that every function's environment in
  template.yaml is exactly what its settings need, and fed from the declared output or parameter.
"""

from __future__ import annotations

import os
import re
from dataclasses import MISSING, Field, dataclass, field, fields
from types import MappingProxyType
from typing import Any, Iterable, Mapping, Protocol

from atrest.core.errors import ConfigurationError

MIN_CACHE_TTL_SECONDS = 60  # below ~10 s the MPL cache silently caches nothing; 60 s keeps KMS calls rare
MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum multipart part size
MAX_FRAME_LENGTH = 2**31 - 1
ACCOUNT_ID_VARIABLE = "ATREST_ACCOUNT_ID"
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
# Variables no longer read, refused wherever the setting that replaced them is read, so that a
# deployment still setting one learns what to set instead: variable -> (its successor, what to do).
RETIRED_VARIABLES = {
    "ATREST_CONTACT_PII_FIELDS": (
        "contact_clear_fields",
        "ATREST_CONTACT_PII_FIELDS is no longer read: contact events are encrypted except for an allow-list, "
        "ATREST_CONTACT_CLEAR_FIELDS (stack parameter ContactClearFields); remove it and list the fields to keep "
        "readable there, if any beyond the default"),
}


# -- readers: how one variable becomes one typed value -------------------------------------------


class Reader(Protocol):
    """Reads `variable` from `env`; returns `default` when it is unset, and appends a problem
    naming the variable (and what to do) when its value is not acceptable."""

    def __call__(self, env: Mapping[str, str], variable: str, default: Any, problems: list[str]) -> Any: ...


@dataclass(frozen=True)
class Text:
    required: bool = False

    def __call__(self, env: Mapping[str, str], variable: str, default: Any, problems: list[str]) -> Any:
        value = env.get(variable, "").strip()
        if not value and self.required:
            problems.append(f"{variable} is not set")
        return value or default


@dataclass(frozen=True)
class KeyArn:
    """A KMS key ARN. `strict`: checked whole (partition, region, account, key id), as the
    template's parameter patterns do; else its start only."""

    required: bool = False
    strict: bool = False

    def __call__(self, env: Mapping[str, str], variable: str, default: Any, problems: list[str]) -> Any:
        value = Text(self.required)(env, variable, default, problems)
        if value and not (KMS_KEY_ARN.match(value) if self.strict else value.startswith("arn:")):
            problems.append(f"{variable}={value!r} must be a full key ARN (arn:aws:kms:...)")
        return value


@dataclass(frozen=True)
class Integer:
    minimum: int
    maximum: int | None = None

    def __call__(self, env: Mapping[str, str], variable: str, default: Any, problems: list[str]) -> Any:
        raw = env.get(variable, "").strip()
        if not raw:
            return default
        try:
            value = int(raw)
        except ValueError:
            problems.append(f"{variable}={raw!r} is not a whole number")
            return default
        if value < self.minimum or (self.maximum is not None and value > self.maximum):
            bound = f"between {self.minimum} and {self.maximum}" if self.maximum is not None else f"at least {self.minimum}"
            problems.append(f"{variable}={value} must be {bound}")
        return value


@dataclass(frozen=True)
class Boolean:
    def __call__(self, env: Mapping[str, str], variable: str, default: Any, problems: list[str]) -> Any:
        raw = env.get(variable, "").strip().lower()
        if not raw:
            return default
        if raw in ("true", "1", "yes"):
            return True
        if raw in ("false", "0", "no"):
            return False
        problems.append(f"{variable}={raw!r} must be true or false")
        return default


@dataclass(frozen=True)
class Prefix:
    """An S3 key prefix, always ending in '/' so that it cannot match a sibling folder.
    Every `Prefix` setting is a placeholder of the data class catalog, named for its field."""

    def __call__(self, env: Mapping[str, str], variable: str, default: Any, problems: list[str]) -> Any:
        value = env.get(variable, default).strip() or default
        if value.startswith("/"):
            problems.append(f"{variable}={value!r} must not start with '/' (S3 keys have no leading slash)")
        return value if value.endswith("/") else value + "/"


@dataclass(frozen=True)
class TextList:
    """Comma-separated values (a CommaDelimitedList parameter as `!Join` passes it), blanks dropped."""

    def __call__(self, env: Mapping[str, str], variable: str, default: Any, problems: list[str]) -> Any:
        raw = env.get(variable)
        if raw is None or not raw.strip():
            return default
        return tuple(dict.fromkeys(part.strip() for part in raw.split(",") if part.strip()))


@dataclass(frozen=True)
class FieldNames:
    """Comma-separated event field names (letters, digits, '_')."""

    def __call__(self, env: Mapping[str, str], variable: str, default: Any, problems: list[str]) -> Any:
        found = TextList()(env, variable, default, problems)
        bad = [part for part in found if not part.replace("_", "").isalnum()]
        if bad:
            problems.append(f"{variable} has invalid field names {bad} (comma-separated event field names, e.g. customerEndpoint)")
        return found


@dataclass(frozen=True)
class ClassKmsKeys:
    """`<class>=<key ARN>` pairs (`parse_data_class_kms_keys`), keys of the stack's account only."""

    def __call__(self, env: Mapping[str, str], variable: str, default: Any, problems: list[str]) -> Any:
        keys, key_problems = parse_data_class_kms_keys(env.get(variable, ""), env.get(ACCOUNT_ID_VARIABLE, "").strip())
        problems.extend(key_problems)
        if len(keys) > MAX_DATA_CLASS_KMS_KEYS:
            problems.append(f"{variable} has {len(keys)} entries; the template's KMS fence has a slot for at most "
                            f"{MAX_DATA_CLASS_KMS_KEYS} (docs/byok.md)")
        return keys


# -- declarations ---------------------------------------------------------------------------------

SETTING = "atrest.setting"  # the dataclass field metadata key of a setting's declaration


@dataclass(frozen=True)
class Declaration:
    """How one setting reaches the code: its variable, how its text is read and checked,
    what it is for, and where a stack's value for it comes from."""

    variable: str
    read: Reader
    doc: str
    output: str | None = None  # the stack output the template (and the CLI, from a deployed stack) gives it
    parameter: str | None = None  # ... or the stack parameter
    falls_back_to: str | None = None  # the setting whose value it takes when unset
    deployed: bool = True  # False: an operator's override no template sets (read when set)
    cli: bool = True  # False: only a function reads it; the operator CLI has no use for it


def setting(variable: str, read: Reader, default: Any = None, *, doc: str, output: str | None = None,
            parameter: str | None = None, falls_back_to: str | None = None, deployed: bool = True,
            cli: bool = True) -> Any:
    """A `Settings` field declared with everything about it (see `Declaration`)."""
    metadata = {SETTING: Declaration(variable, read, doc, output, parameter, falls_back_to, deployed, cli)}
    if isinstance(default, dict):  # a mutable default: a fresh one each time, and left out of the hash
        return field(default_factory=dict, hash=False, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Everything the pipeline needs to know about its deployment.

    Built by `from_env` (every setting, as the operator CLI reads it) or `for_function` (only
    what one function needs; the others keep their defaults), which validate every value read
    and name the variable at fault.
    """

    account_id: str = setting(ACCOUNT_ID_VARIABLE, Text(required=True), "",
                              doc="the account whose data this stack protects (scope account/<id>); the CLI takes it "
                                  "from the stack id")
    intake_bucket: str = setting("ATREST_INTAKE_BUCKET", Text(required=True), "", output="IntakeBucketName",
                                 doc="the bucket the pipeline accepts sources from")
    vault_bucket: str = setting("ATREST_VAULT_BUCKET", Text(required=True), "", output="VaultBucketName",
                                doc="where ciphertext goes")
    keystore_table: str = setting("ATREST_KEYSTORE_TABLE", Text(required=True), "", output="KeyStoreTableName",
                                  doc="the MPL key store table")
    keystore_name: str = setting("ATREST_KEYSTORE_NAME", Text(), "", falls_back_to="keystore_table",
                                 doc="the logical key store name, bound into every branch key (default: the table name)")
    metadata_table: str = setting("ATREST_METADATA_TABLE", Text(required=True), "", output="MetadataTableName",
                                  doc="the metadata table")
    # Read by the operator CLI only (every function comes from the same template as the records it reads).
    record_format: int | None = setting("ATREST_RECORD_FORMAT", Integer(1), None, output="RecordFormat",
                                        doc="the shape of the metadata records the stack's functions write "
                                            "(atrest.storage.records.RECORD_FORMAT)")
    kms_key_arn: str = setting("ATREST_KMS_KEY_ARN", KeyArn(required=True), "", output="KmsKeyArn",
                               doc="the KMS key that wraps branch keys (the stack's own or CustomerManagedKeyArn)")
    connect_prefix: str = setting("ATREST_CONNECT_PREFIX", Prefix(), "connect/", parameter="ConnectPrefix",
                                  doc="where Amazon Connect writes in the intake bucket (${connect_prefix})")
    knowledge_prefix: str = setting("ATREST_KNOWLEDGE_PREFIX", Prefix(), "knowledge/",
                                    parameter="KnowledgeDocumentPrefix",
                                    doc="where knowledge documents are put (${knowledge_prefix})")
    cache_ttl_seconds: int = setting("ATREST_CACHE_TTL_SECONDS", Integer(MIN_CACHE_TTL_SECONDS), 300,
                                     parameter="BranchKeyCacheTtlSeconds", doc="branch key cache TTL, at least 60")
    frame_length: int = setting("ATREST_FRAME_LENGTH", Integer(1024, MAX_FRAME_LENGTH), 1024 * 1024,
                                parameter="FrameLengthBytes", doc="the ESDK frame length in bytes")
    part_size: int = setting("ATREST_PART_SIZE", Integer(MIN_PART_SIZE), 8 * 1024 * 1024,
                             doc="the multipart part size of vault objects in bytes (at least 5 MiB)")
    # EncryptObject's messages in flight at once, each with its own pipeline (the MPL's KMS
    # components are not thread-safe); an object above one part runs alone (atrest.core.concurrency).
    encrypt_concurrency: int = setting("ATREST_ENCRYPT_CONCURRENCY", Integer(1, 10), 4, cli=False,
                                       doc="objects of one batch encrypted at once (an object above one part "
                                           "runs alone)")
    keep_source: bool = setting("ATREST_KEEP_SOURCE", Boolean(), False, parameter="KeepSourceObjects",
                                doc="true keeps plaintext sources after encryption")
    # Key lifetimes (docs/keys.md): instance keys protect contact PII and are short-lived.
    instance_key_rotation_hours: int = setting("ATREST_INSTANCE_KEY_ROTATION_HOURS", Integer(1, 24 * 366), 24,
                                               parameter="InstanceKeyRotationHours",
                                               doc="an instance key version encrypts this long")
    account_key_rotation_days: int = setting("ATREST_ACCOUNT_KEY_ROTATION_DAYS", Integer(1, 3650), 365,
                                             parameter="AccountKeyRotationDays",
                                             doc="an account key version encrypts this long")
    instance_key_retention_days: int = setting("ATREST_INSTANCE_KEY_RETENTION_DAYS", Integer(1, 36500), 90,
                                               parameter="InstanceKeyRetentionDays",
                                               doc="a retired instance key version stays decryptable this long")
    account_key_retention_days: int = setting("ATREST_ACCOUNT_KEY_RETENTION_DAYS", Integer(1, 36500), 365,
                                              parameter="AccountKeyRetentionDays",
                                              doc="a retired account key version stays decryptable this long")
    shred_instance_keys: bool = setting("ATREST_SHRED_INSTANCE_KEYS", Boolean(), True, parameter="ShredInstanceKeys",
                                        doc="shred retired instance key versions after their retention")
    shred_account_keys: bool = setting("ATREST_SHRED_ACCOUNT_KEYS", Boolean(), False, parameter="ShredAccountKeys",
                                       doc="shred retired account key versions after their retention")
    contact_clear_fields: tuple[str, ...] = setting(
        "ATREST_CONTACT_CLEAR_FIELDS", FieldNames(), DEFAULT_CONTACT_CLEAR_FIELDS, parameter="ContactClearFields",
        doc="the contact event fields kept readable; every other field is encrypted under the instance key")
    # The data class catalog (docs/data-classes.md); None: the one packaged with atrest.
    data_classes_file: str | None = setting("ATREST_DATA_CLASSES_FILE", Text(), deployed=False,
                                            doc="a data class catalog to use instead of the packaged one")
    # Service-owned branch keys (voiceprints): their own key store under a KMS key the
    # stack always owns, never the customer's (docs/data-classes.md).
    service_keystore_table: str | None = setting("ATREST_SERVICE_KEYSTORE_TABLE", Text(),
                                                 output="ServiceKeyStoreTableName",
                                                 doc="the key store of service-owned branch keys (voiceprints)")
    service_kms_key_arn: str | None = setting("ATREST_SERVICE_KMS_KEY_ARN", KeyArn(), output="ServiceKmsKeyArn",
                                              doc="the stack-owned KMS key of the service key store")
    # Audited reads (docs/audit.md): who read what, and where ReadObject hands plaintext back.
    audit_table: str | None = setting("ATREST_AUDIT_TABLE", Text(), output="AuditTableName",
                                      doc="the audit trail; every decrypt is recorded there first")
    retrieval_bucket: str | None = setting("ATREST_RETRIEVAL_BUCKET", Text(), output="RetrievalBucketName",
                                           doc="where ReadObject stages plaintext copies")
    retrieval_lifetime_minutes: int = setting("ATREST_RETRIEVAL_LIFETIME_MINUTES", Integer(1, 60), 10,
                                              parameter="RetrievalLifetimeMinutes",
                                              doc="minutes a plaintext copy lives before the sweep deletes it")
    # Data class name -> the KMS key its own branch key is created, rotated and re-wrapped
    # under (DataClassKmsKeys); a class not named here uses `kms_key_arn`. Checked against
    # the catalog by `atrest.crypto.keystore.KeyStores.from_settings` (docs/byok.md).
    data_class_kms_keys: Mapping[str, str] = setting(DATA_CLASS_KMS_KEYS_VARIABLE, ClassKmsKeys(), {},
                                                     parameter=DATA_CLASS_KMS_KEYS_PARAMETER,
                                                     doc="<data class>=<key ARN> pairs: a class's own KMS key")
    # The other KMS key of a key switch in progress (RekeyKmsKeyArn, docs/byok.md).
    rekey_kms_key_arn: str | None = setting(REKEY_KMS_KEY_VARIABLE, KeyArn(strict=True),
                                            parameter=REKEY_KMS_KEY_PARAMETER,
                                            doc="the other KMS key of a key switch in progress, inside the KMS fence")
    # The KmsGrants custom resource's allow-lists (functions/kms_grant): whatever its event
    # asks, it grants only to these roles, retirable only by this principal.
    grantee_role_arns: tuple[str, ...] = setting("ATREST_GRANTEE_ROLE_ARNS", TextList(), (), cli=False,
                                                 doc="the only roles KMS grants are taken for")
    retiring_principal: str = setting("ATREST_RETIRING_PRINCIPAL", Text(), "", cli=False,
                                      doc="the only principal allowed to retire those grants")

    def fenced_kms_keys(self) -> frozenset[str]:
        """Every KMS key a key store item of this stack may name: the configured key (the
        stack's own or the customer's), the service key, each data class's own key and the
        other key of a declared key switch. The same set as the template's KmsKeyFencePolicy;
        a reader refuses an item naming any other key before calling KMS (`atrest.crypto.keystore`)."""
        keys = {self.kms_key_arn, *self.data_class_kms_keys.values()}
        keys |= {key for key in (self.service_kms_key_arn, self.rekey_kms_key_arn) if key}
        return frozenset(keys)

    def catalog_prefixes(self) -> dict[str, str]:
        """The data class catalog's prefix placeholders and their values: `{"connect_prefix": "connect/", ...}`."""
        return {name: getattr(self, name) for name in CATALOG_PLACEHOLDERS}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, only: Iterable[str] | None = None) -> "Settings":
        """The settings named in `only` (field names; None: every one the operator CLI reads)
        from `environ` (None: the process environment); the rest keep their defaults."""
        env = os.environ if environ is None else environ
        wanted = CLI_SETTINGS if only is None else frozenset(only)
        problems = [message for variable, (successor, message) in RETIRED_VARIABLES.items()
                    if successor in wanted and env.get(variable, "").strip()]
        values: dict[str, Any] = {}
        for item in fields(cls):
            declaration = item.metadata.get(SETTING)
            if declaration is not None and item.name in wanted:
                values[item.name] = declaration.read(env, declaration.variable, _default(item), problems)
        for name, value in list(values.items()):
            fallback = DECLARATIONS[name].falls_back_to
            if not value and fallback in values:
                values[name] = values[fallback]
        if problems:
            raise ConfigurationError(
                "atrest is not configured correctly: "
                + "; ".join(problems)
                + ". Set these in the function's environment (template.yaml) or your shell."
            )
        return cls(**values)

    @classmethod
    def for_function(cls, function: str, environ: Mapping[str, str] | None = None) -> "Settings":
        """The settings of the template's function `function` (its logical id): `FUNCTION_SETTINGS`."""
        return cls.from_env(environ, FUNCTION_SETTINGS[function])


def _default(item: Field[Any]) -> Any:
    return item.default if item.default_factory is MISSING else item.default_factory()


DECLARATIONS: Mapping[str, Declaration] = MappingProxyType(
    {item.name: item.metadata[SETTING] for item in fields(Settings) if SETTING in item.metadata})
# The data class catalog's prefix placeholders: `${<name>}` is the stack's value of that setting.
CATALOG_PLACEHOLDERS = tuple(name for name, declaration in DECLARATIONS.items() if isinstance(declaration.read, Prefix))
# What the operator CLI reads: `Settings.from_env()`, from a deployed stack's outputs and parameters.
CLI_SETTINGS = frozenset(name for name, declaration in DECLARATIONS.items() if declaration.cli)

# -- what each function needs (template.yaml gives it exactly these variables) ------------------

_KEY_STORE = frozenset({"account_id", "keystore_table", "keystore_name", "kms_key_arn", "rekey_kms_key_arn",
                        "cache_ttl_seconds"})
# Reading the data class catalog: its placeholders, and the service key store its service classes need.
_CATALOG = frozenset({"account_id", "data_classes_file", "service_keystore_table", "service_kms_key_arn",
                      *CATALOG_PLACEHOLDERS})
# Classes with KMS keys of their own, checked against the catalog.
_CLASS_KEYS = _CATALOG | {"data_class_kms_keys"}
_LIFETIMES = frozenset({"instance_key_rotation_hours", "account_key_rotation_days", "instance_key_retention_days",
                        "account_key_retention_days", "shred_instance_keys", "shred_account_keys"})
_RETRIEVALS = frozenset({"retrieval_bucket", "retrieval_lifetime_minutes"})
# The template's function logical id -> the settings its handler reads (`Settings.for_function`).
FUNCTION_SETTINGS: Mapping[str, frozenset[str]] = MappingProxyType({
    "EncryptObjectFunction": _KEY_STORE | _CLASS_KEYS | {"intake_bucket", "vault_bucket", "metadata_table",
                                                         "frame_length", "part_size", "keep_source",
                                                         "encrypt_concurrency"},
    "ProtectContactFunction": _KEY_STORE | {"metadata_table", "contact_clear_fields"},
    "ExpireKeysFunction": _KEY_STORE | _CLASS_KEYS | _LIFETIMES | {"metadata_table"},
    "ReadObjectFunction": _KEY_STORE | _CLASS_KEYS | _RETRIEVALS | {"vault_bucket", "metadata_table", "audit_table"},
    "SweepRetrievalsFunction": _RETRIEVALS,
    "WatchAuditTrailFunction": frozenset({"audit_table"}),
    "KmsGrantFunction": frozenset({"grantee_role_arns", "retiring_principal"}),
})


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
