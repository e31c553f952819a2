"""`atrest backfill`: years of existing recordings, encrypted once, resumably."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest

from atrest.storage.record_keys import objects_only
from atrest.storage.records import ObjectStatus

pytestmark = pytest.mark.local_only("counts every object in an emptied intake bucket and purges the encrypt queue")

OBJECTS = 120


def _as_in_a_terminal() -> None:
    # An operator's Ctrl-C reaches a foreground command with SIGINT's default handling; a
    # test run started in the background (`make test &`) would pass SIGINT on ignored.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def backfill(env, *args, **popen):
    return subprocess.Popen([sys.executable, "-m", "atrest_cli.main", "backfill", "--json", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_as_in_a_terminal, **popen)


class ProgressWatcher:
    """Reads a backfill's stderr as it comes; `reached(n)` waits until it reports n objects done."""

    _DONE = re.compile(r"backfill: (\d+)/\d+ objects")

    def __init__(self, process: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.done = 0
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, args=(process.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line)
                match = self._DONE.search(line)
                if match:
                    self.done = max(self.done, int(match.group(1)))
                self._changed.notify_all()
        with self._changed:
            self.lines.append("")  # end of output
            self._changed.notify_all()

    def reached(self, objects: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.done >= objects or (self.lines and self.lines[-1] == ""), timeout)\
                and self.done >= objects

    def text(self) -> str:
        self._reader.join(timeout=60)
        with self._changed:
            return "".join(self.lines)


def object_records(settings):
    pages = boto3.client("dynamodb").get_paginator("scan").paginate(
        TableName=settings.metadata_table, **objects_only(),
        ProjectionExpression="source_key, source_version_id, vault_key, #s", ExpressionAttributeNames={"#s": "status"})
    return [item for page in pages for item in page["Items"]]


@pytest.fixture
def existing_recordings(settings, clean_stack):
    """OBJECTS transcripts that landed before atrest was deployed (no events: uploaded under a
    prefix the rule does not watch, then copied into place by the bucket's owner)."""
    s3 = boto3.client("s3")
    keys = [f"{settings.connect_prefix}legacy/ChatTranscripts/2023/{n // 100 + 1:02d}/{(n % 28) + 1:02d}/"
            f"{n:08d}-0000-4000-8000-000000000000_2023{n // 100 + 1:02d}{(n % 28) + 1:02d}T10:00_UTC.json" for n in range(OBJECTS)]

    def put(key):
        s3.put_object(Bucket=settings.intake_bucket, Key=key, Body=b'{"Version":"2019-08-26","Transcript":[]}')

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, keys))
    # Those uploads raised events; drop them, as if atrest had not been listening yet.
    boto3.client("sqs").purge_queue(QueueUrl=clean_stack.outputs["EncryptQueueUrl"])
    return keys


@pytest.mark.slow
def test_backfill_encrypts_every_existing_object_exactly_once_and_resumes_after_an_interruption(settings, cli_environment, existing_recordings):
    first = backfill(cli_environment, "--workers", "2")
    # Interrupt it a quarter of the way, as an operator's Ctrl-C would: on its own progress
    # lines (scanning the table to find out is slow on a busy machine and let the run finish).
    progress = ProgressWatcher(first)
    assert progress.reached(OBJECTS // 4, timeout=180), progress.text()
    first.send_signal(signal.SIGINT)
    out = first.stdout.read()
    first.wait(timeout=60)
    err = progress.text()
    assert first.returncode == 130, err
    interrupted = json.loads(out.strip().splitlines()[-1])
    assert interrupted["interrupted"] and 0 < sum(interrupted["outcomes"].values()) < OBJECTS
    assert "objects/s" in err and "ETA" in err  # progress was shown

    second = backfill(cli_environment, "--workers", "2")
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    finished = json.loads(out)
    assert finished["to_do"] <= OBJECTS - sum(interrupted["outcomes"].values()) + 8  # only what was left (+ in-flight)

    records = object_records(settings)
    assert len(records) == OBJECTS
    assert sorted(r["source_key"]["S"] for r in records) == sorted(existing_recordings)
    assert {r["status"]["S"] for r in records} == {ObjectStatus.SOURCE_DELETED.value}
    vault = boto3.client("s3").get_paginator("list_object_versions").paginate(Bucket=settings.vault_bucket)
    vault_versions = [v for page in vault for v in page.get("Versions", [])]
    assert len({v["Key"] for v in vault_versions}) == OBJECTS
    assert boto3.client("s3").list_object_versions(Bucket=settings.intake_bucket).get("Versions", []) == []

    third = backfill(cli_environment)
    out, _ = third.communicate(timeout=120)
    assert third.returncode == 0
    assert json.loads(out)["to_do"] == 0  # a rerun does nothing


def test_backfill_leaves_objects_outside_the_data_classes_and_respects_since(settings, cli_environment, clean_stack):
    s3 = boto3.client("s3")
    s3.put_object(Bucket=settings.intake_bucket, Key=f"{settings.connect_prefix}legacy/Reports/summary.csv", Body=b"x")
    s3.put_object(Bucket=settings.intake_bucket, Key=f"{settings.knowledge_prefix}faq.md", Body=b"# FAQ")
    boto3.client("sqs").purge_queue(QueueUrl=clean_stack.outputs["EncryptQueueUrl"])

    future_only = backfill(cli_environment, "--since", "2999-01-01")
    out, err = future_only.communicate(timeout=120)
    assert future_only.returncode == 0, err
    assert json.loads(out)["matching"] == 0

    everything = backfill(cli_environment)
    out, err = everything.communicate(timeout=120)
    summary = json.loads(out)
    assert summary["matching"] == 1 and summary["outcomes"] == {"encrypted": 1}
    remaining = [v["Key"] for v in s3.list_object_versions(Bucket=settings.intake_bucket)["Versions"]]
    assert remaining == [f"{settings.connect_prefix}legacy/Reports/summary.csv"]
