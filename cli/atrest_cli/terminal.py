"""The CLI's console: tables and live progress for a person at a terminal, plain text for a
pipe, a script or a CI log.

On a terminal (the stream's isatty()), rich draws: coloured headers and states, a ruled
table fitted (and folded) to the window, live progress bars. Anywhere else the same table
is plain aligned text, whole rows one per line, without colour, ANSI codes or box
characters, so that `grep`, `awk` and the tests read it (`--json` is for scripts that
want every field). Data is never markup: every cell is a rich Text, and characters a
terminal would act on are written as escapes first.
"""

from __future__ import annotations

import sys
from typing import Any, Collection, Iterable, Mapping, Sequence, TextIO

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

# Wider than any row: on a pipe a row is never wrapped or cut, however long its keys.
PIPED_WIDTH = 1 << 20

HEADER_STYLE = "bold cyan"

# Values shown in colour on a terminal, whichever table they are in.
STATE_STYLES: Mapping[str, str] = {
    "RELEASED": "green", "ACTIVE": "green",
    "REFUSED": "bold red", "DENIED": "bold red", "FAILED": "bold red", "SHREDDED": "red",
    "NOT_FOUND": "yellow", "RETIRED": "yellow", "no outcome (crashed?)": "bold red",
}


def is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed
        return False


def console_for(stream: TextIO, terminal: bool | None = None) -> Console:
    """A rich console writing to `stream`: a terminal's (colour unless NO_COLOR is set, its
    window's width), or a plain one (no colour, no control codes, never wrapping) when
    `stream` is no terminal. `terminal` overrides the detection (tests)."""
    if is_terminal(stream) if terminal is None else terminal:
        return Console(file=stream, force_terminal=True, highlight=False, markup=False, emoji=False)
    # Everything explicit: FORCE_COLOR, TTY_COMPATIBLE or COLUMNS in the environment must
    # not turn a pipe's plain text into a terminal's.
    return Console(file=stream, force_terminal=False, force_interactive=False, color_system=None, no_color=True,
                   width=PIPED_WIDTH, highlight=False, markup=False, emoji=False, legacy_windows=False)


def safe_text(value: Any) -> str:
    """`value` as one line with nothing a terminal acts on: control, format and separator
    characters as Python escapes (\\x1b, \\n, \\u202e ...); None as empty. Text already made
    safe (atrest.storage.audit.printable, atrest_cli.commands.status.printable) is unchanged."""
    text = "" if value is None else str(value)
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def render_table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, right: Collection[int] = (),
                 rule: bool = True, stream: TextIO | None = None, terminal: bool | None = None) -> str:
    """`rows` under `header` as text for `stream` (default: standard output, where the
    caller prints it). Columns in `right` are right-aligned (numbers). On a pipe: columns two
    spaces apart, with `rule` the header underlined with dashes as wide as each column, no
    trailing spaces (the layout atrest has always printed). On a terminal: rich's ruled
    header, colour, and long cells folded to fit the window."""
    stream = stream or sys.stdout
    tty = is_terminal(stream) if terminal is None else terminal
    # Two spaces between columns either way: without a box, one cell's right padding and the
    # next one's left; in the terminal's box, a cell's right padding and the (blank) divider.
    table = Table(box=box.SIMPLE_HEAD if tty else None, show_edge=False, pad_edge=False,
                  padding=(0, 1, 0, 0) if tty else (0, 1), header_style=HEADER_STYLE if tty else "")
    for index, name in enumerate(header):
        table.add_column(Text(name), justify="right" if index in right else "left", no_wrap=not tty, overflow="fold")
    cells = [[safe_text(cell) for cell in row] for row in rows]
    if rule and not tty:
        # A first row of dashes: a box's header rule would also run under the gaps between columns.
        table.add_row(*("-" * max(map(cell_len, column)) for column in zip(header, *cells)))
    for row in cells:
        table.add_row(*(Text(cell, style=STATE_STYLES.get(cell, "") if tty else "") for cell in row))
    console = console_for(stream, tty)
    with console.capture() as captured:
        console.print(table)
    return "\n".join(line.rstrip() for line in captured.get().splitlines())
