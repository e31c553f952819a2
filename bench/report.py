"""bench/results.md and bench/results.png from the numbers `run.py` collected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from measure import MiB

LABELS = {
    "atrest": "atrest",
    "s3ec": "(a) S3 Encryption Client v4",
    "esdk": "(b) ESDK defaults, KMS keyring",
    "copy": "(c) plain copy",
}
WHAT = {
    "atrest": "`EncryptPipeline.encrypt` (the Lambda's domain call): hierarchical keyring with branch keys cached 300 s, "
              "committing non-signing suite, 1 MiB frames, SHA-256-checksummed multipart upload (8 MiB parts) confirmed "
              "against S3, metadata record in DynamoDB. Sources kept.",
    "s3ec": "`amazon-s3-encryption-client-python` 4.0.0, `KmsKeyring` (one GenerateDataKey per object), default suite "
            "(AES-GCM, key-committing); `put_object` below its 8 MiB multipart threshold, else `upload_fileobj` "
            "(8 MiB parts, one at a time).",
    "esdk": "`aws-encryption-sdk` with an MPL AWS KMS keyring (one GenerateDataKey per object), default frame length "
            "(4 KiB) and default suite (key-committing, ECDSA P-384 signed); S3 body -> `stream(mode=\"e\")` -> "
            "boto3 `upload_fileobj` (transfer manager, up to 10 parts in flight).",
    "copy": "No encryption: S3 body -> boto3 `upload_fileobj` (transfer manager, up to 10 parts in flight). "
            "The bound the emulator sets.",
}
KiB = 1024
GiB = 1024 * MiB
TARGET_RSS_MIB = 150
TARGET_COLD_START_S = 1.5


def human(size: int) -> str:
    for unit, scale in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= scale:
            return f"{size / scale:g} {unit}"
    return f"{size} B"


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def evaluate(results: dict[str, Any]) -> list[dict[str, str]]:
    """The issue's targets against what was measured: met, missed (with why), or not measured."""
    rows: list[dict[str, str]] = []

    def add(target: str, measured: str, met: bool | None, why: str = "") -> None:
        status = "not measured" if met is None else ("met" if met else "**missed**")
        rows.append({"target": target, "measured": measured, "status": status, "why": why})

    batch = results.get("batch", {})
    atrest_batch = batch.get("atrest")
    if atrest_batch:
        warm, cold = atrest_batch["kms_per_object_warm"], atrest_batch["kms_per_object_cold_run"]
        b = batch.get("esdk", {}).get("kms_per_object_warm")
        add("KMS calls per object at steady state <= 0.01 (peer b: 1.0)",
            f"atrest {warm:.4f} (first {atrest_batch['objects_per_run']:,} objects of a new process: {cold:.4f}); "
            f"peer b {_num(b, 2)}", warm <= 0.01 and cold <= 0.01)
    else:
        add("KMS calls per object at steady state <= 0.01", "no batch result", None)

    largest = str(max(int(size) for size in results["throughput"])) if results.get("throughput") else None
    row = results["throughput"].get(largest, {}) if largest else {}
    atrest = row.get("atrest", {}).get("mb_per_s")
    sequential = ("atrest uploads its parts one after another (read, encrypt, upload a part, wait for the emulator, "
                  "repeat), so its own work and the emulator's add up; this peer uses boto3's transfer manager, "
                  "which keeps up to 10 parts in flight and overlaps them. The emulator (moto, Python) is the "
                  "slow side: a part upload costs it far more than the encryption costs atrest.")
    extra_work = ("both upload parts one at a time, but atrest also hashes plaintext and ciphertext (SHA-256), "
                  "has the emulator verify a SHA-256 per part (peer (a) sends CRC32), reads S3's checksum back "
                  "(HEAD) and writes its metadata record (DynamoDB); on the emulator each of these costs more "
                  "than on AWS.")
    why = {"copy": sequential, "esdk": sequential, "s3ec": extra_work}
    for peer, factor, label in (("copy", 0.8, "a plain streamed copy (c)"), ("s3ec", 1.0, "peer (a)"), ("esdk", 2.0, "peer (b)")):
        other = row.get(peer, {}).get("mb_per_s")
        if atrest is None or other is None:
            add(f"{human(int(largest or 0))} S3 -> S3 >= {factor:g}x {label}", "not measured", None)
            continue
        ratio = atrest / other
        add(f"{human(int(largest))} S3 -> S3 >= {factor:g}x {label}",
            f"{atrest:.1f} vs {other:.1f} MB/s = {ratio:.2f}x", ratio >= factor,
            "" if ratio >= factor else why[peer])

    core = results.get("core", {})
    if core.get("atrest") and core.get("raw"):
        reference = max(core["raw"]["mb_per_s"], core.get("raw_one_shot", {}).get("mb_per_s", 0))
        ratio = core["atrest"]["mb_per_s"] / reference
        add(f"crypto core ({human(core['size'])}, memory to memory) >= 0.2x raw AES-256-GCM",
            f"{core['atrest']['mb_per_s']:,.0f} vs {reference:,.0f} MB/s = {ratio:.2f}x", ratio >= 0.2,
            "" if ratio >= 0.2 else "the ESDK's Python framing (per-frame serialisation and buffer copies) costs more "
                                    "than the AES-GCM it wraps")
    if core.get("atrest") and core.get("esdk"):
        ratio = core["atrest"]["mb_per_s"] / core["esdk"]["mb_per_s"]
        add("crypto core >= 5x peer (b)'s configuration",
            f"{core['atrest']['mb_per_s']:,.0f} vs {core['esdk']['mb_per_s']:,.0f} MB/s = {ratio:.1f}x", ratio >= 5)

    rss = results.get("rss", {}).get("atrest", {})
    if rss:
        sizes = sorted(int(size) for size in rss)
        peaks = ", ".join(f"{human(size)}: {rss[str(size)]['peak_mib']:.0f} MiB" for size in sizes)
        # Flat: once objects span many parts (>= 256 MiB, 32 parts of 8 MiB), a 4x larger object
        # may not cost more than one more part (8 MiB). Below a part (5 MiB) the working set is
        # still filling, so it is shown but not the reference.
        large = [size for size in sizes if size >= 256 * MiB] or sizes
        spread = rss[str(large[-1])]["peak_mib"] - rss[str(large[0])]["peak_mib"]
        flat = spread <= 8
        if GiB in sizes:
            peak = rss[str(GiB)]["peak_mib"]
            add(f"peak RSS for 1 GiB <= {TARGET_RSS_MIB} MiB, flat in object size (256 MiB to 1 GiB: at most one more 8 MiB part)",
                f"{peaks} ({human(large[0])} to {human(large[-1])}: {spread:+.0f} MiB)", peak <= TARGET_RSS_MIB and flat,
                "" if peak <= TARGET_RSS_MIB and flat else
                "most of it is the loaded code (boto3, the ESDK and the MPL's generated Dafny runtime), not data: "
                "see the peak after one small object")
        else:
            add(f"peak RSS for 1 GiB <= {TARGET_RSS_MIB} MiB, flat in object size",
                f"{peaks} ({human(large[0])} to {human(large[-1])}: {spread:+.0f} MiB); 1 GiB not run (`--big`)", None)

    load = results.get("phases", {}).get("cold start", {}).get("load_average")
    for row in results.get("cold_start", []):
        add(f"cold start <= {TARGET_COLD_START_S} s: {row['function']}",
            f"{row['process_seconds']:.2f} s, fastest of {row['runs']} {row.get('process_seconds_min', 0):.2f} s "
            f"(import and init {row['import_seconds']:.2f} s)",
            row["process_seconds"] <= TARGET_COLD_START_S,
            _cold_start_why(row, load))
    return rows


