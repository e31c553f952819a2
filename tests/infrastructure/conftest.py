"""Shared fixtures for the template checks.

Two kinds of tests live here:
- structural tests that read template.yaml with a small CloudFormation-aware YAML
  loader (test environment only: PyYAML);
- tool tests that run cfn-lint, sam and checkov from the tools environment
  (.venv-tools, kept apart because checkov pins an old `packaging`).

The tools are found through ATREST_TOOLS_BIN (set by `make test`), else the repo's
.venv-tools/bin. When neither has them the tool tests FAIL rather than skip: a
green run must mean the template was linted, validated, built and scanned.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
ARCHITECTURE_DOC = REPO / "docs" / "architecture.md"
EVENTS = REPO / "events"

# The local stack the sample events are written for (events/README.md).
STACK_NAME = "atrest"
ACCOUNT_ID = "123456789012"
REGION = "us-east-1"


def stack_id(stack_name: str, account_id: str = ACCOUNT_ID, region: str = REGION) -> str:
    """A stack id shaped like CloudFormation's (the local runner derives its UUID the same
    way, from the stack name), so names built from it are stable in tests."""
    digest = hashlib.sha256(stack_name.encode()).hexdigest()
    uuid = f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
    return f"arn:aws:cloudformation:{region}:{account_id}:stack/{stack_name}/{uuid}"


PSEUDO_PARAMETERS = {
    "AWS::StackName": STACK_NAME,
    "AWS::StackId": stack_id(STACK_NAME),
    "AWS::AccountId": ACCOUNT_ID,
    "AWS::Region": REGION,
    "AWS::Partition": "aws",
    "AWS::URLSuffix": "amazonaws.com",
}

REQUIRED_TOOLS = ("sam", "cfn-lint", "checkov", "python")


# --------------------------------------------------------------------------- YAML


class CfnYamlLoader(yaml.SafeLoader):
    """A SafeLoader that turns CloudFormation short tags into their long JSON form.

    `!GetAtt A.B` becomes {"Fn::GetAtt": ["A", "B"]}, `!Ref X` {"Ref": "X"},
    `!Condition C` {"Condition": "C"}, every other `!Fn` {"Fn::Fn": value}.
    """


def _construct_intrinsic(tag: str):
    key = {"Ref": "Ref", "Condition": "Condition"}.get(tag, f"Fn::{tag}")

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return construct


for _tag in (
    "Ref", "Sub", "GetAtt", "If", "Equals", "Not", "Join", "Select", "Split",
    "FindInMap", "Condition", "And", "Or", "Base64", "GetAZs", "ImportValue", "Cidr",
    "Length", "ToJsonString", "Transform",
):
    CfnYamlLoader.add_constructor(f"!{_tag}", _construct_intrinsic(_tag))


def load_cfn_yaml(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=CfnYamlLoader)  # noqa: S506 - SafeLoader subclass


@pytest.fixture(scope="session")
def template() -> dict[str, Any]:
    return load_cfn_yaml(TEMPLATE)


@pytest.fixture(scope="session")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    return template["Resources"]


# --------------------------------------------------------------------------- evaluation


@dataclass
class Stack:
    """Enough of CloudFormation to render names and conditions with given parameters."""

    template: dict[str, Any]
    parameters: dict[str, Any]

    @classmethod
    def with_defaults(cls, template: dict[str, Any], **overrides: Any) -> "Stack":
        params: dict[str, Any] = {}
        for name, spec in template.get("Parameters", {}).items():
            default = spec.get("Default")
            if spec.get("Type") == "CommaDelimitedList" and isinstance(default, str):
                default = default.split(",")
            params[name] = default
        for name, value in overrides.items():
            spec = template["Parameters"][name]
            if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = value.split(",")
            params[name] = value
        params.update(PSEUDO_PARAMETERS)
        return cls(template, params)

    def condition(self, name: str) -> bool:
        return bool(self.resolve(self.template["Conditions"][name]))

    def resolve(self, value: Any) -> Any:
        """Resolve parameters, pseudo parameters, conditions, Sub/Join/Split/If/Equals/...

        Refs to resources resolve to the resource's name property when it has one
        (BucketName, TableName), else to "<LogicalId>"; GetAtt to "<LogicalId>.<Attr>".
        """
        if isinstance(value, list):
            resolved = [self.resolve(item) for item in value]
            return [item for item in resolved if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if len(value) != 1:
            out = {k: self.resolve(v) for k, v in value.items()}
            return {k: v for k, v in out.items() if v is not _NO_VALUE}
        (fn, arg), = value.items()
        if fn == "Ref":
            return self._ref(arg)
        if fn == "Condition":
            return self.condition(arg)
        if fn == "Fn::GetAtt":
            return f"{arg[0]}.{arg[1]}"
        if fn == "Fn::Sub":
            text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], arg[1])
            local = {k: self.resolve(v) for k, v in variables.items()}

            def substitute(match: re.Match[str]) -> str:
                name = match.group(1)
                if name in local:
                    return str(local[name])
                if "." in name and name.split(".", 1)[0] in self.template["Resources"]:
                    return name
                return str(self._ref(name))

            return re.sub(r"\$\{([^}!]+)\}", substitute, text)
        if fn == "Fn::Join":
            return arg[0].join(str(x) for x in self.resolve(arg[1]))
        if fn == "Fn::Split":
            return self.resolve(arg[1]).split(arg[0])
        if fn == "Fn::If":
            return self.resolve(arg[1] if self.condition(arg[0]) else arg[2])
        if fn == "Fn::Equals":
            return self.resolve(arg[0]) == self.resolve(arg[1])
        if fn == "Fn::Not":
            return not self.resolve(arg[0])
        if fn == "Fn::And":
            return all(self.resolve(x) for x in arg)
        if fn == "Fn::Or":
            return any(self.resolve(x) for x in arg)
        if fn == "Fn::Select":
            return self.resolve(arg[1])[int(self.resolve(arg[0]))]
        return {fn: self.resolve(arg)}

    def _ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.parameters:
            return self.parameters[name]
        resource = self.template["Resources"].get(name)
        if resource is None:
            raise KeyError(f"!Ref {name}: no such parameter or resource")
        props = resource.get("Properties", {})
        for prop in ("BucketName", "TableName", "QueueName", "LogGroupName"):
            if prop in props:
                return self.resolve(props[prop])
        return name


_NO_VALUE = object()


@pytest.fixture(scope="session")
def stack(template: dict[str, Any]) -> Stack:
    """The template rendered for the local stack (`atrest`, 123456789012, us-east-1)."""
    return Stack.with_defaults(template)


# --------------------------------------------------------------------------- policies


def statements(document: Any) -> list[dict[str, Any]]:
    """The statements of a policy document, with `!If [c, stmt, NoValue]` entries kept."""
    if not isinstance(document, dict):
        return []
    found = document.get("Statement", [])
    found = found if isinstance(found, list) else [found]
    out = []
    for item in found:
        if isinstance(item, dict) and "Fn::If" in item:
            out.extend(branch for branch in item["Fn::If"][1:] if isinstance(branch, dict) and "Effect" in branch)
        else:
            out.append(item)
    return out


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def identity_policy_statements(resources: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where, statement) for every identity-based IAM policy in the template."""
    for logical_id, resource in resources.items():
        rtype, props = resource.get("Type"), resource.get("Properties", {})
        if rtype == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                for stmt in statements(policy.get("PolicyDocument")):
                    yield f"{logical_id}/{policy.get('PolicyName')}", stmt
        elif rtype in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy", "AWS::IAM::RolePolicy"):
            for stmt in statements(props.get("PolicyDocument")):
                yield logical_id, stmt
        elif rtype == "AWS::Serverless::Function":
            for policy in as_list(props.get("Policies", [])):
                if isinstance(policy, dict) and "Statement" in policy:
                    for stmt in statements(policy):
                        yield f"{logical_id}/Policies", stmt


