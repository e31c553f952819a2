"""The data class catalog: which data atrest protects, under which key, for how long.

Every class is configuration (docs/data-classes.md), read from a JSON catalog at start:
the one packaged beside this module (`data_classes.json`), or the file
`ATREST_DATA_CLASSES_FILE` names. Each class says where its data comes from (an S3
prefix or pattern, or Amazon Connect contact events), which branch key scope protects
it, that key's lifetime, whether the plaintext source is removed, and which roles may
read it back through the audited ReadObject API.

The whole catalog is validated before any of it is used; every problem is reported at
once, naming the class and field, so a bad deployment fails at its first cold start
with a message that says what to change, never halfway through a batch.

Fail closed: every object in the intake bucket is customer content until the catalog says
otherwise. Classes are tried in catalog order and the first match wins; a key no class
matches is left in plaintext only when the catalog's `exclude` list names it, with a
reason; anything else belongs to the catalog's one catch-all class (`"catch_all": true`,
tried last) and is encrypted like the rest. Exclusions are consulted only after every
other class, so an exclusion can never hide content a class names.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any, Mapping

from atrest.catalog.lifetimes import SERVICE_LIFETIME, KeyLifetimePolicy, KeyLifetimes
from atrest.catalog.scopes import KEY_NAME, BranchKeyScope, ScopeKind
from atrest.core.errors import ConfigurationError
from atrest.core.settings import CATALOG_PLACEHOLDERS, Settings

SCHEMA_VERSION = 1
PACKAGED_CATALOG = "data_classes.json"

SOURCE_S3 = "s3"
SOURCE_CONTACT_EVENTS = "contact-events"
# Named lifetimes: the stack's account and instance policies (template parameters), and
# the service policy for service-owned keys (atrest.catalog.lifetimes.SERVICE_LIFETIME).
NAMED_LIFETIMES = ("account", "instance", "service")

_CLASS_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
_ROLE_ARN = re.compile(r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/(?:[\w+=,.@-]+/)*[\w+=,.@-]{1,64}$")
_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")
_SPAN = re.compile(r"^([1-9][0-9]{0,5})([hd])$")
_GROUPS = {"instance", "contact"}
_FIELDS = {"name", "description", "source", "prefix", "pattern", "scope", "key", "lifetime", "source_removal",
           "decryptors", "catch_all"}
_DOCUMENT_FIELDS = {"schema", "classes", "exclude"}
_EXCLUSION_FIELDS = {"prefix", "pattern", "reason", "max_bytes"}
_LIFETIME_FIELDS = {"rotate_every", "retain_for", "shred"}

# Amazon Connect's storage layout (docs/data-classes.md cites the pages), for catalogs to use in patterns:
# <prefix><alias>/CallRecordings/YYYY/MM/DD/<contactId>_<YYYYMMDDTHH:MM>_UTC.wav
_CONTACT_ID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
# Where Connect writes an instance's folders (<connect prefix><alias>/, the alias captured),
# or whatever folders a copy put them under (then no alias is known).
_CONNECT_PATH = "(?:{prefix}(?P<instance>[^/]+)/|(?:[^/]+/)*?)"
# Any folders below (YYYY/MM/DD/ or none), then a file name of any extension, case, copy
# suffix or length; the contact id is captured when the name starts with one (a UUID).
_CONTACT_FILE = rf"(?:[^/]+/)*(?:(?P<contact>{_CONTACT_ID})(?![0-9A-Za-z-])[^/]*|[^/]+)"
_FRAGMENTS = ("connect_path", "contact_file")
# The stack's prefixes (every prefix setting, named for its field: atrest.core.settings), inserted
# literally, then the regular expression fragments, so that every class reads a Connect layout the same way.
PLACEHOLDERS = (*CATALOG_PLACEHOLDERS, *_FRAGMENTS)
_MATCH_ANY = re.compile(r".+\Z", re.S)


@dataclass(frozen=True)
class DataClassSpec:
    """One validated class of the catalog."""

    name: str
    source: str
    scope_kind: ScopeKind
    lifetime: KeyLifetimePolicy
    lifetime_name: str  # "account", "instance", "service" or "own"
    key: str | None = None  # its own branch key (account/<id>/<key>, service/<key>)
    pattern: re.Pattern[str] | None = None
    source_removal: str = "delete"
    decryptors: tuple[str, ...] = ()
    description: str = ""
    listing_prefix: str = ""  # the literal start of every key it matches (what backfill and status list)
    catch_all: bool = False  # the class of every key no other class matches and no exclusion names

    @property
    def keeps_source(self) -> bool:
        return self.source_removal == "keep"

    def scope(self, account_id: str, instance_id: str | None = None) -> BranchKeyScope:
        if self.scope_kind is ScopeKind.SERVICE:
            return BranchKeyScope.service(self.key or self.name)
        if self.scope_kind is ScopeKind.INSTANCE:
            if not instance_id:
                raise ConfigurationError(f"data class {self.name} is instance-scoped and needs an instance id")
            return BranchKeyScope.instance(instance_id)
        return BranchKeyScope.account(account_id, self.key)


@dataclass(frozen=True)
class Classification:
    """What an object is: its data class, the scope of its key, and what the key layout tells."""

    data_class: str
    scope: BranchKeyScope
    instance: str | None = None  # the Connect instance alias (from the key layout) when known
    contact_id: str | None = None
    spec: DataClassSpec | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Exclusion:
    """Why an intake object is left in plaintext: an explicit rule of the catalog's `exclude`
    list. Safe to log (configuration text, never content)."""

    reason: str
    rule: str = ""  # the rule as the catalog wrote it, e.g. 'pattern ".*/" (at most 0 bytes)'


@dataclass(frozen=True)
class ExclusionRule:
    """One validated entry of the catalog's `exclude` list."""

    matcher: re.Pattern[str]
    reason: str
    rule: str
    max_bytes: int | None = None  # applies only to objects known to be at most this large

    def applies(self, key: str, size: int | None) -> bool:
        if not self.matcher.match(key):
            return False
        # A size limit excludes only what is known to be small: an unknown size is not excluded.
        return self.max_bytes is None or (size is not None and size <= self.max_bytes)

    def exclusion(self) -> Exclusion:
        return Exclusion(self.reason, self.rule)


