"""Fixtures shared by every test directory (tests/ and cli/tests/, whose conftest.py files
load this module by name): the stack under test and the embedded AWS emulator.

- `target` (session): the stack under test (`targets.Target`): its `settings`, `outputs`,
  how the CLI names it; the local stack below by default, the deployed stack
  `ATREST_STACK` names otherwise (tests/targets.py, docs/local.md "Running the tests
  against a deployed stack").
- `settings` (session): the settings the stack's functions have, from its outputs.
- `clean_stack` (function): on the local target, `local_stack` with every object version,
  item and message deleted first; use it when a test counts what is in a bucket, table or
  queue. It empties the key store too, so build handlers afresh in such tests (a new
  `Runner`, as `local_runner` does) rather than reusing one that caches branch keys;
  session-wide warm functions start cold again after it (`stack_emptied`). On a deployed
  target it empties nothing.
- `created` (function): a `targets.CreatedResources` for what the test makes; removed when
  the test ends. On a deployed target everything this process makes during the session is
  recorded as well and removed when the session ends.
- `emulator` (session): a running `atrest_cli.local.emulator.Emulator`. Its standard
  variables (AWS_ENDPOINT_URL, test credentials, region) are set in `os.environ` for the
  session, so any boto3 client reaches it the way deployed code reaches AWS.
- `local_stack` (session): template.yaml provisioned once, as stack "atrest" (its
  `LocalStackState`: physical names, ARNs, outputs, functions).
- `local_runner` (function): a `Runner` for `clean_stack` (not started; call `drain()`),
  retrying failed messages after 1 s.
- `demo_run` (session): one `atrest demo` (its real command line, in a process of its own,
  with its own emulator), with the material of every branch key it made: what it promises
  a newcomer and what it must never log are checked on the same run.

On a deployed target, tests marked `local_only` and tests that use `emulator`,
`local_stack` or `local_runner` are skipped, with the reason.

Tests that need no clean slate share the stack and keep apart by unique object keys.
moto keeps its state per process: start no other moto server, and do not use
`moto.mock_aws` (it resets every backend) in a session that uses these fixtures.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import pytest

from atrest.core.settings import Settings

from targets import STACK_VARIABLE, CreatedResources, Target, deployed_stack_name, local_target, selected_target

REPO_ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = REPO_ROOT / "template.yaml"

# Variables from the developer's shell that would send requests elsewhere or sign them differently.
_FOREIGN_AWS_VARIABLES = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_CONFIG_FILE")
# Fixtures that only the local target has: a test using one cannot run on a deployed stack.
_LOCAL_FIXTURES = ("emulator", "local_stack", "local_runner")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    stack = deployed_stack_name()
    if stack is None:
        return
    for item in items:
        marker = item.get_closest_marker("local_only")
        if marker is not None:
            why = marker.args[0] if marker.args else marker.kwargs.get("reason", "runs on the embedded emulator only")
        else:
            uses = [name for name in _LOCAL_FIXTURES if name in item.fixturenames]
            if not uses:
                continue
            why = f"uses the local stack's fixture {uses[0]!r}"
        item.add_marker(pytest.mark.skip(reason=f"local only ({STACK_VARIABLE}={stack}): {why}"))


def _refuse_on_a_deployed_target(fixture: str) -> None:
    # The collection hook skips such tests; this covers one that asks for the fixture by name at run time.
    stack = deployed_stack_name()
    if stack is not None:
        pytest.skip(f"local only ({STACK_VARIABLE}={stack}): needs the local stack's fixture {fixture!r}")


@pytest.fixture(scope="session")
def emulator() -> Iterator[Any]:
    _refuse_on_a_deployed_target("emulator")
    from atrest_cli.local.emulator import Emulator

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
    from atrest_cli.local.stack import provision

    return provision(TEMPLATE, emulator, stack_name="atrest")


@pytest.fixture(scope="session")
def target(request: pytest.FixtureRequest) -> Iterator[Target]:
    # The local stack is asked for here, not as parameters: a test's fixtures then name the
    # emulator only when it needs the local stack, which is how the collection hook tells
    # what runs on AWS.
    def local() -> Target:
        return local_target(request.getfixturevalue("local_stack"), request.getfixturevalue("emulator"))

    with selected_target(local, leftovers=_warn_of_leftovers) as selected:
        yield selected


def _warn_of_leftovers(failures: list[str]) -> None:
    if failures:
        warnings.warn(f"could not remove what the tests made: {'; '.join(failures)}", stacklevel=2)


@pytest.fixture(scope="session")
def settings(target: Target) -> Settings:
    """The settings the stack's functions have, from its outputs."""
    return target.settings


@pytest.fixture
def created(target: Target) -> Iterator[CreatedResources]:
    """Record what the test makes here (`created.object(bucket, key, version)`, `.item`,
    `.branch_key`, ...): it is removed when the test ends, on either target."""
    made = CreatedResources(kept_tables=frozenset({target.settings.audit_table}))
    yield made
    _warn_of_leftovers(made.remove())


# How often `clean_stack` emptied the stack in this process (each test worker has its own
# stack): a warm function made before the last emptying holds branch keys the key store no
# longer has, so what it writes would not decrypt (see `stack_emptied`).
_EMPTIED = [0]


@pytest.fixture
def clean_stack(target: Target) -> Any:
    """The local stack emptied (its `LocalStackState`); a deployed stack as it is (its `Target`)."""
    if target.empty():
        _EMPTIED[0] += 1
    return target.local if target.local is not None else target


@pytest.fixture(scope="session")
def stack_emptied() -> Any:
    """`stack_emptied()`: how many times the stack was emptied so far; a session-wide warm
    function compares it to start cold again after an emptying."""
    return lambda: _EMPTIED[0]


@pytest.fixture
def local_runner(clean_stack: Any) -> Iterator[Any]:
    _refuse_on_a_deployed_target("local_runner")
    from atrest_cli.local.runner import Runner

    runner = Runner(clean_stack, retry_delay_seconds=1)
    yield runner
    runner.stop()


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """`atrest demo` run once per test run, whichever worker asks first (the others wait on
    its lock, then read what it wrote): `returncode`, `stdout`, `stderr`, and `branch_keys`
    (the material of every active branch key, read just before its emulator stopped)."""
    import fcntl
    import json
    import os

    # Test workers (pytest-xdist) share the parent of their own temporary directories; one
    # process alone keeps to its own, so a result from an earlier run is never read.
    shared = tmp_path_factory.getbasetemp()
    shared = shared.parent if os.environ.get("PYTEST_XDIST_WORKER") else shared
    result = shared / "demo-run.json"
    with open(shared / "demo-run.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not result.exists():
            work = shared / "demo-run"
            work.mkdir(exist_ok=True)
            key_file = work / "branch-keys.txt"
            demo = subprocess.run([sys.executable, str(REPO_ROOT / "tests" / "reliability" / "demo_with_key_capture.py"),
                                   str(key_file)], cwd=work, capture_output=True, text=True, timeout=300)
            keys = key_file.read_text().split() if key_file.exists() else []
            result.write_text(json.dumps({"returncode": demo.returncode, "stdout": demo.stdout, "stderr": demo.stderr,
                                          "branch_keys": keys}))
    run = json.loads(result.read_text())
    return SimpleNamespace(returncode=run["returncode"], stdout=run["stdout"], stderr=run["stderr"],
                           branch_keys=[bytes.fromhex(key) for key in run["branch_keys"]])
