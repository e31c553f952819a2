"""Running a state machine of the local stack: the ASL subset this project's definitions use.

`run_state_machine(state, "BackfillStateMachine", {"bucket": ..., "prefix": ..., "since": ""})`
runs the definition exactly as provisioned (`LocalStackState.state_machines`: the ASL text
with its DefinitionSubstitutions applied) and returns a `LocalStateMachineRun`. A caller may
rely on:

- **The subset, checked before anything runs.** Task states whose Resource is
  `arn:aws:states:::lambda:invoke` (Parameters FunctionName and Payload/Payload.$, ResultPath
  "$", OutputPath, Retry) and Map states in DISTRIBUTED mode (ItemReader
  `s3:listObjectsV2`, ItemBatcher MaxItemsPerBatch/BatchInput, MaxConcurrency,
  ToleratedFailurePercentage/ToleratedFailureCount, ResultWriter `s3:putObject`, Label);
  states chained by Next/End; JSONPath `$`, `$.a.b` and `$.a[0]`. Any other state type,
  field, resource or path raises `UnsupportedDefinitionError` naming the state and the field,
  so a definition never runs locally with part of it silently ignored.
- **Step Functions' results.** `status` is "SUCCEEDED" or "FAILED"; a failure carries the
  `error` and `cause` DescribeExecution would show (`States.ExceedToleratedFailureThreshold`,
  the function's errorType, `States.Runtime` for a path that is not in the input, ...).
- **AWS's item and batch shapes.** ItemReader pages through the whole listing and gives each
  object as AWS does: `{"Etag": "\"<md5>\"", "Key", "LastModified": <epoch seconds>, "Size",
  "StorageClass"}`; a batch is `{"Items": [...], "BatchInput": {...}}`.
- **The Lambda service integration.** The task invokes the function whose ARN the definition
  names, through `invoke(function_arn, payload) -> Invocation` (default: the stack's
  functions in this process, `atrest_cli.local.lambda_runtime.InProcessFunction`, one cold start
  each). Its result is `{"ExecutedVersion", "Payload", "SdkHttpMetadata",
  "SdkResponseMetadata", "StatusCode"}`; a function error fails the task with Error = the
  function's errorType and Cause = its error payload as JSON, as on AWS.
- **Retry as ASL defines it.** The first retrier whose ErrorEquals matches decides
  (`States.ALL` matches any error, `States.TaskFailed` any but `States.Timeout`;
  `States.Runtime` is never retried); its wait is IntervalSeconds x BackoffRate^n, capped by
  MaxDelaySeconds, drawn uniformly from [0, wait] with JitterStrategy FULL, then multiplied by
  `retry_interval_scale` (1.0 = real time; tests pass e.g. 0.001 so a failing batch's four
  retries take milliseconds instead of 75 s).
- **Failure threshold as AWS counts it.** Failed items = the items of every failed child
  (batch) execution; the map run fails when failed items exceed ToleratedFailurePercentage
  of all items (or ToleratedFailureCount); no new batch starts after that, batches under way
  finish. No field at all means zero tolerance.
- **ResultWriter in AWS's format**, in the emulator's S3: under `<Prefix>/<map run id>/`,
  `manifest.json` (`DestinationBucket`, `MapRunArn`, `ResultFiles` by status with Key and
  Size) and `SUCCEEDED_0.json`, `FAILED_0.json`, `PENDING_0.json` (only those with entries),
  each a JSON array of child executions (ExecutionArn, Name, Input/Output as JSON strings,
  Status, Error/Cause, dates). They are written also when the map run fails, so the
  failures can be read. The Map's output is `{"MapRunArn", "ResultWriterDetails": {"Bucket",
  "Key"}}`.

Limits: the state machine's role is not enforced (the S3 calls use the emulator's
credentials); invocations of in-process functions run one at a time (`os.environ` is
process-wide), so MaxConcurrency bounds the batches in flight (their retry waits overlap)
but not handler parallelism; there is no execution history, no payload size limit and no
redrive.
"""

