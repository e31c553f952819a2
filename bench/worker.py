"""One peer in a process of its own, driven by `run.py` over stdin/stdout (JSON lines).

    python bench/worker.py PEER

Prints {"ready": ...} once the peer is built (init_seconds, rss_mib, and peak_rss_mib: what
importing and initialising the peer cost), then answers each command with one line:
  {"op": "encrypt", "bucket": B, "keys": [...], "versions": {key: version id}, "size": bytes each,
   "verify": decrypt the first object and compare it with its source,
   "batch": encrypt them as the peer's batch (`Peer.encrypt_many`: atrest's SQS batches)}
      -> seconds (encryption only: set-up and clean-up are not timed), cpu_seconds (this
         process's user + system CPU over the same span), objects, bytes,
         calls (per service, during the timed work), kms_cumulative (KMS calls after each
         object), peak_rss_mib, rss_mib
  {"op": "core", "size": N, "seed": S, "raw": bool}
      -> seconds for the peer's in-memory encryption of N bytes (and raw AES-GCM if asked)
  {"op": "profile_core", "size": N, "seed": S}
      -> the same under cProfile: total seconds and the top functions by own time
  {"op": "exit"}
A failure answers {"error": ...} and the worker carries on.
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time
import traceback
from typing import Any

from measure import MiB, peak_rss_mib, process_time, rss_mib
from peers import PEERS, Peer, raw_aes_gcm, raw_aes_gcm_one_shot, sha256_pass

CLEANUP_FROM = 1024 * 1024  # objects this large are deleted after each run (the emulator holds them in memory)


def encrypt(peer: Peer, bucket: str, keys: list[str], versions: dict[str, str | None], size: int,
            verify: bool = False, batch: bool = False) -> dict[str, Any]:
    sources = [peer.prepare(bucket, key, versions.get(key)) for key in keys]
    before = peer.calls.copy()
    kms_cumulative = []
    dests = []
    started, cpu_started = time.perf_counter(), process_time()
    step = peer.batch_size if batch else 1  # the peer's own batches (atrest: SQS batches of 10)
    for start in range(0, len(sources), step):
        chunk = sources[start:start + step]
        dests += peer.encrypt_many(bucket, chunk, size) if batch else [peer.encrypt(bucket, chunk[0])]
        kms_cumulative += [peer.calls["kms"] - before["kms"]] * len(chunk)  # known per batch, not per object
    seconds, cpu_seconds = time.perf_counter() - started, process_time() - cpu_started
    calls = {service: peer.calls[service] - before[service] for service in peer.calls if peer.calls[service] - before[service]}
    if verify:  # untimed; run.py asks only for small objects (this holds both in memory, which would show in VmHWM)
        peer.verify(bucket, sources[0], dests[0])
    peer.cleanup(bucket, list(zip(sources, dests)), objects=size >= CLEANUP_FROM)
    return {
        "seconds": seconds, "cpu_seconds": cpu_seconds, "objects": len(keys), "bytes": size * len(keys), "calls": calls,
        "kms_cumulative": kms_cumulative, "peak_rss_mib": peak_rss_mib(), "rss_mib": rss_mib(),
    }


def core(peer: Peer, size: int, seed: int, raw: bool) -> dict[str, Any]:
    block = random.Random(seed).randbytes(MiB)  # the same bytes in every process
    data = (block * (size // MiB + 1))[:size]
    result: dict[str, Any] = {"bytes": size}
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    started = time.perf_counter()
    result["ciphertext_bytes"] = peer.core(data)
    result["seconds"] = time.perf_counter() - started
    # Page faults per MiB: hundreds mean the frame buffers are fresh mmaps (atrest.crypto.framing).
    result["faults_per_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / (size / MiB)
    if raw:
        # The same step without the keyed plaintext checksum: the ESDK's framing alone.
        started = time.perf_counter()
        peer.core(data, checksum=False)
        result["framing_seconds"] = time.perf_counter() - started
        # One SHA-256 pass: the pipeline makes three (the plaintext's HMAC here, and the vault
        # writer's whole-object and per-part hashes of the ciphertext).
        started = time.perf_counter()
        sha256_pass(data)
        result["sha256_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        raw_aes_gcm(data)
        result["raw_seconds"] = time.perf_counter() - started
        started = time.perf_counter()
        raw_aes_gcm_one_shot(data)
        result["raw_one_shot_seconds"] = time.perf_counter() - started
    return result


def profile_core(peer: Peer, size: int, seed: int, top: int = 12) -> dict[str, Any]:
    """`core` under cProfile: the functions the time goes to (own time, and share of the total).
    Few calls at 1 MiB frames, so cProfile's per-call overhead distorts little."""
    import cProfile
    import pstats

    block = random.Random(seed).randbytes(MiB)
    data = (block * (size // MiB + 1))[:size]
    profiler = cProfile.Profile()
    profiler.enable()
    peer.core(data)
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = sum(row[2] for row in stats.stats.values())  # own time over every function
    groups: dict[str, float] = {}
    for function, row in stats.stats.items():
        group = _group(pstats.func_std_string(function))
        groups[group] = groups.get(group, 0.0) + row[2]
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:top]
    return {"bytes": size, "total_seconds": total,
            "groups": {group: seconds / total for group, seconds in sorted(groups.items(), key=lambda item: -item[1])},
            "functions": [
        {"function": pstats.func_std_string(function), "calls": row[1], "own_seconds": row[2],
         "cumulative_seconds": row[3], "share": row[2] / total if total else 0.0}
        for function, row in rows]}


# Where a function's own time belongs, by what its cProfile name says (first match wins).
_GROUPS = (
    ("AES-256-GCM itself (cryptography's OpenSSL calls)", ("cryptography",)),
    ("buffer copies (BytesIO read/write, joins, slices)", ("_io.BytesIO", "method 'join'", "bytearray", "memoryview")),
    ("SHA-256 (the keyed plaintext checksum, HMAC-SHA256)", ("_hashlib", "hmac.py")),
    ("ESDK framing in Python (aws_encryption_sdk, struct)", ("aws_encryption_sdk", "_struct")),
    ("MPL and its Dafny runtime (materials, keyring)", ("_dafny", "aws_cryptographic_material", "smithy", "aws_cryptography")),
)


def _group(name: str) -> str:
    for group, needles in _GROUPS:
        if any(needle in name for needle in needles):
            return group
    return "other (Python built-ins, hashing, atrest)"


def main() -> None:
    name = sys.argv[1]
    # stdout is the protocol to run.py; what the peer prints (the handler's Powertools logs and
    # EMF metrics go to stdout, as in Lambda) goes to stderr, the workers' log.
    protocol = sys.stdout
    sys.stdout = sys.stderr
    started = time.perf_counter()
    peer = PEERS[name]()
    print(json.dumps({"ready": name, "init_seconds": time.perf_counter() - started, "rss_mib": rss_mib(),
                      "peak_rss_mib": peak_rss_mib()}),
          file=protocol, flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        op = command.pop("op")
        if op == "exit":
            break
        try:
            if op == "encrypt":
                answer = encrypt(peer, command["bucket"], command["keys"], command.get("versions", {}),
                                 command["size"], command.get("verify", False), command.get("batch", False))
            elif op == "profile_core":
                answer = profile_core(peer, command["size"], command.get("seed", 0))
            elif op == "core":
                answer = core(peer, command["size"], command.get("seed", 0), command.get("raw", False))
            else:
                answer = {"error": f"unknown op {op!r}"}
        except Exception as error:  # report, keep the worker alive for the other measurements
            answer = {"error": f"{type(error).__name__}: {error}", "traceback": traceback.format_exc()}
        print(json.dumps(answer, default=str), file=protocol, flush=True)


if __name__ == "__main__":
    main()
