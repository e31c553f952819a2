"""The CLI finds a running local stack from any directory, not only the project's root.

Each test runs the CLI from a temporary directory of its own (no `.atrest/` in it or its
parents) with a per-user state directory of its own (`ATREST_STATE_HOME`), so neither the
developer's running stack nor the project's state file can answer for it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import pytest

from atrest_cli.main import main
from atrest_cli.operations.deployment import (
    CURRENT_STACK_RECORD,
    find_local_state_file,
    forget_local_state_file,
    record_local_state_file,
)

pytestmark = pytest.mark.local_only("finds the local stack's state file")


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A working directory outside the project, and an empty per-user state directory."""
    work = tmp_path / "somewhere" / "else"
    work.mkdir(parents=True)
    home = tmp_path / "state-home"
    monkeypatch.chdir(work)
    monkeypatch.setenv("ATREST_STATE_HOME", str(home))
    monkeypatch.delenv("ATREST_STATE_FILE", raising=False)
    monkeypatch.delenv("ATREST_VAULT_BUCKET", raising=False)
    return type("Elsewhere", (), {"work": work, "home": home, "stacks": tmp_path / "stacks"})


def _state_file(local_stack: Any, directory: Path) -> Path:
    return local_stack.write(directory / "local-stack.json")


def _status(capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["status", "--json"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_status_from_another_directory_finds_the_stack_named_by_atrest_state_file(
        local_stack, elsewhere, monkeypatch, capsys):
    monkeypatch.setenv("ATREST_STATE_FILE", str(_state_file(local_stack, elsewhere.stacks)))

    code, out, err = _status(capsys)

    assert code == 0, err
    assert json.loads(out)["bucket"] == local_stack.outputs["IntakeBucketName"]


def test_status_from_another_directory_finds_the_stack_local_up_recorded(local_stack, elsewhere, capsys):
    state_file = _state_file(local_stack, elsewhere.stacks)
    record = record_local_state_file(state_file, local_stack.endpoint)
    assert record == elsewhere.home / CURRENT_STACK_RECORD

    code, out, err = _status(capsys)

    assert code == 0, err
    assert json.loads(out)["bucket"] == local_stack.outputs["IntakeBucketName"]


def test_status_from_a_subdirectory_of_the_project_finds_its_state_file(local_stack, elsewhere, monkeypatch, capsys):
    project = elsewhere.stacks / "project"
    _state_file(local_stack, project / ".atrest")
    (project / "docs" / "deep").mkdir(parents=True)
    monkeypatch.chdir(project / "docs" / "deep")

    code, out, err = _status(capsys)

    assert code == 0, err
    assert find_local_state_file().found == project / ".atrest" / "local-stack.json"


def test_status_without_a_local_stack_anywhere_names_every_place_it_looked(local_stack, elsewhere, capsys):
    state_file = _state_file(local_stack, elsewhere.stacks)
    record_local_state_file(state_file, local_stack.endpoint)
    state_file.unlink()  # that stack stopped without removing its record (killed)

    code, out, err = _status(capsys)

    assert code == 1 and out == ""
    assert str(elsewhere.work / ".atrest" / "local-stack.json") in err  # the working directory
    assert "every parent of" in err
    assert str(state_file) in err and "gone" in err and str(elsewhere.home / CURRENT_STACK_RECORD) in err
    assert "ATREST_STATE_FILE" in err and "atrest local up" in err


def test_a_missing_file_named_by_atrest_state_file_is_reported_not_replaced_by_another(
        local_stack, elsewhere, monkeypatch, capsys):
    record_local_state_file(_state_file(local_stack, elsewhere.stacks), local_stack.endpoint)
    missing = elsewhere.stacks / "missing.json"
    monkeypatch.setenv("ATREST_STATE_FILE", str(missing))

    code, _, err = _status(capsys)

    assert code == 1 and f"no local stack state at {missing}" in err and "ATREST_STATE_FILE" in err


def test_a_stopped_stack_forgets_only_its_own_record(local_stack, elsewhere):
    first, second = _state_file(local_stack, elsewhere.stacks / "a"), _state_file(local_stack, elsewhere.stacks / "b")
    record_local_state_file(first, local_stack.endpoint)
    record_local_state_file(second, local_stack.endpoint)  # a second `local up` started later

    forget_local_state_file(first)
    assert find_local_state_file().found == second
    forget_local_state_file(second)
    assert not (elsewhere.home / CURRENT_STACK_RECORD).exists()


def test_an_explicit_state_file_wins_over_atrest_variables_in_the_shell(local_stack, elsewhere, monkeypatch, capsys):
    # Variables as a function's environment sets them, pointing at buckets that do not exist.
    monkeypatch.setenv("ATREST_VAULT_BUCKET", "someone-elses-vault")
    monkeypatch.setenv("ATREST_INTAKE_BUCKET", "someone-elses-intake")
    state_file = _state_file(local_stack, elsewhere.stacks)

    code = main(["status", "--json", "--state-file", str(state_file)])
    captured = capsys.readouterr()

    assert code == 0, captured.err
    assert json.loads(captured.out)["bucket"] == local_stack.outputs["IntakeBucketName"]


def _use_state_with_outputs(local_stack: Any, elsewhere: Any, monkeypatch: pytest.MonkeyPatch,
                            edit: Callable[[dict[str, Any]], Any]) -> None:
    """The CLI's stack: the local one's state file with its outputs edited by `edit`."""
    path = _state_file(local_stack, elsewhere.stacks)
    state = json.loads(path.read_text())
    edit(state["outputs"])
    path.write_text(json.dumps(state))
    monkeypatch.setenv("ATREST_STATE_FILE", str(path))


def test_a_stack_writing_newer_records_than_this_cli_reads_is_refused_naming_what_to_run(
        local_stack, elsewhere, monkeypatch, capsys):
    # An operator's CLI from an older checkout than the deployed stack would misread its
    # records (issue 17's record stores neither vault key nor context); it must refuse instead.
    from atrest.storage.records import RECORD_FORMAT

    assert local_stack.outputs["RecordFormat"] == str(RECORD_FORMAT)  # what the template gives a stack
    _use_state_with_outputs(local_stack, elsewhere, monkeypatch, lambda outputs: outputs.update(
        RecordFormat=str(RECORD_FORMAT + 1)))

    code, out, err = _status(capsys)

    assert code != 0 and out == ""
    assert f"metadata records of format {RECORD_FORMAT + 1}" in err, err
    assert f"reads formats up to {RECORD_FORMAT}" in err and "the CLI of the release the stack was deployed from" in err


def test_a_stack_whose_outputs_predate_the_record_format_is_read_as_before(local_stack, elsewhere, monkeypatch, capsys):
    _use_state_with_outputs(local_stack, elsewhere, monkeypatch, lambda outputs: outputs.pop("RecordFormat"))

    code, out, err = _status(capsys)

    assert code == 0, err
    assert json.loads(out)["bucket"] == local_stack.outputs["IntakeBucketName"]
