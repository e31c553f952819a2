"""`atrest local up` and `atrest local invoke` as a user runs them: separate processes."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from atrest_cli.local.emulator import emulator_client, is_reachable

pytestmark = pytest.mark.local_only("tests `atrest local up` and `atrest local invoke`")

REPO_ROOT = Path(__file__).resolve().parents[3]
FIXTURE_TEMPLATE = Path(__file__).resolve().parent / "local_stack_fixture" / "template.yaml"
REQUIRED_FIELDS = {
    "endpoint", "region", "account_id", "intake_bucket", "vault_bucket", "keystore_table",
    "metadata_table", "kms_key_arn", "encrypt_queue_url", "dead_letter_queue_url",
}


def atrest(*args: str) -> list[str]:
    return [sys.executable, "-m", "atrest_cli.main", *args]


class LocalUp:
    """A running `atrest local up`: its process, the JSON line it printed and its stderr log."""

    def __init__(self, tmp_path: Path, *args: str) -> None:
        self.state_file = tmp_path / "state" / "local-stack.json"
        self.log = tmp_path / "local-up.log"
        # Its record of where the state file is goes here, never into the developer's own state directory.
        self.environment = {**os.environ, "ATREST_STATE_HOME": str(tmp_path / "state-home")}
        self.environment.pop("ATREST_STATE_FILE", None)
        self.process = subprocess.Popen(
            atrest("local", "up", "--state-file", str(self.state_file), *args),
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=self.log.open("w"), text=True, env=self.environment,
        )
        self.summary: dict[str, Any] = json.loads(self._first_line(timeout=60))

    def _first_line(self, timeout: float) -> str:
        assert self.process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self.process.stdout, selectors.EVENT_READ)
            if not selector.select(timeout):
                self.process.kill()
                raise AssertionError(f"`atrest local up` printed nothing in {timeout} s:\n{self.log.read_text()}")
        line = self.process.stdout.readline()
        assert line, f"`atrest local up` exited with {self.process.wait()}:\n{self.log.read_text()}"
        return line

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        """Signal the process; returns its exit status and anything more it printed on stdout."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            status = self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        rest = self.process.stdout.read() if self.process.stdout else ""
        return status, rest


