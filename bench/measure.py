"""What the benchmark measures with, and nothing else: call counters, memory, medians,
the machine, package versions, handler cold start."""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any, Iterable, Mapping

ROOT = Path(__file__).resolve().parents[1]
MiB = 1024 * 1024

# Packages whose versions the results name.
VERSIONED = (
    "aws-encryption-sdk", "aws-cryptographic-material-providers", "amazon-s3-encryption-client-python",
    "cryptography", "boto3", "botocore", "moto", "aws-lambda-powertools", "matplotlib",
)


def count_calls(client: Any, calls: Counter) -> Any:
    """Count every API call `client` makes, per service, with a botocore `before-call` hook
    (the same hook `atrest.core.clients.AwsClients` uses). Returns the client."""
    service_id = client.meta.service_model.service_id.hyphenize()

    def count(model: Any = None, **_: Any) -> None:
        calls[model.service_model.service_name if model is not None else service_id] += 1

    client.meta.events.register(f"before-call.{service_id}", count)
    return client


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far: VmHWM, the high-water mark of this
    process image. (`ru_maxrss` is not used: Linux carries it over an exec, so a child
    would report its parent's size.)"""
    return _status_mib("self", "VmHWM:")


def rss_mib(pid: int | str = "self") -> float:
    """Current resident set size of a process."""
    return _status_mib(pid, "VmRSS:")


def _status_mib(pid: int | str, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def median(values: Iterable[float]) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(memory_gib, 1),
        "os": f"{platform.system()} {platform.release()}",
        "load_average": os.getloadavg(),
    }


# -- cold start ---------------------------------------------------------------------------

# Runs in a fresh interpreter: import the handler module (which builds Settings, clients and
# the pipeline at module level, as Lambda's init phase does), report how long that took.
_COLD_START_CHILD = """
import sys, time, json
started = time.perf_counter()
sys.path.insert(0, {code_dir!r})
import {module}
print(json.dumps({{"import_seconds": time.perf_counter() - started, "modules": len(sys.modules)}}), flush=True)
"""


def cold_start(code_dir: Path, module: str, env: Mapping[str, str], runs: int = 5) -> dict[str, Any]:
    """Start `runs` fresh processes that import and initialise one handler module.

    `process_seconds` is from spawning the interpreter to the module being ready (what a
    Lambda cold start adds on top of the runtime's own start); `import_seconds` is the
    import and module-level initialisation alone, measured inside the process.
    """
    process, imported = [], []
    for _ in range(runs):
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-c", _COLD_START_CHILD.format(code_dir=str(code_dir), module=module)],
            env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=code_dir,
        )
        line = child.stdout.readline()
        process.append(time.perf_counter() - started)
        _, stderr = child.communicate(timeout=60)
        if child.returncode != 0 or not line:
            raise RuntimeError(f"importing {code_dir}/{module}.py failed:\n{stderr}")
        imported.append(json.loads(line)["import_seconds"])
    return {
        "handler": f"{code_dir.relative_to(ROOT)}/{module}.py",
        "process_seconds": median(process),
        "import_seconds": median(imported),
        "process_seconds_min": min(process),
        "runs": runs,
        "breakdown": import_breakdown(code_dir, module, env),
    }


def import_breakdown(code_dir: Path, module: str, env: Mapping[str, str], top: int = 6) -> list[tuple[str, float]]:
    """The slowest top-level imports of the handler (`python -X importtime`), in seconds,
    plus the module's own body (its module-level initialisation)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import sys; sys.path.insert(0, {str(code_dir)!r}); import {module}"],
        env={**os.environ, **env}, capture_output=True, text=True, cwd=code_dir, timeout=60,
    )
    rows: list[tuple[str, float, float]] = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        self_us, cumulative_us, name = line.replace("import time:", "", 1).split("|", 2)
        if not self_us.strip().isdigit():  # the header line
            continue
        rows.append((name.rstrip()[1:], float(self_us), float(cumulative_us)))
    # Direct imports of the handler module are indented by exactly two spaces.
    direct = [(name.strip(), cumulative / 1e6) for name, _, cumulative in rows if name.startswith("  ") and not name.startswith("   ")]
    own = [(f"{module} (module body: settings, clients, pipeline)", self_us / 1e6) for name, self_us, _ in rows if name == module]
    return sorted(direct, key=lambda item: -item[1])[:top] + own


def process_time() -> float:
    """CPU seconds this process has used (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def dump(obj: Any) -> str:
    return json.dumps(obj, default=str)
