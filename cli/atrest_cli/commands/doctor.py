"""`atrest doctor [--stack NAME] [--json] [--timeout SECONDS] [--keep]`: prove, once after a
deploy and with your own credentials, that the stack encrypts, records, decrypts (audited)
and alarms. The steps are atrest_cli.operations.doctor's; this prints one line per step as it finishes.
Exit 0 only when no step failed (a warning does not fail the run).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable

from atrest_cli.commands.common import add_stack_options

DEFAULT_TIMEOUT_SECONDS = 120.0  # EventBridge + SQS + a cold start take seconds; two minutes leaves room for a slow first run
CONFIRM_PUBLISH_SECONDS = 30.0  # how long to wait for CloudWatch's alarm history to show the SNS publish


def register(subparsers: Any) -> None:
    doctor = subparsers.add_parser(
        "doctor", help="smoke-test a deployed stack: encrypt, decrypt (audited), alarm, clean up",
        description="Uploads a small smoke-test object to the intake bucket, waits until the pipeline has encrypted "
        "and recorded it and removed its plaintext, decrypts it back through `atrest decrypt` (audited, reason "
        "'atrest doctor smoke test'), sets one of the stack's alarms to ALARM so CloudWatch notifies the alarm topic, "
        "then removes the smoke test's objects and record (not its audit record). Run it once after `sam deploy`.")
    doctor.add_argument("--json", action="store_true", help="print a machine-readable summary instead of lines")
    doctor.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_SECONDS, metavar="SECONDS",
                        help=f"how long to wait for the pipeline to encrypt the smoke object (default {DEFAULT_TIMEOUT_SECONDS:g})")
    doctor.add_argument("--keep", action="store_true",
                        help="keep the smoke-test object in the vault and its record (to look at them with `atrest status`)")
    add_stack_options(doctor)
    doctor.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atrest.core.clients import AwsClients
    from atrest.core.errors import AtrestError
    from atrest_cli.operations.deployment import resolve_deployment
    from atrest_cli.operations.doctor import DoctorContext, StepResult, run_doctor

    if args.timeout <= 0:
        raise AtrestError("--timeout must be a positive number of seconds")
    # Which kind of stack resolve_deployment will pick, decided the same way (it does not say):
    # only a stack's resources name its alarms, which have no output.
    from_variables = args.stack_name is None and bool(os.environ.get("ATREST_VAULT_BUCKET"))
    deployment = resolve_deployment(args.stack_name, args.state_file)
    clients = AwsClients()
    physical_id = _resource_names(args, deployment, from_variables, clients)

    def say(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    def step_line(step: StepResult) -> None:
        if not args.json:
            print(render_step(step), flush=True)

    ctx = DoctorContext(deployment.settings, deployment.outputs, clients, _cli_decrypt(args), physical_id,
                        on_aws=deployment.on_aws, progress=say)
    report = run_doctor(ctx, args.timeout, args.keep, CONFIRM_PUBLISH_SECONDS if deployment.on_aws else 0.0, step_line)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, default=str))
    else:
        failed = sum(1 for step in report.steps if not step.passed)
        print("doctor: every step passed" if report.passed else f"doctor: {failed} step(s) did not pass")
    return 0 if report.passed else 1


def render_step(step: Any) -> str:
    line = f"{step.status.value:<8} {step.name:<8} {step.summary}"
    if step.next_step and not step.status.value == "ok":
        line += f" -> {step.next_step}"
    return line


def _cli_decrypt(args: argparse.Namespace) -> Callable[[str, Path, str], None]:
    """`atrest decrypt URI -o OUTPUT --reason REASON` on the same stack: its own code, so the
    smoke test's read is checked and audited exactly as an operator's is."""

    def decrypt(uri: str, output: Path, reason: str) -> None:
        from atrest_cli.commands import decrypt as command

        namespace = argparse.Namespace(uri=uri, output=output, reason=reason, stack_name=args.stack_name,
                                       state_file=args.state_file)
        with contextlib.redirect_stdout(io.StringIO()):  # its report line would break --json
            command.run(namespace)

    return decrypt


def _resource_names(args: argparse.Namespace, deployment: Any, from_variables: bool, clients: Any) -> Callable[[str], str | None]:
    """logical id -> physical id: CloudFormation's stack resources on AWS, the state file's locally."""
    from botocore.exceptions import BotoCoreError, ClientError

    from atrest_cli.operations.deployment import DEFAULT_STACK, find_local_state_file, load_local_state

    if deployment.on_aws:
        cloudformation = clients.client("cloudformation")
        stack = args.stack_name or DEFAULT_STACK

        def on_aws(logical_id: str) -> str | None:
            try:
                detail = cloudformation.describe_stack_resource(StackName=stack, LogicalResourceId=logical_id)
            except (ClientError, BotoCoreError):
                return None
            return detail["StackResourceDetail"].get("PhysicalResourceId")

        return on_aws
    if from_variables:
        return lambda _logical_id: None
    state_file = find_local_state_file(args.state_file).found
    resources = load_local_state(state_file).get("resources", {}) if state_file is not None else {}
    return lambda logical_id: (resources.get(logical_id) or {}).get("physical_id")
