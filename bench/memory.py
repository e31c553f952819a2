"""Peak memory of encrypting one large object S3 -> S3, against object size.

The emulator runs in its own process so that only the pipeline's memory is measured.
Usage: python bench/memory.py [--sizes-mib 64 256 1024]
Prints a table of peak RSS (the encrypting process) per object size; flat is the goal
(~150 MiB for 1 GiB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class _Generated:
    """A readable stream of `size` pseudo-random bytes, made on the fly (never held whole)."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = os.urandom(1024 * 1024)

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        self.left -= n
        return (self.block * (n // len(self.block) + 1))[:n]


def child(size_mib: int) -> None:
    """Runs in a fresh process: upload, then encrypt through the pipeline, report peak RSS."""
    import boto3

    from atrest.pipeline import EncryptPipeline
    from atrest.samples import connect_key
    from atrest.settings import Settings
    from atrest.source import SourceObject
    from datetime import datetime, timezone

    settings = Settings.from_env()
    s3 = boto3.client("s3")
    key = connect_key(settings.connect_prefix, "bench", "CallRecordings", "0b7f1c2e-0000-4000-8000-00000000b3c4",
                      datetime(2026, 11, 30, 5, 0, tzinfo=timezone.utc), "wav")
    from boto3.s3.transfer import TransferConfig
    s3.upload_fileobj(_Generated(size_mib * 1024 * 1024), settings.intake_bucket, key,
                      Config=TransferConfig(multipart_chunksize=16 * 1024 * 1024, max_concurrency=1, use_threads=False))
    version = s3.head_object(Bucket=settings.intake_bucket, Key=key).get("VersionId")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.monotonic()
    outcome = EncryptPipeline.from_settings(settings).encrypt(SourceObject(settings.intake_bucket, key, version))
    seconds = time.monotonic() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"size_mib": size_mib, "peak_rss_mib": peak / 1024, "rss_before_mib": before / 1024,
                      "seconds": seconds, "outcome": outcome.outcome.value}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[64, 256, 1024])
    parser.add_argument("--child", type=int)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    # The emulator and stack run in their own process (`atrest local up`); its rule is
    # pointed at prefixes nothing uses, so only this benchmark encrypts the uploads.
    up = subprocess.Popen(
        [str(Path(sys.executable).with_name("atrest")), "local", "up", "--state-file", str(ROOT / "bench" / "out" / "state.json"),
         "--parameter-overrides", "ConnectPrefix=bench-off/", "KnowledgeDocumentPrefix=bench-off-kb/"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )
    try:
        stack = json.loads(up.stdout.readline())
        env = {
            "AWS_ENDPOINT_URL": stack["endpoint"], "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": stack["region"], "ATREST_ACCOUNT_ID": stack["account_id"],
            "ATREST_INTAKE_BUCKET": stack["intake_bucket"], "ATREST_VAULT_BUCKET": stack["vault_bucket"],
            "ATREST_KEYSTORE_TABLE": stack["keystore_table"], "ATREST_METADATA_TABLE": stack["metadata_table"],
            "ATREST_KMS_KEY_ARN": stack["kms_key_arn"],
        }
        for size in args.sizes_mib:
            out = subprocess.run([sys.executable, __file__, "--child", str(size)], env={**os.environ, **env},
                                 check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
            row = json.loads(out)
            print(f"{size:>6} MiB  peak RSS {row['peak_rss_mib']:7.1f} MiB  (process before work {row['rss_before_mib']:.1f} MiB; "
                  f"{row['seconds']:.1f} s)", flush=True)
    finally:
        up.terminate()
        up.wait(timeout=30)


if __name__ == "__main__":
    main()
