"""`atrest local up` and `atrest local invoke`: the stack on an embedded AWS emulator.

`up` starts the emulator, provisions template.yaml into it, runs the functions on their
events, writes the state file and prints one line of JSON (endpoint, names, ARNs) on
stdout; progress and function logs go to stderr. It runs until SIGINT or SIGTERM. It also
records where its state file is in a per-user place (`atrest_cli.operations.deployment.state_home`), so
every `atrest` command finds the running stack from any directory.

`invoke` is `sam local invoke` for that running stack: one invocation, in this process,
of a function of template.yaml with the environment resolved against the stack.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Sequence

from atrest_cli.operations.deployment import (
    STATE_FILE_VARIABLE,
    find_local_state_file,
    forget_local_state_file,
    record_local_state_file,
)
from atrest_cli.local.stack import DEFAULT_STATE_FILE, LocalStackState

if importlib.util.find_spec("moto") is None:  # the `local` extra; `atrest` then says how to install it
    raise ImportError("No module named 'moto'", name="moto")

log = logging.getLogger("atrest_cli.local")

# docs/architecture.md: the logical ids behind the names `atrest local up` prints.
SUMMARY_RESOURCES = {
    "intake_bucket": "IntakeBucket",
    "vault_bucket": "VaultBucket",
    "keystore_table": "KeyStoreTable",
    "metadata_table": "MetadataTable",
    "encrypt_queue_url": "EncryptQueue",
    "dead_letter_queue_url": "EncryptDeadLetterQueue",
}
NO_STACK_HINT = "start one with `atrest local up`"


class LocalCommandError(Exception):
    """A problem the user can fix; printed without a traceback, exit status 2."""


def register(subparsers: Any) -> None:
    """Add `local up` and `local invoke` to the `atrest` command."""
    local = subparsers.add_parser(
        "local",
        help="run the stack on an embedded AWS emulator (no Docker, no AWS)",
        description="Run the stack of template.yaml on an embedded AWS emulator (moto), without Docker or AWS.",
    )
    commands = local.add_subparsers(dest="local_command", metavar="COMMAND", required=True)

    up = commands.add_parser(
        "up",
        help="start the emulator, provision template.yaml, run the functions on their events",
        description=(
            "Start the emulator, create the stack's resources, and run its functions on the events their "
            "sources deliver until interrupted. Prints one JSON line (endpoint, names, ARNs) on stdout."
        ),
    )
    up.add_argument("--port", type=int, default=0, help="emulator port on 127.0.0.1 (default: any free port)")
    up.add_argument("--stack-name", default="atrest", help="stack name (default: atrest)")
    up.add_argument("--template", type=Path, help="template (default: template.yaml of this project)")
    up.add_argument(
        "--parameter-overrides", nargs="+", default=[], metavar="KEY=VALUE",
        help="template parameters, as for `sam deploy` (Key=Value or ParameterKey=Key,ParameterValue=Value)",
    )
    up.add_argument("--schedule-every", type=float, metavar="SECONDS",
                    help="fire every schedule rule every SECONDS instead of on its own rate (for demos; by default "
                         "ExpireKeys and SweepRetrievals fire on the rates the template gives them)")
    up.add_argument("--retry-delay", type=int, default=2, metavar="SECONDS",
                    help="how long a failed SQS message waits before its retry (default: 2)")
    up.add_argument("--state-file", type=Path, help=f"where to write the stack's state (default: $ATREST_STATE_FILE, "
                    f"else {DEFAULT_STATE_FILE} of this project)")
    up.set_defaults(run=run_up)

    invoke = commands.add_parser(
        "invoke",
        help="invoke one function once against the running local stack (like `sam local invoke`)",
        description=(
            "Invoke a function of template.yaml once, in this process, against the stack `atrest local up` runs. "
            "Prints the function's response as JSON on stdout; its logs go to stderr."
        ),
    )
    invoke.add_argument("function", metavar="FunctionLogicalId", help="logical id of the function in template.yaml")
    invoke.add_argument("-e", "--event", help="JSON event file, '-' for stdin (default: {})")
    invoke.add_argument("--template", type=Path, help="template (default: the one the running stack was created from)")
    invoke.add_argument("--state-file", type=Path, help="state of the running stack (default: as every atrest command "
                        f"finds it: $ATREST_STATE_FILE, {DEFAULT_STATE_FILE} here or in a parent directory, else the "
                        "one the running `atrest local up` recorded)")
    invoke.set_defaults(run=run_invoke)


# -- helpers -----------------------------------------------------------------------------


def project_root(start: Path | None = None) -> Path:
    """The nearest directory, from `start` (default: the current one) upwards, holding template.yaml."""
    start = (start or Path.cwd()).resolve()
    for directory in (start, *start.parents):
        if (directory / "template.yaml").is_file():
            return directory
    return start


def parse_parameter_overrides(tokens: Sequence[str]) -> dict[str, str]:
    """`Key=Value` and `ParameterKey=Key,ParameterValue=Value` tokens, as `sam deploy` takes them."""
    overrides: dict[str, str] = {}
    for token in tokens:
        if token.startswith("ParameterKey="):
            fields = dict(part.split("=", 1) for part in token.split(",", 1) if "=" in part)
            if "ParameterKey" not in fields or "ParameterValue" not in fields:
                raise LocalCommandError(f"cannot read parameter override {token!r}; use Key=Value")
            overrides[fields["ParameterKey"]] = fields["ParameterValue"]
        elif "=" in token:
            key, value = token.split("=", 1)
            overrides[key] = value
        else:
            raise LocalCommandError(f"cannot read parameter override {token!r}; use Key=Value")
    return overrides


def stack_summary(state: LocalStackState, state_file: Path | None = None) -> dict[str, Any]:
    """What `atrest local up` prints: where the emulator is and the stack's names and ARNs."""
    from atrest_cli.local.emulator import emulator_environment

    summary: dict[str, Any] = {
        "endpoint": state.endpoint,
        "region": state.region,
        "account_id": state.account_id,
        "stack_name": state.stack_name,
    }
    for field_name, logical_id in SUMMARY_RESOURCES.items():
        if logical_id in state.resources:
            summary[field_name] = state.physical_id(logical_id)
    if "AtrestKmsKey" in state.resources:
        summary["kms_key_arn"] = state.attribute("AtrestKmsKey", "Arn")
    elif state.parameters.get("CustomerManagedKeyArn"):
        summary["kms_key_arn"] = state.parameters["CustomerManagedKeyArn"]
    summary["functions"] = sorted(state.functions)
    summary["outputs"] = state.outputs
    summary["aws_environment"] = emulator_environment(state.endpoint, state.region)
    if state_file is not None:
        summary["state_file"] = str(state_file)
    return summary


