"""Reading `template.yaml` the way CloudFormation and SAM read it, for the local runner.

- `load_template`: YAML with the CloudFormation short tags (`!Ref`, `!Sub`, `!GetAtt`, ...).
- `StackTemplate`: the CloudFormation SAM's own translator (aws-sam-translator, what
  `sam deploy` runs) makes of the template, offline: what a stack on AWS is made of,
  SAM's generated resources included, and the order resources can be created in.
- `TemplateEvaluator`: parameters (defaults and overrides, validated), conditions and
  intrinsic functions, with references to resources answered from `ResourceRecord`s.

SAM is never re-implemented here: a defect in how SAM reads a property (for example an
`!If` in a SAM event's `Enabled`) reaches the local stack as it reaches AWS. Only the
CloudFormation intrinsics a template of this kind uses are evaluated; anything else
raises `TemplateError` naming the construct, rather than being guessed at.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import yaml

SERVERLESS_FUNCTION = "AWS::Serverless::Function"
SERVERLESS_LAYER = "AWS::Serverless::LayerVersion"


class TemplateError(ValueError):
    """The template cannot be read or evaluated; the message names the resource or construct."""


# -- YAML with CloudFormation short tags -------------------------------------------------

_SHORT_TAGS = {
    "Ref": "Ref",
    "Condition": "Condition",
    "GetAtt": "Fn::GetAtt",
    **{
        name: f"Fn::{name}"
        for name in (
            "Sub", "If", "Equals", "Not", "And", "Or", "Join", "Select", "Split", "FindInMap",
            "ImportValue", "Base64", "GetAZs", "Cidr", "Transform", "ToJsonString", "Length",
        )
    },
}


class CfnYamlLoader(yaml.SafeLoader):
    """A safe YAML loader that turns `!Ref X` into `{"Ref": "X"}`, `!GetAtt A.B` into
    `{"Fn::GetAtt": ["A", "B"]}`, and every other short tag into its `Fn::` form."""


def _construct_short_tag(loader: CfnYamlLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = _SHORT_TAGS.get(tag_suffix)
    if name is None:
        raise TemplateError(f"unknown CloudFormation tag !{tag_suffix} at line {node.start_mark.line + 1}")
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if name == "Fn::GetAtt":
            logical_id, _, attribute = str(value).partition(".")
            value = [logical_id, attribute]
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


CfnYamlLoader.add_multi_constructor("!", _construct_short_tag)


def load_template(path: str | Path) -> dict[str, Any]:
    """The template at `path` as plain data (short tags expanded to their long form)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(f"no template at {path}") from None
    if text.lstrip().startswith("{"):
        document = json.loads(text)
    else:
        document = yaml.load(text, Loader=CfnYamlLoader)  # noqa: S506 - CfnYamlLoader is a SafeLoader
    if not isinstance(document, dict) or not isinstance(document.get("Resources"), dict):
        raise TemplateError(f"{path} is not a CloudFormation template (no Resources section)")
    return document


# -- the template as CloudFormation receives it: after SAM's translation ----------------

# Local code locations stand in as S3 locations during the translation (as `sam package`
# would upload them); the key names the resource, so the translated code maps back to its folder.
LOCAL_ARTIFACT_BUCKET = "atrest-local-artifacts"
_CODE_PROPERTIES = {
    SERVERLESS_FUNCTION: "CodeUri",
    SERVERLESS_LAYER: "ContentUri",
    "AWS::Serverless::StateMachine": "DefinitionUri",
}


def generated_name(stack_name: str, logical_id: str, max_length: int, *, lowercase: bool = False) -> str:
    """The name CloudFormation would generate for an unnamed resource (`<stack>-<logical id>-<suffix>`),
    with a suffix derived from stack and logical id instead of a random one, so that
    provisioning the same stack twice finds the same resources."""
    suffix = hashlib.sha256(f"{stack_name}/{logical_id}".encode()).hexdigest()[:12].upper()
    stem = f"{stack_name}-{logical_id}"[: max_length - len(suffix) - 1]
    name = f"{stem}-{suffix}"
    return name.lower() if lowercase else name


