"""`atrest demo`: the encrypt pipeline end to end on the embedded emulator.

Starts the emulator, provisions template.yaml, uploads a call recording and a chat
transcript under the Amazon Connect layout, lets S3 -> EventBridge -> SQS -> the
EncryptObject handler do the work, then reads every record back, decrypts every vault
object and compares it with what was uploaded.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from atrest.deployment import settings_from_outputs
from atrest.progress import human_bytes
from atrest.records import ObjectRecord

ROOT = Path(__file__).resolve().parents[3]
DEMO_ALIAS = "acme-support"
DEMO_INSTANCE_ID = "f75946c0-bc38-4252-8174-468f6ac2543d"


@dataclass
class Upload:
    key: str
    body: bytes
    version_id: str


def _say(label: str, text: str) -> None:
    print(f"  {label:<10} {text}", flush=True)


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width // 2 - 1] + "..." + text[-(width - width // 2 - 2):]


def render_table(records: list[ObjectRecord]) -> str:
    header = ("object", "data class", "scope", "key version", "plaintext", "ciphertext", "ms")
    rows = [
        (
            _shorten(r.source_key, 110),
            r.data_class,
            r.scope,
            r.branch_key_version[:8],
            human_bytes(r.plaintext_size),
            human_bytes(r.ciphertext_size),
            str(r.duration_ms if r.duration_ms is not None else ""),
        )
        for r in records
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    right = {4, 5, 6}
    lines = []
    for row in [header, *rows]:
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace | None = None) -> int:
    import boto3

    from atrest.local.emulator import Emulator
    from atrest.local.runner import Runner
    from atrest.local.stack import provision
    from atrest.reader import VaultReader
    from atrest.records import MetadataTable
    from atrest.samples import call_recording_wav, chat_transcript, connect_key
    from atrest.vault import vault_key_for

    template = Path(getattr(args, "template", None) or ROOT / "template.yaml")
    print("atrest demo: encryption at rest on the embedded AWS emulator", flush=True)
    work = Path(tempfile.mkdtemp(prefix="atrest-demo-"))
    with Emulator() as emulator:
        os.environ.update(emulator.environment())
        _say("emulator", f"{emulator.endpoint} (moto server on loopback, in this process)")
        state = provision(template, emulator, stack_name="atrest")
        _say("stack", f"{state.stack_name}: {len(state.resources)} resources from {template.name}")
        settings = settings_from_outputs(state.outputs, state.account_id, state.parameters)

        s3 = boto3.client("s3")
        contact = str(uuid.uuid4())
        when = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        objects = [
            (connect_key(settings.connect_prefix, DEMO_ALIAS, "CallRecordings", contact, when, "wav"), call_recording_wav(3.0)),
            (connect_key(settings.connect_prefix, DEMO_ALIAS, "ChatTranscripts", contact, when, "json"),
             chat_transcript(settings.account_id, DEMO_INSTANCE_ID, contact, when)),
        ]
        uploads = []
        for key, body in objects:
            version = s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=body)["VersionId"]
            uploads.append(Upload(key, body, version))
        _say("uploaded", f"{len(uploads)} objects to s3://{settings.intake_bucket}/{settings.connect_prefix}{DEMO_ALIAS}/")

        log_path = work / "functions.log"
        started = time.monotonic()
        with log_path.open("w") as function_log:
            runner = Runner(state, function_stdout=function_log)
            stats = runner.drain(timeout=120)
        _say("processed", f"{stats.invocations} invocation(s) of EncryptObjectFunction via S3 -> EventBridge -> SQS "
                          f"in {time.monotonic() - started:.1f} s (function logs: {log_path})")

        table = MetadataTable(boto3.client("dynamodb"), settings.metadata_table)
        reader = VaultReader.from_settings(settings)
        records, verified, problems = [], 0, []
        for upload in uploads:
            data_class = "call-recording" if upload.key.endswith(".wav") else "chat-transcript"
            record = table.get_object(vault_key_for(data_class, settings.intake_bucket, upload.key, upload.version_id))
            if record is None:
                problems.append(f"no record for {upload.key}")
                continue
            records.append(record)
            out = work / Path(upload.key).name.replace(":", "-")
            reader.decrypt_to_file(record.vault_bucket, record.vault_key, out)
            if out.read_bytes() == upload.body:
                verified += 1
            else:
                problems.append(f"{upload.key} decrypted to different bytes")
            out.unlink()
        leftover = s3.list_object_versions(Bucket=settings.intake_bucket).get("Versions", [])

        print()
        print(render_table(records))
        print()
        if problems or verified != len(uploads):
            print(f"FAILED: {verified} of {len(uploads)} objects verified; " + "; ".join(problems))
            return 1
        plaintext_note = "no plaintext is left in the intake bucket" if not leftover else f"{len(leftover)} source version(s) kept"
        print(f"every object decrypted back to its original bytes ({verified} of {len(uploads)}); {plaintext_note}")
        print(f"vault objects are in s3://{settings.vault_bucket}/ as ESDK messages; records in {settings.metadata_table}")
    return 0