from __future__ import annotations

import json
import logging
import random
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from atrest_cli.local.emulator import emulator_client, emulator_environment
from atrest_cli.local.lambda_runtime import InProcessFunction, Invocation
from atrest_cli.local.stack import LocalStackState

log = logging.getLogger(__name__)

LAMBDA_INVOKE = "arn:aws:states:::lambda:invoke"
S3_LIST_OBJECTS_V2 = "arn:aws:states:::s3:listObjectsV2"
S3_PUT_OBJECT = "arn:aws:states:::s3:putObject"

Invoker = Callable[[str, Any], Invocation]


class UnsupportedDefinitionError(ValueError):
    """The definition uses a state type, field, resource or path this interpreter does not run."""


class StatesError(Exception):
    """A Step Functions runtime error (`error` as AWS names it, `cause` its text)."""

    def __init__(self, error: str, cause: str):
        super().__init__(f"{error}: {cause}")
        self.error = error
        self.cause = cause


# -- what a run returns ------------------------------------------------------------------


@dataclass
class ChildExecution:
    """One child workflow execution of a Distributed Map (here: one batch)."""

    name: str
    execution_arn: str
    input: Any
    items: int
    status: str = "PENDING"  # SUCCEEDED, FAILED, or PENDING (never started: the map run stopped first)
    output: Any = None
    error: str | None = None
    cause: str | None = None
    attempts: int = 0
    started: datetime | None = None
    stopped: datetime | None = None


@dataclass
class ResultWriterOutput:
    """Where ResultWriter put the results: the manifest and the result files by status."""

    bucket: str
    manifest_key: str
    result_keys: dict[str, list[str]] = field(default_factory=dict)


@dataclass
class LocalMapRun:
    """A Distributed Map state's run."""

    state_name: str
    map_run_arn: str
    items: int = 0
    children: list[ChildExecution] = field(default_factory=list)
    results: ResultWriterOutput | None = None

    def _count(self, status: str) -> int:
        return sum(1 for child in self.children if child.status == status)

    @property
    def batches_succeeded(self) -> int:
        return self._count("SUCCEEDED")

    @property
    def batches_failed(self) -> int:
        return self._count("FAILED")

    @property
    def batches_pending(self) -> int:
        return self._count("PENDING")

    @property
    def items_failed(self) -> int:
        return sum(child.items for child in self.children if child.status == "FAILED")


@dataclass
class LocalStateMachineRun:
    """One execution: its status, output (SUCCEEDED) or error and cause (FAILED), its map runs."""

    execution_arn: str
    status: str = "RUNNING"
    output: Any = None
    error: str | None = None
    cause: str | None = None
    map_runs: list[LocalMapRun] = field(default_factory=list)
    invocations: int = 0
    seconds: float = 0.0

    @property
    def map_run(self) -> LocalMapRun:
        """The run of the definition's only Map state."""
        if len(self.map_runs) != 1:
            raise ValueError(f"this execution ran {len(self.map_runs)} map states, not one")
        return self.map_runs[0]


# -- invoking functions ------------------------------------------------------------------


def in_process_invoker(state: LocalStackState, aws_environment: Mapping[str, str] | None = None) -> Invoker:
    """`invoke(function_arn, payload)` for the stack's functions, run in this process
    (each function loaded once, on its first invocation)."""
    environment = dict(aws_environment) if aws_environment is not None else emulator_environment(state.endpoint, state.region)
    loaded: dict[str, InProcessFunction] = {}
    lock = threading.Lock()

    def invoke(function_arn: str, payload: Any) -> Invocation:
        logical_id = function_logical_id(state, function_arn)
        with lock:
            function = loaded.get(logical_id)
            if function is None:
                function = loaded[logical_id] = InProcessFunction(state.function(logical_id), environment)
        return function.invoke(payload)

    return invoke