class _NoManagedPolicies:
    """The translator asks for AWS managed policy ARNs only when a function names one by
    its short name (SAM policy templates and `Policies: [AWSLambdaBasicExecutionRole]`)."""

    def load(self) -> dict[str, str]:
        return {}


def _parameter_text(value: Any) -> str:
    if isinstance(value, list):
        return ",".join(_as_text(item) for item in value)
    return _as_text(value)


def translate_sam(
    document: Mapping[str, Any],
    *,
    stack_name: str,
    region: str,
    account_id: str,
    parameter_values: Mapping[str, Any] = {},
) -> tuple[dict[str, Any], dict[str, str]]:
    """`document` (a SAM template) as SAM's translator hands it to CloudFormation, and the
    local path of every code artifact by the artifact key it was replaced with.

    It runs the translator `sam build`/`sam deploy` run (aws-sam-translator), offline: Globals,
    implicit resources (event source mappings, rules, permissions, function URLs, roles)
    and SAM's own reading of intrinsics in SAM properties all come out as on AWS.
    A template without the SAM transform is returned unchanged."""
    document = copy.deepcopy(dict(document))
    if "AWS::Serverless-2016-10-31" not in _transforms(document):
        return document, {}
    from samtranslator.model.exceptions import InvalidDocumentException
    from samtranslator.translator.transform import transform

    artifacts: dict[str, str] = {}
    for logical_id, resource in (document.get("Resources") or {}).items():
        code_property = _CODE_PROPERTIES.get(resource.get("Type")) if isinstance(resource, dict) else None
        properties = (resource.get("Properties") or {}) if code_property else {}
        location = properties.get(code_property) if code_property else None
        if isinstance(location, str) and not location.startswith("s3://"):
            key = f"{logical_id}.zip"
            artifacts[key] = location
            properties[code_property] = f"s3://{LOCAL_ARTIFACT_BUCKET}/{key}"
    declared = document.get("Parameters") or {}
    values: dict[str, Any] = {
        name: _parameter_text(parameter_values[name] if name in parameter_values else (spec or {}).get("Default", ""))
        for name, spec in declared.items()
    }
    values.update({"AWS::Region": region, "AWS::AccountId": account_id, "AWS::Partition": "aws", "AWS::StackName": stack_name})
    # The translator asks boto3 for a region even when AWS::Region is given.
    previous_region = os.environ.get("AWS_DEFAULT_REGION")
    os.environ.setdefault("AWS_DEFAULT_REGION", region)
    try:
        translated = transform(document, values, _NoManagedPolicies(), passthrough_metadata=True)
    except InvalidDocumentException as error:
        causes = "; ".join(str(cause) for cause in error.causes) or str(error)
        raise TemplateError(f"SAM's translator refuses the template: {causes}") from None
    finally:
        if previous_region is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
    return translated, artifacts


def _transforms(document: Mapping[str, Any]) -> list[str]:
    transform = document.get("Transform")
    if transform is None:
        return []
    return [transform] if isinstance(transform, str) else [str(item) for item in transform]


