"""Running a Lambda handler in this process, the way the Lambda Python runtime runs it.

`InProcessFunction` imports the handler's module from the function's CodeUri by file
path (under a module name of its own, so two functions' `app.py` never collide), with
the function's environment in `os.environ` during the import (the cold start) and
during every invocation. Events and responses pass through JSON, as on Lambda, and
an invocation that outlives the function's Timeout counts as failed.

Credentials: a function with a `role_arn` runs with its own execution role's credentials
(AssumeRole against the emulator named by AWS_ENDPOINT_URL, once per `InProcessFunction`,
at the first invocation; session name = function name), so the emulator holds it to the
role's identity policies as AWS would (`atrest_cli.local.iam_enforcement`). The role must
exist in the emulator's IAM (`RoleNotProvisioned` otherwise). `enforce_iam=False` keeps
the administrator's test credentials, for callers that must run unrestricted; a function
without `role_arn` keeps them too.

On Lambda each function has a process of its own with its role's credentials in its
environment. Here functions share a process with the runner, the tests and the CLI, so
the credentials are bound to the invoking thread's context instead of `os.environ`: every
botocore session resolves them first from the function running in the current context (a
provider put ahead of the environment in botocore's chain), and `boto3.client(...)` in a
function uses a default session of that function's own. Worker threads a handler runs in a
copy of its context (`contextvars.copy_context().run`) are that function too; another
thread creating a client at the same moment keeps its own (administrator) credentials. Clients that code
caches in module globals of a shared layer are shared between functions, though.

Limits of running in one process: handlers share the interpreter, so a module that
two functions both import from their own code directories (say `models.py`) is
imported once; a handler that outlives its Timeout is not stopped, only reported.

Output: while a function runs, `sys.stdout` is `_FUNCTION_STDOUT`, which writes to that
invocation's `stdout` (its "CloudWatch log"). Functions share their loggers (one service
name, `atrest`), and a log handler keeps the stream `sys.stdout` was when the first
function loaded it; that stream is `_FUNCTION_STDOUT`, so every function's output goes
to its own invocation's destination whichever function loaded first. What the shared
loggers write outside any invocation (the CLI or a test calling the domain library
directly) goes to stderr, as Python's own last-resort handler would send it.
"""

from __future__ import annotations

import contextlib
import contextvars
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

import boto3
import botocore.credentials

from atrest.core.clients import new_session
from atrest_cli.local import iam_enforcement
from atrest_cli.local.stack import LocalFunction

log = logging.getLogger(__name__)

_module_numbers = count(1)
# os.environ and sys.stdout are process-wide: one in-process invocation at a time.
_invocation_lock = threading.RLock()
# The InProcessFunction running in this context: a context variable, not a thread-local, so
# that the worker threads a handler runs in its invocation's context (EncryptObject's batch
# workers, `contextvars.copy_context().run`) get the function role's credentials too.
_running_here: contextvars.ContextVar[Any] = contextvars.ContextVar("atrest_local_function", default=None)


class _InvocationStdout:
    """`sys.stdout` during in-process invocations: writes go to the running invocation's
    destination (the innermost, for an invocation made from inside another), else stderr."""

    def __init__(self) -> None:
        self.destinations: list[TextIO] = []

    def _target(self) -> TextIO:
        if self.destinations:
            return self.destinations[-1]
        if _LIBRARY_LOGS:
            return _LIBRARY_LOGS[-1]
        return sys.stderr if sys.stderr is not self else sys.__stderr__

    def write(self, text: str) -> int:
        return self._target().write(text)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno, ...: the destination's
        return getattr(self._target(), name)


_FUNCTION_STDOUT = _InvocationStdout()
_LIBRARY_LOGS: list[TextIO] = []


@contextlib.contextmanager
def library_log(destination: TextIO) -> Iterator[None]:
    """While it lasts, what the shared loggers write outside any invocation (a program calling
    the domain library directly, as `atrest demo` runs a key expiry) and the output of
    functions run without a destination of their own (`log_destination`) go to
    `destination` instead of stderr: the functions' log, not the user's terminal."""
    with _invocation_lock:
        _LIBRARY_LOGS.append(destination)
    try:
        yield
    finally:
        with _invocation_lock:
            _LIBRARY_LOGS.remove(destination)