def function_logical_id(state: LocalStackState, function_name: str) -> str:
    """The stack function a FunctionName (ARN, ARN:$LATEST or name) names; KeyError if none."""
    name = function_name
    if name.startswith("arn:"):
        parts = name.split(":")
        name = parts[6] if len(parts) >= 7 else name
        if len(parts) == 8 and parts[7] != "$LATEST":
            raise KeyError(f"{function_name}: only $LATEST runs locally")
    for logical_id, function in state.functions.items():
        if function.function_name == name or function.arn == function_name:
            return logical_id
    raise KeyError(f"no function {function_name} in stack {state.stack_name}")


# -- running -----------------------------------------------------------------------------


def run_state_machine(
    state: LocalStackState,
    logical_id: str,
    input: Any,
    *,
    invoke: Invoker | None = None,
    retry_interval_scale: float = 1.0,
    execution_name: str | None = None,
    rng: random.Random | None = None,
) -> LocalStateMachineRun:
    """Run the state machine `logical_id` of `state` with `input` until it ends.

    Raises `UnsupportedDefinitionError` (before anything runs) for a definition outside the
    subset; every runtime failure comes back as a FAILED run, never as an exception.
    """
    machine = state.state_machine(logical_id)
    definition = json.loads(machine.definition)
    _check_machine(definition, "")
    name = execution_name or str(uuid.uuid4())
    run = LocalStateMachineRun(execution_arn=f"arn:aws:states:{state.region}:{state.account_id}:execution:{machine.name}:{name}")
    interpreter = _Interpreter(state, machine.name, invoke or in_process_invoker(state), retry_interval_scale, rng or random.Random(), run)
    started = time.monotonic()
    try:
        run.output = interpreter.run_states(definition, json.loads(json.dumps(input)), "")
        run.status = "SUCCEEDED"
    except StatesError as failure:
        run.status, run.error, run.cause = "FAILED", failure.error, failure.cause
    run.seconds = time.monotonic() - started
    log.info("state machine %s: %s in %.1f s", machine.name, run.status, run.seconds)
    return run


