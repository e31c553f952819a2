"""`make bench`: atrest side by side with the peers a user would pick instead.

    python bench/run.py [--quick] [--big] [--runs N] [--profiles emulator region] [--out DIR]

One run measures, under each profile (bench/latency.py: "emulator", moto as fast as it answers;
"region", every request given the latency modelled on AWS's published in-region figures), on
an emulator of that profile (moto, in its own process via `atrest local up`):
- throughput S3 -> S3 for 10 KiB, 5 MiB and 256 MiB objects and a batch of 1,000 small
  objects: the median of `--runs` runs, the peers taking turns run by run;
- AWS calls per object (KMS, DynamoDB, S3), counted with botocore event hooks;
- peak RSS per object size, each peer in a fresh process (and 1 GiB with --big);
and once (they do not depend on the emulator's latency), under the first profile:
- the crypto core alone (memory to memory, 256 MiB) against raw AES-256-GCM: atrest's as the
  pipeline runs it (atrest.crypto.framing, with the keyed plaintext checksum), its ESDK framing
  without the checksum, one SHA-256 pass; and a cProfile of atrest's (where the time goes);
- cold start of every handler module in template.yaml (fresh process, median of 5);
and writes bench/results.md and bench/results.png (--quick: into bench/out/quick/).
Each peer runs in a process of its own (bench/worker.py); see bench/peers.py for what
each peer is. Peak RSS alone, for sizes of your choice and in under a minute:
bench/rss_probe.py.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from emulator_process import EmulatorProcess, child_environment  # noqa: E402
from latency import PROFILES  # noqa: E402
from measure import MiB, ROOT, cold_start, machine, median, versions  # noqa: E402

KiB = 1024
GiB = 1024 * MiB
PEER_ORDER = ("atrest", "s3ec", "esdk", "copy")
SMALL = 10 * KiB


class BenchError(RuntimeError):
    pass


class Worker:
    """One peer in a fresh process (bench/worker.py), driven one command at a time."""

    def __init__(self, peer: str, env: dict[str, str], log: Any) -> None:
        self.peer = peer
        self.process = subprocess.Popen(
            [sys.executable, str(BENCH / "worker.py"), peer],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, env=env, text=True, cwd=ROOT,
        )
        line = self.process.stdout.readline()
        if not line:
            raise BenchError(f"the {peer} worker did not start (see {log.name})")
        self.ready = json.loads(line)

    def call(self, **command: Any) -> dict[str, Any]:
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise BenchError(f"the {self.peer} worker exited")
        answer = json.loads(line)
        if "error" in answer:
            raise BenchError(f"{self.peer}: {answer['error']}\n{answer.get('traceback', '')}")
        return answer

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.process.stdin.write(json.dumps({"op": "exit"}) + "\n")
                self.process.stdin.flush()
            except BrokenPipeError:
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()


class _Generated:
    """`size` pseudo-random bytes as a readable stream, made on the fly (never held whole)."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = os.urandom(MiB)

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        self.left -= n
        return (self.block * (n // MiB + 1))[:n]


def source_key(size: int, index: int) -> str:
    """An Amazon Connect key atrest classifies: transcripts when small, else call recordings."""
    folder, extension = ("ChatTranscripts", "json") if size <= 64 * KiB else ("CallRecordings", "wav")
    contact = f"{size:08x}-0000-4000-8000-{index:012x}"
    return f"connect/bench/{folder}/2026/11/30/{contact}_20261130T05:00_UTC.{extension}"


def human(size: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} B"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.peers = [peer for peer in PEER_ORDER if peer in args.peers]
        self.results: dict[str, Any] = {
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "machine": machine(), "versions": versions(), "peers": self.peers,
            "settings": {"runs": args.runs, "batch": args.batch, "sizes": args.sizes, "big": args.big,
                         "core_size": args.core_size, "quick": args.quick, "profiles": args.profiles},
            "profiles": {}, "core": {}, "cold_start": [], "phases": {}, "errors": [],
        }
        self.out = Path(args.out)
        self.scratch = scratch_dir(self.out)
        self.log = (self.scratch / "workers.log").open("w")

    def say(self, message: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)

    def phase(self, name: str, action: Callable[[], None]) -> None:
        started = time.monotonic()
        name = f"{self.profile}: {name}"
        self.say(f"{name} ...")
        try:
            action()
        except BenchError as error:
            self.results["errors"].append(f"{name}: {error}")
            self.say(f"{name} failed: {str(error).splitlines()[0]}")
        self.results["phases"][name] = {"seconds": time.monotonic() - started, "load_average": os.getloadavg()}
        self.measured["emulator_rss_mib"][name] = self.emulator.rss_mib()

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        for index, profile in enumerate(self.args.profiles):
            # What each profile measures; the shape the report reads per profile.
            self.profile = profile
            self.measured = self.results["profiles"][profile] = {
                "throughput": {}, "first_object": {}, "batch": {}, "rss": {}, "emulator_rss_mib": {}}
            with EmulatorProcess(profile) as emulator:
                self.emulator = emulator
                self.env = child_environment(emulator)
                self.bucket = emulator.stack["intake_bucket"]
                self.s3 = self._client("s3")
                self.phase("upload sources", self.upload_sources)
                self.phase("throughput", self.throughput)
                self.phase("batch", self.batch)
                if index == 0:  # memory and CPU only: the emulator's latency does not enter them
                    if self.args.big:
                        self.phase(f"peak RSS {human(self.args.big_size)}", self.peak_rss)
                    self.phase("crypto core", self.crypto_core)
                    self.phase("cold start", self.cold_start)
        self.results["seconds"] = time.monotonic() - started
        self.results["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.results["machine"]["load_average_end"] = os.getloadavg()
        return self.results

    def _client(self, service: str) -> Any:
        import boto3

        stack = self.emulator.stack
        return boto3.session.Session(
            aws_access_key_id="testing", aws_secret_access_key="testing", region_name=stack["region"]
        ).client(service, endpoint_url=stack["endpoint"])

    # -- sources -------------------------------------------------------------------------

    def objects_per_run(self, size: int) -> int:
        # Ten of anything written in one request (below a part): at three, a 5 MiB run was
        # under a second and its ratio moved by a tenth from run to run.
        return 10 if size <= 8 * MiB else (3 if size <= 16 * MiB else 1)

    def upload(self, size: int, count: int) -> list[str]:
        from boto3.s3.transfer import TransferConfig

        keys = [source_key(size, index) for index in range(count)]
        if size <= 16 * MiB:
            body = os.urandom(size)

            def put(key: str) -> None:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=body)

            with ThreadPoolExecutor(8) as pool:
                list(pool.map(put, keys))
        else:
            for key in keys:
                self.s3.upload_fileobj(_Generated(size), self.bucket, key,
                                       Config=TransferConfig(multipart_chunksize=16 * MiB, max_concurrency=4))
        return keys

    def upload_sources(self) -> None:
        self.keys: dict[int, list[str]] = {}
        for size in self.args.sizes:
            self.keys[size] = self.upload(size, self.objects_per_run(size))
        self.batch_keys = [source_key(SMALL, 1_000_000 + index) for index in range(self.args.batch)]
        body = os.urandom(SMALL)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda key: self.s3.put_object(Bucket=self.bucket, Key=key, Body=body), self.batch_keys))
        self.refresh_versions()

    def refresh_versions(self) -> None:
        self.versions: dict[str, str] = {}
        for page in self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix="connect/bench/"):
            for item in page.get("Versions", []):
                if item["IsLatest"]:
                    self.versions[item["Key"]] = item["VersionId"]

    def encrypt(self, worker: Worker, keys: list[str], size: int, verify: bool = False,
                batch: bool = False) -> dict[str, Any]:
        return worker.call(op="encrypt", bucket=self.bucket, keys=keys, size=size, verify=verify and size <= 64 * KiB,
                           versions={key: self.versions.get(key) for key in keys}, batch=batch)

    def workers(self) -> list[Worker]:
        return [Worker(peer, self.env, self.log) for peer in self.peers]

    # -- phases --------------------------------------------------------------------------

    def throughput(self) -> None:
        """Every size, run by run, each peer in turn, in one long-lived process per peer
        (warmed with one small object first, as a warm Lambda would be)."""
        workers = self.workers()
        try:
            warm_key = self.keys[min(self.keys)][:1]
            for worker in list(workers):
                try:
                    first = self.encrypt(worker, warm_key, min(self.keys), verify=True)
                except BenchError as error:
                    self.results["errors"].append(f"{self.profile}: throughput, first object, {worker.peer}: {error}")
                    workers.remove(worker)
                    worker.close()
                    continue
                self.measured["first_object"][worker.peer] = {"calls": first["calls"], "seconds": first["seconds"],
                                                             "init_seconds": worker.ready["init_seconds"],
                                                             "peak_rss_mib": first["peak_rss_mib"]}
            for size in self.args.sizes:
                rows: dict[str, list[dict[str, Any]]] = {worker.peer: [] for worker in workers}
                for run in range(self.args.runs):
                    for worker in workers:
                        try:
                            rows[worker.peer].append(self.encrypt(worker, self.keys[size], size, verify=run == 0))
                        except BenchError as error:
                            self.results["errors"].append(f"{self.profile}: throughput {human(size)} {worker.peer}: {error}")
                self.measured["throughput"][str(size)] = {peer: summarise(runs) for peer, runs in rows.items() if runs}
                for peer, runs in rows.items():
                    if runs:  # VmHWM after this size's runs: sizes go up, so this is the peak for this size
                        self.measured["rss"].setdefault(peer, {})[str(size)] = {
                            "baseline_mib": self.measured["first_object"][peer]["peak_rss_mib"],
                            "peak_mib": max(r["peak_rss_mib"] for r in runs), "process": "throughput"}
                self.say("  " + human(size) + ": " + ", ".join(
                    f"{peer} {row['mb_per_s']:.1f} MB/s" for peer, row in self.measured["throughput"][str(size)].items()))
        finally:
            for worker in workers:
                worker.close()

    def batch(self) -> None:
        """1,000 small objects per run, in a fresh process per peer: run 1 starts cold (so
        its KMS calls show what a new Lambda process costs), later runs are warm. atrest's
        handler gets them as its function does, SQS batches of 10 (encrypted concurrently);
        the other peers, one object after another, as their libraries are used."""
        workers = self.workers()
        try:
            rows: dict[str, list[dict[str, Any]]] = {peer: [] for peer in self.peers}
            for run in range(self.args.runs):
                for worker in workers:
                    try:
                        rows[worker.peer].append(self.encrypt(worker, self.batch_keys, SMALL, batch=True))
                    except BenchError as error:
                        self.results["errors"].append(f"{self.profile}: batch {worker.peer}: {error}")
            for peer, runs in rows.items():
                if not runs:
                    continue
                summary = summarise(runs)
                summary["kms_cumulative_cold"] = runs[0]["kms_cumulative"]
                warm = runs[1:] or runs
                summary["kms_per_object_warm"] = sum(r["calls"].get("kms", 0) for r in warm) / sum(r["objects"] for r in warm)
                summary["kms_per_object_cold_run"] = runs[0]["calls"].get("kms", 0) / runs[0]["objects"]
                self.measured["batch"][peer] = summary
            self.say("  batch: " + ", ".join(f"{p} {r['objects_per_s']:.0f} obj/s" for p, r in self.measured["batch"].items()))
        finally:
            for worker in workers:
                worker.close()

    def peak_rss(self) -> None:
        """--big: each peer in a fresh process, one small object (to load everything) then one
        1 GiB object; VmHWM is the peak over the process's life. (Peaks for the default sizes
        come from the throughput processes, which take the sizes in increasing order.)"""
        size = self.args.big_size
        self.keys[size] = self.upload(size, 1)
        self.refresh_versions()
        for peer in [peer for peer in self.peers if peer in self.args.big_peers]:
            with Worker(peer, self.env, self.log) as worker:
                try:
                    warm = self.encrypt(worker, self.keys[min(self.keys)][:1], min(self.keys))
                    large = self.encrypt(worker, self.keys[size][:1], size)
                except BenchError as error:
                    self.results["errors"].append(f"peak RSS {human(size)} {peer}: {error}")
                    continue
                self.measured["rss"].setdefault(peer, {})[str(size)] = {
                    "baseline_mib": warm["peak_rss_mib"], "peak_mib": large["peak_rss_mib"], "process": "fresh",
                    "mb_per_s": size / large["seconds"] / 1e6,
                }
                self.say(f"  {peer} {human(size)}: peak {large['peak_rss_mib']:.0f} MiB "
                         f"(after a small object {warm['peak_rss_mib']:.0f} MiB), {size / large['seconds'] / 1e6:.1f} MB/s")
        for key in self.keys.pop(size):
            self.s3.delete_object(Bucket=self.bucket, Key=key, VersionId=self.versions[key])

    def crypto_core(self) -> None:
        """Memory to memory, the same bytes in each process; raw AES-GCM measured in the
        atrest process, run by run with the peers."""
        peers = [peer for peer in self.peers if peer in ("atrest", "esdk")]
        workers = [Worker(peer, self.env, self.log) for peer in peers]
        try:
            for worker in workers:  # materials fetched and cached before timing (as in a warm Lambda)
                worker.call(op="core", size=MiB, seed=1)
            rows: dict[str, list[dict[str, Any]]] = {peer: [] for peer in peers}
            for run in range(self.args.runs):
                for worker in workers:
                    rows[worker.peer].append(worker.call(op="core", size=self.args.core_size, seed=0,
                                                         raw=worker.peer == "atrest"))
            size = self.args.core_size
            core = {peer: {"mb_per_s": median(size / r["seconds"] / 1e6 for r in runs), "runs": len(runs),
                           "faults_per_mib": median(r["faults_per_mib"] for r in runs)}
                    for peer, runs in rows.items()}
            if rows.get("atrest"):
                core["atrest_framing"] = {"mb_per_s": median(size / r["framing_seconds"] / 1e6 for r in rows["atrest"])}
                core["sha256"] = {"mb_per_s": median(size / r["sha256_seconds"] / 1e6 for r in rows["atrest"])}
                core["raw"] = {"mb_per_s": median(size / r["raw_seconds"] / 1e6 for r in rows["atrest"])}
                core["raw_one_shot"] = {"mb_per_s": median(size / r["raw_one_shot_seconds"] / 1e6 for r in rows["atrest"])}
            core["size"] = size
            if "atrest" in peers:  # after the timed runs, so its overhead touches none of them
                core["profile"] = workers[peers.index("atrest")].call(op="profile_core", size=size, seed=0)
            self.results["core"] = core
            self.say("  " + ", ".join(f"{k} {v['mb_per_s']:.0f} MB/s" for k, v in core.items() if isinstance(v, dict) and "mb_per_s" in v))
        finally:
            for worker in workers:
                worker.close()

    def cold_start(self) -> None:
        state = json.loads(Path(self.emulator.stack["state_file"]).read_text())
        for logical_id, function in sorted(state["functions"].items()):
            module = function["handler"].rsplit(".", 1)[0]
            env = {**self.emulator.stack["aws_environment"], **function["environment"]}
            try:
                row = cold_start(Path(function["code_dir"]), module, env, runs=self.args.cold_runs)
            except RuntimeError as error:
                self.results["errors"].append(f"cold start {logical_id}: {error}")
                continue
            row["function"] = logical_id
            self.results["cold_start"].append(row)
            self.say(f"  {logical_id}: {row['process_seconds']:.2f} s (import and init {row['import_seconds']:.2f} s)")


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median throughput over runs; calls per object over all runs."""
    objects = sum(r["objects"] for r in runs)
    calls: dict[str, float] = {}
    for r in runs:
        for service, count in r["calls"].items():
            calls[service] = calls.get(service, 0) + count
    return {
        "mb_per_s": median(r["bytes"] / r["seconds"] / 1e6 for r in runs),
        "objects_per_s": median(r["objects"] / r["seconds"] for r in runs),
        # The peer's own process (user + system): on one machine with the emulator, what a
        # client spends on the CPU is also time the emulator waits for it.
        "cpu_ms_per_object": median(1000 * r["cpu_seconds"] / r["objects"] for r in runs),
        "seconds": [r["seconds"] for r in runs],
        "objects_per_run": runs[0]["objects"],
        "calls_per_object": {service: count / objects for service, count in calls.items()},
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        "runs": len(runs),
    }


def scratch_dir(out: Path) -> Path:
    """Logs and raw numbers: bench/out/ (not committed) for the published run, else next to the results."""
    scratch = BENCH / "out" if out.resolve() == BENCH else out
    scratch.mkdir(parents=True, exist_ok=True)
    return scratch


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, 1 run, 20-object batch")
    parser.add_argument("--big", action="store_true", help="also measure peak RSS for a 1 GiB object")
    parser.add_argument("--runs", type=int, help="runs per measurement (default 3; --quick 1)")
    parser.add_argument("--batch", type=int, help="objects in the small-object batch (default 1000)")
    parser.add_argument("--peers", nargs="+", default=list(PEER_ORDER), choices=PEER_ORDER)
    parser.add_argument("--big-peers", nargs="+", default=["atrest", "s3ec", "copy"], choices=PEER_ORDER,
                        help="peers measured at 1 GiB with --big (default: all but (b), which takes minutes at 1 GiB)")
    parser.add_argument("--core-size", type=int, metavar="MIB",
                        help="crypto core size in MiB (default 256; --quick 16: the fixed cost per message then weighs more)")
    parser.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=PROFILES,
                        help="emulator profiles, each a full pass (default: both; bench/latency.py)")
    parser.add_argument("--out", help="where results.md and results.png go (default bench/; --quick bench/out/quick)")
    parser.add_argument("--report-from", metavar="RESULTS_JSON", help="only write the report from a run's results.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes = [SMALL, 5 * MiB, 16 * MiB]
        args.big_size = 64 * MiB
        args.runs = args.runs or 1
        args.batch = args.batch or 20
        args.cold_runs = 1
        args.out = args.out or str(BENCH / "out" / "quick")
    else:
        args.sizes = [SMALL, 5 * MiB, 256 * MiB]
        args.big_size = GiB
        args.runs = args.runs or 3
        args.batch = args.batch or 1000
        args.cold_runs = 5
        args.out = args.out or str(BENCH)
    if args.core_size:  # given in MiB
        args.core_size *= MiB
    else:
        args.core_size = 16 * MiB if args.quick else 256 * MiB
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report_from:  # re-render results.md/png from a run's raw numbers, without measuring again
        from report import write_report

        results = json.loads(Path(args.report_from).read_text())
        md, png = write_report(results, Path(args.out))
        print(f"wrote {md} and {png} from {args.report_from}")
        return 0
    bench = Bench(args)
    results = bench.run()
    out = Path(args.out)
    raw_path = scratch_dir(out) / "results.json"
    raw_path.write_text(json.dumps(results, indent=1, default=str))
    from report import write_report

    md, png = write_report(results, out)
    print(f"wrote {md} and {png} ({results['seconds'] / 60:.1f} min); raw numbers in {raw_path}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
