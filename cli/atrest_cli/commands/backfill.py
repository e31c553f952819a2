"""`atrest backfill --bucket B [--prefix P] [--since DATE]`: encrypt what was there before atrest.

On a deployed stack it starts the BackfillStateMachine (Step Functions Distributed Map
over the bucket listing, child batches invoking EncryptObjectFunction). Locally, or with
`--engine local`, it runs the same per-object work in worker processes here.
"""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone
from typing import Any

from atrest.core.errors import AtrestError
from atrest_cli.commands.common import add_stack_options


def register(subparsers: Any) -> None:
    backfill = subparsers.add_parser(
        "backfill",
        help="encrypt existing objects that match a data class and are not yet encrypted",
        description="Encrypt every existing object that matches a data class and has no atrest record yet, "
        "through the same code as new uploads. Safe to rerun: finished objects are passed over.",
    )
    backfill.add_argument("--bucket", help="bucket to backfill (default: the stack's intake bucket)")
    backfill.add_argument("--prefix", action="append", help="only keys under this prefix (repeatable; default: the whole bucket)")
    backfill.add_argument("--since", type=_date, help="only objects last modified on or after this date (YYYY-MM-DD or ISO 8601)")
    backfill.add_argument("--workers", type=int, default=2, help="local worker processes (default 2)")
    backfill.add_argument("--engine", choices=("auto", "local", "stepfunctions"), default="auto",
                          help="auto: Step Functions on a deployed stack, local workers otherwise")
    backfill.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_stack_options(backfill)
    backfill.set_defaults(run=run)


def _date(text: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (use YYYY-MM-DD)") from error
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def run(args: argparse.Namespace) -> int:
    from atrest.catalog.data_classes import DataClassCatalog
    from atrest_cli.operations.deployment import resolve_deployment

    deployment = resolve_deployment(args.stack_name, args.state_file)
    settings = deployment.settings
    bucket = args.bucket or settings.intake_bucket
    prefixes = args.prefix or DataClassCatalog.from_settings(settings).listing_prefixes()
    engine = args.engine if args.engine != "auto" else ("stepfunctions" if deployment.on_aws else "local")
    if engine == "stepfunctions":
        return _start_state_machine(deployment, bucket, prefixes, args)
    return _run_locally(settings, bucket, prefixes, args)


def _run_locally(settings: Any, bucket: str, prefixes: list[str], args: argparse.Namespace) -> int:
    from atrest_cli.operations.backfill import BackfillReport, run_backfill
    from atrest_cli.progress import ItemProgress, human_bytes

    with ItemProgress("backfill", "objects") as bar:

        def listed(found: int, to_do: int) -> None:
            where = "" if prefixes == [""] else f"{{{','.join(prefixes)}}}"  # [""]: the whole bucket
            bar.note(f"listing s3://{bucket}/{where}: {found} matching, {to_do} not yet encrypted")

        def progress(report: BackfillReport) -> None:
            bar(report.done, report.to_do, f"{human_bytes(report.bytes_encrypted)}, {len(report.failures)} failed")

        report = run_backfill(settings, bucket, prefixes, args.since, args.workers, on_listed=listed,
                              on_progress=progress)
    summary = {
        "bucket": bucket,
        "prefixes": prefixes,
        "matching": report.listed,
        "to_do": report.to_do,
        "outcomes": dict(report.outcomes),
        "failed": len(report.failures),
        "bytes_encrypted": report.bytes_encrypted,
        "seconds": round(report.seconds, 1),
        "interrupted": report.interrupted,
    }
    if args.json:
        print(json.dumps({**summary, "failures": report.failures}))
    else:
        print(f"backfill of s3://{bucket}: {report.listed} objects match a data class; {report.to_do} had no record")
        print(render_outcomes(report))
        print(f"  {human_bytes(report.bytes_encrypted)} encrypted in {report.seconds:.1f} s")
        if report.interrupted:
            print("interrupted: run the same command again to finish (finished objects are passed over)")
        elif report.failures:
            print("some objects failed: fix the cause shown, then run the same command again")
    if report.interrupted:
        return 130
    return 1 if report.failures else 0


def render_outcomes(report: Any) -> str:
    """Objects per outcome, failures included, then the first failures with their reasons."""
    from atrest_cli.terminal import render_table, safe_text

    rows = [*sorted(report.outcomes.items()), ("failed", len(report.failures))]
    lines = ["  " + line for line in render_table(("outcome", "objects"), rows, right=(1,)).splitlines()]
    lines += [f"    {safe_text(key)}: {safe_text(reason)}" for key, reason in list(report.failures.items())[:20]]
    return "\n".join(lines)


def _start_state_machine(deployment: Any, bucket: str, prefixes: list[str], args: argparse.Namespace) -> int:
    from atrest.core.clients import AwsClients

    arn = deployment.outputs.get("BackfillStateMachineArn")
    if not arn:
        raise AtrestError("the stack has no BackfillStateMachineArn output; redeploy it with this version of template.yaml")
    sfn = AwsClients().client("stepfunctions")
    executions = []
    for prefix in prefixes:
        started = sfn.start_execution(
            stateMachineArn=arn,
            input=json.dumps({"bucket": bucket, "prefix": prefix, "since": args.since.isoformat() if args.since else ""}),
        )
        executions.append(started["executionArn"])
        print(f"started {started['executionArn']} for s3://{bucket}/{prefix}")
    print("follow them in the Step Functions console, or: aws stepfunctions describe-execution --execution-arn <arn>")
    results = deployment.outputs.get("BackfillResultsBucketName")
    if results:  # the state machine's ResultWriter (template.yaml: BackfillResultsBucket), kept 30 days
        print(f"per-batch results: s3://{results}/backfill-results/")
    return 0
