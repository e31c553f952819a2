"""Peak RSS of one peer's process per object size, each size in a fresh process: the
cheapest way to see where atrest's memory goes without a whole `run.py --big`.

    python bench/rss_probe.py [--sizes 16 256 1024] [--peer atrest] [--env NAME=VALUE ...]

One emulator (bench/emulator_process.py, profile "emulator": latency does not enter memory);
per size a fresh worker (bench/worker.py) encrypts one small object (everything loaded, as
after a Lambda's first invocation), then one object of that size. Prints VmHWM after the
handler's import, after the small object and after the large one. The worker's environment
is the function's, from template.yaml, as run.py gives it; `--env` adds variables on top
(to try a setting before putting it in template.yaml).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from emulator_process import EmulatorProcess, child_environment  # noqa: E402
from measure import MiB  # noqa: E402
from run import PEER_ORDER, SMALL, Worker, _Generated, source_key  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", type=int, default=[16, 256, 1024], metavar="MIB")
    parser.add_argument("--peer", default="atrest", choices=PEER_ORDER)
    parser.add_argument("--env", nargs="*", default=[], metavar="NAME=VALUE")
    args = parser.parse_args(argv)
    from boto3.s3.transfer import TransferConfig

    rows = []
    with EmulatorProcess("emulator") as emulator, open(emulator.log_path.with_name("workers.log"), "w") as log:
        env = {**child_environment(emulator), **dict(item.split("=", 1) for item in args.env)}
        stack = emulator.stack
        import boto3

        s3 = boto3.session.Session(aws_access_key_id="testing", aws_secret_access_key="testing",
                                   region_name=stack["region"]).client("s3", endpoint_url=stack["endpoint"])
        bucket = stack["intake_bucket"]
        small = source_key(SMALL, 0)
        s3.put_object(Bucket=bucket, Key=small, Body=b"x" * SMALL)
        for size_mib in args.sizes:
            size = size_mib * MiB
            key = source_key(size, 0)
            s3.upload_fileobj(_Generated(size), bucket, key,
                              Config=TransferConfig(multipart_chunksize=16 * MiB, max_concurrency=4))
            versions = {item["Key"]: item["VersionId"]
                        for item in s3.list_object_versions(Bucket=bucket, Prefix="connect/bench/").get("Versions", [])
                        if item["IsLatest"]}
            with Worker(args.peer, env, log) as worker:
                warm = worker.call(op="encrypt", bucket=bucket, keys=[small], size=SMALL, versions=versions)
                large = worker.call(op="encrypt", bucket=bucket, keys=[key], size=size, versions=versions)
            row = {"size_mib": size_mib, "import_peak_mib": round(worker.ready["peak_rss_mib"], 1),
                   "small_peak_mib": round(warm["peak_rss_mib"], 1), "peak_mib": round(large["peak_rss_mib"], 1),
                   "rss_after_mib": round(large["rss_mib"], 1), "mb_s": round(size / large["seconds"] / 1e6, 1),
                   "cpu_s_per_gib": round(large["cpu_seconds"] * 1024 / size_mib, 2)}
            rows.append(row)
            print(json.dumps(row), flush=True)
            s3.delete_object(Bucket=bucket, Key=key, VersionId=versions.get(key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