# --------------------------------------------------------------------------- grants on keys the stack does not own

# Keys of the stack's account and region: where a data class's own key (DataClassKmsKeys) is,
# since CloudFormation cannot turn the parameter's `<class>=<arn>` pairs into a list of ARNs.
ACCOUNT_KEYS = {"Fn::Sub": "arn:${AWS::Partition}:kms:${AWS::Region}:${AWS::AccountId}:key/*"}
GRANT_ADMINISTRATION = {"kms:CreateGrant", "kms:ListGrants"}
KEY_STORE_OPERATIONS = {"Decrypt", "GenerateDataKeyWithoutPlaintext", "ReEncryptFrom", "ReEncryptTo"}
FUNCTION_ROLES = {"EncryptObjectFunctionRole", "ProtectContactFunctionRole", "ExpireKeysFunctionRole",
                  "ReadObjectFunctionRole"}


def resource_values(value: Any) -> list[Any]:
    """Every value a Resource may take: lists flattened, both branches of `Fn::If`, `AWS::NoValue` dropped."""
    if isinstance(value, list):
        return [found for item in value for found in resource_values(item)]
    if isinstance(value, dict) and "Fn::If" in value:
        return [found for branch in value["Fn::If"][1:] for found in resource_values(branch)]
    if value == {"Ref": "AWS::NoValue"}:
        return []
    return [value]


