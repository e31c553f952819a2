"""Fixtures shared by every test directory: the embedded AWS emulator and the stack of
template.yaml provisioned into it.

- `emulator` (session): a running `atrest.local.emulator.Emulator`. Its standard
  variables (AWS_ENDPOINT_URL, test credentials, region) are set in `os.environ` for the
  session, so any boto3 client reaches it the way deployed code reaches AWS.
- `local_stack` (session): template.yaml provisioned once, as stack "atrest" (its
  `LocalStackState`: physical names, ARNs, outputs, functions).
- `clean_stack` (function): `local_stack` with every object version, item and message
  deleted first; use it when a test counts what is in a bucket, table or queue. It empties
  the key store too, so build handlers afresh in such tests (a new `Runner`, as
  `local_runner` does) rather than reusing one that caches branch keys.
- `local_runner` (function): a `Runner` for `clean_stack` (not started; call `drain()`),
  retrying failed messages after 1 s.
- `demo_run` (session): one `atrest demo` (its real command line, in a process of its own,
  with its own emulator), with the material of every branch key it made: what it promises
  a newcomer and what it must never log are checked on the same run.

Tests that need no clean slate share the stack and keep apart by unique object keys.
moto keeps its state per process: start no other moto server, and do not use
`moto.mock_aws` (it resets every backend) in a session that uses these fixtures.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPO_ROOT / "template.yaml"

# Variables from the developer's shell that would send requests elsewhere or sign them differently.
_FOREIGN_AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE")


@pytest.fixture(scope="session")
def emulator() -> Iterator[Any]:
    from atrest.local.emulator import Emulator

    environment = pytest.MonkeyPatch()
    # SQS allows one PurgeQueue a minute per queue; emptying queues between tests purges more
    # often. The moto server runs in this process and reads this setting on every purge.
    environment.setenv("MOTO_SQS_ENFORCE_STRICT_QUEUE_PURGE_BEHAVIOUR", "false")
    # Where `atrest local up` records its state file: a developer's own running stack must
    # never answer for a test that names none.
    environment.setenv("ATREST_STATE_HOME", tempfile.mkdtemp(prefix="atrest-state-home-"))
    with Emulator() as running:
        for name in _FOREIGN_AWS_VARIABLES:
            environment.delenv(name, raising=False)
        for name, value in running.environment().items():
            environment.setenv(name, value)
        try:
            yield running
        finally:
            environment.undo()


@pytest.fixture(scope="session")
def local_stack(emulator: Any) -> Any:
    from atrest.local.stack import provision

    return provision(TEMPLATE, emulator, stack_name="atrest")


@pytest.fixture
def clean_stack(local_stack: Any, emulator: Any) -> Any:
    from atrest.local.stack import empty_stack

    empty_stack(local_stack, emulator)
    return local_stack


@pytest.fixture
def local_runner(clean_stack: Any) -> Iterator[Any]:
    from atrest.local.runner import Runner

    runner = Runner(clean_stack, retry_delay_seconds=1)
    yield runner
    runner.stop()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`atrest demo` run once: `returncode`, `stdout`, `stderr`, and `branch_keys` (the
    material of every active branch key, read just before its emulator stopped)."""
    work = tmp_path_factory.mktemp("demo")
    key_file = work / "branch-keys.txt"
    demo = subprocess.run([sys.executable, str(REPO_ROOT / "tests" / "reliability" / "demo_with_key_capture.py"),
                           str(key_file)], cwd=work, capture_output=True, text=True, timeout=300)
    branch_keys = [bytes.fromhex(line) for line in key_file.read_text().split()] if key_file.exists() else []
    return SimpleNamespace(returncode=demo.returncode, stdout=demo.stdout, stderr=demo.stderr, branch_keys=branch_keys)
