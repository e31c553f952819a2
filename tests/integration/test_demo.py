"""`make demo` (`atrest demo`): what it promises a newcomer, checked on its own output."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.local_only("runs `atrest demo`, which brings up an emulator of its own")


def test_make_demo_shows_the_data_classes_the_catch_all_a_class_on_its_own_key_an_audited_read_and_a_denied_one(
        demo_run):
    demo = demo_run  # `atrest demo`'s command line, run once for this and the log checks (tests/stack_fixtures.py)
    out = demo.stdout
    assert demo.returncode == 0, out + demo.stderr
    # A newcomer's terminal shows the walkthrough; every log line (the functions', the custom
    # resource's at provisioning, the key expiry the demo runs itself) is in the functions' log.
    assert [line for line in (out + demo.stderr).splitlines() if line.startswith("{")] == []

    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\S+\s+([a-z-]+)\s+((?:account|service)/\S+)\s", out, re.M)}
    assert rows == {
        "call-recording": rows["call-recording"], "chat-transcript": rows["call-recording"],
        "contact-lens-voice-analysis": rows["call-recording"], "unclassified": rows["call-recording"],
        "knowledge-document": rows["call-recording"],
        "integration-configuration": rows["call-recording"] + "/integration-configuration",
        "voiceprint": "service/voiceprint",
    }
    assert re.search(r"^  service/voiceprint\s+service key store \S+, stack-owned KMS key arn:aws:kms:", out, re.M)
    # A class on a KMS key of its own: its branch key is wrapped by that key, the rest by the stack's.
    own = re.search(r"^  own key\s+data class integration-configuration on KMS key (\S+) \(DataClassKmsKeys\)", out, re.M)
    assert own, out
    wrapping = dict(re.findall(r"^  ((?:account|instance)/\S+)\s+key store \S+, .*KMS key (arn:\S+)$", out, re.M))
    assert wrapping[rows["integration-configuration"]] == own.group(1)
    assert wrapping[rows["call-recording"]] != own.group(1)
    assert re.match(r"account/\d{12}$", rows["call-recording"])
    assert re.search(r"^Analysis/Voice/\S+_analysis_\S+\.json\s+contact-lens-voice-analysis\s", out, re.M)
    assert re.search(r"^uploads/customer-list\.csv\s+unclassified\s", out, re.M)  # no class names it: still encrypted
    assert "every object decrypted back to its original bytes (7 of 7); no plaintext is left in the intake bucket" in out
    assert re.search(r"^  allowed .*: 200, 2 objects", out, re.M)
    assert re.search(r'^  denied .*: 403 \{"message": "Forbidden"\}$', out, re.M)
    audit = re.findall(r"^\S+ \S+\s+(RELEASED|DENIED)\s+api\s", out, re.M)
    assert sorted(audit) == ["DENIED", "RELEASED", "RELEASED"]
    assert "contact PII under the time-limited key instance/" in out
