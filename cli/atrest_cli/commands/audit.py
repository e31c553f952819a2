"""`atrest audit [--contact ID] [--since 24h|7d|ISO-8601] [--json]`: who read what, when and why.

One row per attempt with its final outcome (docs/audit.md): a REQUESTED item and its
outcome item are shown as one row, and a REQUESTED item left without an outcome past its
deadline as "no outcome (crashed?)"."""

from __future__ import annotations

import argparse
import json
from typing import Any

from atrest_cli.commands.common import add_stack_options


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser(
        "audit", help="list audited reads (ReadObject and atrest decrypt) and their outcomes",
        description="List read attempts from the audit trail, one row per attempt with its outcome: RELEASED "
                    "(plaintext handed over), REFUSED (with the reason), DENIED (not a decryptor, malformed request), "
                    "NOT_FOUND, FAILED, or 'no outcome (crashed?)' for an attempt that recorded its start and never "
                    "its end. A record changed after it was written is marked, and its original shown beside it. "
                    "Data class, source and contact are those the verified message header proved. "
                    "Needs dynamodb:Query on the audit table. See docs/audit.md.")
    audit.add_argument("--contact", metavar="ID", help="only records naming this Amazon Connect contact id (its whole history)")
    audit.add_argument("--since", metavar="WHEN",
                       help="how far back: 30m, 24h, 7d, or an ISO 8601 date/time (default 24h; with --contact: everything)")
    audit.add_argument("--json", action="store_true", help="print the records as JSON")
    add_stack_options(audit)
    audit.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atrest.core.clients import AwsClients
    from atrest.storage.audit import AuditTrail, parse_since, summarize
    from atrest_cli.operations.deployment import resolve

    settings = resolve(args.stack_name, args.state_file)
    trail = AuditTrail.for_table(AwsClients().dynamodb, settings.audit_table)
    since = parse_since(args.since) if args.since else None
    if args.contact:
        records = trail.for_contact(args.contact, since)
        scope = f"contact {args.contact}" + (f" since {since.isoformat()}" if since else "")
    else:
        since = since or parse_since("24h")
        records = trail.since(since)
        scope = f"since {since.isoformat(timespec='seconds')}"
    summary = summarize(records)
    if args.json:
        print(json.dumps({"scope": scope, "summary": summary, "records": [{**r.as_dict(), "state": r.state()} for r in records]}, indent=2))
        return 0
    if records:
        print(render_audit_table(records))
        print()
    print(summary_line(summary, scope))
    return 0


def summary_line(summary: dict[str, int], scope: str) -> str:
    counted = [f"{summary[name]} {name.replace('_', ' ')}" for name in
               ("released", "refused", "denied", "not_found", "failed")]
    counted += [f"{summary[name]} {label}" for name, label in (
        ("no_outcome", "without an outcome (crashed?)"), ("in_progress", "in progress"),
        ("allowed_before_outcomes", "allowed (recorded before outcomes were)"),
        ("unreadable", "unreadable (not atrest records)")) if summary.get(name)]
    line = f"{summary['attempts']} read attempts ({scope}): " + ", ".join(counted)
    if summary.get("changed_records") or summary.get("unreadable"):
        line += (f"\nWARNING: {summary.get('changed_records', 0)} record(s) were changed or removed after they were "
                 f"written (their originals are the rows marked 'original') and {summary.get('unreadable', 0)} "
                 "item(s) are not atrest records. Nothing in atrest changes an audit record: treat this as tampering, "
                 "tell your security team, and find who wrote to the audit table in CloudTrail (DynamoDB data events).")
    return line


def render_audit_table(records: list[Any]) -> str:
    from atrest.catalog.access import parse_principal
    from atrest.storage.audit import printable
    from atrest_cli.terminal import render_table

    header = ("time (UTC)", "outcome", "via", "who", "data class", "contact", "object", "key version", "reason")
    rows = [
        (
            r.at[:19].replace("T", " "),
            r.state(),
            r.channel.value,
            printable(parse_principal(r.principal).short, 40),
            r.data_class or "-",
            printable(r.contact_id or "-", 36),
            printable(r.vault_key or r.requested, 48),
            (r.branch_key_version or "-")[:8],
            printable(r.reason, 50) or "-",
        )
        for r in records
    ]
    return render_table(header, rows)
