"""Where an in-process function's output goes (atrest_cli.local.lambda_runtime): to its own
invocation's destination, even through a log handler another function created first."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

from atrest_cli.local.lambda_runtime import InProcessFunction
from atrest_cli.local.stack import LocalFunction

# As Powertools does for every function of one service: the first import creates the
# shared logger's handler, bound to whatever sys.stdout is at that moment.
HANDLER = '''
import logging, sys
shared = logging.getLogger("atrest-test-shared-{name}")
if not shared.handlers:
    shared.addHandler(logging.StreamHandler(sys.stdout))
    shared.setLevel(logging.INFO)
    shared.propagate = False

def handler(event, context):
    shared.info("{name} says %s", event["word"])
    print("{name} printed")
    return {{}}
'''


def _function(tmp_path: Path, logical_id: str, module: str, shared: str) -> LocalFunction:
    code = tmp_path / logical_id
    code.mkdir()
    (code / f"{module}.py").write_text(HANDLER.format(name=shared))
    return LocalFunction(logical_id=logical_id, function_name=logical_id, arn=f"arn:aws:lambda:::function:{logical_id}",
                         code_dir=str(code), handler=f"{module}.handler", runtime="python3.12", timeout=30,
                         memory_size=128, environment={})


def test_each_invocation_writes_to_its_own_destination_through_a_handler_made_by_another_function(tmp_path):
    first_log, second_log = io.StringIO(), io.StringIO()
    first = InProcessFunction(_function(tmp_path, "First", "first_app", "one"), {}, stdout=first_log)
    second = InProcessFunction(_function(tmp_path, "Second", "second_app", "one"), {}, stdout=second_log)

    assert first.invoke({"word": "hello"}).succeeded  # loads first: the shared handler is created now
    assert second.invoke({"word": "world"}).succeeded

    assert first_log.getvalue() == "one says hello\none printed\n"
    assert second_log.getvalue() == "one says world\none printed\n"


def test_what_a_shared_logger_writes_outside_any_invocation_goes_to_stderr(tmp_path, capsys):
    function = InProcessFunction(_function(tmp_path, "Lone", "lone_app", "two"), {}, stdout=io.StringIO())
    assert function.invoke({"word": "inside"}).succeeded

    logging.getLogger("atrest-test-shared-two").info("outside")

    captured = capsys.readouterr()
    assert "outside" in captured.err and "outside" not in captured.out
    assert sys.stdout is not None and type(sys.stdout).__name__ != "_InvocationStdout"