class _Interpreter:
    def __init__(self, state: LocalStackState, machine_name: str, invoke: Invoker, scale: float,
                 rng: random.Random, run: LocalStateMachineRun) -> None:
        self.state = state
        self.machine_name = machine_name
        self.invoke = invoke
        self.scale = scale
        self.rng = rng
        self.run = run
        self.s3 = emulator_client("s3", endpoint=state.endpoint, region=state.region)
        self._counter_lock = threading.Lock()

    def run_states(self, machine: Mapping[str, Any], value: Any, where: str) -> Any:
        name = machine["StartAt"]
        while True:
            definition = machine["States"][name]
            if definition["Type"] == "Task":
                value = self.task(f"{where}{name}", definition, value)
            else:
                value = self.map(name, definition, value)
            if definition.get("End"):
                return value
            name = definition["Next"]

    # -- Task: lambda:invoke ------------------------------------------------------------

    def task(self, name: str, definition: Mapping[str, Any], value: Any, child: ChildExecution | None = None) -> Any:
        parameters = _render(definition["Parameters"], value, name)
        function_arn = str(parameters["FunctionName"])
        retriers = [dict(r, _count=0) for r in definition.get("Retry", [])]
        while True:
            if child is not None:
                child.attempts += 1
            try:
                result = self._invoke(function_arn, parameters.get("Payload"))
                break
            except StatesError as failure:
                retrier = next((r for r in retriers if _matches(r["ErrorEquals"], failure.error)), None)
                if retrier is None or retrier["_count"] >= retrier.get("MaxAttempts", 3):
                    raise
                wait = retrier.get("IntervalSeconds", 1) * retrier.get("BackoffRate", 2.0) ** retrier["_count"]
                if "MaxDelaySeconds" in retrier:
                    wait = min(wait, retrier["MaxDelaySeconds"])
                if retrier.get("JitterStrategy", "NONE") == "FULL":
                    wait = self.rng.uniform(0, wait)
                retrier["_count"] += 1
                time.sleep(wait * self.scale)
        return _select(definition["OutputPath"], result, name, "OutputPath") if "OutputPath" in definition else result

    def _invoke(self, function_arn: str, payload: Any) -> dict[str, Any]:
        try:
            function_logical_id(self.state, function_arn)
        except KeyError as error:
            raise StatesError("Lambda.ResourceNotFoundException",
                              f"Function not found: {function_arn} (Service: AWSLambda; Status Code: 404; "
                              f"Error Code: ResourceNotFoundException) [{error}]") from None
        with self._counter_lock:
            self.run.invocations += 1
        invocation = self.invoke(function_arn, payload)
        if invocation.error is not None:
            error_payload = {"errorMessage": invocation.error.get("errorMessage", ""),
                             "errorType": invocation.error.get("errorType", "Unhandled"),
                             "requestId": invocation.request_id,
                             "stackTrace": invocation.error.get("stackTrace", [])}
            raise StatesError(error_payload["errorType"], json.dumps(error_payload, separators=(",", ":")))
        return {
            "ExecutedVersion": "$LATEST",
            "Payload": invocation.response,
            "SdkHttpMetadata": {"HttpHeaders": {"X-Amz-Executed-Version": "$LATEST", "x-amzn-RequestId": invocation.request_id},
                                "HttpStatusCode": 200},
            "SdkResponseMetadata": {"RequestId": invocation.request_id},
            "StatusCode": 200,
        }

    # -- Map: DISTRIBUTED --------------------------------------------------------------

    def map(self, name: str, definition: Mapping[str, Any], value: Any) -> Any:
        label = definition.get("Label", name)
        map_run_id = str(uuid.uuid4())
        prefix = f"arn:aws:states:{self.state.region}:{self.state.account_id}"
        map_run = LocalMapRun(name, f"{prefix}:mapRun:{self.machine_name}/{label}:{map_run_id}")
        self.run.map_runs.append(map_run)

        items = self._read_items(name, definition["ItemReader"], value)
        map_run.items = len(items)
        batcher = definition.get("ItemBatcher")
        if batcher:
            size = int(batcher["MaxItemsPerBatch"])
            batch_input = _render(batcher["BatchInput"], value, name) if "BatchInput" in batcher else None
            inputs: list[Any] = []
            for start in range(0, len(items), size):
                batch: dict[str, Any] = {"Items": items[start:start + size]}
                if batch_input is not None:
                    batch["BatchInput"] = batch_input
                inputs.append(batch)
        else:
            inputs = items
        child_arn = f"{prefix}:execution:{self.machine_name}/{label}"
        for item in inputs:
            child_name = str(uuid.uuid4())
            count = len(item["Items"]) if batcher else 1
            map_run.children.append(ChildExecution(child_name, f"{child_arn}:{child_name}", item, count))

        percentage = float(definition.get("ToleratedFailurePercentage", 0))
        tolerated_count = definition.get("ToleratedFailureCount")
        exceeded = threading.Event()
        lock = threading.Lock()
        processor = definition["ItemProcessor"]

        def run_child(child: ChildExecution) -> None:
            if exceeded.is_set():
                return  # the map run is failing: AWS starts no new child executions
            child.started = datetime.now(timezone.utc)
            try:
                child.output = self._run_child(processor, child)
                child.status = "SUCCEEDED"
            except StatesError as failure:
                child.status, child.error, child.cause = "FAILED", failure.error, failure.cause
            child.stopped = datetime.now(timezone.utc)
            with lock:
                failed = map_run.items_failed
                if (map_run.items and failed * 100.0 / map_run.items > percentage) or (
                        tolerated_count is not None and failed > int(tolerated_count)):
                    exceeded.set()

        concurrency = int(definition.get("MaxConcurrency", 0)) or len(map_run.children)
        with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(map_run.children) or 1)),
                                thread_name_prefix=f"sfn-{label}") as pool:
            list(pool.map(run_child, map_run.children))

        if "ResultWriter" in definition:
            output = self._write_results(name, definition["ResultWriter"], value, map_run)
        else:
            output = [child.output for child in map_run.children]
        if exceeded.is_set():
            raise StatesError("States.ExceedToleratedFailureThreshold",
                              "The specified tolerated failure threshold was exceeded")
        return output

    def _run_child(self, processor: Mapping[str, Any], child: ChildExecution) -> Any:
        value = json.loads(json.dumps(child.input))
        name = processor["StartAt"]
        while True:
            definition = processor["States"][name]
            value = self.task(f"{child.name}/{name}", definition, value, child)
            if definition.get("End"):
                return value
            name = definition["Next"]

    def _read_items(self, name: str, reader: Mapping[str, Any], value: Any) -> list[dict[str, Any]]:
        parameters = _render(reader["Parameters"], value, name)
        items: list[dict[str, Any]] = []
        try:
            for page in self.s3.get_paginator("list_objects_v2").paginate(**parameters):
                for entry in page.get("Contents", []):
                    # AWS's item shape, not boto3's: "Etag" (quoted), LastModified in epoch seconds.
                    items.append({"Etag": entry["ETag"], "Key": entry["Key"], "LastModified": int(entry["LastModified"].timestamp()),
                                  "Size": entry["Size"], "StorageClass": entry.get("StorageClass", "STANDARD")})
        except Exception as error:  # noqa: BLE001 - any S3 failure is the reader's failure
            raise StatesError("States.ItemReaderFailed", f"{name}: {error}") from None
        return items

    def _write_results(self, name: str, writer: Mapping[str, Any], value: Any, map_run: LocalMapRun) -> dict[str, Any]:
        parameters = _render(writer["Parameters"], value, name)
        bucket = str(parameters["Bucket"])
        prefix = str(parameters.get("Prefix", ""))
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        base = f"{prefix}{map_run.map_run_arn.rsplit(':', 1)[1]}/"
        files: dict[str, list[dict[str, Any]]] = {"FAILED": [], "PENDING": [], "SUCCEEDED": []}
        output = ResultWriterOutput(bucket, f"{base}manifest.json")
        try:
            for status in files:
                entries = [_result_entry(child, map_run, self.machine_name) for child in map_run.children if child.status == status]
                if not entries:
                    continue
                key = f"{base}{status}_0.json"
                body = json.dumps(entries).encode()
                self.s3.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/json")
                files[status].append({"Key": key, "Size": len(body)})
                output.result_keys[status] = [key]
            manifest = {"DestinationBucket": bucket, "MapRunArn": map_run.map_run_arn, "ResultFiles": files}
            self.s3.put_object(Bucket=bucket, Key=output.manifest_key, Body=json.dumps(manifest).encode(),
                               ContentType="application/json")
        except Exception as error:  # noqa: BLE001 - any S3 failure is the writer's failure
            raise StatesError("States.ResultWriterFailed", f"{name}: {error}") from None
        map_run.results = output
        return {"MapRunArn": map_run.map_run_arn, "ResultWriterDetails": {"Bucket": bucket, "Key": output.manifest_key}}


