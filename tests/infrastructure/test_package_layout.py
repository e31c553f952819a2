"""The shape of the code: the Lambda layer holds only what a function imports, and the
library's imports run one way (docs/architecture.md, "Where code lives")."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LIBRARY = REPO / "layers" / "atrest" / "atrest"
# Lower numbers are imported by higher ones, never the reverse; equal ranks do not import each other.
RANKS = {"core": 0, "catalog": 1, "crypto": 2, "storage": 2, "events": 3, "flows": 4}


def module_name(path: Path) -> str:
    parts = path.relative_to(LIBRARY.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at the top level) for every `atrest...` import in `path`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("atrest", "atrest_cli"):
            found.append((node.module, node.col_offset == 0))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.col_offset == 0) for alias in node.names
                      if alias.name.split(".")[0] in ("atrest", "atrest_cli")]
    return found


def library_modules() -> dict[str, Path]:
    return {module_name(path): path for path in LIBRARY.rglob("*.py")}


def test_the_layer_holds_only_what_a_function_imports():
    tracked = subprocess.run(["git", "ls-files", "layers/"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    modules = library_modules()
    reached: set[str] = set()
    pending = [module for handler in (REPO / "functions").glob("*/app.py") for module, _ in imports(handler)]
    while pending:
        module = pending.pop()
        # A module and the packages it lives in are imported with it.
        for depth in range(1, module.count(".") + 2):
            name = ".".join(module.split(".")[:depth])
            if name in modules and name not in reached:
                reached.add(name)
                pending += [m for m, _ in imports(modules[name])]
    unused = sorted(set(modules) - reached)
    assert not unused, f"the layer ships modules no function imports (move them to cli/atrest_cli): {unused}"
    shipped = {path for path in tracked if path.startswith("layers/atrest/atrest/")}
    python = {str(path.relative_to(REPO)) for path in modules.values()}
    data = shipped - python
    assert data == {"layers/atrest/atrest/catalog/data_classes.json"}, f"files in the layer that are not code: {data}"
    assert {path for path in tracked if not path.startswith("layers/atrest/atrest/")} == {"layers/atrest/requirements.txt"}


def test_library_imports_run_one_way():
    wrong = []
    for name, path in library_modules().items():
        here = name.split(".")[1] if name.count(".") else None
        for module, top_level in imports(path):
            parts = module.split(".")
            if parts[0] == "atrest_cli":
                wrong.append(f"{name} imports the CLI package ({module})")
                continue
            there = parts[1] if len(parts) > 1 else None
            if not top_level:
                wrong.append(f"{name} imports {module} inside a function (a hidden cycle or a hidden dependency)")
            if here in RANKS and there in RANKS and here != there and RANKS[there] >= RANKS[here]:
                wrong.append(f"{name} ({here}) imports {module} ({there}): imports run flows -> events -> storage/crypto -> catalog -> core")
    assert not wrong, "\n".join(wrong)


def test_every_library_module_lives_in_a_subpackage_named_for_what_it_holds():
    loose = [name for name in library_modules() if name.count(".") == 1 and name.split(".")[1] not in RANKS]
    assert not loose, f"modules outside core/catalog/crypto/storage/events/flows: {loose}"
    assert set(RANKS) == {p.name for p in LIBRARY.iterdir() if p.is_dir() and p.name != "__pycache__"}