@dataclass(frozen=True)
class DataClassCatalog:
    classes: tuple[DataClassSpec, ...]
    source: str  # where it was read from, for messages
    exclusions: tuple[ExclusionRule, ...] = ()  # consulted only for keys no class but the catch-all matches

    @classmethod
    def from_settings(cls, settings: Settings) -> "DataClassCatalog":
        if settings.data_classes_file:
            path = Path(settings.data_classes_file)
            try:
                text = path.read_text(encoding="utf-8")
            except OSError as error:
                raise ConfigurationError(
                    f"cannot read the data class catalog {path} ({error.strerror}); fix ATREST_DATA_CLASSES_FILE "
                    "or unset it to use the packaged catalog"
                ) from error
            origin = str(path)
        else:
            text = resources.files("atrest.catalog").joinpath(PACKAGED_CATALOG).read_text(encoding="utf-8")
            origin = f"packaged {PACKAGED_CATALOG}"
        return cls.parse(text, settings, origin)

    @classmethod
    def parse(cls, text: str, settings: Settings, origin: str = "catalog") -> "DataClassCatalog":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigurationError(f"data class catalog {origin} is not JSON: {error}") from error
        problems: list[str] = []
        classes = _parse_document(document, settings, problems)
        exclusions = _parse_exclusions(document, settings, problems)
        if problems:
            raise ConfigurationError(
                f"data class catalog {origin} is not valid: " + "; ".join(problems)
                + ". See docs/data-classes.md for the schema."
            )
        return cls(tuple(classes), origin, tuple(exclusions))

    def get(self, name: str) -> DataClassSpec | None:
        return next((spec for spec in self.classes if spec.name == name), None)

    def s3_classes(self) -> list[DataClassSpec]:
        return [spec for spec in self.classes if spec.source == SOURCE_S3]

    def catch_all(self) -> DataClassSpec | None:
        """The class of every intake object no other class matches and no exclusion names."""
        return next((spec for spec in self.classes if spec.catch_all), None)

    def listing_prefixes(self) -> list[str]:
        """The S3 prefixes to list to find every object of every class (none nested in another).
        With a catch-all class (a valid catalog has one) that is the whole bucket: `[""]`."""
        if self.catch_all() is not None:
            return [""]
        found = sorted({spec.listing_prefix for spec in self.s3_classes()})
        return [p for p in found if not any(p != other and p.startswith(other) for other in found)]

    def contact_class(self) -> DataClassSpec | None:
        return next((spec for spec in self.classes if spec.source == SOURCE_CONTACT_EVENTS), None)

    def uses_service_keys(self) -> bool:
        return any(spec.scope_kind is ScopeKind.SERVICE for spec in self.classes)

    def own_lifetimes(self, account_id: str) -> dict[str, KeyLifetimePolicy]:
        """Branch key id -> lifetime, for classes with a key of their own."""
        return {spec.scope(account_id).branch_key_id: spec.lifetime
                for spec in self.classes if spec.key and spec.scope_kind is not ScopeKind.INSTANCE}


