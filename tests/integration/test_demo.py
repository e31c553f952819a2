"""`make demo` (`atrest demo`): what it promises a newcomer, checked on its own output."""

from __future__ import annotations

import re
import subprocess
import sys


def test_make_demo_shows_every_data_class_under_its_scope_an_audited_read_and_a_denied_one(tmp_path):
    demo = subprocess.run([sys.executable, "-m", "atrest.cli", "demo"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    out = demo.stdout
    assert demo.returncode == 0, out + demo.stderr

    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\S+\s+([a-z-]+)\s+((?:account|service)/\S+)\s", out, re.M)}
    assert rows == {
        "call-recording": rows["call-recording"], "chat-transcript": rows["call-recording"],
        "knowledge-document": rows["call-recording"],
        "integration-configuration": rows["call-recording"] + "/integration-configuration",
        "voiceprint": "service/voiceprint",
    }
    assert re.search(r"^  service/voiceprint\s+service key store \S+, stack-owned KMS key arn:aws:kms:", out, re.M)
    assert "every object decrypted back to its original bytes (5 of 5)" in out
    assert re.search(r"^  allowed .*: 200, 2 objects", out, re.M)
    assert re.search(r'^  denied .*: 403 \{"message": "Forbidden"\}$', out, re.M)
    audit = re.findall(r"^\S+ \S+\s+(ALLOWED|DENIED)\s+api\s", out, re.M)
    assert sorted(audit) == ["ALLOWED", "ALLOWED", "DENIED"]
    assert "contact PII under the time-limited key instance/" in out
