"""Which deployed stack the operator CLI works on, turned into `Settings`.

In order: what the operator named (`--stack`, `--state-file`); else `ATREST_*` variables
(as the functions see them); a running local stack's state file (written by `atrest local
up`); a CloudFormation stack's outputs on AWS.
The local state file and CloudFormation give the same `Outputs`, read the same way.

A local stack's state file is found from any working directory (`find_local_state_file`):
`--state-file`, else `ATREST_STATE_FILE`, else `.atrest/local-stack.json` in the working
directory or one of its parents (the project's), else the state file the last
`atrest local up` recorded in a per-user place (`state_home()`: `$ATREST_STATE_HOME`, else
`$XDG_STATE_HOME/atrest`, else `~/.local/state/atrest`). When none is found and no
CloudFormation stack can be read either, the error names every place looked at.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from atrest.core.errors import ConfigurationError
from atrest.core.settings import ACCOUNT_ID_VARIABLE, DECLARATIONS, Settings
from atrest.storage.records import RECORD_FORMAT

DEFAULT_STACK = "atrest"
DEFAULT_STATE_FILE = Path(".atrest") / "local-stack.json"
STATE_FILE_VARIABLE = "ATREST_STATE_FILE"  # a local stack's state file, wherever the CLI runs from
STATE_HOME_VARIABLE = "ATREST_STATE_HOME"  # where `atrest local up` records its state file's path (tests move it)
# In `state_home()`: the path of the state file of the last `atrest local up` still running.
CURRENT_STACK_RECORD = "current-local-stack.json"

# template.yaml's Outputs and Parameters -> the variables Settings reads: from the settings'
# declarations (`output=`, `parameter=` in atrest.core.settings), never listed again here.
OUTPUT_VARIABLES = {d.output: d.variable for d in DECLARATIONS.values() if d.output and d.cli}
PARAMETER_VARIABLES = {d.parameter: d.variable for d in DECLARATIONS.values() if d.parameter and d.cli}


def _parameter_text(value: Any) -> str:
    """A parameter as the functions' environment carries it: a list parameter (the local
    stack keeps CommaDelimitedList values as lists) joined with commas, as `!Join` does."""
    return ",".join(str(item) for item in value) if isinstance(value, (list, tuple)) else str(value)


def settings_from_outputs(outputs: Mapping[str, str], account_id: str, parameters: Mapping[str, str] | None = None) -> Settings:
    env = {variable: outputs[name] for name, variable in OUTPUT_VARIABLES.items() if name in outputs}
    env.update({v: _parameter_text(parameters[p]) for p, v in PARAMETER_VARIABLES.items() if parameters and p in parameters})
    env[ACCOUNT_ID_VARIABLE] = account_id  # the stack id's account, as the template gives AWS::AccountId
    settings = Settings.from_env(env)
    _check_record_format(settings)
    return settings


def _check_record_format(settings: Settings) -> None:
    """Refuse a stack whose functions write metadata records of a shape this CLI does not
    know: it would misread them (an older CLI finds no vault key or encryption context in a
    newer record) rather than fail clearly. A stack without the output predates it and writes
    records every CLI with this check reads."""
    if settings.record_format and settings.record_format > RECORD_FORMAT:
        raise ConfigurationError(
            f"the stack writes metadata records of format {settings.record_format} (its RecordFormat output), and "
            f"this atrest CLI reads formats up to {RECORD_FORMAT}: run the CLI of the release the stack was deployed "
            "from (in that checkout: `make venv`, then `.venv/bin/atrest`)")


def load_local_state(path: Path, search: "StateFileSearch | None" = None) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as error:
        named = f" (looked at: {search.places()})" if search else ""
        raise ConfigurationError(f"no local stack state at {path}{named}; start one with `atrest local up`, or name "
                                 "its state file with --state-file or ATREST_STATE_FILE") from error


def apply_local_endpoint(state: Mapping[str, Any], environ: dict[str, str] | os._Environ[str] = os.environ) -> None:
    """Point boto3 at the local emulator the state file names (only the standard variables)."""
    environ["AWS_ENDPOINT_URL"] = state["endpoint"]
    environ.setdefault("AWS_ACCESS_KEY_ID", "testing")
    environ.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    environ["AWS_DEFAULT_REGION"] = environ["AWS_REGION"] = state.get("region", "us-east-1")


@dataclass(frozen=True)
class Deployment:
    """A stack as the CLI sees it: its settings, its outputs, and where it runs."""

    settings: Settings
    outputs: Mapping[str, str]
    on_aws: bool  # False for ATREST_* variables and for a local stack
    state_file: Path | None = None  # a local stack's state file, wherever it was found


# -- finding a local stack's state file ------------------------------------------------------


def state_home(environ: Mapping[str, str] = os.environ) -> Path:
    """The per-user directory where `atrest local up` records where its state file is:
    `$ATREST_STATE_HOME`, else `$XDG_STATE_HOME/atrest`, else `~/.local/state/atrest` (the
    XDG base directory specification's place for state that outlives a process)."""
    if environ.get(STATE_HOME_VARIABLE):
        return Path(environ[STATE_HOME_VARIABLE]).expanduser()
    if environ.get("XDG_STATE_HOME"):
        return Path(environ["XDG_STATE_HOME"]).expanduser() / "atrest"
    return Path.home() / ".local" / "state" / "atrest"


def record_local_state_file(state_file: Path, endpoint: str, environ: Mapping[str, str] = os.environ) -> Path:
    """Record (atomically) that the running local stack's state is `state_file`, so the CLI
    finds it from any directory. Returns the record's path."""
    record = state_home(environ) / CURRENT_STACK_RECORD
    record.parent.mkdir(parents=True, exist_ok=True)
    partial = record.with_name(record.name + f".{os.getpid()}.partial")
    partial.write_text(json.dumps({"state_file": str(Path(state_file).resolve()), "endpoint": endpoint}) + "\n",
                       encoding="utf-8")
    partial.replace(record)
    return record


def forget_local_state_file(state_file: Path, environ: Mapping[str, str] = os.environ) -> None:
    """Remove the record, if it still names `state_file` (a later `local up` may have replaced it)."""
    if recorded_local_state_file(environ) == Path(state_file).resolve():
        (state_home(environ) / CURRENT_STACK_RECORD).unlink(missing_ok=True)


def recorded_local_state_file(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The state file the last `atrest local up` recorded, if the record is readable."""
    try:
        data = json.loads((state_home(environ) / CURRENT_STACK_RECORD).read_text(encoding="utf-8"))
        return Path(data["state_file"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class StateFileSearch:
    """Where a local stack's state file was looked for, and the one found (None: none)."""

    found: Path | None
    looked: tuple[str, ...]  # each place, with why it was looked at

    def places(self) -> str:
        return "; ".join(self.looked)


def find_local_state_file(state_file: Path | None = None, environ: Mapping[str, str] = os.environ,
                          cwd: Path | None = None) -> StateFileSearch:
    """The local stack's state file the CLI uses, and every place it looked (module docstring).

    An explicitly named file (`--state-file`, `ATREST_STATE_FILE`) is returned whether it
    exists or not: the caller then says it is missing rather than silently using another."""
    if state_file is not None:
        return StateFileSearch(Path(state_file), (f"{state_file} (--state-file)",))
    if environ.get(STATE_FILE_VARIABLE):
        named = Path(environ[STATE_FILE_VARIABLE]).expanduser()
        return StateFileSearch(named, (f"{named} ({STATE_FILE_VARIABLE})",))
    looked = []
    start = (cwd or Path.cwd()).resolve()
    for directory in (start, *start.parents):
        candidate = directory / DEFAULT_STATE_FILE
        if candidate.is_file():
            return StateFileSearch(candidate, (*looked, str(candidate)))
        if directory == start:
            looked.append(f"{candidate} (the working directory)")
    looked.append(f"{DEFAULT_STATE_FILE} in every parent of {start}")
    record = state_home(environ) / CURRENT_STACK_RECORD
    recorded = recorded_local_state_file(environ)
    if recorded is not None and recorded.is_file():
        return StateFileSearch(recorded, (*looked, f"{recorded} (recorded by `atrest local up` in {record})"))
    if recorded is not None:
        looked.append(f"{recorded} (recorded by `atrest local up` in {record}, gone: that stack stopped)")
    else:
        looked.append(f"{record} (where `atrest local up` records its state file; none recorded)")
    return StateFileSearch(None, tuple(looked))


def resolve_deployment(stack_name: str | None = None, state_file: Path | None = None, clients: Any = None) -> Deployment:
    # An explicit --stack or --state-file wins over variables left in the shell (a function's
    # environment replayed by hand must not redirect a command that named its stack).
    if stack_name is None and state_file is None and os.environ.get("ATREST_VAULT_BUCKET"):
        outputs = {name: os.environ[variable] for name, variable in OUTPUT_VARIABLES.items() if variable in os.environ}
        return Deployment(Settings.from_env(), outputs, on_aws=False)
    search = find_local_state_file(state_file) if stack_name is None else None
    if search is not None and search.found is not None:
        state = load_local_state(search.found, search)
        apply_local_endpoint(state)
        settings = settings_from_outputs(state["outputs"], state["account_id"], state.get("parameters"))
        return Deployment(settings, state["outputs"], on_aws=False, state_file=search.found)
    return deployment_from_cloudformation(stack_name or DEFAULT_STACK, clients, search)


def resolve(stack_name: str | None = None, state_file: Path | None = None, clients: Any = None) -> Settings:
    return resolve_deployment(stack_name, state_file, clients).settings


def deployment_from_cloudformation(stack_name: str, clients: Any = None,
                                   search: StateFileSearch | None = None) -> Deployment:
    """`search`: where a local stack was looked for first (named in the error, so that an
    operator whose local stack was not found sees where the CLI looked)."""
    from atrest.core.clients import AwsClients

    clients = clients or AwsClients()
    try:
        stack = clients.client("cloudformation").describe_stacks(StackName=stack_name)["Stacks"][0]
    except Exception as error:
        local = (f"; no local stack either: no state file at {search.places()}. Start one with `atrest local up`, or "
                 f"name its state file with --state-file or {STATE_FILE_VARIABLE}") if search else ""
        raise ConfigurationError(
            f"cannot read CloudFormation stack {stack_name!r} ({error}); deploy it with `sam deploy` or pass "
            f"--stack NAME{local or ', or start a local one with `atrest local up`'}"
        ) from error
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    parameters = {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])}
    account_id = stack["StackId"].split(":")[4]
    return Deployment(settings_from_outputs(outputs, account_id, parameters), outputs, on_aws=True)
