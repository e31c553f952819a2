"""The template passes the tools a user and CI run on it: cfn-lint, sam validate,
sam build, checkov. All offline; they FAIL (never skip) when the tools are missing."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, TEMPLATE, load_cfn_yaml

# ELF e_machine values of the native code Lambda can load.
ELF_MACHINES = {0x3E: "x86_64", 0xB7: "arm64"}


def test_cfn_lint_passes_including_informational_checks(run_tool):
    result = run_tool("cfn-lint", "--include-checks", "I", "--", str(TEMPLATE), timeout=120)
    assert result.returncode == 0, "cfn-lint found problems\n" + result.explain()


def test_sam_validate_lint_passes(run_tool):
    result = run_tool("sam", "validate", "--lint", "--template-file", str(TEMPLATE), timeout=120)
    assert result.returncode == 0, "sam validate --lint failed\n" + result.explain()
    assert "is a valid SAM Template" in result.stdout + result.stderr, result.explain()


def _checkov(run_tool, path: Path) -> dict[str, Any]:
    result = run_tool(
        "checkov", "-f", str(path), "--framework", "cloudformation", "--skip-download",
        "--output", "json", "--quiet", "--compact", timeout=240,
    )
    # Exit 1 means failed checks; anything else non-zero is checkov itself failing.
    assert result.returncode in (0, 1), "checkov did not run\n" + result.explain()
    report = json.loads(result.stdout)
    if isinstance(report, list):  # one report per framework
        (report,) = [r for r in report if r.get("check_type") == "cloudformation"]
    return report


def _failed(report: dict[str, Any]) -> list[str]:
    failed = report.get("results", {}).get("failed_checks", [])
    return [f"{c['check_id']} {c['resource']}: {c['check_name']}" for c in failed]


def test_checkov_passes_on_the_sam_template(run_tool):
    report = _checkov(run_tool, TEMPLATE)
    assert report["summary"]["failed"] == 0, "checkov failures:\n" + "\n".join(_failed(report))
    assert report["summary"]["passed"] > 20, report["summary"]  # it really looked at the resources


def test_checkov_passes_on_the_translated_template(run_tool, translated_template_path):
    """SAM expands the function into a Lambda function and an event source mapping;
    check what CloudFormation will actually create, with the same suppressions."""
    report = _checkov(run_tool, translated_template_path)
    assert report["summary"]["failed"] == 0, "checkov failures:\n" + "\n".join(_failed(report))
    assert report["summary"]["passed"] > 20, report["summary"]


def test_every_suppression_says_why(template):
    """A skipped checkov check or ignored cfn-lint rule must carry its reason in the template."""
    problems = []
    for logical_id, resource in template["Resources"].items():
        metadata = resource.get("Metadata", {})
        for skip in metadata.get("checkov", {}).get("skip", []):
            if len(str(skip.get("comment", "")).strip()) < 20:
                problems.append(f"{logical_id}: checkov skip {skip.get('id')} has no real reason")
        ignored = metadata.get("cfn-lint", {}).get("config", {}).get("ignore_checks", [])
        if ignored:
            raw = TEMPLATE.read_text(encoding="utf-8")
            for rule in ignored:
                # The reason is a YAML comment on the rule's line.
                if not any(rule in line and "#" in line for line in raw.splitlines()):
                    problems.append(f"{logical_id}: cfn-lint ignore {rule} has no comment")
    assert not problems, "\n".join(problems)


def _elf_machine(path: Path) -> str | None:
    with open(path, "rb") as handle:
        header = handle.read(20)
    if header[:4] != b"\x7fELF":
        return None
    return ELF_MACHINES.get(int.from_bytes(header[18:20], "little"), f"e_machine={header[18:20].hex()}")


@pytest.mark.slow
def test_sam_build_without_container(run_tool, tmp_path, template):
    """`sam build` (no Docker) produces the layer the function imports, with native
    code for the function's architecture. Needs the package index (pip) unless cached."""
    build_dir, cache_dir = tmp_path / "build", tmp_path / "cache"
    repo_build = REPO / ".aws-sam"
    before = repo_build.stat().st_mtime if repo_build.exists() else None
    started = time.monotonic()
    # --no-cached overrides samconfig.toml's `cached = true`, whose dependency cache
    # (.aws-sam/deps) would land in the repository whatever --cache-dir says.
    result = run_tool(
        "sam", "build", "--template-file", str(TEMPLATE), "--build-dir", str(build_dir),
        "--cache-dir", str(cache_dir), "--no-cached", timeout=600,
    )
    seconds = time.monotonic() - started
    assert result.returncode == 0, "sam build failed\n" + result.explain()
    print(f"sam build took {seconds:.1f}s")

    layer = build_dir / "AtrestLayer" / "python"
    assert (layer / "atrest" / "__init__.py").is_file(), "the layer does not ship the atrest package under python/"
    assert not (layer / "python").exists(), "layer code built to python/python/: the package belongs at layers/atrest/atrest/"
    # The data class catalog every function validates at start (docs/data-classes.md).
    assert (layer / "atrest" / "catalog" / "data_classes.json").read_bytes() == (TEMPLATE.parent / "layers/atrest/atrest/catalog/data_classes.json").read_bytes()
    # Only what the functions import: the operator CLI, demos and the emulator are another package.
    shipped = {p.relative_to(layer).as_posix() for p in (layer / "atrest").rglob("*.py")}
    assert shipped == {p.relative_to(TEMPLATE.parent / "layers/atrest").as_posix()
                       for p in (TEMPLATE.parent / "layers/atrest/atrest").rglob("*.py")}
    assert not (layer / "atrest_cli").exists() and not any("local" in name or "demo" in name for name in shipped)
    size = sum(p.stat().st_size for p in layer.rglob("*") if p.is_file())
    print(f"layer: {size / 2**20:.1f} MiB, atrest package: {len(shipped)} modules")
    for package in ("aws_encryption_sdk", "aws_cryptographic_material_providers", "aws_lambda_powertools"):
        assert (layer / package).is_dir(), f"the layer is missing {package}"
    function = build_dir / "EncryptObjectFunction"
    assert (function / "app.py").is_file()

    architecture = template["Globals"]["Function"]["Architectures"][0]
    wrong = {
        str(so.relative_to(layer)): machine
        for so in layer.rglob("*.so")
        if (machine := _elf_machine(so)) not in (None, architecture)
    }
    assert not wrong, f"native code in the layer is not {architecture}: {wrong}"

    built = load_cfn_yaml(build_dir / "template.yaml")
    assert built["Resources"]["AtrestLayer"]["Properties"]["ContentUri"] == "AtrestLayer"
    after = repo_build.stat().st_mtime if repo_build.exists() else None
    assert after == before, "sam build wrote into the repository's .aws-sam despite --build-dir/--cache-dir"