class DataClassifier:
    """Maps an intake object key to its `Classification`, or to the `Exclusion` that leaves it
    in plaintext; never to nothing (fail closed)."""

    def __init__(self, catalog: DataClassCatalog, account_id: str) -> None:
        self.catalog = catalog
        self.classes = [spec for spec in catalog.s3_classes() if not spec.catch_all]
        self.catch_all = catalog.catch_all()
        self.exclusions = catalog.exclusions
        self.account_id = account_id

    @classmethod
    def from_settings(cls, settings: Settings, catalog: DataClassCatalog | None = None) -> "DataClassifier":
        return cls(catalog or DataClassCatalog.from_settings(settings), settings.account_id)

    def classify(self, key: str, size: int | None = None) -> Classification | Exclusion:
        """The catalog's classes in order, then its exclusions, then the catch-all class.

        `size` (bytes, when known) lets a size-limited exclusion (an empty folder marker)
        apply; without it such an exclusion does not, and the object is encrypted."""
        for spec in self.classes:
            assert spec.pattern is not None
            found = spec.pattern.match(key)
            if found:
                groups = found.groupdict()
                return Classification(spec.name, spec.scope(self.account_id), groups.get("instance"),
                                      groups.get("contact"), spec)
        for rule in self.exclusions:
            if rule.applies(key, size):
                return rule.exclusion()
        if self.catch_all is None:  # a parsed catalog always has one; a hand-built one may not
            raise ConfigurationError(f"data class catalog {self.catalog.source} has no catch-all class; add one "
                                     "(see docs/data-classes.md) so that no intake object is left in plaintext")
        return Classification(self.catch_all.name, self.catch_all.scope(self.account_id), spec=self.catch_all)


# -- parsing ------------------------------------------------------------------------------


def _parse_document(document: Any, settings: Settings, problems: list[str]) -> list[DataClassSpec]:
    if not isinstance(document, dict):
        problems.append("the top level must be an object with \"schema\" and \"classes\"")
        return []
    if document.get("schema") != SCHEMA_VERSION:
        problems.append(f"\"schema\" must be {SCHEMA_VERSION} (found {document.get('schema')!r})")
    unknown = sorted(set(document) - _DOCUMENT_FIELDS)
    if unknown:
        problems.append(f"unknown top-level field(s) {unknown} (allowed: {sorted(_DOCUMENT_FIELDS)})")
    entries = document.get("classes")
    if not isinstance(entries, list) or not entries:
        problems.append("\"classes\" must be a non-empty list")
        return []
    classes = []
    for index, entry in enumerate(entries):
        spec = _parse_class(entry, index, settings, problems)
        if spec is not None:
            classes.append(spec)
    _check_together(classes, settings, problems)
    _check_catch_all(entries, problems)
    return classes


def _check_catch_all(entries: list[Any], problems: list[str]) -> None:
    # Counted on the entries as written, so that a catch-all with another mistake is not also
    # reported as missing.
    named = [entry.get("name", f"classes[{index}]") for index, entry in enumerate(entries)
             if isinstance(entry, dict) and entry.get("catch_all") is True]
    if not named:
        problems.append("the catalog needs exactly one catch-all class, e.g. {\"name\": \"unclassified\", \"source\": "
                        "\"s3\", \"catch_all\": true, \"scope\": \"account\"}, so that an object no class matches is "
                        "still encrypted; to leave such objects in plaintext, name them in \"exclude\" with a reason")
    elif len(named) > 1:
        problems.append(f"only one class may be the catch-all (found {named}); remove \"catch_all\" from all but one")


