"""docs/reliability.md names the test behind every guarantee: each named test must exist."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_test_the_reliability_doc_names_exists():
    doc = (REPO / "docs" / "reliability.md").read_text(encoding="utf-8")
    named = set(re.findall(r"::(?:[A-Za-z]+::)?(test_[a-z0-9_]+)", doc))
    defined = {
        name
        for path in (REPO / "tests").rglob("test_*.py")
        for name in re.findall(r"^\s*def (test_[a-z0-9_]+)\(", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    }
    assert len(named) >= 30, "could not read the test names from docs/reliability.md"
    assert named <= defined, f"named in docs/reliability.md but not defined: {sorted(named - defined)}"