def _result_entry(child: ChildExecution, map_run: LocalMapRun, machine_name: str) -> dict[str, Any]:
    state_machine_arn = child.execution_arn.rsplit(":", 1)[0].replace(":execution:", ":stateMachine:")
    entry: dict[str, Any] = {
        "ExecutionArn": child.execution_arn,
        "Input": json.dumps(child.input),
        "InputDetails": {"Included": True},
        "Name": child.name,
        "StateMachineArn": state_machine_arn,
        "Status": child.status,
    }
    if child.status == "SUCCEEDED":
        entry.update(Output=json.dumps(child.output), OutputDetails={"Included": True})
    elif child.status == "FAILED":
        entry.update(Error=child.error, Cause=child.cause)
    if child.started:
        entry["StartDate"] = _timestamp(child.started)
    if child.stopped:
        entry["StopDate"] = _timestamp(child.stopped)
    return entry


def _timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# -- JSONPath and payload templates --------------------------------------------------------

_PATH = re.compile(r"^\$(?:\.[A-Za-z_][A-Za-z0-9_-]*|\[\d+\])*$")
_STEP = re.compile(r"\.([A-Za-z_][A-Za-z0-9_-]*)|\[(\d+)\]")


def _select(path: str, value: Any, state: str, field_name: str) -> Any:
    selected = value
    for step in _STEP.finditer(path[1:]):
        key, index = step.group(1), step.group(2)
        if key is not None and isinstance(selected, Mapping) and key in selected:
            selected = selected[key]
        elif index is not None and isinstance(selected, list) and int(index) < len(selected):
            selected = selected[int(index)]
        else:
            raise StatesError("States.Runtime", f"An error occurred while executing the state '{state}'. The JSONPath "
                              f"'{path}' specified for the field '{field_name}' could not be found in the input "
                              f"'{json.dumps(value)[:1000]}'")
    return selected