def _parse_exclusions(document: Any, settings: Settings, problems: list[str]) -> list[ExclusionRule]:
    value = document.get("exclude", []) if isinstance(document, dict) else []
    if not isinstance(value, list):
        problems.append("\"exclude\" must be a list of objects with \"prefix\" or \"pattern\" and a \"reason\"")
        return []
    rules = []
    for index, entry in enumerate(value):
        where = f"exclude[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} must be an object with \"prefix\" or \"pattern\" and a \"reason\"")
            continue
        before = len(problems)

        def problem(text: str, where: str = where) -> None:
            problems.append(f"{where}: {text}")

        unknown = sorted(set(entry) - _EXCLUSION_FIELDS)
        if unknown:
            problem(f"unknown field(s) {unknown} (allowed: {sorted(_EXCLUSION_FIELDS)})")
        reason = entry.get("reason")
        if not isinstance(reason, str) or not reason.strip():
            problem("\"reason\" must say why these objects hold no customer content (it is logged for every object "
                    "left in plaintext), e.g. \"scheduled reports: aggregated metrics, no customer content\"")
        max_bytes = entry.get("max_bytes")
        if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0):
            problem(f"\"max_bytes\" must be a byte count of 0 or more (found {max_bytes!r})")
        matcher = _parse_key_rule(entry, settings, problem, "an exclusion", markers=True)
        if len(problems) > before or matcher is None:
            continue
        written = f"prefix {entry['prefix']!r}" if "prefix" in entry else f"pattern {entry['pattern']!r}"
        if max_bytes is not None:
            written += f" (at most {max_bytes} bytes)"
        rules.append(ExclusionRule(matcher, reason.strip(), written, max_bytes))
    return rules


def _parse_class(entry: Any, index: int, settings: Settings, problems: list[str]) -> DataClassSpec | None:
    if not isinstance(entry, dict):
        problems.append(f"classes[{index}] must be an object")
        return None
    name = entry.get("name")
    where = f"class {name!r}" if isinstance(name, str) and name else f"classes[{index}]"
    before = len(problems)

    def problem(text: str) -> None:
        problems.append(f"{where}: {text}")

    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        problem(f"unknown field(s) {unknown} (allowed: {sorted(_FIELDS)})")
    if not isinstance(name, str) or not _CLASS_NAME.match(name):
        problem("\"name\" must be lowercase letters, digits and '-' (2-63 characters), e.g. \"call-recording\"")
        name = f"class-{index}"

    source = entry.get("source", SOURCE_S3)
    catch_all = entry.get("catch_all", False)
    if not isinstance(catch_all, bool):
        problem(f"\"catch_all\" must be true or false (found {catch_all!r})")
        catch_all = False
    pattern = None
    if catch_all and source != SOURCE_S3:
        problem(f"the catch-all class takes every intake object no other class matches: its \"source\" is "
                f"\"{SOURCE_S3}\"")
    elif catch_all:
        if "prefix" in entry or "pattern" in entry:
            problem("the catch-all class matches every key no other class or exclusion does; remove \"prefix\" and "
                    "\"pattern\" (or give it a class of its own)")
        pattern = _MATCH_ANY
    elif source == SOURCE_S3:
        pattern = _parse_pattern(entry, settings, problem)
    elif source == SOURCE_CONTACT_EVENTS:
        if "prefix" in entry or "pattern" in entry:
            problem("a contact-events class takes no \"prefix\" or \"pattern\" (its data are contact event fields)")
    else:
        problem(f"\"source\" must be \"{SOURCE_S3}\" or \"{SOURCE_CONTACT_EVENTS}\" (found {source!r})")

    scope_text = entry.get("scope")
    try:
        scope_kind = ScopeKind(scope_text)
    except ValueError:
        problem(f"\"scope\" must be one of {[k.value for k in ScopeKind]} (found {scope_text!r})")
        scope_kind = ScopeKind.ACCOUNT
    if source == SOURCE_S3 and scope_kind is ScopeKind.INSTANCE:
        problem("S3 classes take \"account\" or \"service\" scope; instance keys protect contact events")
    if source == SOURCE_CONTACT_EVENTS and scope_kind is not ScopeKind.INSTANCE:
        problem("a contact-events class must have \"instance\" scope (contact PII is protected per instance)")

    key = entry.get("key")
    if scope_kind is ScopeKind.SERVICE and key is None:
        key = name
    if key is not None and (not isinstance(key, str) or not KEY_NAME.match(key)):
        problem("\"key\" must be lowercase letters, digits and '-' (up to 63 characters)")
        key = None
    if key is not None and scope_kind is ScopeKind.INSTANCE:
        problem("instance-scoped classes use the instance's key; remove \"key\"")
        key = None

    lifetime_name, lifetime = _parse_lifetime(entry.get("lifetime"), scope_kind, key, settings, problem)

    removal = entry.get("source_removal", "delete")
    if removal not in ("delete", "keep"):
        problem(f"\"source_removal\" must be \"delete\" or \"keep\" (found {removal!r})")
    decryptors = entry.get("decryptors", [])
    if not isinstance(decryptors, list) or not all(isinstance(d, str) for d in decryptors):
        problem("\"decryptors\" must be a list of IAM role ARNs or role names")
        decryptors = []
    for decryptor in decryptors:
        if not (_ROLE_ARN.match(decryptor) or _ROLE_NAME.match(decryptor)):
            problem(f"decryptor {decryptor!r} is not an IAM role ARN (arn:aws:iam::<account>:role/<name>) or role "
                    "name; wildcards are not accepted")
    description = entry.get("description", "")
    if len(problems) > before:
        return None
    return DataClassSpec(name, source, scope_kind, lifetime, lifetime_name, key, pattern, removal,
                         tuple(decryptors), str(description), _listing_prefix(entry, settings), catch_all=catch_all)


