"""`atrest demo`: see atrest_cli.demos.demo."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    demo = subparsers.add_parser("demo", help="run the pipeline end to end on the embedded emulator")
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from atrest_cli.demos.demo import run as run_demo

    return run_demo(args)
