"""IAM identity-policy evaluation, pure (no AWS, no moto): what the emulator enforces.

A caller may rely on:

- `Policy.parse(document)` accepts a policy document (dict or JSON text) and compiles it
  once; a `Policy` is immutable and safe to share between threads.
- `evaluate(policies, action, resource, context)` decides one authorization (one action on
  one resource) as IAM does for identity policies within one account: an explicit
  `Deny` wins, then any `Allow`, else an implicit deny. The `Decision` says which, and
  which statement decided.
- Actions match case-insensitively (`s3:get*` matches `s3:GetObject`); resources match
  as ARNs, case-sensitively, each of the six colon-separated parts on its own (`*` and
  `?` never span a colon, except in the last part, the resource, which may contain
  colons). `Action`/`NotAction`, `Resource`/`NotResource` are supported.
- Conditions: String*, Numeric*, Date*, Bool, Arn*, IpAddress/NotIpAddress, Null,
  BinaryEquals; the `...IfExists` suffix; the `ForAllValues:`/`ForAnyValue:` set
  qualifiers. Operators AND together, keys AND together, values OR together (NOR for
  negated operators). Condition key names are case-insensitive.
- A key absent from the context: the condition is false, except for negated operators
  (`StringNotEquals`, `ArnNotLike`, ...), where it is true (the documented IAM rule);
  `...IfExists` is true; `ForAllValues` is true; `ForAnyValue` is false.
- Policy variables (`${aws:PrincipalArn}`, `${*}`, `${?}`, `${$}`) in Resource and in
  condition values, for documents of Version 2012-10-17. A variable whose key is absent
  makes that entry match nothing.

`evaluate_resource_policy` does the same for one resource policy (a KMS key policy),
counting the statements whose Principal names the caller.

Context values are strings, or lists of strings for multivalued keys (a list used with
an operator that has no set qualifier is read as ForAnyValue). Not evaluated here:
resource policies, permission boundaries, session policies, SCPs, Principal elements.
"""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any, Callable, Iterable, Mapping, Sequence

ContextValue = str | Sequence[str]
Context = Mapping[str, ContextValue]

_VARIABLES_VERSION = "2012-10-17"
_VARIABLE = re.compile(r"\$\{([^}]+)\}")
_MISSING = object()


class PolicyError(ValueError):
    """A policy document IAM would reject (malformed JSON, missing Effect, unknown operator)."""


@dataclass(frozen=True)
class Decision:
    """`allowed`, and why: `explicit_deny`, `allowed` or `implicit_deny`; `sid` of the
    deciding statement (None for an implicit deny, or a statement without Sid)."""

    allowed: bool
    reason: str
    sid: str | None = None

    @property
    def explicit_deny(self) -> bool:
        return self.reason == "explicit_deny"


# -- pattern matching -----------------------------------------------------------------