def _listing_prefix(entry: Mapping[str, Any], settings: Settings) -> str:
    if "prefix" in entry:
        return _substitute(entry["prefix"], settings, escape=False)
    if "pattern" not in entry:
        return ""
    text = _substitute(entry["pattern"], settings, escape=False)
    end = next((i for i, c in enumerate(text) if c in "\\.^$*+?{}[]|("), len(text))
    return text[:end]


def _substitute(text: str, settings: Settings, escape: bool) -> str:
    """Fill in the stack's prefixes (escaped in a pattern, `escape`) and the layout fragments."""
    for placeholder, value in settings.catalog_prefixes().items():
        text = text.replace("${" + placeholder + "}", re.escape(value) if escape else value)
    fragments = {"connect_path": _CONNECT_PATH.format(prefix=re.escape(settings.connect_prefix)),
                 "contact_file": _CONTACT_FILE}
    for placeholder, value in fragments.items():
        text = text.replace("${" + placeholder + "}", value)
    return text


def _parse_pattern(entry: Mapping[str, Any], settings: Settings, problem: Any) -> re.Pattern[str] | None:
    return _parse_key_rule(entry, settings, problem, "an S3 class", markers=False)


def _parse_key_rule(entry: Mapping[str, Any], settings: Settings, problem: Any, what: str,
                    markers: bool) -> re.Pattern[str] | None:
    """The matcher of a class or an exclusion: a key prefix or a regular expression for the
    whole key. A class's prefix leaves out folder markers (keys ending in '/'); an exclusion's
    prefix (`markers`) takes them too."""
    prefix, pattern = entry.get("prefix"), entry.get("pattern")
    if (prefix is None) == (pattern is None):
        problem(f"{what} needs exactly one of \"prefix\" (every object under it) or \"pattern\" (a regular "
                "expression for the whole key)")
        return None
    if prefix is not None:
        if not isinstance(prefix, str) or not prefix or prefix.startswith("/"):
            problem("\"prefix\" must be a non-empty S3 key prefix without a leading '/'")
            return None
        fragments = [f for f in _FRAGMENTS if "${" + f + "}" in prefix]
        if fragments:
            problem(f"\"prefix\" is literal text; the placeholders {fragments} are regular expressions: use \"pattern\"")
            return None
        if not _known_placeholders(prefix, problem):
            return None
        # Every object under the prefix, but (for a class) not the zero-byte "folder" markers consoles create.
        end = r".*\Z" if markers else r".*[^/]\Z"
        return re.compile(re.escape(_substitute(prefix, settings, escape=False)) + end, re.S)
    if not isinstance(pattern, str) or not pattern:
        problem("\"pattern\" must be a non-empty regular expression")
        return None
    try:
        # DOTALL: S3 keys may hold any character, a newline too; '.' must not stop at one.
        compiled = re.compile(_substitute(pattern, settings, escape=True) + r"\Z", re.S)
    except re.error as error:
        problem(f"\"pattern\" is not a valid regular expression ({error})")
        return None
    extra = set(compiled.groupindex) - _GROUPS
    if extra:
        problem(f"\"pattern\" has named groups {sorted(extra)}; only (?P<instance>...) and (?P<contact>...) are used")
        return None
    if not _known_placeholders(pattern, problem):
        return None
    return compiled


def _known_placeholders(text: str, problem: Any) -> bool:
    """Whether every `${name}` in `text` is a placeholder; else the problem names the unknown ones
    (in a prefix too, where one would otherwise be matched as literal text)."""
    unknown = [p for p in re.findall(r"\$\{(\w+)\}", text) if p not in PLACEHOLDERS]
    if unknown:
        problem(f"unknown placeholder(s) {unknown}; known: {list(PLACEHOLDERS)}")
    return not unknown