@dataclass
class StackTemplate:
    """The CloudFormation template a stack deploys: `template.yaml` after SAM's translation.

    `resources` holds every resource CloudFormation would create, SAM's generated ones
    included (roles, event source mappings, rules, permissions, function URLs, layer
    versions with their hashed logical ids). `code_path(properties)` gives the local
    folder or file behind a translated function's `Code`, a layer's `Content` or a state
    machine's `DefinitionS3Location`."""

    path: Path
    document: dict[str, Any]
    artifacts: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        stack_name: str = "atrest",
        region: str = "us-east-1",
        account_id: str = "123456789012",
        parameter_values: Mapping[str, Any] = {},
    ) -> "StackTemplate":
        path = Path(path).resolve()
        document, artifacts = translate_sam(
            load_template(path), stack_name=stack_name, region=region, account_id=account_id,
            parameter_values=parameter_values,
        )
        for logical_id, definition in document["Resources"].items():
            if not isinstance(definition, dict) or "Type" not in definition:
                raise TemplateError(f"resource {logical_id} has no Type")
        return cls(path=path, document=document, artifacts=artifacts)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        return self.document["Resources"]

    @property
    def directory(self) -> Path:
        return self.path.parent

    @property
    def parameters(self) -> dict[str, Any]:
        return self.document.get("Parameters") or {}

    @property
    def outputs(self) -> dict[str, Any]:
        return self.document.get("Outputs") or {}

    def definition(self, logical_id: str) -> dict[str, Any]:
        return self.resources[logical_id]

    def code_path(self, location: Any) -> Path | None:
        """The local path behind a translated code location (`{"S3Bucket", "S3Key"}` or
        `{"Bucket", "Key"}`), or None when it is a real S3 location."""
        if not isinstance(location, Mapping):
            return None
        bucket = location.get("S3Bucket", location.get("Bucket"))
        key = location.get("S3Key", location.get("Key"))
        if bucket != LOCAL_ARTIFACT_BUCKET or key not in self.artifacts:
            return None
        return (self.directory / self.artifacts[key]).resolve()

    def creation_order(self, active: Iterable[str]) -> list[str]:
        """`active` resources ordered so each comes after everything it references
        (Ref, GetAtt, Sub, DependsOn); template order breaks ties."""
        active_ids = [logical_id for logical_id in self.resources if logical_id in set(active)]
        known = set(active_ids)
        dependencies = {
            logical_id: {dep for dep in resource_dependencies(self.resources[logical_id]) if dep in known and dep != logical_id}
            for logical_id in active_ids
        }
        ordered: list[str] = []
        placed: set[str] = set()
        while len(ordered) < len(active_ids):
            ready = [lid for lid in active_ids if lid not in placed and dependencies[lid] <= placed]
            if not ready:
                stuck = sorted(lid for lid in active_ids if lid not in placed)
                raise TemplateError(f"circular dependency between resources: {', '.join(stuck)}")
            ordered.append(ready[0])
            placed.add(ready[0])
        return ordered


_SUB_VARIABLE = re.compile(r"\$\{([^}]*)\}")


def _sub_references(template: str, variables: Mapping[str, Any] = {}) -> Iterator[str]:
    for match in _SUB_VARIABLE.finditer(template):
        name = match.group(1)
        if name.startswith("!") or name in variables:
            continue
        yield name.split(".", 1)[0]


def resource_dependencies(definition: Any) -> set[str]:
    """Every logical id a resource definition references (may include parameters and
    pseudo parameters; callers intersect with the resource ids)."""
    found: set[str] = set()
    depends_on = definition.get("DependsOn") if isinstance(definition, dict) else None
    if isinstance(depends_on, str):
        found.add(depends_on)
    elif isinstance(depends_on, list):
        found.update(depends_on)

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if len(node) == 1:
                (key, argument), = node.items()
                if key == "Ref" and isinstance(argument, str):
                    found.add(argument)
                    return
                if key == "Fn::GetAtt":
                    target = argument.split(".", 1)[0] if isinstance(argument, str) else argument[0]
                    if isinstance(target, str):
                        found.add(target)
                    return
                if key == "Fn::Sub":
                    if isinstance(argument, str):
                        found.update(_sub_references(argument))
                        return
                    if isinstance(argument, list) and argument and isinstance(argument[0], str):
                        variables = argument[1] if len(argument) > 1 and isinstance(argument[1], dict) else {}
                        found.update(_sub_references(argument[0], variables))
                        walk(variables)
                        return
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(definition.get("Properties") if isinstance(definition, dict) else definition)
    return found


# -- evaluation --------------------------------------------------------------------------


class _NoValue:
    def __repr__(self) -> str:
        return "AWS::NoValue"