def log_destination(default: TextIO) -> TextIO:
    """The `library_log` destination in force, else `default`."""
    return _LIBRARY_LOGS[-1] if _LIBRARY_LOGS else default


class _FunctionRoleCredentials(botocore.credentials.CredentialProvider):
    """The role credentials of the function running in the current thread, if any."""

    METHOD = "atrest-local-function-role"
    CANONICAL_NAME = "AtrestLocalFunctionRole"

    def load(self) -> botocore.credentials.Credentials | None:
        function = _running_here.get()
        credentials = function._role_credentials if function is not None else None
        if not credentials:
            return None
        return botocore.credentials.Credentials(
            credentials["AWS_ACCESS_KEY_ID"], credentials["AWS_SECRET_ACCESS_KEY"], credentials["AWS_SESSION_TOKEN"],
            method=self.METHOD,
        )


def _install_credential_hooks() -> None:
    """Once per process: the function-role provider ahead of botocore's environment
    provider, and a per-function default session behind `boto3.client(...)`."""
    if getattr(botocore.credentials.create_credential_resolver, "_atrest_local", False):
        return
    create_resolver = botocore.credentials.create_credential_resolver
    default_session = boto3._get_default_session

    def create_credential_resolver(session: Any, cache: Any = None, region_name: Any = None) -> Any:
        resolver = create_resolver(session, cache=cache, region_name=region_name)
        resolver.insert_before("env", _FunctionRoleCredentials())
        return resolver

    def get_default_session() -> boto3.session.Session:
        function = _running_here.get()
        if function is None:
            return default_session()
        if function._default_session is None:
            function._default_session = new_session()
        return function._default_session

    create_credential_resolver._atrest_local = True  # type: ignore[attr-defined]
    botocore.credentials.create_credential_resolver = create_credential_resolver
    boto3._get_default_session = get_default_session


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
    `enforce_iam`: run with the function's role credentials (see the module docstring).
    """

    def __init__(self, function: LocalFunction, aws_environment: Mapping[str, str], *, stdout: TextIO | None = None,
                 enforce_iam: bool = True):
        self.function = function
        self.environment = runtime_environment(function, aws_environment)
        self.stdout = stdout
        self.enforce_iam = enforce_iam
        self._role_credentials: dict[str, str] | None = None
        self._default_session: boto3.session.Session | None = None
        self._handler: Callable[[Any, Any], Any] | None = None
        self._module: ModuleType | None = None
        self._log_stream = f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}"

    @property
    def module(self) -> ModuleType | None:
        """The handler's module once loaded (None before the first invocation)."""
        return self._module

    @property
    def runs_as_role(self) -> bool:
        """Whether invocations use the function's role credentials (not the administrator's)."""
        return bool(self.enforce_iam and self.function.role_arn and self.environment.get("AWS_ENDPOINT_URL"))

    def _assume_role(self) -> None:
        # Lazily, so that building the runner's functions stays cheap and needs no IAM.
        if self._role_credentials is not None or not self.runs_as_role:
            return
        region = self.environment.get("AWS_REGION") or self.environment.get("AWS_DEFAULT_REGION") or "us-east-1"
        credentials = iam_enforcement.assumed_role_environment(
            self.environment["AWS_ENDPOINT_URL"], region, self.function.role_arn, self.function.function_name or self.function.logical_id
        )
        self._role_credentials = credentials

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        with _invocation_lock, applied_environment(self.environment), self._in_this_thread():
            previous = sys.stdout
            inherited = _FUNCTION_STDOUT._target() if previous is _FUNCTION_STDOUT else previous
            _FUNCTION_STDOUT.destinations.append(self.stdout or inherited)
            sys.stdout = _FUNCTION_STDOUT  # type: ignore[assignment]
            try:
                yield
            finally:
                sys.stdout = previous
                _FUNCTION_STDOUT.destinations.pop()

    @contextlib.contextmanager
    def _in_this_thread(self) -> Iterator[None]:
        _install_credential_hooks()
        token = _running_here.set(self)
        try:
            yield
        finally:
            _running_here.reset(token)

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
        they come back as `Invocation.error`. Raises `iam_enforcement.RoleNotProvisioned`
        when the function's role is missing from the emulator."""
        self._assume_role()
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
