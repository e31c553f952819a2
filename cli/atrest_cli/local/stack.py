"""Provisioning `template.yaml` into the emulator, and the resulting `LocalStackState`.

`provision()` deploys what AWS would deploy: the CloudFormation SAM's translator makes of
the template (`atrest_cli.local.template.StackTemplate`), not a reading of SAM by hand. In
dependency order it creates the resources the emulator can hold (KMS keys and aliases,
S3 buckets and bucket policies, DynamoDB tables, SQS queues and queue policies,
EventBridge pattern rules, IAM roles and their policies). Functions, layers, event
source mappings and state machines are recorded, not created: Lambda needs Docker, so
the runner (`atrest_cli.local.runner`) calls handlers in this process, polls the mappings'
queues and table streams, relays pattern rules with Lambda targets through a queue, and fires schedule
rules on their rate. A custom resource whose `ServiceToken` is a function of the stack
(`Custom::KmsGrants`) is run as CloudFormation runs it: its handler gets a Create request,
in-process with its own role's credentials, and answers to a response URL on loopback; an
answer of FAILED fails the provisioning with its reason. Everything else is recorded with
the names and ARNs CloudFormation would give it, so references resolve, and with a note
saying why it is not emulated: `LocalStackState.notes` lists them (`atrest local up` prints
them), nothing is dropped silently.

Provisioning is idempotent: names are derived from stack and logical id, the KMS key
is found again by its tags, and existing resources are reconfigured, not duplicated. A
custom resource gets the same request id for the same properties, so a handler that takes
nothing twice for a request (KmsGrants) makes nothing new; provisioning again with other
properties does not retire what the first request made (nothing plays CloudFormation's
update and cleanup: a new `atrest local up` starts from an empty emulator).

`create_data_class_kms_keys` makes the KMS keys a stack with `DataClassKmsKeys` names, as
the customer would before deploying (docs/byok.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sys
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Protocol

from botocore.exceptions import ClientError

from atrest_cli.local.iam_enforcement import create_role, put_role_policy
from atrest_cli.local.streams import skip_to_latest
from atrest_cli.local.template import (
    ResourceRecord,
    StackTemplate,
    TemplateError,
    TemplateEvaluator,
    generated_name,
)

STATE_FORMAT = "atrest-local-stack/1"
DEFAULT_STATE_FILE = Path(".atrest") / "local-stack.json"

# The tags CloudFormation puts on what it creates; provisioning finds its KMS key by them.
STACK_NAME_TAG = "aws:cloudformation:stack-name"
LOGICAL_ID_TAG = "aws:cloudformation:logical-id"


class AwsEndpoint(Protocol):
    """What provisioning needs from an emulator (`atrest_cli.local.emulator.Emulator` is one)."""

    endpoint: str
    region: str
    account_id: str

    def client(self, service: str) -> Any: ...


# -- what the runner needs to know about functions ---------------------------------------


@dataclass
class SqsEventSource:
    """An SQS event source mapping (a SAM `Type: SQS` event or an `AWS::Lambda::EventSourceMapping`)."""

    event_id: str
    queue_logical_id: str
    queue_url: str
    queue_arn: str
    batch_size: int = 10
    maximum_batching_window_seconds: int = 0
    function_response_types: list[str] = field(default_factory=list)
    enabled: bool = True

    @property
    def report_batch_item_failures(self) -> bool:
        return "ReportBatchItemFailures" in self.function_response_types


@dataclass
class DynamoDbStreamSource:
    """A DynamoDB stream event source mapping (a SAM `Type: DynamoDB` event, or an
    `AWS::Lambda::EventSourceMapping` whose EventSourceArn is a table's `StreamArn`).
    `maximum_retry_attempts` -1 (AWS's default): retried until the records expire on AWS,
    until the runner stops locally. `on_failure_queue_url`: the OnFailure destination when
    it is a queue of this stack (else "")."""

    event_id: str
    table_logical_id: str
    table_name: str
    stream_arn: str
    batch_size: int = 100
    starting_position: str = "TRIM_HORIZON"
    maximum_retry_attempts: int = -1
    bisect_batch_on_function_error: bool = False
    function_response_types: list[str] = field(default_factory=list)
    on_failure_queue_url: str = ""
    enabled: bool = True

    @property
    def report_batch_item_failures(self) -> bool:
        return "ReportBatchItemFailures" in self.function_response_types


_RATE = re.compile(r"^rate\(\s*(\d+)\s+(minute|minutes|hour|hours|day|days)\s*\)$")
_RATE_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> float | None:
    """The period of an EventBridge `rate(...)` expression in seconds; None for `cron(...)`.
    Raises ValueError for an expression EventBridge would refuse (`rate(1 hours)`, `rate(0 minutes)`)."""
    if expression.startswith("cron("):
        return None
    match = _RATE.match(expression.strip())
    if match is None:
        raise ValueError(f"not an EventBridge schedule expression: {expression!r}")
    value, unit = int(match.group(1)), match.group(2)
    # EventBridge: the unit is singular for 1 and plural otherwise; 0 is refused.
    if value == 0 or (value == 1) != (not unit.endswith("s")):
        raise ValueError(f"EventBridge refuses {expression!r}: use rate(1 {unit.rstrip('s')}) or rate(N {unit.rstrip('s')}s) with N > 1")
    return float(value * _RATE_UNIT_SECONDS[unit.rstrip("s")])


@dataclass
class ScheduleSource:
    """A schedule rule that targets a function or state machine (what SAM's `Schedule`
    event translates into, or a schedule `AWS::Events::Rule` of the template), with the
    `State` and target `Input` CloudFormation gives it. moto never fires schedules: the
    runner fires it on its rate."""

    event_id: str
    expression: str
    rule_name: str
    rule_arn: str
    input: Any = None
    enabled: bool = True

    @property
    def period_seconds(self) -> float | None:
        """How often the rule fires (None: a cron expression, fired only when asked)."""
        return rate_seconds(self.expression)


@dataclass
class EventBridgeSource:
    """A pattern rule that invokes a function (SAM `EventBridgeRule`/`CloudWatchEvent` events).

    moto cannot invoke Lambda targets, so the rule targets a relay queue instead; the runner
    invokes the function with each event (asynchronously: up to 3 attempts, then the
    event goes to the relay's dead-letter queue)."""

    event_id: str
    rule_name: str
    rule_arn: str
    relay_queue_url: str
    relay_queue_arn: str
    relay_dead_letter_queue_url: str


@dataclass
class LocalFunction:
    """A function of the template as the runner runs it: code, handler, settings and the
    environment with every reference resolved against the local stack."""

    logical_id: str
    function_name: str
    arn: str
    code_dir: str
    handler: str
    runtime: str
    timeout: int
    memory_size: int
    environment: dict[str, str]
    layer_dirs: list[str] = field(default_factory=list)
    log_group_name: str = ""
    sqs_sources: list[SqsEventSource] = field(default_factory=list)
    schedule_sources: list[ScheduleSource] = field(default_factory=list)
    eventbridge_sources: list[EventBridgeSource] = field(default_factory=list)
    dynamodb_sources: list[DynamoDbStreamSource] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # The execution role (its ARN as the template resolves it): the local runtime runs
    # the function with credentials of this role, assumed in the emulator.
    role_arn: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "LocalFunction":
        values = dict(data)
        values["sqs_sources"] = [SqsEventSource(**item) for item in data.get("sqs_sources", [])]
        values["schedule_sources"] = [ScheduleSource(**item) for item in data.get("schedule_sources", [])]
        values["eventbridge_sources"] = [EventBridgeSource(**item) for item in data.get("eventbridge_sources", [])]
        values["dynamodb_sources"] = [DynamoDbStreamSource(**item) for item in data.get("dynamodb_sources", [])]
        return cls(**values)


@dataclass
class LocalStateMachine:
    """A Step Functions state machine of the template: its definition with the
    DefinitionSubstitutions applied (as CloudFormation applies them), name, ARN and role."""

    logical_id: str
    name: str
    arn: str
    role_arn: str
    definition: str
    schedule_sources: list[ScheduleSource] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "LocalStateMachine":
        values = dict(data)
        values["schedule_sources"] = [ScheduleSource(**item) for item in data.get("schedule_sources", [])]
        return cls(**values)


# -- the provisioned stack ---------------------------------------------------------------


@dataclass
class LocalStackState:
    """A stack provisioned into an emulator: every resource's physical name and attributes,
    the evaluated template outputs and the functions the runner runs. Written as JSON to
    the state file (`.atrest/local-stack.json`) by `atrest local up` for `atrest local invoke`."""

    stack_name: str
    region: str
    account_id: str
    endpoint: str
    template_path: str
    parameters: dict[str, Any]
    resources: dict[str, ResourceRecord]
    outputs: dict[str, Any]
    functions: dict[str, LocalFunction]
    notes: list[str] = field(default_factory=list)
    state_machines: dict[str, LocalStateMachine] = field(default_factory=dict)

    def physical_id(self, logical_id: str) -> str:
        """What `Ref` gives for a resource (bucket/table name, queue URL, KMS key id, ...)."""
        return self._record(logical_id).physical_id

    def attribute(self, logical_id: str, name: str) -> Any:
        """What `Fn::GetAtt` gives (`Arn`, `QueueName`, `StreamArn`, ...)."""
        record = self._record(logical_id)
        if name not in record.attributes:
            raise KeyError(f"{logical_id} has no attribute {name}; it has {', '.join(sorted(record.attributes))}")
        return record.attributes[name]

    def state_machine(self, logical_id: str) -> LocalStateMachine:
        if logical_id not in self.state_machines:
            known = ", ".join(sorted(self.state_machines)) or "none"
            raise KeyError(f"no state machine {logical_id} in stack {self.stack_name}; state machines: {known}")
        return self.state_machines[logical_id]

    def function(self, logical_id: str) -> LocalFunction:
        if logical_id not in self.functions:
            known = ", ".join(sorted(self.functions)) or "none"
            raise KeyError(f"no function {logical_id} in stack {self.stack_name}; functions: {known}")
        return self.functions[logical_id]

    def _record(self, logical_id: str) -> ResourceRecord:
        if logical_id not in self.resources:
            raise KeyError(f"no resource {logical_id} in stack {self.stack_name}")
        return self.resources[logical_id]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "stack_name": self.stack_name,
            "region": self.region,
            "account_id": self.account_id,
            "endpoint": self.endpoint,
            "template_path": self.template_path,
            "parameters": self.parameters,
            "resources": {logical_id: record.to_json() for logical_id, record in self.resources.items()},
            "outputs": self.outputs,
            "functions": {logical_id: function.to_json() for logical_id, function in self.functions.items()},
            "notes": self.notes,
            "state_machines": {logical_id: machine.to_json() for logical_id, machine in self.state_machines.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "LocalStackState":
        if data.get("format") != STATE_FORMAT:
            raise ValueError(f"not an atrest local stack state (format {data.get('format')!r}, expected {STATE_FORMAT})")
        return cls(
            stack_name=data["stack_name"],
            region=data["region"],
            account_id=data["account_id"],
            endpoint=data["endpoint"],
            template_path=data["template_path"],
            parameters=dict(data.get("parameters") or {}),
            resources={lid: ResourceRecord.from_json(lid, rec) for lid, rec in (data.get("resources") or {}).items()},
            outputs=dict(data.get("outputs") or {}),
            functions={lid: LocalFunction.from_json(fn) for lid, fn in (data.get("functions") or {}).items()},
            notes=list(data.get("notes") or []),
            state_machines={lid: LocalStateMachine.from_json(m) for lid, m in (data.get("state_machines") or {}).items()},
        )

    def write(self, path: str | Path = DEFAULT_STATE_FILE) -> Path:
        """Write the state file atomically (readers never see half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + f".{os.getpid()}.partial")
        partial.write_text(json.dumps(self.to_json(), indent=2, sort_keys=False) + "\n", encoding="utf-8")
        partial.replace(path)
        return path

    @classmethod
    def read(cls, path: str | Path = DEFAULT_STATE_FILE) -> "LocalStackState":
        return cls.from_json(json.loads(Path(path).read_text(encoding="utf-8")))


# -- provisioning ------------------------------------------------------------------------


def provision(
    template_path: str | Path,
    emulator: AwsEndpoint,
    *,
    stack_name: str = "atrest",
    parameters: Mapping[str, Any] | None = None,
) -> LocalStackState:
    """Create the stack of `template_path` in `emulator`; returns what was created.

    Calling it again with the same stack name on the same emulator finds and
    reconfigures the same resources. Raises `TemplateError` for templates it cannot
    evaluate (the message names the resource) and botocore's `ClientError` when the
    emulator refuses a resource.
    """
    template = StackTemplate.load(
        template_path, stack_name=stack_name, region=emulator.region, account_id=emulator.account_id,
        parameter_values=dict(parameters or {}),
    )
    records: dict[str, ResourceRecord] = {}
    evaluator = TemplateEvaluator(
        template,
        stack_name=stack_name,
        region=emulator.region,
        account_id=emulator.account_id,
        parameter_overrides=dict(parameters or {}),
        resources=records,
    )
    builder = _StackBuilder(emulator, template, evaluator, records, stack_name)
    active = [logical_id for logical_id in template.resources if evaluator.is_active(logical_id)]
    for logical_id in template.creation_order(active):
        definition = template.resources[logical_id]
        try:
            properties = evaluator.resolve(definition.get("Properties") or {})
            records[logical_id] = builder.build(logical_id, definition["Type"], properties)
        except TemplateError as error:
            raise TemplateError(f"{logical_id}: {error}") from None
        except ClientError as error:
            error.add_note(f"while creating {logical_id} ({definition['Type']}) of {template.path.name}")
            raise
    functions = local_functions(template, evaluator)
    return LocalStackState(
        stack_name=stack_name,
        region=emulator.region,
        account_id=emulator.account_id,
        endpoint=emulator.endpoint,
        template_path=str(template.path),
        parameters=evaluator.parameters,
        resources=records,
        outputs=evaluator.outputs(),
        functions=functions,
        notes=[f"{r.logical_id} ({r.type}): {r.note}" for r in records.values() if r.note],
        state_machines=local_state_machines(template, evaluator),
    )


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _arn(region: str, account_id: str, service: str, resource: str) -> str:
    return f"arn:aws:{service}:{region}:{account_id}:{resource}"


def _tags(properties: Mapping[str, Any]) -> list[dict[str, str]]:
    return [{"Key": str(tag["Key"]), "Value": str(tag["Value"])} for tag in properties.get("Tags") or []]


def _has_error_code(error: ClientError, *codes: str) -> bool:
    return error.response.get("Error", {}).get("Code") in codes


class _StackBuilder:
    """Creates one resource at a time; each `_<type>` method returns its `ResourceRecord`."""

    def __init__(
        self,
        emulator: AwsEndpoint,
        template: StackTemplate,
        evaluator: TemplateEvaluator,
        records: dict[str, ResourceRecord],
        stack_name: str,
    ):
        self.emulator = emulator
        self.template = template
        self.evaluator = evaluator
        self.records = records
        self.stack_name = stack_name
        self.region = emulator.region
        self.account_id = emulator.account_id
        self._clients: dict[str, Any] = {}
        self._stack_keys: dict[str, str] | None = None  # logical id -> KMS key id, read once per provisioning

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.emulator.client(service)
        return self._clients[service]

    def name(self, logical_id: str, max_length: int, *, lowercase: bool = False) -> str:
        return generated_name(self.stack_name, logical_id, max_length, lowercase=lowercase)

    def build(self, logical_id: str, resource_type: str, properties: dict[str, Any]) -> ResourceRecord:
        if resource_type.startswith("Custom::") or resource_type == "AWS::CloudFormation::CustomResource":
            if self._function_by_arn(str(properties.get("ServiceToken", ""))) is not None:
                return self._custom_resource(logical_id, resource_type, properties)
        method: Callable[[str, dict[str, Any]], ResourceRecord] | None = getattr(
            self, "_" + resource_type.replace("::", "_").lower(), None
        )
        if method is None:
            return self.record_only(logical_id, resource_type, properties)
        return method(logical_id, properties)

    # -- resources that are recorded, not created ------------------------------------------

    def record_only(self, logical_id: str, resource_type: str, properties: Mapping[str, Any]) -> ResourceRecord:
        """A resource the emulator does not hold: the name and ARN CloudFormation would give it."""
        region, account = self.region, self.account_id
        if resource_type == "AWS::IAM::Role":
            name = properties.get("RoleName") or self.name(logical_id, 64)
            path = properties.get("Path") or "/"
            role_id = "AROA" + hashlib.sha256(name.encode()).hexdigest()[:17].upper()
            return ResourceRecord(
                logical_id, resource_type, name,
                {"Arn": f"arn:aws:iam::{account}:role{path}{name}", "RoleId": role_id},
                status="recorded", note="IAM is not enforced locally",
            )
        if resource_type == "AWS::IAM::ManagedPolicy":
            name = properties.get("ManagedPolicyName") or self.name(logical_id, 128)
            arn = f"arn:aws:iam::{account}:policy/{name}"
            return ResourceRecord(logical_id, resource_type, arn, {"PolicyArn": arn}, "recorded", "IAM is not enforced locally")
        if resource_type == "AWS::IAM::Policy":
            return ResourceRecord(logical_id, resource_type, self.name(logical_id, 128), {}, "recorded", "IAM is not enforced locally")
        if resource_type == "AWS::Logs::LogGroup":
            name = properties.get("LogGroupName") or self.name(logical_id, 512)
            arn = _arn(region, account, "logs", f"log-group:{name}:*")
            return ResourceRecord(logical_id, resource_type, name, {"Arn": arn}, "recorded",
                                  "function logs go to the runner's stderr")
        if resource_type == "AWS::Lambda::LayerVersion":
            name = properties.get("LayerName") or logical_id
            arn = _arn(region, account, "lambda", f"layer:{name}:1")
            return ResourceRecord(logical_id, resource_type, arn, {}, "recorded",
                                  "layer code is imported from its folder (the atrest package is installed editable)")
        if resource_type == "AWS::Lambda::Url":
            # A function URL (SAM's FunctionUrlConfig). Locally nothing listens there and
            # SigV4 is not checked: invoke the function with a function-URL event whose
            # requestContext names the caller (`atrest local invoke`, Runner.invoke).
            url_id = hashlib.sha256(f"{self.stack_name}/{logical_id}".encode()).hexdigest()[:32]
            url = f"https://{url_id}.lambda-url.{region}.on.aws/"
            target = str(properties.get("TargetFunctionArn", ""))
            function_arn = target if target.startswith("arn:") else _arn(region, account, "lambda", f"function:{target}")
            return ResourceRecord(logical_id, resource_type, url, {"FunctionUrl": url, "FunctionArn": function_arn},
                                  status="recorded", note="function URLs are not served locally; the runner invokes the handler in-process")
        if resource_type == "AWS::Lambda::Function":
            name = properties.get("FunctionName") or self.name(logical_id, 64)
            return ResourceRecord(logical_id, resource_type, name, {"Arn": _arn(region, account, "lambda", f"function:{name}")},
                                  "recorded", "run in-process by the local runner (Lambda needs Docker)")
        if resource_type == "AWS::Lambda::EventSourceMapping":
            mapping_id = str(uuid.UUID(hashlib.sha256(f"{self.stack_name}/{logical_id}".encode()).hexdigest()[:32]))
            return ResourceRecord(logical_id, resource_type, mapping_id, {"EventSourceMappingArn": _arn(
                region, account, "lambda", f"event-source-mapping:{mapping_id}")}, "recorded", "polled by the local runner")
        if resource_type == "AWS::Lambda::Permission":
            return ResourceRecord(logical_id, resource_type, self.name(logical_id, 128), {}, "recorded",
                                  "Lambda resource policies are not evaluated locally: the runner invokes the function directly")
        if resource_type == "AWS::StepFunctions::StateMachine":
            name = properties.get("StateMachineName") or self.name(logical_id, 80)
            arn = _arn(region, account, "states", f"stateMachine:{name}")
            return ResourceRecord(logical_id, resource_type, arn, {"Arn": arn, "Name": name}, "recorded",
                                  "run by the local state machine interpreter (atrest_cli.local.state_machine)")
        if resource_type.startswith("Custom::") or resource_type == "AWS::CloudFormation::CustomResource":
            return ResourceRecord(logical_id, resource_type, self.name(logical_id, 128), {}, "skipped",
                                  "its ServiceToken is not a function of this stack, so nothing runs it locally")
        # Alarms, dashboards, SNS topics, ...: not emulated, but references to them resolve.
        service = resource_type.split("::")[1].lower() if resource_type.count("::") >= 2 else "unknown"
        name = self.name(logical_id, 255)
        return ResourceRecord(
            logical_id, resource_type, name,
            {"Arn": _arn(region, account, service, f"{logical_id.lower()}/{name}")},
            status="skipped", note="not emulated locally",
        )

    # -- custom resources: a Create request to the stack's own handler ---------------------

    def _custom_resource(self, logical_id: str, resource_type: str, properties: dict[str, Any]) -> ResourceRecord:
        from atrest_cli.local.emulator import emulator_environment
        from atrest_cli.local.lambda_runtime import InProcessFunction, log_destination  # it imports this module

        service = self._function_by_arn(str(properties["ServiceToken"]))
        assert service is not None
        function = _local_function(self.template, self.evaluator, service.logical_id,
                                   self.template.resources[service.logical_id], _layer_dirs(self.template, self.records))
        # CloudFormation sends every property value as a string (or lists and maps of them).
        sent = _as_sent(properties)
        request_id = str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(
            [self.stack_name, logical_id, sent], sort_keys=True)))
        # stdout is `atrest local up`'s one JSON line; `atrest demo` keeps function logs in a file.
        handler = InProcessFunction(function, emulator_environment(self.emulator.endpoint, self.region),
                                    stdout=log_destination(sys.stderr))
        with _response_url(self.client("s3"), self.region, request_id) as (url, responses):
            invocation = handler.invoke({
                "RequestType": "Create", "ResponseURL": url,
                "StackId": self.evaluator.pseudo_parameter("AWS::StackId"), "RequestId": request_id,
                "ResourceType": resource_type, "LogicalResourceId": logical_id, "ResourceProperties": sent,
            })
        if not invocation.succeeded or not responses:
            reason = invocation.error["errorMessage"] if invocation.error else "it returned without answering"
            raise TemplateError(f"custom resource {resource_type}: {service.logical_id} did not answer "
                                f"CloudFormation ({reason}); CloudFormation would wait ServiceTimeout, then fail")
        response = responses[-1]
        if response.get("Status") != "SUCCESS":
            raise TemplateError(f"custom resource {resource_type} FAILED: {response.get('Reason')} "
                                f"({service.logical_id}'s answer; the stack would roll back)")
        return ResourceRecord(logical_id, resource_type, str(response["PhysicalResourceId"]),
                              dict(response.get("Data") or {}),
                              note=f"run by {service.logical_id}'s handler in-process, with its role (a Create request)")

    # -- KMS ----------------------------------------------------------------------------

    def _aws_kms_key(self, logical_id: str, properties: dict[str, Any]) -> ResourceRecord:
        kms = self.client("kms")
        key_policy = properties.get("KeyPolicy")
        note = None
        if key_policy and _has_deny_statement(key_policy):
            key_policy, note = None, f"key policy: {_DENY_NOTE}"
        key_id = self._find_key(logical_id)
        if key_id is None:
            request: dict[str, Any] = {
                "Description": properties.get("Description", ""),
                "KeyUsage": properties.get("KeyUsage", "ENCRYPT_DECRYPT"),
                "KeySpec": properties.get("KeySpec", "SYMMETRIC_DEFAULT"),
                "MultiRegion": bool(properties.get("MultiRegion", False)),
                "Tags": [
                    {"TagKey": STACK_NAME_TAG, "TagValue": self.stack_name},
                    {"TagKey": LOGICAL_ID_TAG, "TagValue": logical_id},
                    *({"TagKey": tag["Key"], "TagValue": tag["Value"]} for tag in _tags(properties)),
                ],
            }
            if key_policy:
                request["Policy"] = _text(key_policy)
            key_id = kms.create_key(**request)["KeyMetadata"]["KeyId"]
        elif key_policy:
            kms.put_key_policy(KeyId=key_id, PolicyName="default", Policy=_text(key_policy))
        if properties.get("EnableKeyRotation"):
            rotation: dict[str, Any] = {"KeyId": key_id}
            if properties.get("RotationPeriodInDays"):
                rotation["RotationPeriodInDays"] = int(properties["RotationPeriodInDays"])
            kms.enable_key_rotation(**rotation)
        if properties.get("Enabled") is False or str(properties.get("Enabled")).lower() == "false":
            kms.disable_key(KeyId=key_id)  # moto refuses a full ARN here: use the key id
        arn = kms.describe_key(KeyId=key_id)["KeyMetadata"]["Arn"]
        return ResourceRecord(logical_id, "AWS::KMS::Key", key_id, {"Arn": arn, "KeyId": key_id}, note=note)

    def _find_key(self, logical_id: str) -> str | None:
        # One pass over the emulator's keys per provisioning, not one per key of the template:
        # a test session holds many keys, each needing its own ListResourceTags.
        if self._stack_keys is None:
            kms = self.client("kms")
            self._stack_keys = {}
            for page in kms.get_paginator("list_keys").paginate():
                for key in page["Keys"]:
                    tags = {tag["TagKey"]: tag["TagValue"] for tag in kms.list_resource_tags(KeyId=key["KeyId"]).get("Tags", [])}
                    if tags.get(STACK_NAME_TAG) == self.stack_name and LOGICAL_ID_TAG in tags:
                        self._stack_keys.setdefault(tags[LOGICAL_ID_TAG], str(key["KeyId"]))
        return self._stack_keys.get(logical_id)

    def _aws_kms_alias(self, logical_id: str, properties: dict[str, Any]) -> ResourceRecord:
        kms = self.client("kms")
        alias, target = properties["AliasName"], properties["TargetKeyId"]
        existing = {a["AliasName"] for page in kms.get_paginator("list_aliases").paginate() for a in page["Aliases"]}
        if alias in existing:
            kms.update_alias(AliasName=alias, TargetKeyId=target)
        else:
            kms.create_alias(AliasName=alias, TargetKeyId=target)
        return ResourceRecord(logical_id, "AWS::KMS::Alias", alias, {})

    # -- S3 -----------------------------------------------------------------------------

    def _aws_s3_bucket(self, logical_id: str, properties: dict[str, Any]) -> ResourceRecord:
        s3 = self.client("s3")
        name = properties.get("BucketName") or self.name(logical_id, 63, lowercase=True)
        try:
            s3.head_bucket(Bucket=name)
        except ClientError as error:
            if not _has_error_code(error, "404", "NoSuchBucket", "NotFound"):
                raise
            request: dict[str, Any] = {"Bucket": name}
            if self.region != "us-east-1":
                request["CreateBucketConfiguration"] = {"LocationConstraint": self.region}
            if properties.get("ObjectLockEnabled"):
                request["ObjectLockEnabledForBucket"] = True
            s3.create_bucket(**request)
        if "VersioningConfiguration" in properties:
            s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": properties["VersioningConfiguration"]["Status"]})
        if "PublicAccessBlockConfiguration" in properties:
            s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=properties["PublicAccessBlockConfiguration"])
        if "BucketEncryption" in properties:
            rules = [
                {("ApplyServerSideEncryptionByDefault" if k == "ServerSideEncryptionByDefault" else k): v for k, v in rule.items()}
                for rule in properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
            ]
            s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
        if "OwnershipControls" in properties:
            s3.put_bucket_ownership_controls(Bucket=name, OwnershipControls={"Rules": properties["OwnershipControls"]["Rules"]})
        if "LifecycleConfiguration" in properties:
            rules = [_lifecycle_rule(rule) for rule in properties["LifecycleConfiguration"]["Rules"]]
            s3.put_bucket_lifecycle_configuration(Bucket=name, LifecycleConfiguration={"Rules": rules})
        if properties.get("Tags"):
            s3.put_bucket_tagging(Bucket=name, Tagging={"TagSet": _tags(properties)})
        note = None
        if "NotificationConfiguration" in properties:
            configuration, note = self._notification_configuration(properties["NotificationConfiguration"])
            s3.put_bucket_notification_configuration(Bucket=name, NotificationConfiguration=configuration)
        attributes = {
            "Arn": f"arn:aws:s3:::{name}",
            "DomainName": f"{name}.s3.amazonaws.com",
            "RegionalDomainName": f"{name}.s3.{self.region}.amazonaws.com",
            "DualStackDomainName": f"{name}.s3.dualstack.{self.region}.amazonaws.com",
            "WebsiteURL": f"http://{name}.s3-website-{self.region}.amazonaws.com",
        }
        return ResourceRecord(logical_id, "AWS::S3::Bucket", name, attributes, note=note)

    @staticmethod
    def _notification_configuration(cfn: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
        configuration: dict[str, Any] = {}
        note = None
        if str((cfn.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled", "false")).lower() == "true":
            configuration["EventBridgeConfiguration"] = {}

        def converted(items: list[Mapping[str, Any]], target_key: str, api_key: str) -> list[dict[str, Any]]:
            result = []
            for item in items:
                entry: dict[str, Any] = {api_key: item[target_key], "Events": [item["Event"]]}
                rules = ((item.get("Filter") or {}).get("S3Key") or {}).get("Rules")
                if rules:
                    entry["Filter"] = {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}
                result.append(entry)
            return result

        if cfn.get("QueueConfigurations"):
            configuration["QueueConfigurations"] = converted(cfn["QueueConfigurations"], "Queue", "QueueArn")
        if cfn.get("TopicConfigurations"):
            configuration["TopicConfigurations"] = converted(cfn["TopicConfigurations"], "Topic", "TopicArn")
        if cfn.get("LambdaConfigurations"):
            note = "LambdaConfigurations are not delivered locally (moto cannot invoke Lambda without Docker)"
        return configuration, note

    def _aws_s3_bucketpolicy(self, logical_id: str, properties: dict[str, Any]) -> ResourceRecord:
        bucket = properties["Bucket"]
        if _has_deny_statement(properties["PolicyDocument"]):
            return ResourceRecord(logical_id, "AWS::S3::BucketPolicy", bucket, {}, status="recorded", note=_DENY_NOTE)
        self.client("s3").put_bucket_policy(Bucket=bucket, Policy=_text(properties["PolicyDocument"]))
        return ResourceRecord(logical_id, "AWS::S3::BucketPolicy", bucket, {}, note="stored, not enforced by the emulator")

    # -- DynamoDB -----------------------------------------------------------------------

    def _aws_dynamodb_table(self, logical_id: str, properties: dict[str, Any]) -> ResourceRecord:
        dynamodb = self.client("dynamodb")
        name = properties.get("TableName") or self.name(logical_id, 255)
        try:
            description = dynamodb.describe_table(TableName=name)["Table"]
        except ClientError as error:
            if not _has_error_code(error, "ResourceNotFoundException"):
                raise
            description = dynamodb.create_table(**_create_table_request(name, properties))["TableDescription"]
        ttl = properties.get("TimeToLiveSpecification")
        if ttl and str(ttl.get("Enabled", "false")).lower() == "true":
            dynamodb.update_time_to_live(
                TableName=name, TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": True}
            )
        pitr = properties.get("PointInTimeRecoverySpecification")
        if pitr is not None:
            enabled = str(pitr.get("PointInTimeRecoveryEnabled", "false")).lower() == "true"
            dynamodb.update_continuous_backups(
                TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": enabled}
            )
        attributes = {"Arn": description["TableArn"]}
        if description.get("LatestStreamArn"):
            attributes["StreamArn"] = description["LatestStreamArn"]
        note = "ResourcePolicy not stored: policies are not enforced locally" if properties.get("ResourcePolicy") else None
        return ResourceRecord(logical_id, "AWS::DynamoDB::Table", name, attributes, note=note)

    # -- SQS ----------------------------------------------------------------------------

    def _aws_sqs_queue(self, logical_id: str, properties: dict[str, Any]) -> ResourceRecord:
        sqs = self.client("sqs")
        fifo = str(properties.get("FifoQueue", "false")).lower() == "true"
        name = properties.get("QueueName") or self.name(logical_id, 75 if fifo else 80) + (".fifo" if fifo else "")
        attributes = _queue_attributes(properties)
        try:
            url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
        except ClientError as error:
            if not _has_error_code(error, "AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"):
                raise
            request: dict[str, Any] = {"QueueName": name, "Attributes": attributes}
            if properties.get("Tags"):
                request["tags"] = {tag["Key"]: tag["Value"] for tag in _tags(properties)}
            url = sqs.create_queue(**request)["QueueUrl"]
        else:
            mutable = {k: v for k, v in attributes.items() if k not in ("FifoQueue",)}
            if mutable:
                sqs.set_queue_attributes(QueueUrl=url, Attributes=mutable)
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return ResourceRecord(logical_id, "AWS::SQS::Queue", url, {"Arn": arn, "QueueName": name, "QueueUrl": url})

    def _aws_sqs_queuepolicy(self, logical_id: str, properties: dict[str, Any]) -> ResourceRecord:
        sqs = self.client("sqs")
        for url in properties["Queues"]:
            sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": _text(properties["PolicyDocument"])})
        return ResourceRecord(logical_id, "AWS::SQS::QueuePolicy", self.name(logical_id, 128), {},
                              note="stored, not enforced by the emulator")

    # -- IAM: roles and policies exist in the emulator, where its IAM enforcement reads them

    def _aws_iam_role(self, logical_id: str, properties: dict[str, Any]) -> ResourceRecord:
        name = properties.get("RoleName") or self.name(logical_id, 64)
        role = create_role(
            self.client("iam"), name, properties.get("Path") or "/", properties["AssumeRolePolicyDocument"],
            {str(policy["PolicyName"]): policy["PolicyDocument"] for policy in properties.get("Policies") or []},
            properties.get("ManagedPolicyArns") or [],
            keep=lambda policy_name: policy_name.startswith(_STANDALONE_POLICY_PREFIX),  # AWS::IAM::Policy resources'
        )
        return ResourceRecord(logical_id, "AWS::IAM::Role", name, {"Arn": role["Arn"], "RoleId": role["RoleId"]},
                              note="created; the emulator enforces its identity policies for the function that runs with it")

    def _aws_iam_policy(self, logical_id: str, properties: dict[str, Any]) -> ResourceRecord:
        # An AWS::IAM::Policy is an inline policy of each role it names; stored under its
        # logical id so that re-provisioning a role keeps it.
        for group_or_user in ("Groups", "Users"):
            if properties.get(group_or_user):
                raise TemplateError(f"{logical_id}: policies attached to IAM {group_or_user.lower()} are not provisioned locally")
        for role in properties.get("Roles") or []:
            put_role_policy(self.client("iam"), role, f"{_STANDALONE_POLICY_PREFIX}{logical_id}", properties["PolicyDocument"])
        return ResourceRecord(logical_id, "AWS::IAM::Policy", self.name(logical_id, 128), {})

    # -- SNS, CloudWatch and Logs: created so operators' tools find them ------------------

    def _aws_sns_topic(self, logical_id: str, properties: dict[str, Any]) -> ResourceRecord:
        name = properties.get("TopicName") or self.name(logical_id, 256)
        attributes = {key: _text(properties[key]) for key in ("DisplayName", "KmsMasterKeyId") if key in properties}
        arn = self.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
        return ResourceRecord(logical_id, "AWS::SNS::Topic", arn, {"TopicArn": arn, "TopicName": name},
                              note="created; the emulator sends no notifications and does not check the topic's KMS key")

    def _aws_sns_topicpolicy(self, logical_id: str, properties: dict[str, Any]) -> ResourceRecord:
        for topic in properties["Topics"]:
            self.client("sns").set_topic_attributes(TopicArn=topic, AttributeName="Policy", AttributeValue=_text(properties["PolicyDocument"]))
        return ResourceRecord(logical_id, "AWS::SNS::TopicPolicy", self.name(logical_id, 128), {},
                              note="stored, not enforced by the emulator")

    def _aws_sns_subscription(self, logical_id: str, properties: dict[str, Any]) -> ResourceRecord:
        arn = self.client("sns").subscribe(TopicArn=properties["TopicArn"], Protocol=properties["Protocol"],
                                           Endpoint=properties["Endpoint"])["SubscriptionArn"]
        return ResourceRecord(logical_id, "AWS::SNS::Subscription", arn, {}, note="recorded by the emulator; nothing is sent")

    def _aws_cloudwatch_alarm(self, logical_id: str, properties: dict[str, Any]) -> ResourceRecord:
        name = properties.get("AlarmName") or self.name(logical_id, 255)
        request = {key: properties[key] for key in _ALARM_KEYS if key in properties}
        for key in ("EvaluationPeriods", "DatapointsToAlarm", "Period"):
            if key in request:
                request[key] = int(request[key])
        if "Threshold" in request:
            request["Threshold"] = float(request["Threshold"])
        if "Metrics" in request:
            request["Metrics"] = [_metric_query(query) for query in request["Metrics"]]
        self.client("cloudwatch").put_metric_alarm(AlarmName=name, **request)
        arn = _arn(self.region, self.account_id, "cloudwatch", f"alarm:{name}")
        return ResourceRecord(logical_id, "AWS::CloudWatch::Alarm", name, {"Arn": arn},
                              note="created; the emulator never evaluates alarms (SetAlarmState works, no action runs)")

    def _aws_cloudwatch_dashboard(self, logical_id: str, properties: dict[str, Any]) -> ResourceRecord:
        name = properties.get("DashboardName") or self.name(logical_id, 255)
        self.client("cloudwatch").put_dashboard(DashboardName=name, DashboardBody=_text(properties["DashboardBody"]))
        return ResourceRecord(logical_id, "AWS::CloudWatch::Dashboard", name, {})

    def _aws_logs_loggroup(self, logical_id: str, properties: dict[str, Any]) -> ResourceRecord:
        logs = self.client("logs")
        name = properties.get("LogGroupName") or self.name(logical_id, 512)
        try:
            logs.create_log_group(logGroupName=name)
        except ClientError as error:
            if not _has_error_code(error, "ResourceAlreadyExistsException"):
                raise
        if properties.get("RetentionInDays"):
            logs.put_retention_policy(logGroupName=name, retentionInDays=int(properties["RetentionInDays"]))
        arn = _arn(self.region, self.account_id, "logs", f"log-group:{name}:*")
        return ResourceRecord(logical_id, "AWS::Logs::LogGroup", name, {"Arn": arn},
                              note="created; function logs go to the runner's stderr, not to the group")

    # -- EventBridge --------------------------------------------------------------------

    def _aws_events_rule(self, logical_id: str, properties: dict[str, Any]) -> ResourceRecord:
        name = properties.get("Name") or self.name(logical_id, 64)
        bus = _event_bus_name(properties.get("EventBusName"))
        rule_path = name if bus == "default" else f"{bus}/{name}"
        arn = _arn(self.region, self.account_id, "events", f"rule/{rule_path}")
        if properties.get("ScheduleExpression") and not properties.get("EventPattern"):
            # Not created: moto never fires schedules, and a schedule rule with a Lambda target
            # would take part in (and break) S3 event delivery. The runner plays schedules
            # on their rate, with the input the rule's target gives.
            return ResourceRecord(logical_id, "AWS::Events::Rule", name, {"Arn": arn}, status="recorded",
                                  note=f"schedule {properties['ScheduleExpression']} ({properties.get('State', 'ENABLED')}) is fired by the local runner")
        events = self.client("events")
        request: dict[str, Any] = {"Name": name, "EventBusName": bus, "State": properties.get("State", "ENABLED")}
        if properties.get("EventPattern"):
            pattern = properties["EventPattern"]
            request["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
        if properties.get("Description"):
            request["Description"] = properties["Description"]
        if properties.get("RoleArn"):
            request["RoleArn"] = properties["RoleArn"]
        arn = events.put_rule(**request)["RuleArn"]
        deliverable, undeliverable, relays = [], [], []
        for target in properties.get("Targets") or []:
            target_arn = str(target.get("Arn", ""))
            service = target_arn.split(":")[2:3]
            if service and service[0] in ("sqs", "logs", "events"):
                deliverable.append({k: v for k, v in target.items() if k in _TARGET_KEYS})
            elif service == ["lambda"]:
                # moto cannot invoke Lambda: the rule targets a relay queue the runner takes
                # each event from, as one asynchronous invocation of the function.
                relay = self._relay_queue(logical_id, target)
                relays.append(relay.logical_id)
                deliverable.append({**{k: v for k, v in target.items() if k in _TARGET_KEYS and k not in (
                    "RetryPolicy", "DeadLetterConfig", "RoleArn")}, "Arn": relay.attributes["Arn"]})
            else:
                undeliverable.append(str(target.get("Id")))
        if deliverable:
            events.put_targets(Rule=name, EventBusName=bus, Targets=deliverable)
        note = None
        if undeliverable:
            note = f"targets {', '.join(undeliverable)} not delivered locally (the emulator delivers to SQS, Logs and event buses)"
        if relays:
            note = "Lambda target relayed through a local queue (moto cannot invoke Lambda)"
        return ResourceRecord(logical_id, "AWS::Events::Rule", name, {"Arn": arn}, note=note)

    def _relay_queue(self, rule_logical_id: str, target: Mapping[str, Any]) -> ResourceRecord:
        """The queue a rule's Lambda target is relayed through, and its dead-letter queue:
        the function's own `DeadLetterConfig` queue when it has one (failed asynchronous
        invocations land where they would on AWS), else a local one."""
        function = self._function_by_arn(str(target.get("Arn", "")))
        dead_letter_arn = None
        if function is not None:
            properties = self.evaluator.resolve(self.template.resources[function.logical_id].get("Properties") or {})
            dead_letter_arn = (properties.get("DeadLetterConfig") or {}).get("TargetArn")
        if not dead_letter_arn:
            dead_letters = self._aws_sqs_queue(f"{rule_logical_id}RelayDLQ", {})
            dead_letters.note = f"local dead-letter queue of {rule_logical_id}'s relay"
            self.records[dead_letters.logical_id] = dead_letters
            dead_letter_arn = dead_letters.attributes["Arn"]
        relay = self._aws_sqs_queue(
            f"{rule_logical_id}Relay", {"RedrivePolicy": {"deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": 3}},
        )
        relay.note = f"local relay for {rule_logical_id}'s Lambda target (moto cannot invoke Lambda targets)"
        relay.attributes["DeadLetterTargetArn"] = dead_letter_arn
        self.records[relay.logical_id] = relay
        return relay

    def _function_by_arn(self, arn: str) -> ResourceRecord | None:
        for record in self.records.values():
            if record.type == "AWS::Lambda::Function" and record.attributes.get("Arn") == arn:
                return record
        return None


def _as_sent(value: Any) -> Any:
    """A custom resource's properties as CloudFormation sends them: scalars as strings."""
    if isinstance(value, dict):
        return {str(key): _as_sent(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_sent(item) for item in value]
    return _text(value)


@contextlib.contextmanager
def _response_url(s3: Any, region: str, request_id: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """What CloudFormation gives a custom resource: a pre-signed S3 PUT URL in its response
    bucket (`cloudformation-custom-resource-response-<region without dashes>`), here on the
    emulator's S3, the only place the handler answers to when AWS_ENDPOINT_URL is set. After
    the block, the list holds the answer (the object the handler PUT), if any."""
    bucket = f"cloudformation-custom-resource-response-{region.replace('-', '')}"
    try:
        s3.create_bucket(Bucket=bucket, **({} if region == "us-east-1" else
                                            {"CreateBucketConfiguration": {"LocationConstraint": region}}))
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    key = f"responses/{request_id}/{uuid.uuid4()}"
    url = s3.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600)
    answers: list[dict[str, Any]] = []
    try:
        yield url, answers
    finally:
        try:
            answers.append(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read() or b"{}"))
            s3.delete_object(Bucket=bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") not in ("NoSuchKey", "404"):
                raise


def create_data_class_kms_keys(emulator: AwsEndpoint, data_classes: Mapping[str, str] | list[str], *,
                               stack_name: str = "atrest") -> dict[str, str]:
    """A symmetric KMS key per data class, made as the administrator (as a customer makes the
    keys before naming them in `DataClassKmsKeys`; the key policy is KMS's default, which lets
    only this account's IAM policies grant, so the stack's roles may use the key through the
    KmsGrants grants alone). Found again by its tags, so calling it again returns the same
    keys. Returns class -> key ARN; pass `data_class_kms_keys_parameter(...)` of it to
    `provision(parameters={"DataClassKmsKeys": ...})`."""
    kms = emulator.client("kms")
    tag = "atrest-local:data-class"
    existing: dict[str, str] = {}
    for page in kms.get_paginator("list_keys").paginate():
        for key in page["Keys"]:
            tags = {t["TagKey"]: t["TagValue"] for t in kms.list_resource_tags(KeyId=key["KeyId"]).get("Tags", [])}
            if tags.get("atrest-local:stack") == stack_name and tag in tags:
                existing[tags[tag]] = kms.describe_key(KeyId=key["KeyId"])["KeyMetadata"]["Arn"]
    keys = {}
    for data_class in data_classes:
        if data_class not in existing:
            existing[data_class] = kms.create_key(
                Description=f"customer's key for atrest data class {data_class} (stack {stack_name})",
                Tags=[{"TagKey": tag, "TagValue": data_class}, {"TagKey": "atrest-local:stack", "TagValue": stack_name}],
            )["KeyMetadata"]["Arn"]
        keys[data_class] = existing[data_class]
    return keys


def data_class_kms_keys_parameter(keys: Mapping[str, str]) -> str:
    """The `DataClassKmsKeys` parameter value for class -> key ARN: `<class>=<arn>,...`."""
    return ",".join(f"{data_class}={arn}" for data_class, arn in sorted(keys.items()))


_DENY_NOTE = (
    "not stored in the emulator: moto 5.2.5 applies Deny statements without evaluating their conditions "
    "(Bool, ArnNotEquals, ...), which would refuse requests AWS allows; policies are not enforced locally"
)


def _has_deny_statement(policy: Any) -> bool:
    document = json.loads(policy) if isinstance(policy, str) else policy
    statements = document.get("Statement", [])
    statements = [statements] if isinstance(statements, dict) else statements
    return any(str(statement.get("Effect", "")).lower() == "deny" for statement in statements)


# Inline policies that come from AWS::IAM::Policy resources (not the role's own Policies).
_STANDALONE_POLICY_PREFIX = "cfn-"

_ALARM_KEYS = (
    "ActionsEnabled", "AlarmActions", "AlarmDescription", "ComparisonOperator", "DatapointsToAlarm", "Dimensions",
    "EvaluateLowSampleCountPercentile", "EvaluationPeriods", "ExtendedStatistic", "InsufficientDataActions",
    "MetricName", "Metrics", "Namespace", "OKActions", "Period", "Statistic", "Threshold", "ThresholdMetricId",
    "TreatMissingData", "Unit",
)


def _metric_query(query: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation alarm metric query in the shape of PutMetricAlarm."""
    api = dict(query)
    stat = api.get("MetricStat")
    if stat:
        api["MetricStat"] = {**stat, "Period": int(stat["Period"])}
    if "Period" in api:
        api["Period"] = int(api["Period"])
    return api


_TARGET_KEYS = ("Id", "Arn", "Input", "InputPath", "InputTransformer", "RoleArn", "SqsParameters", "RetryPolicy", "DeadLetterConfig")


def _event_bus_name(value: Any) -> str:
    if not value:
        return "default"
    text = str(value)
    return text.split("event-bus/", 1)[1] if "event-bus/" in text else text


def _lifecycle_rule(rule: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the shape of the S3 API."""
    api: dict[str, Any] = {"Status": rule["Status"], "Filter": {"Prefix": rule.get("Prefix", "")}}
    if rule.get("Id"):
        api["ID"] = rule["Id"]
    expiration: dict[str, Any] = {}
    if "ExpirationInDays" in rule:
        expiration["Days"] = int(rule["ExpirationInDays"])
    if "ExpirationDate" in rule:
        expiration["Date"] = rule["ExpirationDate"]
    if "ExpiredObjectDeleteMarker" in rule:
        expiration["ExpiredObjectDeleteMarker"] = bool(rule["ExpiredObjectDeleteMarker"])
    if expiration:
        api["Expiration"] = expiration
    if "NoncurrentVersionExpiration" in rule:
        api["NoncurrentVersionExpiration"] = {k: int(v) for k, v in rule["NoncurrentVersionExpiration"].items()}
    elif "NoncurrentVersionExpirationInDays" in rule:
        api["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(rule["NoncurrentVersionExpirationInDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        api["AbortIncompleteMultipartUpload"] = {
            "DaysAfterInitiation": int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        }
    if rule.get("Transitions"):
        api["Transitions"] = [
            {"StorageClass": t["StorageClass"], **({"Days": int(t["TransitionInDays"])} if "TransitionInDays" in t else {"Date": t["TransitionDate"]})}
            for t in rule["Transitions"]
        ]
    if rule.get("NoncurrentVersionTransitions"):
        api["NoncurrentVersionTransitions"] = [
            {"StorageClass": t["StorageClass"], "NoncurrentDays": int(t["TransitionInDays"])}
            for t in rule["NoncurrentVersionTransitions"]
        ]
    return api


def _create_table_request(name: str, properties: Mapping[str, Any]) -> dict[str, Any]:
    """A CloudFormation `AWS::DynamoDB::Table` as a CreateTable request (keys, indexes,
    billing, streams and encryption exactly as the template declares them)."""
    billing = properties.get("BillingMode", "PROVISIONED")
    request: dict[str, Any] = {
        "TableName": name,
        "KeySchema": properties["KeySchema"],
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "BillingMode": billing,
    }

    def throughput(spec: Mapping[str, Any] | None) -> dict[str, int]:
        spec = spec or {"ReadCapacityUnits": 5, "WriteCapacityUnits": 5}
        return {"ReadCapacityUnits": int(spec["ReadCapacityUnits"]), "WriteCapacityUnits": int(spec["WriteCapacityUnits"])}

    if billing == "PROVISIONED":
        request["ProvisionedThroughput"] = throughput(properties.get("ProvisionedThroughput"))
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes"):
        if properties.get(key):
            indexes = []
            for index in properties[key]:
                api_index = {k: index[k] for k in ("IndexName", "KeySchema", "Projection") if k in index}
                if key == "GlobalSecondaryIndexes" and billing == "PROVISIONED":
                    api_index["ProvisionedThroughput"] = throughput(index.get("ProvisionedThroughput"))
                indexes.append(api_index)
            request[key] = indexes
    if properties.get("StreamSpecification"):
        request["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": properties["StreamSpecification"]["StreamViewType"]}
    sse = properties.get("SSESpecification")
    if sse:
        api_sse: dict[str, Any] = {"Enabled": str(sse.get("SSEEnabled", "false")).lower() == "true"}
        if sse.get("SSEType"):
            api_sse["SSEType"] = sse["SSEType"]
        if sse.get("KMSMasterKeyId"):
            api_sse["KMSMasterKeyId"] = sse["KMSMasterKeyId"]
        request["SSESpecification"] = api_sse
    if properties.get("TableClass"):
        request["TableClass"] = properties["TableClass"]
    if "DeletionProtectionEnabled" in properties:
        request["DeletionProtectionEnabled"] = str(properties["DeletionProtectionEnabled"]).lower() == "true"
    if properties.get("Tags"):
        request["Tags"] = _tags(properties)
    return request


_QUEUE_ATTRIBUTES = (
    "DelaySeconds", "MaximumMessageSize", "MessageRetentionPeriod", "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout", "RedrivePolicy", "RedriveAllowPolicy", "FifoQueue", "ContentBasedDeduplication",
    "DeduplicationScope", "FifoThroughputLimit", "KmsMasterKeyId", "KmsDataKeyReusePeriodSeconds",
    "SqsManagedSseEnabled",
)


def _queue_attributes(properties: Mapping[str, Any]) -> dict[str, str]:
    attributes = {key: _text(properties[key]) for key in _QUEUE_ATTRIBUTES if key in properties}
    if "RedrivePolicy" in properties and isinstance(properties["RedrivePolicy"], dict):
        policy = dict(properties["RedrivePolicy"])
        policy["maxReceiveCount"] = int(policy["maxReceiveCount"])
        attributes["RedrivePolicy"] = json.dumps(policy)
    return attributes


# -- functions ---------------------------------------------------------------------------


def _layer_dirs(template: StackTemplate, records: Mapping[str, ResourceRecord]) -> dict[str, str]:
    """Layer version ARN -> the local folder of its content."""
    layer_dirs_by_arn: dict[str, str] = {}
    for record in records.values():
        if record.type == "AWS::Lambda::LayerVersion" and record.logical_id in template.resources:
            content = (template.resources[record.logical_id].get("Properties") or {}).get("Content")
            path = template.code_path(content)
            if path is not None:
                layer_dirs_by_arn[record.physical_id] = str(path)
    return layer_dirs_by_arn


def local_functions(template: StackTemplate, evaluator: TemplateEvaluator) -> dict[str, LocalFunction]:
    """Every active `AWS::Lambda::Function` of the translated template, resolved against
    the resources `evaluator` knows (a fresh provisioning, or a state file's records), with
    what invokes it as CloudFormation wires it: event source mappings, schedule rules and
    pattern rules targeting its ARN."""
    records = evaluator.resources
    queues_by_arn = {r.attributes.get("Arn"): r for r in records.values() if r.type == "AWS::SQS::Queue"}
    tables_by_stream_arn = {
        r.attributes["StreamArn"]: r for r in records.values() if r.type == "AWS::DynamoDB::Table" and r.attributes.get("StreamArn")
    }
    layer_dirs_by_arn = _layer_dirs(template, records)
    functions: dict[str, LocalFunction] = {}
    for logical_id, definition in template.resources.items():
        if definition["Type"] != "AWS::Lambda::Function" or not evaluator.is_active(logical_id):
            continue
        try:
            functions[logical_id] = _local_function(template, evaluator, logical_id, definition, layer_dirs_by_arn)
        except TemplateError as error:
            raise TemplateError(f"{logical_id}: {error}") from None
    by_arn = {function.arn: function for function in functions.values()}
    by_name = {function.function_name: function for function in functions.values()}
    for logical_id, definition in template.resources.items():
        if not evaluator.is_active(logical_id) or logical_id not in records:
            continue
        if definition["Type"] == "AWS::Lambda::EventSourceMapping":
            properties = evaluator.resolve(definition.get("Properties") or {})
            target = by_arn.get(properties.get("FunctionName")) or by_name.get(properties.get("FunctionName"))
            queue = queues_by_arn.get(properties.get("EventSourceArn"))
            table = tables_by_stream_arn.get(properties.get("EventSourceArn"))
            if target is None:
                continue
            if table is not None:
                target.dynamodb_sources.append(_dynamodb_stream_source(logical_id, table, properties, queues_by_arn, target.notes))
                continue
            if queue is None:
                target.notes.append(f"{logical_id}: event source {properties.get('EventSourceArn')} is not a queue of this stack; not polled")
                continue
            if properties.get("FilterCriteria"):
                target.notes.append(f"{logical_id}: FilterCriteria are not applied locally (every message is delivered)")
            target.sqs_sources.append(_sqs_source(logical_id, queue, properties))
        elif definition["Type"] == "AWS::Events::Rule":
            properties = evaluator.resolve(definition.get("Properties") or {})
            record = records[logical_id]
            for target_spec in properties.get("Targets") or []:
                target = by_arn.get(target_spec.get("Arn"))
                if target is None:
                    continue
                if properties.get("ScheduleExpression"):
                    target.schedule_sources.append(_schedule_source(logical_id, record, properties, target_spec))
                else:
                    relay = records.get(f"{logical_id}Relay")
                    target.eventbridge_sources.append(EventBridgeSource(
                        event_id=logical_id,
                        rule_name=record.physical_id,
                        rule_arn=record.attributes["Arn"],
                        relay_queue_url=relay.physical_id if relay else "",
                        relay_queue_arn=relay.attributes["Arn"] if relay else "",
                        relay_dead_letter_queue_url=_queue_url_of(records, relay.attributes.get("DeadLetterTargetArn")) if relay else "",
                    ))
    return functions


def _queue_url_of(records: Mapping[str, ResourceRecord], arn: Any) -> str:
    for record in records.values():
        if record.type == "AWS::SQS::Queue" and record.attributes.get("Arn") == arn:
            return record.physical_id
    return ""


def local_state_machines(template: StackTemplate, evaluator: TemplateEvaluator) -> dict[str, LocalStateMachine]:
    """Every active `AWS::StepFunctions::StateMachine` with its definition read from where
    the template keeps it (a local file, `Definition` or `DefinitionString`) and its
    DefinitionSubstitutions applied (`${Name}` replaced, as CloudFormation does)."""
    machines: dict[str, LocalStateMachine] = {}
    for logical_id, definition in template.resources.items():
        if definition["Type"] != "AWS::StepFunctions::StateMachine" or not evaluator.is_active(logical_id):
            continue
        properties = evaluator.resolve(definition.get("Properties") or {})
        path = template.code_path(properties.get("DefinitionS3Location"))
        if path is not None:
            text = path.read_text(encoding="utf-8")
        elif "Definition" in properties:
            text = json.dumps(properties["Definition"])
        elif "DefinitionString" in properties:
            text = str(properties["DefinitionString"])
        else:
            raise TemplateError(f"{logical_id}: its definition is not a local file, Definition or DefinitionString")
        for name, value in (properties.get("DefinitionSubstitutions") or {}).items():
            text = text.replace("${" + name + "}", _text(value))
        record = evaluator.resources[logical_id]
        machines[logical_id] = LocalStateMachine(
            logical_id=logical_id, name=str(record.attributes.get("Name") or record.physical_id),
            arn=str(record.attributes.get("Arn", "")), role_arn=str(properties.get("RoleArn") or ""), definition=text,
        )
    by_arn = {machine.arn: machine for machine in machines.values()}
    for logical_id, definition in template.resources.items():
        if definition["Type"] != "AWS::Events::Rule" or not evaluator.is_active(logical_id) or logical_id not in evaluator.resources:
            continue
        properties = evaluator.resolve(definition.get("Properties") or {})
        for target_spec in properties.get("Targets") or []:
            machine = by_arn.get(target_spec.get("Arn"))
            if machine is not None and properties.get("ScheduleExpression"):
                machine.schedule_sources.append(_schedule_source(logical_id, evaluator.resources[logical_id], properties, target_spec))
    return machines


def _schedule_source(
    logical_id: str, record: ResourceRecord, properties: Mapping[str, Any], target: Mapping[str, Any],
) -> ScheduleSource:
    return ScheduleSource(
        event_id=logical_id,
        expression=properties["ScheduleExpression"],
        rule_name=record.physical_id,
        rule_arn=record.attributes["Arn"],
        input=json.loads(target["Input"]) if target.get("Input") else None,
        enabled=properties.get("State", "ENABLED") == "ENABLED",
    )


def _sqs_source(event_id: str, queue: ResourceRecord, properties: Mapping[str, Any]) -> SqsEventSource:
    return SqsEventSource(
        event_id=event_id,
        queue_logical_id=queue.logical_id,
        queue_url=queue.physical_id,
        queue_arn=queue.attributes["Arn"],
        batch_size=int(properties.get("BatchSize", 10)),
        maximum_batching_window_seconds=int(properties.get("MaximumBatchingWindowInSeconds", 0)),
        function_response_types=list(properties.get("FunctionResponseTypes") or []),
        enabled=str(properties.get("Enabled", "true")).lower() == "true",
    )


# Stream mapping settings the runner does not play, with the value that needs no note.
_STREAM_SETTINGS_NOT_PLAYED = {
    "ParallelizationFactor": "1", "TumblingWindowInSeconds": "0", "MaximumRecordAgeInSeconds": "-1",
    "MaximumBatchingWindowInSeconds": "0",
}


def _dynamodb_stream_source(
    event_id: str, table: ResourceRecord, properties: Mapping[str, Any],
    queues_by_arn: Mapping[Any, ResourceRecord], notes: list[str],
) -> DynamoDbStreamSource:
    """The stream mapping as the runner plays it; what it does not play goes to `notes`."""
    source = DynamoDbStreamSource(
        event_id=event_id,
        table_logical_id=table.logical_id,
        table_name=table.physical_id,
        stream_arn=table.attributes["StreamArn"],
        batch_size=int(properties.get("BatchSize", 100)),
        starting_position=str(properties.get("StartingPosition", "TRIM_HORIZON")),
        maximum_retry_attempts=int(properties.get("MaximumRetryAttempts", -1)),
        bisect_batch_on_function_error=str(properties.get("BisectBatchOnFunctionError", "false")).lower() == "true",
        function_response_types=list(properties.get("FunctionResponseTypes") or []),
        enabled=str(properties.get("Enabled", "true")).lower() == "true",
    )
    if source.maximum_retry_attempts == -1:
        notes.append(f"{event_id}: MaximumRetryAttempts is -1 (AWS retries a failing batch until its records expire, "
                     "24 h, and the shard waits): locally it is retried until the runner stops")
    if source.bisect_batch_on_function_error:
        notes.append(f"{event_id}: BisectBatchOnFunctionError is not done locally (a failed batch is retried whole)")
    if properties.get("FilterCriteria"):
        notes.append(f"{event_id}: FilterCriteria are not applied locally (every record is delivered)")
    for name, default in _STREAM_SETTINGS_NOT_PLAYED.items():
        if str(properties.get(name, default)) != default:
            notes.append(f"{event_id}: {name} is not applied locally")
    destination = ((properties.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
    if destination in queues_by_arn:
        source.on_failure_queue_url = queues_by_arn[destination].physical_id
    elif destination:
        kind = "an SNS topic" if ":sns:" in str(destination) else "not a queue of this stack"
        notes.append(f"{event_id}: its OnFailure destination {destination} is {kind}; discarded batches are not delivered locally")
    return source


def _local_function(
    template: StackTemplate,
    evaluator: TemplateEvaluator,
    logical_id: str,
    definition: Mapping[str, Any],
    layer_dirs_by_arn: Mapping[str, str],
) -> LocalFunction:
    properties = evaluator.resolve(definition.get("Properties") or {})
    record = evaluator.resources[logical_id]
    notes: list[str] = []
    code_dir = template.code_path(properties.get("Code"))
    if code_dir is None:
        raise TemplateError("its code must be a local folder for the local runner (inline code and S3 locations are not run)")
    layer_dirs = []
    for layer in properties.get("Layers") or []:
        if layer in layer_dirs_by_arn:
            layer_dirs.append(layer_dirs_by_arn[layer])
        else:
            notes.append(f"layer {layer} is not part of this template and is not available locally")
    variables = (properties.get("Environment") or {}).get("Variables") or {}
    environment = {str(name): _text(value) for name, value in variables.items()}
    log_group = (properties.get("LoggingConfig") or {}).get("LogGroup") or f"/aws/lambda/{record.physical_id}"
    return LocalFunction(
        logical_id=logical_id,
        function_name=record.physical_id,
        arn=record.attributes["Arn"],
        code_dir=str(code_dir),
        handler=str(properties.get("Handler", "")),
        runtime=str(properties.get("Runtime", "")),
        timeout=int(properties.get("Timeout", 3)),
        memory_size=int(properties.get("MemorySize", 128)),
        environment=environment,
        layer_dirs=layer_dirs,
        log_group_name=str(log_group),
        notes=notes,
        role_arn=str(properties.get("Role") or ""),
    )


# -- emptying a stack between tests ------------------------------------------------------


def empty_stack(state: LocalStackState, emulator: AwsEndpoint) -> None:
    """Delete every object version, item and message in the stack's buckets, tables and
    queues, keeping the resources. Messages in flight are purged with the rest.

    Deleting a streamed table's items writes REMOVE records to its stream: every event
    source mapping of that stream is then moved past them (`streams.skip_to_latest`), so
    the next runner does not deliver the emptying itself to the stream's functions (nor
    what the stream held before it). A runner polling while the stack is emptied may
    still take some of them, as it would take any other write."""
    s3, dynamodb, sqs = emulator.client("s3"), emulator.client("dynamodb"), emulator.client("sqs")
    for record in state.resources.values():
        if record.status != "created":
            continue
        if record.type == "AWS::S3::Bucket":
            _empty_bucket(s3, record.physical_id)
        elif record.type == "AWS::DynamoDB::Table":
            _empty_table(dynamodb, record.physical_id)
            if record.attributes.get("StreamArn"):
                skip_to_latest(emulator.endpoint, record.attributes["StreamArn"])
        elif record.type == "AWS::SQS::Queue":
            _empty_queue(sqs, record.physical_id)


def _empty_bucket(s3: Any, bucket: str) -> None:
    # List everything first, then delete: deleting while paginating makes moto end the
    # listing early (a version past the first 1,000 keys survived). Then check it is empty.
    for _ in range(10):
        doomed = [
            {"Key": item["Key"], "VersionId": item["VersionId"]}
            for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
            for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
        ]
        if not doomed:
            break
        for start in range(0, len(doomed), 1000):
            errors = s3.delete_objects(Bucket=bucket, Delete={"Objects": doomed[start:start + 1000], "Quiet": True}).get("Errors")
            if errors:
                raise RuntimeError(f"could not empty bucket {bucket}: {errors[:3]}")
    else:
        raise RuntimeError(f"bucket {bucket} still holds objects after 10 rounds of deletion")
    for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])


def _empty_table(dynamodb: Any, table: str) -> None:
    key_names = [k["AttributeName"] for k in dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]]
    projection = ", ".join(f"#k{i}" for i in range(len(key_names)))
    names = {f"#k{i}": name for i, name in enumerate(key_names)}
    for page in dynamodb.get_paginator("scan").paginate(TableName=table, ProjectionExpression=projection, ExpressionAttributeNames=names):
        items = page.get("Items", [])
        for start in range(0, len(items), 25):
            requests = [{"DeleteRequest": {"Key": item}} for item in items[start:start + 25]]
            while requests:
                unprocessed = dynamodb.batch_write_item(RequestItems={table: requests}).get("UnprocessedItems", {})
                requests = unprocessed.get(table, [])


def queue_backlog(sqs: Any, queue_url: str) -> int:
    """Messages a queue still holds: visible, in flight and delayed."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible", "ApproximateNumberOfMessagesDelayed"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def _empty_queue(sqs: Any, queue_url: str) -> None:
    if queue_backlog(sqs, queue_url) == 0:
        return  # SQS allows one purge a minute per queue; skip the purge when there is nothing to purge
    try:
        sqs.purge_queue(QueueUrl=queue_url)
    except ClientError as error:
        if not _has_error_code(error, "AWS.SimpleQueueService.PurgeQueueInProgress", "PurgeQueueInProgress"):
            raise
        # Purged less than a minute ago: take the visible messages one batch at a time instead.
        while True:
            messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30).get("Messages", [])
            if not messages:
                break
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            )