def _cold_start_why(row: dict[str, Any], load: Any) -> str:
    if row["process_seconds"] <= TARGET_COLD_START_S:
        return ""
    loaded = (f"measured while other test runs loaded the 2 cores (load average {_load(load)} during this phase), "
              "which stretches every import; " if load and load[0] > 2 else "")
    return (loaded + "the imports are the cost (see the cold start table): the ESDK and the MPL's generated code, "
            "the X-Ray SDK (Tracing: Active), Powertools batch and boto3; all are needed by the first event, "
            "so deferring them would move the time, not remove it")


def write_report(results: dict[str, Any], out: Path) -> tuple[Path, Path]:
    out.mkdir(parents=True, exist_ok=True)
    md = out / "results.md"
    png = out / "results.png"
    md.write_text(markdown(results, png.name))
    plot(results, png)
    return md, png


def markdown(results: dict[str, Any], png_name: str) -> str:
    peers = results["peers"]
    settings = results["settings"]
    machine = results["machine"]
    lines: list[str] = []
    w = lines.append
    w("# Benchmarks: atrest and the peers a user would pick instead")
    w("")
    w(f"Written by `make bench` (`bench/run.py`{' --quick' if settings['quick'] else ''}"
      f"{' --big' if settings['big'] else ''}) on {results['started']} (UTC); the whole run took "
      f"{results['seconds'] / 60:.1f} min. Do not edit by hand: run it again.")
    w("")
    w(f"- **Machine**: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, {machine['os']}. "
      f"Load average (1/5/15 min) {_load(machine['load_average'])} at the start, {_load(machine.get('load_average_end'))} "
      "at the end: the machine is shared with other test runs, so the numbers carry that noise.")
    w("- **Versions**: " + ", ".join(f"{name} {version}" for name, version in results["versions"].items()) + ".")
    copy_rows = [(int(size), row["copy"]["mb_per_s"]) for size, row in results["throughput"].items() if "copy" in row]
    bound = f" (the plain copy (c) reached {max(copy_rows)[1]:.0f} MB/s at {human(max(copy_rows)[0])})" if copy_rows else ""
    w("- **Emulator**: moto server in its own process (`bench/emulator_process.py`: atrest's `Emulator` and "
      "`provision(template.yaml)`, loopback HTTP), the same one for every peer. Every S3, KMS and DynamoDB call goes "
      f"through it, so it bounds every S3 -> S3 number{bound}. One moto defect is patched there: its "
      "ListObjectVersions deep-copied every object in the bucket on every call, and never gave the memory back "
      "(a 1,000-object batch grew it to 20 GiB); see that module.")
    w(f"- **Method**: each peer in a process of its own (`bench/worker.py`), started fresh; medians of {settings['runs']} "
      "runs, the peers taking turns run by run. Only the encryption is timed (set-up and clean-up are not). "
      "AWS calls are counted per service with botocore `before-call` hooks. MB = 10^6 bytes.")
    w("")
    w("| peer | what runs |")
    w("|---|---|")
    for peer in peers:
        w(f"| {LABELS[peer]} | {WHAT[peer]} |")
    w("")
    w(f"![throughput by size, KMS calls by object count]({png_name})")
    w("")

    w("## Targets")
    w("")
    w("| target | measured | result | why |")
    w("|---|---|---|---|")
    for row in evaluate(results):
        w(f"| {row['target']} | {row['measured']} | {row['status']} | {row['why']} |")
    w("")

    w(f"## Throughput S3 -> S3 (median of {settings['runs']})")
    w("")
    w("| object | " + " | ".join(LABELS[p] for p in peers) + " |")
    w("|---|" + "---|" * len(peers))
    for size, row in sorted(results["throughput"].items(), key=lambda item: int(item[0])):
        count = next(iter(row.values()))["objects_per_run"] if row else 0
        cells = [f"{row[p]['mb_per_s']:,.1f} MB/s, {row[p]['objects_per_s']:,.1f} obj/s" if p in row else "error" for p in peers]
        w(f"| {human(int(size))} ({count} per run) | " + " | ".join(cells) + " |")
    if results.get("batch"):
        batch = results["batch"]
        cells = [f"{batch[p]['objects_per_s']:,.0f} obj/s, {batch[p]['mb_per_s']:,.2f} MB/s" if p in batch else "error" for p in peers]
        w(f"| batch of {settings['batch']:,} x 10 KiB (new process) | " + " | ".join(cells) + " |")
    w("")

    w("## AWS calls per object")
    w("")
    w("| peer | KMS, steady state | KMS, first batch of a new process | DynamoDB (batch) | S3 (batch) | S3 (largest) | first object of a new process |")
    w("|---|---|---|---|---|---|---|")
    largest = str(max(int(size) for size in results["throughput"])) if results["throughput"] else None
    for peer in peers:
        batch = results.get("batch", {}).get(peer)
        big = results["throughput"].get(largest, {}).get(peer) if largest else None
        first = results.get("first_object", {}).get(peer, {}).get("calls", {})
        per = batch["calls_per_object"] if batch else {}
        w(f"| {LABELS[peer]} | {_num(batch and batch['kms_per_object_warm'], 4)} | "
          f"{_num(batch and batch['kms_per_object_cold_run'], 4)} | {_num(per.get('dynamodb', 0) if batch else None, 2)} | "
          f"{_num(per.get('s3', 0) if batch else None, 2)} | {_num(big and big['calls_per_object'].get('s3', 0), 1)} | "
          + (", ".join(f"{service} {count}" for service, count in sorted(first.items())) or "none") + " |")
    w("")
    w("Steady state: the batch runs after the first, in the same process (branch key materials cached). "
      "atrest's DynamoDB calls per object are its metadata record and bookkeeping; a branch key fetch costs one "
      "DynamoDB read and one KMS Decrypt per process per cache TTL (300 s).")
    w("")

    if results.get("rss"):
        sizes = sorted({int(size) for rows in results["rss"].values() for size in rows})
        w("## Peak RSS (VmHWM of the peer's own process; the emulator is elsewhere)")
        w("")
        w("| peer | after one small object | " + " | ".join(human(size) for size in sizes) + " |")
        w("|---|---|" + "---|" * len(sizes))
        for peer in peers:
            rows = results["rss"].get(peer, {})
            if not rows:
                continue
            baseline = min(row["baseline_mib"] for row in rows.values())
            cells = [f"{rows[str(size)]['peak_mib']:.0f} MiB" if str(size) in rows else "" for size in sizes]
            w(f"| {LABELS[peer]} | {baseline:.0f} MiB | " + " | ".join(cells) + " |")
        w("")
        w("Each column is the peak of a process that started fresh for the benchmark: up to the largest default "
          "size, the throughput process of that peer after that size's runs (sizes run in increasing order); "
          "1 GiB (`--big`) in a new process that encrypted one small object first. The first column is the peak "
          "after one small object: the cost of the loaded code, before any data.")
        w("")
        emulator = results.get("emulator_rss_mib", {})
        if emulator:
            w("The emulator's own memory (not counted above): " +
              ", ".join(f"{phase} {value:,.0f} MiB" for phase, value in emulator.items()) + ".")
            w("")

    core = results.get("core", {})
    if core:
        w(f"## Crypto core ({human(core['size'])}, memory to memory, median of {settings['runs']})")
        w("")
        reference = max(core.get("raw", {}).get("mb_per_s", 0), core.get("raw_one_shot", {}).get("mb_per_s", 0)) or None
        w("| | MB/s | x raw AES-256-GCM |")
        w("|---|---|---|")
        names = {"raw": "raw AES-256-GCM (`cryptography`, one GCM context, 1 MiB updates)",
                 "raw_one_shot": "raw AES-256-GCM (`AESGCM.encrypt`, one call)",
                 "atrest": "atrest's configuration (as the pipeline calls the ESDK)",
                 "esdk": "(b)'s configuration (`EncryptionSDKClient.encrypt`, defaults)"}
        for name, label in names.items():
            if name in core:
                value = core[name]["mb_per_s"]
                w(f"| {label} | {value:,.0f} | {value / reference:.3f} |" if reference else f"| {label} | {value:,.0f} | |")
        w("")

    if results.get("cold_start"):
        w("## Cold start (fresh process: start, import and initialise the handler module; median of "
          f"{results['cold_start'][0]['runs']})")
        w("")
        w("| function | handler | process start to ready | import and init | slowest imports (s, cumulative) |")
        w("|---|---|---|---|---|")
        for row in results["cold_start"]:
            breakdown = "; ".join(f"{name} {seconds:.2f}" for name, seconds in row["breakdown"])
            w(f"| {row['function']} | `{row['handler']}` | {row['process_seconds']:.2f} s | {row['import_seconds']:.2f} s | {breakdown} |")
        w("")

    w("## Phases")
    w("")
    w("| phase | seconds | load average after |")
    w("|---|---|---|")
    for name, phase in results.get("phases", {}).items():
        w(f"| {name} | {phase['seconds']:.0f} | {_load(phase['load_average'])} |")
    w("")
    if results.get("errors"):
        w("## Errors")
        w("")
        for error in results["errors"]:
            w(f"- {error.splitlines()[0]}")
        w("")
    return "\n".join(lines)