def event_source_lines(state: LocalStackState) -> list[str]:
    """One line per function the runner invokes on events: what it polls and plays, and
    the notes on what it does not."""
    lines = []
    for logical_id, function in sorted(state.functions.items()):
        sources = [f"SQS {s.queue_logical_id} (batch {s.batch_size})" for s in function.sqs_sources if s.enabled]
        sources += [
            f"DynamoDB stream of {s.table_logical_id} (batch {s.batch_size}, {s.starting_position}, "
            f"{'retries until stopped' if s.maximum_retry_attempts < 0 else f'{s.maximum_retry_attempts} retries'})"
            for s in function.dynamodb_sources if s.enabled
        ]
        sources += [f"rule {s.event_id}" for s in function.eventbridge_sources]
        sources += [f"schedule {s.expression}" for s in function.schedule_sources if s.enabled]
        if sources:
            lines.append(f"{logical_id} <- {', '.join(sources)}")
        lines += [f"{logical_id}: {note}" for note in function.notes]
    return lines


def _configure_logging() -> None:
    logger = logging.getLogger("atrest_cli.local")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("atrest local: %(message)s"))
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def _fail(error: Exception) -> int:
    print(f"atrest local: error: {error}", file=sys.stderr)
    return 2


# -- up ----------------------------------------------------------------------------------