@pytest.fixture
def local_up_of_the_fixture_stack(tmp_path: Path) -> Iterator[LocalUp]:
    running = LocalUp(tmp_path, "--template", str(FIXTURE_TEMPLATE), "--stack-name", "clitest", "--retry-delay", "0")
    yield running
    running.stop()


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while not (value := condition()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


def test_local_up_prints_one_json_line_and_exits_cleanly_on_sigterm(tmp_path):
    running = LocalUp(tmp_path)
    summary = running.summary

    assert REQUIRED_FIELDS <= set(summary)
    assert summary["account_id"] == "123456789012" and summary["region"] == "us-east-1"
    assert re.fullmatch(r"atrest-intake-[0-9a-f]{8}-123456789012-us-east-1", summary["intake_bucket"])
    assert summary["kms_key_arn"].startswith("arn:aws:kms:us-east-1:123456789012:key/")
    assert is_reachable(summary["endpoint"])
    state = json.loads(running.state_file.read_text())
    assert state["endpoint"] == summary["endpoint"]
    assert state["outputs"]["IntakeBucketName"] == summary["intake_bucket"]

    status, more_stdout = running.stop(signal.SIGTERM)

    assert (status, more_stdout) == (0, "")
    assert not running.state_file.exists()
    assert not is_reachable(summary["endpoint"])
    assert "emulator listening on" in running.log.read_text()


def test_local_up_runs_functions_on_uploads_and_local_invoke_runs_one_against_it(tmp_path, local_up_of_the_fixture_stack):
    running = local_up_of_the_fixture_stack
    state = json.loads(running.state_file.read_text())
    endpoint, region = state["endpoint"], state["region"]
    s3 = emulator_client("s3", endpoint=endpoint, region=region)
    results_bucket = state["resources"]["ResultsBucket"]["physical_id"]

    s3.put_object(Bucket=state["resources"]["SourceBucket"]["physical_id"], Key="incoming/from-cli.txt", Body=b"x")
    assert wait_for(lambda: s3.list_objects_v2(Bucket=results_bucket, Prefix="processed/").get("Contents"))

    event_file = tmp_path / "event.json"
    event_file.write_text(json.dumps({"source": "cli-test"}))
    invoked = subprocess.run(
        atrest("local", "invoke", "TickFunction", "-e", str(event_file), "--state-file", str(running.state_file)),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )

    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(invoked.stdout) == {"ticked": True, "event": {"source": "cli-test"}}
    assert s3.list_objects_v2(Bucket=results_bucket, Prefix="ticks/")["KeyCount"] == 1

    unknown = subprocess.run(
        atrest("local", "invoke", "NoSuchFunction", "--state-file", str(running.state_file)),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert unknown.returncode == 2
    assert "has no function NoSuchFunction; its functions: ContactEventFunction, RecorderFunction, TickFunction" in unknown.stderr

    assert running.stop(signal.SIGINT) == (0, "")


def test_local_invoke_without_a_running_stack_says_how_to_start_one(tmp_path):
    invoked = subprocess.run(
        atrest("local", "invoke", "EncryptObjectFunction", "--state-file", str(tmp_path / "missing.json")),
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )

    assert invoked.returncode == 2
    assert "no local stack is running" in invoked.stderr
    assert "start one with `atrest local up`" in invoked.stderr
    assert invoked.stdout == ""


def test_local_invoke_from_any_directory_finds_the_stack_local_up_recorded_and_the_record_goes_with_it(
        tmp_path, local_up_of_the_fixture_stack):
    running = local_up_of_the_fixture_stack
    record = tmp_path / "state-home" / "current-local-stack.json"
    assert json.loads(record.read_text())["state_file"] == str(running.state_file.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    invoked = subprocess.run(atrest("local", "invoke", "TickFunction"), cwd=elsewhere, env=running.environment,
                             capture_output=True, text=True, timeout=60)

    assert invoked.returncode == 0, invoked.stderr
    assert json.loads(invoked.stdout)["ticked"] is True
    assert running.stop(signal.SIGTERM) == (0, "")
    assert not record.exists()
    gone = subprocess.run(atrest("local", "invoke", "TickFunction"), cwd=elsewhere, env=running.environment,
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 2 and "no local stack is running" in gone.stderr
    assert str(elsewhere / ".atrest" / "local-stack.json") in gone.stderr and str(record) in gone.stderr


def test_local_invoke_of_an_event_naming_an_object_not_in_the_intake_says_to_upload_it_first(local_stack):
    """The README's sample event names a recording; it does not carry one. Without the
    object the function answers "source-missing": invoke says so up front, with the upload."""
    from atrest_cli.local.cli import missing_source_warnings

    event = json.loads((REPO_ROOT / "events" / "s3-object-created-recording.json").read_text())
    bucket = event["detail"]["bucket"]["name"]
    assert bucket == local_stack.outputs["IntakeBucketName"]  # the sample names the local stack's intake
    from urllib.parse import unquote_plus

    key = unquote_plus(event["detail"]["object"]["key"])

    (missing,) = missing_source_warnings(event, local_stack)

    assert f"s3://{bucket}/{key} which is not in the local stack".replace(" which", ", which") in missing
    assert "source-missing" in missing and f"aws s3 cp YOUR_FILE 's3://{bucket}/{key}'" in missing
    assert local_stack.endpoint in missing and "version-id" in missing
    s3 = emulator_client("s3", endpoint=local_stack.endpoint, region=local_stack.region)
    current = s3.put_object(Bucket=bucket, Key=key, Body=b"RIFF")["VersionId"]
    try:
        (stale_version,) = missing_source_warnings(event, local_stack)
        assert f"set the event's \"version-id\" to {current}" in stale_version
        event["detail"]["object"]["version-id"] = current
        assert missing_source_warnings(event, local_stack) == []
        assert missing_source_warnings({"detail-type": "Object Created", "source": "aws.s3"}, local_stack) == []
    finally:
        s3.delete_object(Bucket=bucket, Key=key, VersionId=current)


def test_local_invoke_of_an_event_whose_object_the_running_stack_already_encrypted_says_so(local_stack, emulator):
    """The README's flow: the upload itself is encrypted by the running stack (its plaintext
    deleted) before the event is replayed; invoke must not tell the user to upload it again."""
    from urllib.parse import unquote_plus

    from atrest_cli.local.cli import missing_source_warnings
    from atrest_cli.local.lambda_runtime import InProcessFunction

    event = json.loads((REPO_ROOT / "events" / "s3-object-created-recording.json").read_text())
    bucket, key = event["detail"]["bucket"]["name"], unquote_plus(event["detail"]["object"]["key"])
    s3 = emulator_client("s3", endpoint=local_stack.endpoint, region=local_stack.region)
    event["detail"]["object"]["version-id"] = s3.put_object(Bucket=bucket, Key=key, Body=b"RIFF")["VersionId"]
    event["detail"]["object"]["size"] = 4
    encrypt = InProcessFunction(local_stack.function("EncryptObjectFunction"), emulator.environment())
    first = encrypt.invoke(event)
    assert first.succeeded and first.response["outcome"] == "encrypted", first.error
    assert "Versions" not in s3.list_object_versions(Bucket=bucket, Prefix=key)  # the plaintext is gone

    (note,) = missing_source_warnings(event, local_stack)

    assert "already encrypted it to" in note and first.response["vault_key"] in note
    assert "Upload the object first" not in note

