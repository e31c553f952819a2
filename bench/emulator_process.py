"""The emulator and the atrest stack in a process of their own.

moto keeps every object in the memory of the process that serves it, so the emulator
must not live in a process whose memory is measured. This module is that process too
(`python bench/emulator_process.py STATE_FILE`): atrest's own `Emulator` and
`provision(template.yaml)`, as `atrest local up` does, without the local event runner.
The stack's EventBridge rule is pointed at prefixes nothing uses
(`ConnectPrefix=bench-off/`), so only the benchmark's own calls do work.

Two emulator fixes are applied. `patch_table_query`: moto reads every item of a table to
answer a Query on one partition key (see its doc). `patch_list_object_versions`: moto 5.2.5's
ListObjectVersions deep-copies every version of every key in the bucket, bytes included,
on every call, and that memory is not given back. atrest calls it once per object (to
find leftover ciphertext versions of its vault key), so on the stock emulator each call
costs time in proportion to everything in the vault, and a 1,000-object batch grew the
emulator to 20 GiB until the kernel killed it. The patch lists the same versions (filtered
by prefix first, as S3 does) from copies that share the stored bytes.

Profiles (`PROFILES`): "emulator" serves every request as fast as moto can; "region" adds,
on the server thread that handles the request, the latency `latency.RegionLatency` models on
AWS's published typical in-region figures, so requests per object weigh as they would in a
region while concurrent clients still overlap (the server is threaded, as AWS is parallel).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from latency import PROFILES, install_latency
from measure import ROOT, rss_mib

# Keys the benchmark writes are under connect/ (what atrest's default settings classify);
# the stack's rule watches these instead, so no event reaches the local runner.
FUNCTION = "EncryptObjectFunction"
RULE_PREFIXES = ("ConnectPrefix=bench-off/", "KnowledgeDocumentPrefix=bench-off-kb/")


class EmulatorProcess:
    """`with EmulatorProcess() as emulator:` starts the emulator process and reads its JSON line."""

    def __init__(self, profile: str = "emulator") -> None:
        if profile not in PROFILES:
            raise ValueError(f"unknown bench profile {profile!r}; one of {', '.join(PROFILES)}")
        self.profile = profile
        self._workdir = tempfile.TemporaryDirectory(prefix="atrest-bench-")
        self.log_path = Path(self._workdir.name) / "emulator.log"
        self._process: subprocess.Popen[str] | None = None
        self.stack: dict[str, Any] = {}

    def __enter__(self) -> "EmulatorProcess":
        log = self.log_path.open("w")
        self._process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), str(Path(self._workdir.name) / "state.json"),
             self.profile],
            stdout=subprocess.PIPE, stderr=log, text=True, cwd=ROOT,
        )
        line = self._process.stdout.readline()
        if not line:
            self._process.wait(timeout=30)
            raise RuntimeError(f"the emulator process exited ({self._process.returncode}):\n{self.log_path.read_text()}")
        self.stack = json.loads(line)
        return self

    def __exit__(self, *_: Any) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
            self._process = None
        self._workdir.cleanup()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    def rss_mib(self) -> float:
        return rss_mib(self.pid)

    def environment(self) -> dict[str, str]:
        """What a child process needs: the standard AWS variables pointing at the emulator and
        the encrypt function's environment exactly as the stack resolved it from template.yaml
        (frame length, part size, cache TTL, ...), with the data-class prefixes put back to the
        defaults the benchmark's keys use. Sources are kept, so one upload serves every run."""
        state = json.loads(Path(self.stack["state_file"]).read_text())
        function_env = dict(state["functions"][FUNCTION]["environment"])
        function_env.update({
            "ATREST_CONNECT_PREFIX": "connect/",
            "ATREST_KNOWLEDGE_PREFIX": "knowledge/",
            "ATREST_KEEP_SOURCE": "true",
            "POWERTOOLS_LOG_LEVEL": "WARNING",
        })
        return {**self.stack["aws_environment"], **function_env}


