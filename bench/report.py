"""bench/results.md and bench/results.png from the numbers `run.py` collected."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from latency import FIGURES, SOURCES, figures_table
from measure import MiB

LABELS = {
    "atrest": "atrest",
    "s3ec": "(a) S3 Encryption Client v4",
    "esdk": "(b) ESDK defaults, KMS keyring",
    "copy": "(c) plain copy",
}
WHAT = {
    "atrest": "EncryptObjectFunction's handler (`functions/encrypt_object/app.py`, an SQS event of one S3 \"Object Created\" "
              "message per object, received for the first time, as the deployed function is invoked; in the batch "
              "phase SQS events of 10 such messages, the template's BatchSize, whose messages the "
              "handler encrypts concurrently, up to ATREST_ENCRYPT_CONCURRENCY=4 at once, each with a pipeline of its "
              "own, while the other peers encrypt one object after another as their libraries are used): "
              "`EncryptPipeline.encrypt`: hierarchical keyring with branch keys cached 300 s, "
              "committing non-signing suite, 1 MiB frames; ciphertext below a part in one PutObject made only if the "
              "vault key is free, larger in 8 MiB parts with two uploading while the next is encrypted, a CRC32 per "
              "request, confirmed from S3's answers; SHA-256 of the ciphertext and keyed HMAC of the plaintext for the "
              "metadata record in DynamoDB. Sources kept.",
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


def _modelled_ms(calls: dict[str, float]) -> float:
    """What one object's requests cost at the region profile's figures, one after another
    (S3 first bytes, DynamoDB as single-item requests, KMS): transfer time excluded."""
    return 1000 * (calls.get("s3", 0) * FIGURES.s3_first_byte_s + calls.get("dynamodb", 0) * FIGURES.dynamodb_item_s
                   + calls.get("kms", 0) * FIGURES.kms_s)


def _requests(calls: dict[str, float]) -> str:
    return ", ".join(f"{service} {count:.2f}".replace(".00", "") for service, count in sorted(calls.items()) if count) or "none"


def _gap(view: dict[str, Any], peer: str, row: dict[str, Any] | None) -> str:
    """atrest's requests per object against `peer`'s, and what they weigh at the modelled latencies."""
    if not row or "atrest" not in row or peer not in row:
        return ""
    ours, theirs = row["atrest"]["calls_per_object"], row[peer]["calls_per_object"]
    cpu = ""
    if "cpu_ms_per_object" in row["atrest"] and "cpu_ms_per_object" in row[peer]:  # runs before it was measured lack it
        cpu = (f"; atrest's process spends {row['atrest']['cpu_ms_per_object']:.0f} ms of CPU per object, "
               f"{LABELS[peer]} {row[peer]['cpu_ms_per_object']:.0f} ms")
    return (f"per object atrest makes {_requests(ours)} requests, {LABELS[peer]} {_requests(theirs)}; at the region "
            f"profile's latencies that is {_modelled_ms(ours):.0f} ms against {_modelled_ms(theirs):.0f} ms of round "
            f"trips, one after another{cpu}")


def evaluate_profile(profile: str, view: dict[str, Any]) -> list[dict[str, str]]:
    """The issue's targets that depend on the emulator's latency, for one profile."""
    rows: list[dict[str, str]] = []

    def add(target: str, measured: str, met: bool | None, why: str = "") -> None:
        status = "not measured" if met is None else ("met" if met else "**missed**")
        rows.append({"profile": profile, "target": target, "measured": measured, "status": status, "why": why})

    batch = view.get("batch", {})
    atrest_batch = batch.get("atrest")
    if atrest_batch:
        warm, cold = atrest_batch["kms_per_object_warm"], atrest_batch["kms_per_object_cold_run"]
        b = batch.get("esdk", {}).get("kms_per_object_warm")
        add("KMS calls per object at steady state <= 0.01 (peer b: 1.0)",
            f"atrest {warm:.4f} (first {atrest_batch['objects_per_run']:,} objects of a new process: {cold:.4f}); "
            # The target is the steady state; a new process's first run is shown beside it.
            f"peer b {_num(b, 2)}", warm <= 0.01,
            "" if warm <= 0.01 else
            f"a new process fetches its branch key once (KMS Decrypt, and the first object's other key store calls); "
            f"spread over the first run's {atrest_batch['objects_per_run']:,} objects that is {cold:.4f} per object"
            + (" (a --quick batch is too short to reach 0.01; the full run's 1,000 objects are not)"
               if atrest_batch["objects_per_run"] < 500 else ""))
        if "s3ec" in batch:
            ratio = atrest_batch["objects_per_s"] / batch["s3ec"]["objects_per_s"]
            add("batch of small objects >= 1.0x peer (a)'s objects/s",
                f"{atrest_batch['objects_per_s']:.1f} vs {batch['s3ec']['objects_per_s']:.1f} obj/s = {ratio:.2f}x",
                ratio >= 1.0, "" if ratio >= 1.0 else
                ("each small object is a chain of requests, each a round trip: " if profile == "region" else
                 "on the emulator each request costs moto's Python time, and atrest's handler also runs Powertools "
                 "(logging, metrics) and hashes what it stores: ") + _gap(view, "s3ec", batch))
    else:
        add("KMS calls per object at steady state <= 0.01", "no batch result", None)

    throughput = view.get("throughput", {})
    largest = str(max(int(size) for size in throughput)) if throughput else None
    sequential = ("atrest keeps two parts uploading while it encrypts the next (memory: the 150 MiB peak-RSS target), "
                  "this peer's transfer manager up to 10, and atrest reads, encrypts and hashes on one thread "
                  "(the plaintext's keyed HMAC and the ciphertext's SHA-256, which the record needs). " +
                  ("At 85 MB/s per request (the region profile), parts in flight decide the upload's rate."
                   if profile == "region" else
                   "On the emulator (moto, Python, on the same 2 cores) every byte atrest hashes is CPU the "
                   "emulator does not get."))
    extra_work = ("atrest also hashes the plaintext (keyed HMAC-SHA256) and the ciphertext (SHA-256) for its record, "
                  "writes that record (DynamoDB) and, for ciphertext of a part or more, asks S3 first whether an "
                  "earlier delivery uploaded it (HEAD); peer (a) keeps no record")
    for size in sorted((int(size) for size in throughput if int(size) >= MiB)):
        row = throughput[str(size)]
        atrest = row.get("atrest", {}).get("mb_per_s")
        checks = [("copy", 0.8, "a plain streamed copy (c)"), ("s3ec", 1.0, "peer (a)")]
        if str(size) == largest:
            checks.append(("esdk", 2.0, "peer (b)"))
        for peer, factor, label in checks:
            other = row.get(peer, {}).get("mb_per_s")
            if atrest is None or other is None:
                add(f"{human(size)} S3 -> S3 >= {factor:g}x {label}", "not measured", None)
                continue
            ratio = atrest / other
            why = {"copy": sequential, "esdk": sequential, "s3ec": extra_work + "; " + _gap(view, "s3ec", row)}[peer]
            add(f"{human(size)} S3 -> S3 >= {factor:g}x {label}", f"{atrest:.1f} vs {other:.1f} MB/s = {ratio:.2f}x",
                ratio >= factor, "" if ratio >= factor else why)

    for name, row in (("batch", batch), (human(int(largest)) if largest else "", throughput.get(largest or "", {}))):
        if not name or "atrest" not in row or "s3ec" not in row:
            continue
        ours, theirs = row["atrest"]["calls_per_object"], row["s3ec"]["calls_per_object"]
        over = {service: ours.get(service, 0) - theirs.get(service, 0) for service in set(ours) | set(theirs)}
        worst = [f"{service} +{extra:.2f}" for service, extra in sorted(over.items()) if extra > 2]
        add(f"requests per object ({name}) <= peer (a)'s + 2, per service",
            f"atrest {_requests(ours)}; peer (a) {_requests(theirs)}", not worst,
            "" if not worst else f"over by more than 2: {', '.join(worst)} (atrest's DynamoDB requests are the "
                                 "metadata record (one write with sources kept, as here; a write and an update "
                                 "when the source is deleted) and its bookkeeping; peer (a) keeps no record)")
    return rows


def evaluate(results: dict[str, Any]) -> list[dict[str, str]]:
    """The issue's targets against what was measured: met, missed (with why), or not measured."""
    rows: list[dict[str, str]] = []
    for profile, view in results.get("profiles", {}).items():
        rows += evaluate_profile(profile, view)
    first = next(iter(results.get("profiles", {}).values()), {})

    def add(target: str, measured: str, met: bool | None, why: str = "") -> None:
        status = "not measured" if met is None else ("met" if met else "**missed**")
        rows.append({"profile": "any", "target": target, "measured": measured, "status": status, "why": why})

    core = results.get("core", {})
    if core.get("atrest") and core.get("raw"):
        reference = max(core["raw"]["mb_per_s"], core.get("raw_one_shot", {}).get("mb_per_s", 0))
        framing = core.get("atrest_framing")
        if framing:  # the core: the ESDK's framing as the pipeline calls it
            ratio = framing["mb_per_s"] / reference
            add(f"crypto core ({human(core['size'])}, memory to memory, the ESDK's framing as the pipeline calls it, "
                "without the keyed plaintext checksum) >= 0.2x raw AES-256-GCM",
                f"{framing['mb_per_s']:,.0f} vs {reference:,.0f} MB/s = {ratio:.2f}x", ratio >= 0.2,
                "" if ratio >= 0.2 else "the ESDK's Python framing (per-frame serialisation and buffer copies) costs more "
                                        "than the AES-GCM it wraps: see where the time goes under Crypto core")
    if core.get("atrest") and core.get("esdk"):
        ratio = core["atrest"]["mb_per_s"] / core["esdk"]["mb_per_s"]
        add("crypto core >= 5x peer (b)'s configuration",
            f"{core['atrest']['mb_per_s']:,.0f} vs {core['esdk']['mb_per_s']:,.0f} MB/s = {ratio:.1f}x", ratio >= 5)

    rss = first.get("rss", {}).get("atrest", {})
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
                "most of it is the loaded code (boto3, the ESDK and the MPL's generated Dafny runtime, Powertools), "
                "not data: see the peak after one small object")
        else:
            add(f"peak RSS for 1 GiB <= {TARGET_RSS_MIB} MiB, flat in object size",
                f"{peaks} ({human(large[0])} to {human(large[-1])}: {spread:+.0f} MiB); 1 GiB not run (`--big`)", None)

    load = next((phase["load_average"] for name, phase in results.get("phases", {}).items() if name.endswith("cold start")), None)
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


