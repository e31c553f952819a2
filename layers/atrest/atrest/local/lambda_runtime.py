"""Running a Lambda handler in this process, the way the Lambda Python runtime runs it.

`InProcessFunction` imports the handler's module from the function's CodeUri by file
path (under a module name of its own, so two functions' `app.py` never collide), with
the function's environment in `os.environ` during the import (the cold start) and
during every invocation. Events and responses pass through JSON, as on Lambda, and
an invocation that outlives the function's Timeout counts as failed.

Limits of running in one process: handlers share the interpreter, so a module that
two functions both import from their own code directories (say `models.py`) is
imported once; a handler that outlives its Timeout is not stopped, only reported.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterator, Mapping, TextIO

from atrest.local.stack import LocalFunction

log = logging.getLogger(__name__)

_module_numbers = count(1)
# os.environ and sys.stdout are process-wide: one in-process invocation at a time.
_invocation_lock = threading.RLock()


@dataclass
class LocalLambdaContext:
    """The context object handlers receive (the attributes of the Lambda Python runtime's)."""

    function_name: str
    function_version: str
    invoked_function_arn: str
    memory_limit_in_mb: int
    aws_request_id: str
    log_group_name: str
    log_stream_name: str
    deadline: float = field(repr=False)
    identity: Any = None
    client_context: Any = None
    tenant_id: str | None = None

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


@dataclass
class Invocation:
    """What one invocation did: `response` (after a JSON round trip) or `error`
    (`errorType`, `errorMessage`, `stackTrace`, as Lambda reports a failed invocation)."""

    function_logical_id: str
    request_id: str
    response: Any = None
    error: dict[str, Any] | None = None
    duration_ms: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.error is None


@contextlib.contextmanager
def applied_environment(variables: Mapping[str, str]) -> Iterator[None]:
    """`os.environ` with `variables` set, restored afterwards."""
    previous = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def runtime_environment(function: LocalFunction, aws_environment: Mapping[str, str]) -> dict[str, str]:
    """The environment a function sees: its own variables, then what the Lambda runtime
    sets (which a function cannot override), then the emulator's endpoint and credentials."""
    environment = dict(function.environment)
    environment.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": function.function_name,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(function.memory_size),
            "AWS_LAMBDA_LOG_GROUP_NAME": function.log_group_name,
            "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{function.runtime}" if function.runtime else "AWS_Lambda_python3.12",
            "LAMBDA_TASK_ROOT": function.code_dir,
            "_HANDLER": function.handler,
            # There is no X-Ray daemon locally.
            "POWERTOOLS_TRACE_DISABLED": "true",
        }
    )
    environment.update(aws_environment)
    return environment


class InProcessFunction:
    """One function, loaded at most once per instance (one cold start), invoked in this process.

    `aws_environment`: the variables that point the function's SDK at the emulator
    (`Emulator.environment()`). `stdout`: where the function's prints and logs go while it
    runs (None: leave `sys.stdout` alone); `atrest local` sends them to stderr.
    """

    def __init__(self, function: LocalFunction, aws_environment: Mapping[str, str], *, stdout: TextIO | None = None):
        self.function = function
        self.environment = runtime_environment(function, aws_environment)
        self.stdout = stdout
        self._handler: Callable[[Any, Any], Any] | None = None
        self._module: ModuleType | None = None
        self._log_stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"

    @property
    def module(self) -> ModuleType | None:
        """The handler's module once loaded (None before the first invocation)."""
        return self._module

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        with _invocation_lock, applied_environment(self.environment):
            if self.stdout is None:
                yield
            else:
                with contextlib.redirect_stdout(self.stdout):
                    yield

    def _load(self) -> Callable[[Any, Any], Any]:
        if self._handler is not None:
            return self._handler
        module_path, _, attribute = self.function.handler.rpartition(".")
        if not module_path or not attribute:
            raise ValueError(f"Handler {self.function.handler!r} is not of the form module.function")
        code_dir = Path(self.function.code_dir)
        source = code_dir / (module_path.replace(".", "/") + ".py")
        if not source.is_file():
            raise FileNotFoundError(f"{self.function.logical_id}: no handler module at {source}")
        for directory in [*self.function.layer_dirs, str(code_dir)]:
            if directory not in sys.path:
                sys.path.append(directory)  # as on Lambda, the task root and layers stay importable
        module_name = f"atrest_local_function_{self.function.logical_id}_{next(_module_numbers)}"
        spec = importlib.util.spec_from_file_location(module_name, source)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
        handler = getattr(module, attribute, None)
        if not callable(handler):
            raise AttributeError(f"{self.function.logical_id}: {source} has no function {attribute}")
        self._module, self._handler = module, handler
        return handler

    def invoke(self, event: Any, *, request_id: str | None = None) -> Invocation:
        """Run the handler once with `event`. Never raises for the handler's own failures:
        they come back as `Invocation.error`."""
        request_id = request_id or str(uuid.uuid4())
        invocation = Invocation(self.function.logical_id, request_id)
        started = time.monotonic()
        with self._running():
            try:
                handler = self._load()
                context = LocalLambdaContext(
                    function_name=self.function.function_name,
                    function_version="$LATEST",
                    invoked_function_arn=self.function.arn,
                    memory_limit_in_mb=self.function.memory_size,
                    aws_request_id=request_id,
                    log_group_name=self.function.log_group_name,
                    log_stream_name=self._log_stream,
                    deadline=time.monotonic() + self.function.timeout,
                )
                response = handler(json.loads(json.dumps(event)), context)
                try:
                    invocation.response = json.loads(json.dumps(response))
                except (TypeError, ValueError) as error:
                    invocation.error = {"errorType": "Runtime.MarshalError", "errorMessage": f"Unable to marshal response: {error}", "stackTrace": []}
            except Exception as error:
                invocation.error = {
                    "errorType": type(error).__name__,
                    "errorMessage": str(error),
                    "stackTrace": traceback.format_tb(error.__traceback__),
                }
        invocation.duration_ms = (time.monotonic() - started) * 1000
        if invocation.error is None and invocation.duration_ms > self.function.timeout * 1000:
            invocation.response = None
            invocation.error = {
                "errorType": "Sandbox.Timedout",
                "errorMessage": f"Task timed out after {self.function.timeout:.2f} seconds",
                "stackTrace": [],
            }
        if invocation.error is not None:
            log.warning(
                "%s failed (request %s): %s: %s\n%s", self.function.logical_id, request_id,
                invocation.error["errorType"], invocation.error["errorMessage"], "".join(invocation.error["stackTrace"]),
            )
        return invocation