def child_environment(emulator: EmulatorProcess) -> dict[str, str]:
    env = {**os.environ, **emulator.environment()}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "bench"), env.get("PYTHONPATH", "")]))
    return env


def patch_list_object_versions() -> None:
    """Make moto's ListObjectVersions copy only the matching keys' metadata (see the module doc)."""
    import inspect
    import re
    import textwrap

    from moto.s3 import models

    source = textwrap.dedent(inspect.getsource(models.S3Backend.list_object_versions))
    copying = re.compile(r"copy\.deepcopy\(version_key\)(\s+)for key, version_key in bucket\.keys\.iterlists\(\)")
    source, found = copying.subn(r"_bench_versions_view(version_key)\1for key, version_key in "
                                 r"bucket.keys.iterlists() if key.startswith(prefix or '')", source)
    if found != 1:
        raise RuntimeError("moto's list_object_versions changed; review bench/emulator_process.py's patch")

    def versions_view(versions: list[Any]) -> list[Any]:
        views = []
        for version in versions:
            view = object.__new__(type(version))
            view.__dict__.update(version.__dict__)  # shares the stored bytes; only is_latest is set on it
            view.__dict__["dispose"] = lambda garbage=False: None  # never closes the original's buffer
            views.append(view)
        return views

    namespace: dict[str, Any] = {}
    models.__dict__["_bench_versions_view"] = versions_view
    exec(compile(source, models.__file__, "exec"), models.__dict__, namespace)  # noqa: S102 - moto's own code, one line changed
    models.S3Backend.list_object_versions = namespace["list_object_versions"]


def patch_table_query() -> None:
    """Make moto's Query on a table's own key read only that partition, as DynamoDB does.

    moto 5.2.5 answers every Query by going through every item of the table, so on the
    stock emulator a Query that returns one item costs time in proportion to the table
    (bench/scale.py loads 200,000 records: the operator views' few Queries would measure the
    emulator, not atrest). Its items are stored by partition key already; the patch reads
    that partition. (An index Query still reads the whole table: moto keeps no index
    structures; bench/scale.md says which view that affects.)"""
    import inspect
    import re
    import textwrap

    from moto.dynamodb.models import table

    source = textwrap.dedent(inspect.getsource(table.Table.query))
    whole = re.compile(r"possible_results = \[\s*item\s*for item in self\.all_items\(\)\s*"
                       r"if isinstance\(item, Item\) and item\.hash_key == hash_key\s*\]")
    source, found = whole.subn("possible_results = [item for item in ((self.items.get(hash_key) or {}).values() "
                               "if self.has_range_key else [self.items.get(hash_key)]) if isinstance(item, Item)]",
                               source)
    if found != 1:
        raise RuntimeError("moto's Table.query changed; review bench/emulator_process.py's patch")
    namespace: dict[str, Any] = {}
    exec(compile(source, table.__file__, "exec"), table.__dict__, namespace)  # noqa: S102 - moto's own code, one line changed
    table.Table.query = namespace["query"]


def serve(state_file: Path, profile: str) -> None:
    """The emulator process: emulator, stack, one JSON line on stdout, then wait for SIGTERM."""
    import signal
    import threading

    from atrest_cli.local.cli import stack_summary
    from atrest_cli.local.emulator import Emulator
    from atrest_cli.local.stack import provision

    patch_list_object_versions()
    patch_table_query()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with Emulator() as emulator:
        parameters = dict(override.split("=", 1) for override in RULE_PREFIXES)
        state = provision(ROOT / "template.yaml", emulator, parameters=parameters)
        # After provisioning: the stack's set-up is not what the profile models.
        install_latency(emulator._server, profile)
        state.write(state_file)
        print(json.dumps(stack_summary(state, state_file)), flush=True)
        while not stop.wait(0.5):
            pass


if __name__ == "__main__":
    serve(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "emulator")