@lru_cache(maxsize=4096)
def _glob(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    # IAM wildcards: * any run of characters, ? exactly one; everything else literal.
    translated = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.compile(translated, re.DOTALL | (re.IGNORECASE if ignore_case else 0))


def glob_match(pattern: str, value: str, *, ignore_case: bool = False) -> bool:
    """`value` matches `pattern` with IAM's `*` and `?` wildcards."""
    if pattern == "*":
        return True
    return _glob(pattern, ignore_case).fullmatch(value) is not None


def arn_match(pattern: str, arn: str) -> bool:
    """`arn` matches the ARN `pattern` part by part (IAM's ArnLike and Resource matching)."""
    if pattern == "*":
        return True
    pattern_parts = pattern.split(":", 5)
    arn_parts = arn.split(":", 5)
    if len(arn_parts) != 6:
        # Not an ARN (a malformed value): whole-string glob.
        return glob_match(pattern, arn)
    if len(pattern_parts) != 6:
        return False  # a pattern with fewer parts matches no ARN: wildcards never span a colon
    return all(glob_match(p, a) for p, a in zip(pattern_parts, arn_parts))


def action_match(pattern: str, action: str) -> bool:
    """IAM action matching: `service:pattern`, case-insensitive; `*` matches every action."""
    return glob_match(pattern, action, ignore_case=True)


# -- policy variables -----------------------------------------------------------------


def _substitute(text: str, context: "_Lookup") -> str | None:
    """`text` with `${key}` replaced from the context; None when a key is absent."""
    if "${" not in text:
        return text
    missing = False

    def replace(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        if name in ("*", "?", "$"):
            return name
        # ${key, 'default'} form: a default for an absent key.
        key, _, default = name.partition(",")
        value = context.get(key.strip())
        if value is _MISSING or isinstance(value, (list, tuple)):
            if default:
                return default.strip().strip("'")
            missing = True
            return ""
        return str(value)

    result = _VARIABLE.sub(replace, text)
    return None if missing else result


class _Lookup:
    """Case-insensitive view of a request context (condition keys are case-insensitive)."""

    __slots__ = ("_values",)

    def __init__(self, context: Context) -> None:
        self._values = {key.lower(): value for key, value in context.items()}

    def get(self, key: str) -> Any:
        return self._values.get(key.lower(), _MISSING)


# -- condition operators --------------------------------------------------------------


def _number(text: str) -> float:
    return float(text)


def _date(text: str) -> float:
    text = str(text)
    try:
        return float(text)  # epoch seconds
    except ValueError:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=timezone.utc)
        return parsed.timestamp()


def _ip_match(policy: str, value: str) -> bool:
    try:
        return ipaddress.ip_address(value) in ipaddress.ip_network(policy, strict=False)
    except ValueError:
        return False


def _compare(convert: Callable[[str], float], test: Callable[[float, float], bool]) -> Callable[[str, str], bool]:
    def matches(policy: str, value: str) -> bool:
        try:
            return test(convert(value), convert(policy))
        except (TypeError, ValueError):
            return False

    return matches


# name -> (matches(policy_value, context_value), negated, policy values take variables)
_OPERATORS: dict[str, tuple[Callable[[str, str], bool], bool, bool]] = {
    "StringEquals": (lambda p, v: p == v, False, True),
    "StringNotEquals": (lambda p, v: p == v, True, True),
    "StringEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), False, True),
    "StringNotEqualsIgnoreCase": (lambda p, v: p.lower() == v.lower(), True, True),
    "StringLike": (lambda p, v: glob_match(p, v), False, True),
    "StringNotLike": (lambda p, v: glob_match(p, v), True, True),
    "NumericEquals": (_compare(_number, lambda v, p: v == p), False, False),
    "NumericNotEquals": (_compare(_number, lambda v, p: v == p), True, False),
    "NumericLessThan": (_compare(_number, lambda v, p: v < p), False, False),
    "NumericLessThanEquals": (_compare(_number, lambda v, p: v <= p), False, False),
    "NumericGreaterThan": (_compare(_number, lambda v, p: v > p), False, False),
    "NumericGreaterThanEquals": (_compare(_number, lambda v, p: v >= p), False, False),
    "DateEquals": (_compare(_date, lambda v, p: v == p), False, False),
    "DateNotEquals": (_compare(_date, lambda v, p: v == p), True, False),
    "DateLessThan": (_compare(_date, lambda v, p: v < p), False, False),
    "DateLessThanEquals": (_compare(_date, lambda v, p: v <= p), False, False),
    "DateGreaterThan": (_compare(_date, lambda v, p: v > p), False, False),
    "DateGreaterThanEquals": (_compare(_date, lambda v, p: v >= p), False, False),
    "Bool": (lambda p, v: p.lower() == v.lower(), False, True),
    "BinaryEquals": (lambda p, v: p == v, False, False),
    "IpAddress": (_ip_match, False, False),
    "NotIpAddress": (_ip_match, True, False),
    "ArnEquals": (lambda p, v: arn_match(p, v), False, True),
    "ArnLike": (lambda p, v: arn_match(p, v), False, True),
    "ArnNotEquals": (lambda p, v: arn_match(p, v), True, True),
    "ArnNotLike": (lambda p, v: arn_match(p, v), True, True),
}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _policy_text(value: Any) -> str:
    # JSON booleans and numbers in condition values compare as their IAM string forms.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class _Condition:
    operator: str
    qualifier: str | None  # "ForAllValues", "ForAnyValue" or None
    if_exists: bool
    key: str
    values: tuple[str, ...]
    variables: bool

    @classmethod
    def parse(cls, operator_text: str, key: str, values: Any, variables: bool) -> "_Condition":
        qualifier, _, operator = operator_text.rpartition(":")
        qualifier = qualifier or None
        if qualifier not in (None, "ForAllValues", "ForAnyValue"):
            raise PolicyError(f"unknown condition set operator {qualifier!r}")
        if_exists = operator.endswith("IfExists") and operator != "IfExists"
        if if_exists:
            operator = operator[: -len("IfExists")]
        if operator != "Null" and operator not in _OPERATORS:
            raise PolicyError(f"unknown condition operator {operator_text!r}")
        return cls(operator, qualifier, if_exists, key, tuple(_policy_text(v) for v in _as_list(values)), variables)

    def holds(self, context: _Lookup) -> bool:
        value = context.get(self.key)
        present = value is not _MISSING and value is not None and value != []
        if self.operator == "Null":
            # "true": the key must be absent; "false": present.
            return any((v.lower() == "true") != present for v in self.values)
        if not present:
            if self.qualifier == "ForAllValues":
                return True
            if self.qualifier == "ForAnyValue":
                return False
            return self.if_exists or _OPERATORS[self.operator][1]
        matches, negated, takes_variables = _OPERATORS[self.operator]
        policy_values = self._policy_values(context) if takes_variables else list(self.values)
        context_values = [str(v) for v in _as_list(value)]

        def one(context_value: str) -> bool:
            hit = any(matches(p, context_value) for p in policy_values)
            return not hit if negated else hit

        if self.qualifier == "ForAllValues":
            return all(one(v) for v in context_values)
        return any(one(v) for v in context_values)

    def _policy_values(self, context: _Lookup) -> list[str]:
        if not self.variables:
            return list(self.values)
        substituted = (_substitute(v, context) for v in self.values)
        return [v for v in substituted if v is not None]


# -- statements and policies ------------------------------------------------------------


@dataclass(frozen=True)
class Statement:
    effect: str  # "Allow" | "Deny"
    sid: str | None
    actions: tuple[str, ...]
    not_actions: bool
    resources: tuple[str, ...]
    not_resources: bool
    conditions: tuple[_Condition, ...]
    variables: bool
    # AWS principals named by Principal ("*" for anyone); None: no Principal (identity policy).
    principals: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any], variables: bool) -> "Statement":
        effect = raw.get("Effect")
        if effect not in ("Allow", "Deny"):
            raise PolicyError(f"statement {raw.get('Sid')!r}: Effect must be Allow or Deny, not {effect!r}")
        if ("Action" in raw) == ("NotAction" in raw):
            raise PolicyError(f"statement {raw.get('Sid')!r}: exactly one of Action and NotAction")
        if ("Resource" in raw) == ("NotResource" in raw):
            raise PolicyError(f"statement {raw.get('Sid')!r}: exactly one of Resource and NotResource")
        conditions = tuple(
            _Condition.parse(operator, key, values, variables)
            for operator, block in (raw.get("Condition") or {}).items()
            for key, values in block.items()
        )
        return cls(
            effect=effect,
            sid=raw.get("Sid"),
            actions=tuple(str(a) for a in _as_list(raw.get("Action", raw.get("NotAction")))),
            not_actions="NotAction" in raw,
            resources=tuple(str(r) for r in _as_list(raw.get("Resource", raw.get("NotResource")))),
            not_resources="NotResource" in raw,
            conditions=conditions,
            variables=variables,
            principals=_aws_principals(raw.get("Principal")) if "Principal" in raw else None,
        )

    def applies(self, action: str, resource: str, context: _Lookup) -> bool:
        named = any(action_match(pattern, action) for pattern in self.actions)
        if named == self.not_actions:
            return False
        named = any(self._resource_match(pattern, resource, context) for pattern in self.resources)
        if named == self.not_resources:
            return False
        return all(condition.holds(context) for condition in self.conditions)

    def _resource_match(self, pattern: str, resource: str, context: _Lookup) -> bool:
        if self.variables:
            substituted = _substitute(pattern, context)
            if substituted is None:
                return False
            pattern = substituted
        return arn_match(pattern, resource)


