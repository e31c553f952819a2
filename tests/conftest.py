"""Every test directory's fixtures (the stack under test, the emulator, `clean_stack`,
`created`, `demo_run`, ...) live in tests/stack_fixtures.py, loaded here by name: the
emulator's own tests (cli/tests/) load the same module, so one session has one emulator
and one stack whichever tree its tests come from. pyproject's pytest `pythonpath` puts
tests/ on sys.path (stack_fixtures, targets and the shared helpers import by name)."""

pytest_plugins = ["stack_fixtures"]