def _render(template: Mapping[str, Any], value: Any, state: str) -> dict[str, Any]:
    rendered: dict[str, Any] = {}
    for key, item in template.items():
        if key.endswith(".$"):
            rendered[key[:-2]] = _select(item, value, state, key)
        elif isinstance(item, Mapping):
            rendered[key] = _render(item, value, state)
        else:
            rendered[key] = item
    return rendered


def _matches(error_equals: list[str], error: str) -> bool:
    if error == "States.Runtime":
        return False  # not retriable
    if "States.ALL" in error_equals:
        return True
    if "States.TaskFailed" in error_equals and error != "States.Timeout":
        return True
    return error in error_equals


# -- the supported subset, checked before a run ---------------------------------------------

_TOP = {"Comment", "StartAt", "States"}
_TASK = {"Type", "Comment", "Resource", "Parameters", "OutputPath", "ResultPath", "Retry", "End", "Next"}
_MAP = {"Type", "Comment", "Label", "ItemReader", "ItemBatcher", "MaxConcurrency", "ToleratedFailurePercentage",
        "ToleratedFailureCount", "ItemProcessor", "ResultWriter", "End", "Next"}
_RETRIER = {"ErrorEquals", "IntervalSeconds", "MaxAttempts", "BackoffRate", "MaxDelaySeconds", "JitterStrategy"}


def _unsupported(where: str, what: str) -> UnsupportedDefinitionError:
    return UnsupportedDefinitionError(f"{where}: {what} is not supported by the local interpreter "
                                      "(atrest_cli.local.state_machine runs only the subset its docstring lists)")


def _check_fields(where: str, definition: Mapping[str, Any], allowed: set[str]) -> None:
    for name in definition:
        if name not in allowed:
            raise _unsupported(where, f"field {name!r}")


def _check_template(where: str, template: Any, allowed: set[str] | None = None) -> None:
    if not isinstance(template, Mapping):
        raise _unsupported(where, "a non-object Parameters/BatchInput")
    for key, item in template.items():
        if allowed is not None and key.removesuffix(".$") not in allowed:
            raise _unsupported(where, f"parameter {key!r}")
        if key.endswith(".$"):
            if not isinstance(item, str) or not _PATH.match(item):
                raise _unsupported(where, f"path {item!r} in {key!r} (only $, $.a.b and $.a[0]: no $$ context, "
                                   "filters or intrinsic functions)")
        elif isinstance(item, Mapping):
            _check_template(f"{where}.{key}", item)


def _check_machine(machine: Mapping[str, Any], where: str, *, processor: bool = False) -> None:
    _check_fields(where or "definition", machine, _TOP | ({"ProcessorConfig"} if processor else set()))
    states = machine.get("States") or {}
    if machine.get("StartAt") not in states:
        raise UnsupportedDefinitionError(f"{where or 'definition'}: StartAt {machine.get('StartAt')!r} names no state")
    for name, definition in states.items():
        path = f"{where}{name}"
        kind = definition.get("Type")
        if kind == "Task":
            _check_task(path, definition)
        elif kind == "Map" and not processor:
            _check_map(path, definition)
        else:
            raise _unsupported(path, f"state type {kind!r}" + (" inside a Map's ItemProcessor" if kind == "Map" else ""))
        if not definition.get("End") and definition.get("Next") not in states:
            raise UnsupportedDefinitionError(f"{path}: neither End nor a Next that names a state")