def _span(value: Any, field_name: str, problem: Any) -> timedelta | None:
    found = _SPAN.match(value) if isinstance(value, str) else None
    if not found:
        problem(f"lifetime \"{field_name}\" must be a number of hours or days, e.g. \"24h\" or \"30d\" (found {value!r})")
        return None
    amount = int(found.group(1))
    return timedelta(hours=amount) if found.group(2) == "h" else timedelta(days=amount)


def _parse_lifetime(value: Any, scope_kind: ScopeKind, key: str | None, settings: Settings,
                    problem: Any) -> tuple[str, KeyLifetimePolicy]:
    stack = KeyLifetimes.from_settings(settings)
    default = {ScopeKind.ACCOUNT: "account", ScopeKind.INSTANCE: "instance", ScopeKind.SERVICE: "service"}[scope_kind]
    value = default if value is None else value
    if isinstance(value, str):
        if value not in NAMED_LIFETIMES:
            problem(f"\"lifetime\" must be one of {list(NAMED_LIFETIMES)} or an object with {sorted(_LIFETIME_FIELDS)}")
            return default, stack.account
        if value != default:
            problem(f"a {scope_kind.value}-scoped class cannot use the {value} lifetime (use \"{default}\" or its own)")
        named = {"account": stack.account, "instance": stack.instance, "service": SERVICE_LIFETIME}
        return value, named[value]
    if not isinstance(value, dict) or set(value) - _LIFETIME_FIELDS or "rotate_every" not in value:
        problem(f"\"lifetime\" must be one of {list(NAMED_LIFETIMES)} or an object with \"rotate_every\" and "
                "optionally \"retain_for\" and \"shred\", e.g. {\"rotate_every\": \"30d\", \"retain_for\": \"90d\", "
                "\"shred\": true}")
        return default, stack.account
    if scope_kind is ScopeKind.ACCOUNT and key is None:
        problem("an account class with its own lifetime needs its own \"key\" (the shared account key follows the "
                "stack's account policy)")
    if scope_kind is ScopeKind.INSTANCE:
        problem("instance keys follow the stack's instance policy (InstanceKeyRotationHours ...); use \"instance\"")
    rotate = _span(value.get("rotate_every"), "rotate_every", problem)
    retain = _span(value.get("retain_for", "36500d"), "retain_for", problem)
    shred = value.get("shred", False)
    if not isinstance(shred, bool):
        problem("lifetime \"shred\" must be true or false")
        shred = False
    if rotate is None or retain is None:
        return "own", stack.account
    return "own", KeyLifetimePolicy(rotate, retain, shred)


def _check_together(classes: list[DataClassSpec], settings: Settings, problems: list[str]) -> None:
    seen: dict[str, DataClassSpec] = {}
    for spec in classes:
        if spec.name in seen:
            problems.append(f"class {spec.name!r} is defined twice")
        seen[spec.name] = spec
    by_key: dict[str, DataClassSpec] = {}
    for spec in classes:
        if spec.scope_kind is ScopeKind.INSTANCE:
            continue
        branch_key = spec.scope(settings.account_id or "000000000000").branch_key_id
        other = by_key.setdefault(branch_key, spec)
        if other is not spec and other.lifetime != spec.lifetime:
            problems.append(f"classes {other.name!r} and {spec.name!r} share branch key {branch_key} but give it "
                            "different lifetimes; give one its own \"key\"")
    if sum(1 for spec in classes if spec.source == SOURCE_CONTACT_EVENTS) > 1:
        problems.append("only one contact-events class is allowed (contact PII has one instance key per instance)")
    if any(spec.scope_kind is ScopeKind.SERVICE for spec in classes) and not (
            settings.service_keystore_table and settings.service_kms_key_arn):
        problems.append("a service-scoped class needs the service key store: set ATREST_SERVICE_KEYSTORE_TABLE and "
                        "ATREST_SERVICE_KMS_KEY_ARN (the stack's ServiceKeyStoreTable and AtrestServiceKmsKey)")


def deployment_lifetimes(settings: Any) -> KeyLifetimes:
    """The stack's key lifetimes plus the catalog's own (what ExpireKeys applies)."""
    catalog = DataClassCatalog.from_settings(settings)
    return replace(KeyLifetimes.from_settings(settings), own=catalog.own_lifetimes(settings.account_id))