def _cpu(summary: dict[str, Any]) -> str:
    return f", {summary['cpu_ms_per_object']:,.1f} ms CPU per object" if "cpu_ms_per_object" in summary else ""


def _profile_sections(w: Callable[[str], None], profile: str, view: dict[str, Any], peers: list[str],
                      settings: dict[str, Any]) -> None:
    throughput = view.get("throughput", {})
    w(f"## Throughput S3 -> S3, profile `{profile}` (median of {settings['runs']})")
    w("")
    w("| object | " + " | ".join(LABELS[p] for p in peers) + " |")
    w("|---|" + "---|" * len(peers))
    for size, row in sorted(throughput.items(), key=lambda item: int(item[0])):
        count = next(iter(row.values()))["objects_per_run"] if row else 0
        cells = [f"{row[p]['mb_per_s']:,.1f} MB/s, {row[p]['objects_per_s']:,.1f} obj/s{_cpu(row[p])}" if p in row else "error"
                 for p in peers]
        w(f"| {human(int(size))} ({count} per run) | " + " | ".join(cells) + " |")
    batch = view.get("batch", {})
    if batch:
        cells = [f"{batch[p]['objects_per_s']:,.1f} obj/s, {batch[p]['mb_per_s']:,.2f} MB/s{_cpu(batch[p])}" if p in batch
                 else "error" for p in peers]
        w(f"| batch of {settings['batch']:,} x 10 KiB (new process; atrest: SQS batches of 10, concurrent; "
          "the others: one by one) | " + " | ".join(cells) + " |")
    w("")
    if "atrest" in batch or any("atrest" in row for row in throughput.values()):
        w("| ratio atrest / peer | " + " | ".join(LABELS[p] for p in peers if p != "atrest") + " |")
        w("|---|" + "---|" * (len(peers) - 1))
        rows = [(human(int(size)), row) for size, row in sorted(throughput.items(), key=lambda item: int(item[0]))]
        for name, row in rows + [("batch (objects/s)", batch)]:
            if "atrest" not in row:
                continue
            key = "objects_per_s" if row is batch else "mb_per_s"
            cells = [f"{row['atrest'][key] / row[p][key]:.2f}x" if p in row and row[p][key] else "n/a"
                     for p in peers if p != "atrest"]
            w(f"| {name} | " + " | ".join(cells) + " |")
        w("")

    w(f"### Requests per object, per service, profile `{profile}`")
    w("")
    columns = [(human(int(size)), throughput[size]) for size in sorted(throughput, key=int)] + [("batch", batch)]
    w("| peer | " + " | ".join(name for name, _ in columns) + " | KMS, steady state | KMS, first batch of a new process | first object of a new process | modelled round trips per object (batch) |")
    w("|---|" + "---|" * (len(columns) + 4))
    for peer in peers:
        cells = [_requests(row[peer]["calls_per_object"]) if peer in row else "n/a" for _, row in columns]
        own = batch.get(peer)
        first = view.get("first_object", {}).get(peer, {}).get("calls", {})
        w(f"| {LABELS[peer]} | " + " | ".join(cells) + f" | {_num(own and own['kms_per_object_warm'], 4)} | "
          f"{_num(own and own['kms_per_object_cold_run'], 4)} | "
          + (", ".join(f"{service} {count}" for service, count in sorted(first.items())) or "none")
          + f" | {_num(own and _modelled_ms(own['calls_per_object']), 0)} ms |")
    w("")
    w("Counted over every run of that size (batch: steady state and the first run). atrest's DynamoDB requests "
      "are the pipeline's metadata record (its conditional write is also the duplicate guard) and bookkeeping; a branch key fetch costs one DynamoDB read and one KMS Decrypt per process "
      "per cache TTL (300 s). The last column prices the batch's requests at the region profile's figures, one "
      "after another, transfers excluded.")
    w("")


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
    profiles = results.get("profiles", {})
    first = next(iter(profiles.values()), {})
    copy_rows = [(int(size), row["copy"]["mb_per_s"]) for size, row in first.get("throughput", {}).items() if "copy" in row]
    bound = f" (the plain copy (c) reached {max(copy_rows)[1]:.0f} MB/s at {human(max(copy_rows)[0])})" if copy_rows else ""
    w("- **Emulator**: moto server in its own process (`bench/emulator_process.py`: atrest's `Emulator` and "
      "`provision(template.yaml)`, loopback HTTP), the same one for every peer. Every S3, KMS and DynamoDB call goes "
      f"through it, so it bounds every S3 -> S3 number{bound}. One moto defect is patched there: its "
      "ListObjectVersions deep-copied every object in the bucket on every call, and never gave the memory back "
      "(a 1,000-object batch grew it to 20 GiB); see that module.")
    w("- **Profiles**: " + ", ".join(f"`{name}`" for name in profiles) + ". `emulator`: every request as fast as moto "
      "answers it (its own Python time, which favours few large requests and penalises many small ones unevenly). "
      "`region`: a fresh emulator whose server sleeps, on the thread serving each request, the latency modelled "
      "below (`bench/latency.py`), so requests per object weigh as they would in a region and concurrent requests "
      "still overlap. Crypto core, cold start and the 1 GiB peak do not depend on it and run once, under the first.")
    w(f"- **Method**: each peer in a process of its own (`bench/worker.py`), started fresh; medians of {settings['runs']} "
      "runs, the peers taking turns run by run. Only the encryption is timed (set-up and clean-up are not). "
      "AWS calls are counted per service with botocore `before-call` hooks; atrest's are its handler's own count "
      "(`AwsClients.calls`). CPU per object is the peer's own process (user + system time over the same span): "
      "on one machine with the emulator, a client's CPU is also time the emulator waits. MB = 10^6 bytes.")
    w("")
    w("| peer | what runs |")
    w("|---|---|")
    for peer in peers:
        w(f"| {LABELS[peer]} | {WHAT[peer]} |")
    w("")
    w(f"![throughput by size, KMS calls by object count, per profile]({png_name})")
    w("")

    w("## Targets")
    w("")
    w("| profile | target | measured | result | why |")
    w("|---|---|---|---|---|")
    for row in evaluate(results):
        w(f"| {row['profile']} | {row['target']} | {row['measured']} | {row['status']} | {row['why']} |")
    w("")

    if "region" in profiles:
        w("## The region profile's latency model")
        w("")
        w("| requests | modelled | source |")
        w("|---|---|---|")
        for what, value, source in figures_table():
            w(f"| {what} | {value} | [{source}] |")
        w("")
        for key, text in SOURCES.items():
            w(f"- [{key}] {text}")
        w("")
        w("Requests to other services (STS, SQS, EventBridge) are not delayed: none is on the path measured. "
          "Transfer time is modelled per request (a request body or a response body at 85 MB/s); many requests "
          "in flight each get that rate, as separate connections to S3 do.")
        w("")

    for profile, view in profiles.items():
        _profile_sections(w, profile, view, peers, settings)

    if first.get("rss"):
        sizes = sorted({int(size) for rows in first["rss"].values() for size in rows})
        w("## Peak RSS (VmHWM of the peer's own process; the emulator is elsewhere)")
        w("")
        w("| peer | after one small object | " + " | ".join(human(size) for size in sizes) + " |")
        w("|---|---|" + "---|" * len(sizes))
        for peer in peers:
            rows = first["rss"].get(peer, {})
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
        emulator = {phase: value for view in profiles.values() for phase, value in view.get("emulator_rss_mib", {}).items()}
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
                 "atrest": "atrest's encryption step as the pipeline runs it (`atrest.crypto.framing.encrypt_frames`, "
                           "with the keyed plaintext checksum)",
                 "atrest_framing": "the same without the checksum: the ESDK's framing alone",
                 "sha256": "one SHA-256 pass (`hashlib`; the pipeline makes two: the plaintext's HMAC and the vault "
                           "writer's hash of the whole ciphertext; S3's per-request checksum is a CRC32)",
                 "esdk": "(b)'s configuration (`EncryptionSDKClient.encrypt`, defaults)"}
        for name, label in names.items():
            if name in core:
                value = core[name]["mb_per_s"]
                w(f"| {label} | {value:,.0f} | {value / reference:.3f} |" if reference else f"| {label} | {value:,.0f} | |")
        w("")
        w(f"Machine: {machine['cpu']} ({machine['cores']} cores). The ratio is over the faster "
          "raw AES-256-GCM row, the same bytes, in the same process. The step is the function the pipeline calls "
          "(frames of 1 MiB read one at a time from a PlaintextStream, as from an S3 body); the vault writer's "
          "SHA-256 of the ciphertext is storage, not part of it: it costs what the SHA-256 row shows. "
          "`encrypt_frames` fixes glibc's mmap and trim thresholds once per process: left to glibc's dynamic "
          "threshold, the ESDK's 1 MiB copies can each be a fresh mmap, ~740 page faults per MiB encrypted "
          "and a third or less of the speed, depending on what the process freed before."
          + "".join(f" Page faults per MiB in {name}'s timed runs (median): {core[name]['faults_per_mib']:,.0f}."
                    for name in ("atrest", "esdk") if "faults_per_mib" in core.get(name, {})))
        w("")
        profile = core.get("profile")
        if profile:
            w(f"### Where atrest's crypto core spends its time (cProfile, {human(profile['bytes'])}, 1 MiB frames, "
              f"{profile['total_seconds']:.2f} s under the profiler)")
            w("")
            w("| function | calls | own s | share of total | cumulative s |")
            w("|---|---|---|---|---|")
            for row in profile["functions"]:
                w(f"| `{row['function'].rpartition('site-packages/')[2]}` | {row['calls']:,} | {row['own_seconds']:.3f} | {row['share']:.1%} | "
                  f"{row['cumulative_seconds']:.3f} |")
            w("")
            groups = profile.get("groups", {})
            if groups:
                w("Own time grouped by where it runs: " + "; ".join(f"{group} {share:.0%}" for group, share in groups.items())
                  + ". At 1 MiB frames the ESDK's streaming encryptor does, per frame, a read from the source, a "
                  "frame header (`struct.pack`), one AES-GCM update and finalize, and writes into an output "
                  "`BytesIO` that is read out again: the copies and the Python around one OpenSSL call cost about "
                  "as much as, or more than, the AES-GCM itself when the CPU encrypts at several GB/s (AES-NI/VAES), "
                  "which is why the ratio to raw AES-GCM differs so much from machine to machine. The plaintext's "
                  "HMAC-SHA256 is one SHA-256 pass: on a CPU without SHA extensions (~0.5 GB/s) it bounds the step.")
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
    profiles = results.get("profiles", {})
    colors = {"atrest": "#1b7837", "s3ec": "#2166ac", "esdk": "#b2182b", "copy": "#808080"}
    figure, axes = plt.subplots(max(len(profiles), 1), 2, figsize=(13, 5 * max(len(profiles), 1)), squeeze=False)
    for (left, right), (profile, view) in zip(axes, profiles.items()):
        throughput = view.get("throughput", {})
        sizes = sorted(throughput, key=int)
        width = 0.8 / max(len(peers), 1)
        for index, peer in enumerate(peers):
            values = [throughput[size].get(peer, {}).get("mb_per_s", 0) for size in sizes]
            positions = [x + (index - (len(peers) - 1) / 2) * width for x in range(len(sizes))]
            bars = left.bar(positions, values, width, label=LABELS[peer], color=colors[peer])
            left.bar_label(bars, labels=[f"{v:.1f}" if v < 10 else f"{v:.0f}" for v in values], fontsize=7, padding=1)
        left.set_xticks(range(len(sizes)), [human(int(size)) for size in sizes])
        if any(row.get(peer, {}).get("mb_per_s", 0) > 0 for row in throughput.values() for peer in peers):
            left.set_yscale("log")
        left.set_ylabel("MB/s, S3 -> S3 (log scale)")
        left.set_title(f"Throughput by object size, profile '{profile}' (median of {results['settings']['runs']})")
        left.legend(fontsize=8)

        for peer in peers:
            cumulative = view.get("batch", {}).get(peer, {}).get("kms_cumulative_cold")
            if cumulative:
                right.plot(range(1, len(cumulative) + 1), cumulative, label=LABELS[peer], color=colors[peer], linewidth=2,
                           linestyle="--" if peer == "s3ec" else "-", zorder=3 if peer == "s3ec" else 2)  # (a) and (b) coincide
        right.set_yscale("symlog", linthresh=1)
        right.set_ylim(bottom=0)
        right.set_xlabel("objects encrypted by a new process")
        right.set_ylabel("KMS calls, cumulative (symlog)")
        right.set_title(f"KMS calls by object count (10 KiB objects), profile '{profile}'")
        right.grid(True, which="both", alpha=0.3)
        right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