NO_VALUE: Any = _NoValue()
"""What `Ref: AWS::NoValue` evaluates to; `TemplateEvaluator.resolve` drops it from maps and lists."""


@dataclass
class ResourceRecord:
    """One resource of a local stack: what `Ref` returns (`physical_id`) and what
    `Fn::GetAtt` can read (`attributes`).

    `status`: `created` (exists in the emulator), `recorded` (known to the runner, not
    an emulator resource, such as functions and layers) or `skipped` (not emulated; `note` says why).
    """

    logical_id: str
    type: str
    physical_id: str
    attributes: dict[str, Any] = field(default_factory=dict)
    status: str = "created"
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"type": self.type, "physical_id": self.physical_id, "attributes": self.attributes, "status": self.status}
        if self.note:
            data["note"] = self.note
        return data

    @classmethod
    def from_json(cls, logical_id: str, data: Mapping[str, Any]) -> "ResourceRecord":
        return cls(
            logical_id=logical_id,
            type=data["type"],
            physical_id=data["physical_id"],
            attributes=dict(data.get("attributes") or {}),
            status=data.get("status", "created"),
            note=data.get("note"),
        )


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (str, int, float)):
        return str(value)
    raise TemplateError(f"expected a string, got {value!r}")


@dataclass
class TemplateEvaluator:
    """Evaluates parameters, conditions and intrinsic functions of one template for one
    stack. `resources` is read when a `Ref`/`GetAtt` names a resource, so it may fill up
    while the stack is being provisioned."""

    template: StackTemplate
    stack_name: str
    region: str
    account_id: str
    parameter_overrides: Mapping[str, Any] = field(default_factory=dict)
    resources: Mapping[str, ResourceRecord] = field(default_factory=dict)
    parameters: dict[str, Any] = field(init=False)
    _conditions: dict[str, bool] = field(init=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.parameters = self._resolve_parameters()

    # -- parameters and pseudo parameters ------------------------------------------------

    def _resolve_parameters(self) -> dict[str, Any]:
        declared = self.template.parameters
        unknown = sorted(set(self.parameter_overrides) - set(declared))
        if unknown:
            raise TemplateError(
                f"parameter override(s) {', '.join(unknown)} not declared in {self.template.path.name}; "
                f"declared: {', '.join(declared) or 'none'}"
            )
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, spec in declared.items():
            spec = spec or {}
            if name in self.parameter_overrides:
                raw = self.parameter_overrides[name]
            elif "Default" in spec:
                raw = spec["Default"]
            else:
                problems.append(f"{name} has no default and no override")
                continue
            parameter_type = str(spec.get("Type", "String"))
            if isinstance(raw, list):
                raw = ",".join(_as_text(item) for item in raw)
            text = _as_text(raw)
            if parameter_type == "CommaDelimitedList" or parameter_type.startswith("List<"):
                values[name] = [item.strip() for item in text.split(",")] if text else []
                continue
            if spec.get("AllowedValues") is not None and text not in [_as_text(v) for v in spec["AllowedValues"]]:
                problems.append(f"{name}={text!r} is not one of {spec['AllowedValues']}")
            if spec.get("AllowedPattern") and not re.fullmatch(str(spec["AllowedPattern"]), text):
                problems.append(f"{name}={text!r} does not match {spec['AllowedPattern']}")
            if "MinLength" in spec and len(text) < int(spec["MinLength"]):
                problems.append(f"{name} is shorter than {spec['MinLength']}")
            if "MaxLength" in spec and len(text) > int(spec["MaxLength"]):
                problems.append(f"{name} is longer than {spec['MaxLength']}")
            if parameter_type == "Number":
                try:
                    number = float(text)
                except ValueError:
                    problems.append(f"{name}={text!r} is not a number")
                else:
                    if "MinValue" in spec and number < float(spec["MinValue"]):
                        problems.append(f"{name}={text} is below {spec['MinValue']}")
                    if "MaxValue" in spec and number > float(spec["MaxValue"]):
                        problems.append(f"{name}={text} is above {spec['MaxValue']}")
            values[name] = text
        if problems:
            raise TemplateError("template parameters are not valid: " + "; ".join(problems))
        return values

    def pseudo_parameter(self, name: str) -> Any:
        stack_id_suffix = hashlib.sha256(self.stack_name.encode()).hexdigest()
        pseudo = {
            "AWS::AccountId": self.account_id,
            "AWS::Region": self.region,
            "AWS::StackName": self.stack_name,
            "AWS::StackId": (
                f"arn:aws:cloudformation:{self.region}:{self.account_id}:stack/{self.stack_name}/"
                f"{stack_id_suffix[:8]}-{stack_id_suffix[8:12]}-{stack_id_suffix[12:16]}-"
                f"{stack_id_suffix[16:20]}-{stack_id_suffix[20:32]}"
            ),
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        if name not in pseudo:
            raise TemplateError(f"unknown pseudo parameter {name}")
        return pseudo[name]

    # -- conditions ----------------------------------------------------------------------

    def condition(self, name: str) -> bool:
        """The value of the template condition `name`."""
        if name not in self._conditions:
            declared = self.template.document.get("Conditions") or {}
            if name not in declared:
                raise TemplateError(f"condition {name} is not declared in Conditions")
            self._conditions[name] = False  # guards against a condition that refers to itself
            self._conditions[name] = self._condition_value(declared[name])
        return self._conditions[name]

    def _condition_value(self, node: Any) -> bool:
        if isinstance(node, dict) and len(node) == 1 and "Condition" in node:
            return self.condition(node["Condition"])
        value = self.resolve(node)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise TemplateError(f"a condition must be a boolean, got {value!r}")

    def is_active(self, logical_id: str) -> bool:
        """Whether a resource (or output) exists: false when its `Condition` is false."""
        definition = self.template.definition(logical_id)
        condition = definition.get("Condition")
        return True if not condition else self.condition(condition)

    # -- intrinsic functions -------------------------------------------------------------

    def resolve(self, node: Any) -> Any:
        """`node` with every intrinsic function evaluated and `AWS::NoValue` removed."""
        if isinstance(node, list):
            items = [self.resolve(item) for item in node]
            return [item for item in items if item is not NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, argument), = node.items()
            if key == "Ref":
                return self.ref(argument)
            if key.startswith("Fn::"):
                return self._function(key, argument)
        resolved = {key: self.resolve(value) for key, value in node.items()}
        return {key: value for key, value in resolved.items() if value is not NO_VALUE}

    def ref(self, name: str) -> Any:
        if not isinstance(name, str):
            raise TemplateError(f"Ref needs a name, got {name!r}")
        if name.startswith("AWS::"):
            return self.pseudo_parameter(name)
        if name in self.parameters:
            return self.parameters[name]
        return self._resource(name).physical_id

    def get_att(self, logical_id: str, attribute: str) -> Any:
        record = self._resource(logical_id)
        if attribute not in record.attributes:
            available = ", ".join(sorted(record.attributes)) or "none"
            raise TemplateError(f"{logical_id} ({record.type}) has no attribute {attribute} locally; available: {available}")
        return record.attributes[attribute]

    def _resource(self, logical_id: str) -> ResourceRecord:
        record = self.resources.get(logical_id)
        if record is not None:
            return record
        if logical_id in self.template.resources:
            raise TemplateError(f"{logical_id} is referenced before it exists (or its Condition is false)")
        raise TemplateError(f"{logical_id} is not a parameter or resource of {self.template.path.name}")

    def _function(self, name: str, argument: Any) -> Any:
        handler = getattr(self, "_fn_" + name[4:].lower(), None)
        if handler is None:
            raise TemplateError(f"{name} is not supported by the local runner")
        return handler(argument)

    def _fn_getatt(self, argument: Any) -> Any:
        if isinstance(argument, str):
            argument = argument.split(".", 1)
        logical_id, attribute = self.resolve(argument[0]), self.resolve(argument[1])
        return self.get_att(logical_id, attribute)

    def _fn_sub(self, argument: Any) -> str:
        if isinstance(argument, list):
            template, variables = argument[0], {k: self.resolve(v) for k, v in (argument[1] if len(argument) > 1 else {}).items()}
        else:
            template, variables = argument, {}

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return _as_text(variables[name])
            if "." in name and not name.startswith("AWS::"):
                logical_id, attribute = name.split(".", 1)
                return _as_text(self.get_att(logical_id, attribute))
            value = self.ref(name)
            if isinstance(value, list):
                raise TemplateError(f"${{{name}}} is a list; Fn::Sub needs a string")
            return _as_text(value)

        return _SUB_VARIABLE.sub(substitute, _as_text(template))

    def _fn_if(self, argument: Any) -> Any:
        condition_name, when_true, when_false = argument
        return self.resolve(when_true if self.condition(condition_name) else when_false)

    def _fn_equals(self, argument: Any) -> bool:
        left, right = (self.resolve(value) for value in argument)
        if isinstance(left, list) or isinstance(right, list):
            return left == right
        return _as_text(left) == _as_text(right)

    def _fn_not(self, argument: Any) -> bool:
        return not self._condition_value(argument[0])

    def _fn_and(self, argument: Any) -> bool:
        return all(self._condition_value(value) for value in argument)

    def _fn_or(self, argument: Any) -> bool:
        return any(self._condition_value(value) for value in argument)

    def _fn_join(self, argument: Any) -> str:
        delimiter, values = argument
        values = self.resolve(values)
        if not isinstance(values, list):
            raise TemplateError(f"Fn::Join needs a list, got {values!r}")
        return _as_text(self.resolve(delimiter)).join(_as_text(value) for value in values)

    def _fn_select(self, argument: Any) -> Any:
        index, values = int(_as_text(self.resolve(argument[0]))), self.resolve(argument[1])
        if not isinstance(values, list) or not 0 <= index < len(values):
            raise TemplateError(f"Fn::Select index {index} is outside {values!r}")
        return values[index]

    def _fn_split(self, argument: Any) -> list[str]:
        delimiter, text = argument
        return _as_text(self.resolve(text)).split(_as_text(self.resolve(delimiter)))

    def _fn_findinmap(self, argument: Any) -> Any:
        map_name, first, second = (self.resolve(value) for value in argument[:3])
        mappings = self.template.document.get("Mappings") or {}
        try:
            return mappings[map_name][_as_text(first)][_as_text(second)]
        except KeyError:
            if len(argument) > 3 and isinstance(argument[3], dict) and "DefaultValue" in argument[3]:
                return self.resolve(argument[3]["DefaultValue"])
            raise TemplateError(f"Fn::FindInMap: no {map_name}/{first}/{second} in Mappings") from None

    def _fn_base64(self, argument: Any) -> str:
        return base64.b64encode(_as_text(self.resolve(argument)).encode()).decode()

    def _fn_getazs(self, argument: Any) -> list[str]:
        region = self.resolve(argument) or self.region
        return [f"{region}{zone}" for zone in "abc"]

    def _fn_tojsonstring(self, argument: Any) -> str:
        return json.dumps(self.resolve(argument), separators=(",", ":"))

    def _fn_length(self, argument: Any) -> int:
        value = self.resolve(argument)
        if not isinstance(value, list):
            raise TemplateError(f"Fn::Length needs a list, got {value!r}")
        return len(value)

    def _fn_importvalue(self, argument: Any) -> Any:
        raise TemplateError(
            f"Fn::ImportValue {argument!r} reads another stack's exports; the local runner has one stack only"
        )

    # -- outputs -------------------------------------------------------------------------

    def outputs(self) -> dict[str, Any]:
        """Every template output whose condition holds, evaluated."""
        values: dict[str, Any] = {}
        for name, output in self.template.outputs.items():
            condition = output.get("Condition")
            if condition and not self.condition(condition):
                continue
            values[name] = self.resolve(output.get("Value"))
        return values