def _load(values: Any) -> str:
    return "/".join(f"{value:.2f}" for value in values) if values else "n/a"


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    peers = results["peers"]
    colors = {"atrest": "#1b7837", "s3ec": "#2166ac", "esdk": "#b2182b", "copy": "#808080"}
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5))

    sizes = sorted(results["throughput"], key=int)
    width = 0.8 / max(len(peers), 1)
    for index, peer in enumerate(peers):
        values = [results["throughput"][size].get(peer, {}).get("mb_per_s", 0) for size in sizes]
        positions = [x + (index - (len(peers) - 1) / 2) * width for x in range(len(sizes))]
        bars = left.bar(positions, values, width, label=LABELS[peer], color=colors[peer])
        left.bar_label(bars, labels=[f"{v:.1f}" if v < 10 else f"{v:.0f}" for v in values], fontsize=7, padding=1)
    left.set_xticks(range(len(sizes)), [human(int(size)) for size in sizes])
    if any(row.get(peer, {}).get("mb_per_s", 0) > 0 for row in results["throughput"].values() for peer in peers):
        left.set_yscale("log")
    left.set_ylabel("MB/s, S3 -> S3 (log scale)")
    left.set_title(f"Throughput by object size (median of {results['settings']['runs']}, one emulator)")
    left.legend(fontsize=8)

    for peer in peers:
        cumulative = results.get("batch", {}).get(peer, {}).get("kms_cumulative_cold")
        if cumulative:
            right.plot(range(1, len(cumulative) + 1), cumulative, label=LABELS[peer], color=colors[peer], linewidth=2,
                       linestyle="--" if peer == "s3ec" else "-", zorder=3 if peer == "s3ec" else 2)  # (a) and (b) coincide
    right.set_yscale("symlog", linthresh=1)
    right.set_ylim(bottom=0)
    right.set_xlabel("objects encrypted by a new process")
    right.set_ylabel("KMS calls, cumulative (symlog)")
    right.set_title("KMS calls by object count (10 KiB objects)")
    right.grid(True, which="both", alpha=0.3)
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