def _check_task(where: str, definition: Mapping[str, Any]) -> None:
    _check_fields(where, definition, _TASK)
    if definition.get("Resource") != LAMBDA_INVOKE:
        raise _unsupported(where, f"Resource {definition.get('Resource')!r} (only {LAMBDA_INVOKE})")
    parameters = definition.get("Parameters")
    _check_template(where, parameters, {"FunctionName", "Payload"})
    if "FunctionName" not in parameters:
        raise _unsupported(where, "a Task without Parameters.FunctionName")
    if definition.get("ResultPath", "$") != "$":
        raise _unsupported(where, f"ResultPath {definition['ResultPath']!r} (only \"$\")")
    if "OutputPath" in definition and not _PATH.match(str(definition["OutputPath"])):
        raise _unsupported(where, f"OutputPath {definition['OutputPath']!r}")
    for retrier in definition.get("Retry", []):
        _check_fields(f"{where}.Retry", retrier, _RETRIER)
        if retrier.get("JitterStrategy", "NONE") not in ("FULL", "NONE"):
            raise _unsupported(f"{where}.Retry", f"JitterStrategy {retrier['JitterStrategy']!r}")


def _check_map(where: str, definition: Mapping[str, Any]) -> None:
    _check_fields(where, definition, _MAP)
    processor = definition.get("ItemProcessor") or {}
    config = processor.get("ProcessorConfig") or {}
    if config.get("Mode") != "DISTRIBUTED":
        raise _unsupported(where, f"ProcessorConfig.Mode {config.get('Mode')!r} (only DISTRIBUTED)")
    _check_fields(f"{where}.ItemProcessor.ProcessorConfig", config, {"Mode", "ExecutionType"})
    reader = definition.get("ItemReader")
    if not reader:
        raise _unsupported(where, "a Distributed Map without ItemReader")
    _check_fields(f"{where}.ItemReader", reader, {"Resource", "Parameters"})
    if reader.get("Resource") != S3_LIST_OBJECTS_V2:
        raise _unsupported(f"{where}.ItemReader", f"Resource {reader.get('Resource')!r} (only {S3_LIST_OBJECTS_V2})")
    _check_template(f"{where}.ItemReader", reader.get("Parameters"), {"Bucket", "Prefix"})
    if "ItemBatcher" in definition:
        batcher = definition["ItemBatcher"]
        _check_fields(f"{where}.ItemBatcher", batcher, {"MaxItemsPerBatch", "BatchInput"})
        if not isinstance(batcher.get("MaxItemsPerBatch"), int) or batcher["MaxItemsPerBatch"] < 1:
            raise _unsupported(f"{where}.ItemBatcher", "a batcher without a positive integer MaxItemsPerBatch")
        if "BatchInput" in batcher:
            _check_template(f"{where}.ItemBatcher.BatchInput", batcher["BatchInput"])
    for number in ("MaxConcurrency", "ToleratedFailurePercentage", "ToleratedFailureCount"):
        if number in definition and not isinstance(definition[number], (int, float)):
            raise _unsupported(where, f"{number} {definition[number]!r} (a number is required)")
    if "ResultWriter" in definition:
        writer = definition["ResultWriter"]
        _check_fields(f"{where}.ResultWriter", writer, {"Resource", "Parameters"})
        if writer.get("Resource") != S3_PUT_OBJECT:
            raise _unsupported(f"{where}.ResultWriter", f"Resource {writer.get('Resource')!r} (only {S3_PUT_OBJECT})")
        _check_template(f"{where}.ResultWriter", writer.get("Parameters"), {"Bucket", "Prefix"})
    _check_machine(processor, f"{where}.ItemProcessor.", processor=True)
