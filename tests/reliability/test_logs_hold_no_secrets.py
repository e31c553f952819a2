"""A full `atrest demo` run logs no content and no key material: not the transcript's text,
not a phone number, not a run of the recording's audio bytes, not a branch key, in any
of the encodings a careless log line would use.

Scanned: stderr and the functions' log file (the logs), and stdout (the operator's
report), except the report's lines that show a contact's phone number the demo decrypts
on purpose - never in a log.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

from atrest_cli.demos.samples import call_recording_wav

pytestmark = pytest.mark.local_only("reads the branch keys of an `atrest demo` run on its own emulator")


TRANSCRIPT_TEXT = ["update the card on my account", "confirm the phone number on file"]
# The demo's report shows contact PII where it decrypts it on purpose (atrest_cli.demos.demo, "revealed"
# and "still decrypts" lines); those lines are the only exception, and only in stdout.
DELIBERATE_REVEAL = re.compile(r"^\s+(revealed|unaffected)\s")
PHONE_NUMBERS = ["+1 206 555 0100", "+12065550100", "2065550100", "+12065550177", "2065550177", "206 555 0100"]


def encodings(secret: bytes) -> list[str]:
    """How bytes show up in text: raw, hex, and base64 at every alignment (any 18-byte run)."""
    forms = [secret.hex(), secret.hex().upper()]
    for start in range(3):
        window = secret[start:start + 18]
        forms += [base64.b64encode(window).decode(), base64.urlsafe_b64encode(window).decode()]
    forms.append(secret.decode("latin-1"))
    return forms


def audio_runs() -> list[bytes]:
    """24-byte runs of the demo's recording (deterministic), from both speakers' turns."""
    audio = call_recording_wav(3.0)
    return [audio[offset:offset + 24] for offset in (4_000, 30_000, 70_000)]


def leaks(text: str, branch_keys: list[bytes], phones: list[str]) -> list[str]:
    found = [f"transcript text {t!r}" for t in TRANSCRIPT_TEXT if t in text]
    found += [f"phone number {p!r}" for p in phones if p in text]
    found += [f"audio bytes at run {n}" for n, run in enumerate(audio_runs()) if any(f in text for f in encodings(run))]
    found += [f"branch key {n}" for n, key in enumerate(branch_keys) if any(f in text for f in encodings(key))]
    return found


def test_the_scanner_finds_each_kind_of_secret_it_looks_for():
    key = bytes(range(32))
    planted = {
        "transcript": TRANSCRIPT_TEXT[0],
        "phone": PHONE_NUMBERS[1],
        "audio": base64.b64encode(audio_runs()[1][1:19]).decode(),
        "key": key.hex(),
    }
    for kind, text in planted.items():
        assert leaks(f'{{"message": "x", "value": "{text}"}}', [key], PHONE_NUMBERS), kind
    assert leaks('{"message": "object encrypted", "key": "connect/acme/x.wav"}', [key], PHONE_NUMBERS) == []


def test_a_full_demo_run_logs_no_transcript_text_phone_number_audio_or_key_material(demo_run):
    demo = demo_run
    assert demo.returncode == 0, demo.stdout + demo.stderr
    branch_keys = demo.branch_keys
    assert branch_keys, "the demo created no branch key to look for"
    (log_path,) = re.findall(r"function logs: (\S+?)\)", demo.stdout)
    function_log = Path(log_path).read_text()
    assert function_log.count('"message":"object encrypted"') + function_log.count('"message": "object encrypted"') >= 2, \
        "the functions' log is not where the demo says"

    assert leaks(function_log, branch_keys, PHONE_NUMBERS) == []
    assert leaks(demo.stderr, branch_keys, PHONE_NUMBERS) == []
    report = [line for line in demo.stdout.splitlines() if not DELIBERATE_REVEAL.search(line)]
    assert len(report) >= len(demo.stdout.splitlines()) - 2
    assert leaks("\n".join(report), branch_keys, PHONE_NUMBERS) == []
