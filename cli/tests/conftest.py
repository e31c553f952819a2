"""Tests of the operator CLI's own tooling, beside it: cli/tests/local/ holds those of the
embedded emulator, the local stack and runner (atrest_cli.local). They use the fixtures
every test directory shares (the emulator, the local stack: tests/stack_fixtures.py),
loaded by the same name as tests/conftest.py loads them, so a session that runs both
trees has one emulator. `pytest` at the repository root collects them (pyproject's
testpaths)."""

pytest_plugins = ["stack_fixtures"]