def _aws_principals(principal: Any) -> tuple[str, ...]:
    if principal == "*":
        return ("*",)
    if isinstance(principal, Mapping):
        return tuple(str(p) for p in _as_list(principal.get("AWS")))
    return ()


@dataclass(frozen=True)
class Policy:
    """A compiled policy document; `name` is for messages only."""

    statements: tuple[Statement, ...]
    name: str = ""

    @classmethod
    def parse(cls, document: str | Mapping[str, Any], name: str = "") -> "Policy":
        if isinstance(document, str):
            try:
                document = json.loads(document)
            except ValueError as error:
                raise PolicyError(f"policy {name!r} is not JSON: {error}") from error
        if not isinstance(document, Mapping):
            raise PolicyError(f"policy {name!r} is not a JSON object")
        variables = document.get("Version") == _VARIABLES_VERSION
        statements = tuple(Statement.parse(raw, variables) for raw in _as_list(document.get("Statement")))
        return cls(statements, name)


def evaluate(policies: Iterable[Policy], action: str, resource: str, context: Context | None = None) -> Decision:
    """Decide `action` on `resource` under the identity `policies` (see the module docstring)."""
    return _decide((statement for policy in policies for statement in policy.statements), action, resource, context)


def evaluate_resource_policy(policy: Policy, action: str, resource: str, context: Context | None,
                             principals: Iterable[str]) -> Decision:
    """Decide `action` on `resource` under a resource policy (a KMS key policy), counting
    only statements whose Principal names one of `principals` (ARNs or account ids) or
    "*". Statements with NotPrincipal or without a Principal are ignored."""
    wanted = frozenset(principals)
    naming = (s for s in policy.statements if s.principals and any(p == "*" or p in wanted for p in s.principals))
    return _decide(naming, action, resource, context)


def _decide(statements: Iterable[Statement], action: str, resource: str, context: Context | None) -> Decision:
    # An explicit Deny wins over any Allow; without either, the answer is an implicit deny.
    lookup = _Lookup(context or {})
    allowed_by: Statement | None = None
    for statement in statements:
        if statement.effect == "Allow" and allowed_by is not None:
            continue  # one Allow is enough; only a Deny can still change the answer
        if statement.applies(action, resource, lookup):
            if statement.effect == "Deny":
                return Decision(False, "explicit_deny", statement.sid)
            allowed_by = statement
    if allowed_by is not None:
        return Decision(True, "allowed", allowed_by.sid)
    return Decision(False, "implicit_deny")
