"""The CLI's tables and progress (atrest_cli.terminal, atrest_cli.progress): rich's on a
terminal, plain lines without ANSI codes or box characters on a pipe, and data never taken
for markup or control sequences either way."""

from __future__ import annotations

import io
import re
from types import SimpleNamespace

import pytest

from atrest_cli.commands.keys import render_versions
from atrest_cli.progress import ByteProgress, ItemProgress, ListingProgress
from atrest_cli.terminal import console_for, render_table

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # SGR (colour), cursor and erase sequences
HOSTILE = "[bold red]x[/] :smile: \x1b[2J\u202e\n"  # markup, an emoji code, a screen clear, an RTL override, a newline


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _plain(text: str) -> None:
    assert "\x1b" not in text, text
    assert text.isascii(), text  # no box drawing or bar characters (the test data is ASCII)


def test_a_piped_table_is_plain_aligned_text_whatever_the_environment_says(monkeypatch):
    # Variables that turn rich's own detection to "terminal" must not reach a pipe.
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    monkeypatch.setenv("COLUMNS", "20")
    long_key = "uploads/" + "k" * 300

    text = render_table(("key", "state", "objects"), [(long_key, "ACTIVE", 3), ("b", HOSTILE, None)],
                        right=(2,), stream=io.StringIO())

    _plain(text)
    header, rule, *rows = text.splitlines()
    assert header.split() == ["key", "state", "objects"] and set(rule) <= {"-", " "}
    assert len(rows) == 2, "a long cell is neither wrapped nor cut on a pipe"
    assert rows[0].split() == [long_key, "ACTIVE", "3"]
    assert "[bold red]x[/] :smile: \\x1b[2J\\u202e\\n" in rows[1]  # shown as it is, control characters escaped
    assert all(line == line.rstrip() for line in text.splitlines())
    # Each column starts where its header does.
    assert rows[0].index("ACTIVE") == rows[1].index("[bold") == header.index("state")
    assert rows[0].endswith("3") and len(rows[0]) == len(header) > len(rows[1])  # right-aligned numbers


def test_a_table_without_a_rule_is_its_header_then_its_rows():
    header, *rows = render_table(("a", "b"), [("1", "2")], rule=False, stream=io.StringIO()).splitlines()

    assert header.split() == ["a", "b"] and [row.split() for row in rows] == [["1", "2"]]


def test_a_terminal_gets_a_rich_table_with_colour_and_data_still_literal():
    text = render_table(("state", "note"), [("REFUSED", HOSTILE)], stream=Tty())

    assert ANSI.search(text) and "─" in text  # colour and rich's header rule
    assert "[bold red]x[/] :smile:" in text and "\\x1b[2J" in text and "\x1b[2J" not in text
    assert "\u202e" not in text and "😄" not in text


def test_console_detection_follows_the_stream():
    assert console_for(Tty()).is_terminal
    assert not console_for(io.StringIO()).is_terminal


def test_keys_list_piped_holds_each_versions_values_in_its_row(capsys):
    views = [SimpleNamespace(branch_key_id="instance/i-1", version="v-1", state="RETIRED", created="2026-11-30T01:08:00",
                             expires="2027-03-01T03:08:00", objects=12)]

    text = render_versions(views)

    _plain(text)
    header, row = text.splitlines()
    assert header.split() == ["scope", "version", "state", "created", "expires", "objects"]
    assert row.split() == ["instance/i-1", "v-1", "RETIRED", "2026-11-30", "01:08Z", "2027-03-01", "03:08Z", "12"]


def test_piped_progress_is_plain_lines_and_ends_with_the_finished_count():
    stream = io.StringIO()

    with ItemProgress("backfill", "objects", stream=stream, every=3600) as progress:
        progress.note("listing s3://b/: 3 matching, 3 not yet encrypted")
        for done in range(4):
            progress(done, 3, f"{done} KiB, 0 failed")

    text = stream.getvalue()
    _plain(text)
    lines = text.splitlines()
    # The first line at once, none until `every` has passed, and always the last.
    assert [line.split(",")[0] for line in lines] == [
        "listing s3://b/: 3 matching", "backfill: 0/3 objects", "backfill: 3/3 objects"]
    assert "3 KiB, 0 failed" in lines[-1] and "ETA" in lines[-1]


def test_piped_byte_progress_says_bytes_of_total_and_rate():
    stream = io.StringIO()

    with ByteProgress("decrypting s3://v/k", 4096, stream=stream, every=0) as progress:
        progress(2048)

    _plain(stream.getvalue())
    assert stream.getvalue().startswith("decrypting s3://v/k: 2.0 KiB of 4.0 KiB (")


@pytest.mark.parametrize("make, advance, shown", [
    (lambda stream: ByteProgress("decrypting s3://v/[bold]k", 4096, stream=stream), lambda progress: progress(4096),
     ["decrypting s3://v/[bold]k", "4.0/4.0 KiB"]),  # a description is never markup
    (lambda stream: ItemProgress("re-wrapping branch keys", "items", stream=stream), lambda progress: progress(2, 2),
     ["re-wrapping branch keys", "2/2 items"]),
    (lambda stream: ListingProgress(stream), lambda progress: progress("intake objects", 2000),
     ["status: intake objects", "2,000 read"]),
], ids=["bytes", "items", "listing"])
def test_a_terminal_gets_a_live_rich_progress_display(make, advance, shown):
    stream = Tty()

    with make(stream) as progress:
        advance(progress)

    text = stream.getvalue()
    assert ANSI.search(text)  # drawn and redrawn in place, in colour
    seen = ANSI.sub("", text)
    assert all(part in seen for part in shown), seen