def run_up(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from atrest_cli.local.emulator import Emulator, EmulatorError, is_reachable
    from atrest_cli.local.runner import Runner
    from atrest_cli.local.stack import provision
    from atrest_cli.local.template import TemplateError

    _configure_logging()
    root = project_root()
    template = (args.template or root / "template.yaml").resolve()
    state_file = _state_file_to_write(args.state_file, root)
    try:
        overrides = parse_parameter_overrides(args.parameter_overrides)
        if state_file.exists():
            try:
                running = LocalStackState.read(state_file)
            except (ValueError, KeyError):
                running = None
            if running is not None and is_reachable(running.endpoint):
                raise LocalCommandError(
                    f"a local stack already runs at {running.endpoint} (state file {state_file}); "
                    "stop it, or pass another --state-file"
                )
    except LocalCommandError as error:
        return _fail(error)

    stop = threading.Event()
    previous_handlers = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    emulator = Emulator(port=args.port)
    runner = None
    try:
        emulator.start()
        log.info("emulator listening on %s", emulator.endpoint)
        state = provision(template, emulator, stack_name=args.stack_name, parameters=overrides)
        by_note: dict[str, list[str]] = {}
        for record in state.resources.values():
            if record.note:
                by_note.setdefault(record.note, []).append(record.logical_id)
        for note, logical_ids in by_note.items():
            log.info("%s: %s", ", ".join(logical_ids), note)
        for line in event_source_lines(state):
            log.info("%s", line)
        state.write(state_file)
        record_local_state_file(state_file, emulator.endpoint)
        runner = Runner(
            state,
            retry_delay_seconds=args.retry_delay,
            schedule_every_seconds=args.schedule_every,
            function_stdout=sys.stderr,
        ).start()
        log.info(
            "stack %s is up: %d resources, functions %s; state in %s; Ctrl-C to stop",
            state.stack_name, len(state.resources), ", ".join(sorted(state.functions)) or "none", state_file,
        )
        print(json.dumps(stack_summary(state, state_file)), flush=True)
        while not stop.wait(0.5):
            pass
        log.info("stopping")
        return 0
    except (EmulatorError, TemplateError, BotoCoreError, ClientError) as error:
        return _fail(error)
    finally:
        if runner is not None:
            runner.stop()
        if emulator.running:
            _remove_state_file(state_file, emulator.endpoint)
            forget_local_state_file(state_file)
            emulator.stop()
        for sig, handler in previous_handlers.items():
            signal.signal(sig, handler)


def _state_file_to_write(named: Path | None, root: Path) -> Path:
    """--state-file, else ATREST_STATE_FILE (so `local up` and the commands that read the
    stack agree on it), else the project's `.atrest/local-stack.json`."""
    variable = os.environ.get(STATE_FILE_VARIABLE)
    return (named or (Path(variable).expanduser() if variable else root / DEFAULT_STATE_FILE)).resolve()


def _remove_state_file(state_file: Path, endpoint: str) -> None:
    try:
        if LocalStackState.read(state_file).endpoint == endpoint:
            state_file.unlink()
    except (OSError, ValueError, KeyError):
        pass


# -- invoke ------------------------------------------------------------------------------


def run_invoke(args: argparse.Namespace) -> int:
    from atrest_cli.local.emulator import emulator_environment, is_reachable
    from atrest_cli.local.lambda_runtime import InProcessFunction
    from atrest_cli.local.stack import local_functions
    from atrest_cli.local.template import StackTemplate, TemplateError, TemplateEvaluator

    _configure_logging()
    search = find_local_state_file(args.state_file)
    try:
        if search.found is None or not search.found.is_file():
            raise LocalCommandError(f"no local stack is running (no state file at {search.places()}); {NO_STACK_HINT}")
        state_file = search.found.resolve()
        try:
            state = LocalStackState.read(state_file)
        except (ValueError, KeyError) as error:
            raise LocalCommandError(f"cannot read {state_file}: {error}; {NO_STACK_HINT}") from None
        if not is_reachable(state.endpoint):
            raise LocalCommandError(
                f"no local stack is running at {state.endpoint} (the state file {state_file} is left over); {NO_STACK_HINT}"
            )
        event = _read_event(args.event)
        template = StackTemplate.load(
            args.template or state.template_path, stack_name=state.stack_name, region=state.region,
            account_id=state.account_id, parameter_values=state.parameters,
        )
        evaluator = TemplateEvaluator(
            template,
            stack_name=state.stack_name,
            region=state.region,
            account_id=state.account_id,
            parameter_overrides={k: v for k, v in state.parameters.items() if k in template.parameters},
            resources=state.resources,
        )
        functions = local_functions(template, evaluator)
        if args.function not in functions:
            known = ", ".join(sorted(functions)) or "none"
            raise LocalCommandError(f"{template.path.name} has no function {args.function}; its functions: {known}")
    except (LocalCommandError, TemplateError) as error:
        return _fail(error)

    for warning in missing_source_warnings(event, state):
        print(f"atrest local: {warning}", file=sys.stderr, flush=True)
    function = InProcessFunction(
        functions[args.function], emulator_environment(state.endpoint, state.region), stdout=sys.stderr
    )
    invocation = function.invoke(event)
    if invocation.succeeded:
        print(json.dumps(invocation.response), flush=True)
        return 0
    print(json.dumps(invocation.error), flush=True)
    return 1


def _read_event(source: str | None) -> Any:
    if source is None:
        return {}
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    except OSError as error:
        raise LocalCommandError(f"cannot read the event file {source}: {error.strerror or error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise LocalCommandError(f"the event in {source} is not JSON: {error}") from None


def event_sources(event: Any) -> list[Any]:
    """The S3 objects an event names: an S3 "Object Created" EventBridge event, an SQS batch
    of them, or a backfill batch. Anything else names none."""
    from atrest.core.errors import AtrestError
    from atrest.events.shapes import (
        is_backfill_batch,
        source_from_object_created,
        source_from_sqs_body,
        sources_from_backfill_batch,
    )

    if not isinstance(event, dict):
        return []
    try:
        if event.get("detail-type") == "Object Created":
            return [source_from_object_created(event)]
        if is_backfill_batch(event):
            return list(sources_from_backfill_batch(event))
        records = event.get("Records")
        if isinstance(records, list):
            return [source_from_sqs_body(r["body"]) for r in records
                    if isinstance(r, dict) and r.get("eventSource") == "aws:sqs" and isinstance(r.get("body"), str)]
    except (AtrestError, KeyError, TypeError, ValueError):
        return []  # malformed on purpose (a sample of a bad event): the function says what it makes of it
    return []


def missing_source_warnings(event: Any, state: LocalStackState) -> list[str]:
    """One line per object the event names that the local stack does not hold, with the
    command that uploads it: a sample event names an object, it does not carry it, and the
    function would only answer "source-missing"."""
    from botocore.exceptions import ClientError

    from atrest_cli.local.emulator import emulator_client

    s3 = emulator_client("s3", endpoint=state.endpoint, region=state.region)
    warnings = []
    for source in event_sources(event):
        target = f"s3://{source.bucket}/{source.key}"
        try:
            current = s3.head_object(Bucket=source.bucket, Key=source.key).get("VersionId")
        except ClientError as error:
            if str(error.response.get("Error", {}).get("Code", "")) not in ("404", "NoSuchKey", "NotFound", "NoSuchBucket"):
                continue  # not ours to judge (e.g. denied): the function will say
        else:
            if source.version_id is not None and current not in (None, "null") and current != source.version_id \
                    and not _has_version(s3, source):
                warnings.append(f"the event names version {source.version_id} of {target}, which the local stack does "
                                f"not hold, so the function will answer \"source-missing\": set the event's "
                                f"\"version-id\" to {current} (the current version), or remove it")
            continue
        encrypted = _recorded_vault_object(state, source)
        if encrypted is not None:
            # The README's flow: the upload already went S3 -> EventBridge -> SQS -> the function
            # in the running stack, which deleted the plaintext; a replay only finds its record.
            warnings.append(f"{target} is no longer in the intake: the running stack already encrypted it to "
                            f"{encrypted}, so the function finds its record and reports it as a repeat")
            continue
        warnings.append(
            f"the event names {target}, which is not in the local stack, so the function will answer "
            f"\"source-missing\". Upload the object first (any file will do), then invoke again:\n"
            f"  AWS_ENDPOINT_URL={state.endpoint} AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing "
            f"AWS_DEFAULT_REGION={state.region} aws s3 cp YOUR_FILE '{target}'\n"
            "  (without the AWS CLI: python -c \"import boto3; boto3.client('s3', endpoint_url='"
            f"{state.endpoint}', region_name='{state.region}', aws_access_key_id='testing', "
            f"aws_secret_access_key='testing').upload_file('YOUR_FILE', '{source.bucket}', '{_quoted(source.key)}')\")"
            + ("" if source.version_id is None else
               f"\n  The event also names version {source.version_id}: an upload makes a new version, so edit the "
               "event's \"version-id\" to the one the upload prints, or remove it")
        )
    return warnings


def _recorded_vault_object(state: LocalStackState, source: Any) -> str | None:
    """s3://<vault>/<key> of the record the stack holds for `source` (its version, or its only
    encrypted version), else None. A hint only: any failure to tell means None."""
    from atrest.catalog.data_classes import DataClassifier
    from atrest.flows.decrypt_object import source_record
    from atrest.storage.records import MetadataTable
    from atrest_cli.local.emulator import emulator_client
    from atrest_cli.operations.deployment import settings_from_outputs

    try:
        settings = settings_from_outputs(state.outputs, state.account_id, state.parameters)
        records = MetadataTable(emulator_client("dynamodb", endpoint=state.endpoint, region=state.region),
                                settings.metadata_table)
        classifier = DataClassifier.from_settings(settings)
        s3 = emulator_client("s3", endpoint=state.endpoint, region=state.region)
        record = source_record(records, s3, classifier, settings.vault_bucket, source.bucket, source.key,
                               source.version_id)
    except Exception:  # noqa: BLE001 - not found, ambiguous, or not ours to judge: no hint
        return None
    return f"s3://{record.vault_bucket}/{record.vault_key}"


def _quoted(key: str) -> str:
    return key.replace("\\", "\\\\").replace("'", "\\'")


def _has_version(s3: Any, source: Any) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_object(Bucket=source.bucket, Key=source.key, VersionId=source.version_id)
        return True
    except ClientError:
        return False