def is_bounded_grant_administration(stmt: dict[str, Any]) -> bool:
    """The grant function's statement that reaches keys the stack does not own: only
    CreateGrant and ListGrants, on the customer's key or keys of the stack's account and
    region, and every grant it can create is for the stack's function roles, with the key
    store's operations only, under the key store's encryption context. What such a grant
    gives a role is the same as a deploy-time grant on a key named in DataClassKmsKeys."""
    actions = set(as_list(stmt.get("Action", [])))
    if not actions or not actions <= GRANT_ADMINISTRATION or "NotResource" in stmt or "NotAction" in stmt:
        return False
    if any(value not in (ACCOUNT_KEYS, {"Ref": "CustomerManagedKeyArn"}) for value in resource_values(stmt.get("Resource"))):
        return False
    if "kms:CreateGrant" not in actions:
        return True
    condition = stmt.get("Condition") or {}
    equals = condition.get("StringEquals") or {}
    grantees = as_list(equals.get("kms:GranteePrincipal", []))
    operations = set(as_list((condition.get("ForAllValues:StringEquals") or {}).get("kms:GrantOperations", [])))
    roles = {g["Fn::GetAtt"][0] if isinstance(g, dict) and "Fn::GetAtt" in g else None for g in grantees}
    # Retirable only by the grant function's own role (issue 15): no outsider may retire them,
    # and the handler takes none with another retiring principal.
    retiring = equals.get("kms:RetiringPrincipal") == {"Fn::GetAtt": ["KmsGrantFunctionRole", "Arn"]}
    return (equals.get("kms:EncryptionContext:tablename") == {"Ref": "KeyStoreTable"}
            and bool(roles) and roles <= FUNCTION_ROLES and retiring
            and bool(operations) and operations <= KEY_STORE_OPERATIONS)


# --------------------------------------------------------------------------- tools


def _python312_dirs() -> list[str]:
    """Directories holding a python3.12 executable: `sam build` looks for it on PATH."""
    candidates = []
    found = shutil.which("python3.12")
    if found:
        candidates.append(str(Path(found).parent))
    candidates += sorted(str(Path(p).parent) for p in glob(str(Path.home() / ".pyenv/versions/3.12*/bin/python3.12")))
    candidates += [d for d in ("/usr/bin", "/usr/local/bin") if Path(d, "python3.12").exists()]
    return candidates


@pytest.fixture(scope="session")
def tools_bin() -> Path:
    configured = os.environ.get("ATREST_TOOLS_BIN")
    where = Path(configured) if configured else REPO / ".venv-tools" / "bin"
    missing = [tool for tool in REQUIRED_TOOLS if not (where / tool).exists()]
    if missing:
        source = "ATREST_TOOLS_BIN" if configured else "the repo's .venv-tools/bin"
        pytest.fail(
            f"template tooling not found: {', '.join(missing)} missing in {where} ({source}). "
            "Run `make test` (it builds .venv-tools from requirements-tools.txt and points "
            "ATREST_TOOLS_BIN at it), or set ATREST_TOOLS_BIN to a bin/ directory holding "
            "sam, cfn-lint and checkov.",
            pytrace=False,
        )
    return where


@pytest.fixture(scope="session")
def tool_env(tools_bin: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(tools_bin), *_python312_dirs(), env.get("PATH", "")])
    env["SAM_CLI_TELEMETRY"] = "0"
    env.setdefault("AWS_DEFAULT_REGION", REGION)
    env.setdefault("AWS_REGION", env["AWS_DEFAULT_REGION"])
    # Tools must not pick up the emulator endpoint the integration tests may export.
    env.pop("AWS_ENDPOINT_URL", None)
    # checkov: no network, no prompts, no colour codes in assertion messages.
    env["BC_SKIP_MAPPING"] = "TRUE"
    env["ANSI_COLORS_DISABLED"] = "1"
    env["NO_COLOR"] = "1"
    return env


@dataclass
class ToolRun:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    def explain(self) -> str:
        return (
            f"$ {' '.join(self.args)}\n(exit {self.returncode}, {self.seconds:.1f}s)\n"
            f"--- stdout ---\n{self.stdout[-6000:]}\n--- stderr ---\n{self.stderr[-6000:]}"
        )


@pytest.fixture(scope="session")
def run_tool(tools_bin: Path, tool_env: dict[str, str]):
    import time

    def run(tool: str, *args: str, timeout: float = 300, cwd: Path = REPO) -> ToolRun:
        argv = [str(tools_bin / tool), *args]
        started = time.monotonic()
        try:
            done = subprocess.run(
                argv, cwd=cwd, env=tool_env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as error:
            pytest.fail(f"{tool} did not finish within {timeout:.0f}s: {' '.join(argv)}\n{error.stdout or ''}")
        return ToolRun(argv, done.returncode, done.stdout, done.stderr, time.monotonic() - started)

    return run


@pytest.fixture(scope="session")
def translated_template() -> dict[str, Any]:
    """template.yaml translated to plain CloudFormation by aws-sam-translator, in-process
    (the test environment has it): what `sam deploy` hands CloudFormation, so tests can
    judge what SAM generates (event rules, function URLs, permissions), not what we wrote.
    The same translation the local stack deploys (`atrest_cli.local.template.translate_sam`)."""
    from atrest_cli.local.template import load_template, translate_sam

    translated, _ = translate_sam(load_template(TEMPLATE), stack_name=STACK_NAME, region=REGION, account_id=ACCOUNT_ID)
    # Through JSON, as CloudFormation receives it: no YAML-only types, no shared objects.
    return json.loads(json.dumps(translated))


@pytest.fixture(scope="session")
def translated_template_path(translated_template: dict[str, Any], tmp_path_factory) -> Path:
    """The translation written to a file, for the tools (checkov) to scan."""
    out = tmp_path_factory.mktemp("translated") / "template.json"
    out.write_text(json.dumps(translated_template, indent=2, sort_keys=True), encoding="utf-8")
    return out
