"""The layers of ``docs/architecture.md``, checked on every run: ``lint-imports`` with the
contracts in ``pyproject.toml`` (``[tool.importlinter]``), over the source under test."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import clamp3

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return {c["id"]: c for c in config["tool"]["importlinter"]["contracts"]}


def _lint(*contract_ids: str) -> subprocess.CompletedProcess:
    if not LINT_IMPORTS.is_file():
        pytest.fail(f"{LINT_IMPORTS} is missing: install the test extra (pip install -e '.[all,test]')")
    # The package under test, wherever it was imported from (a worktree's src, an install).
    env = {**os.environ, "PYTHONPATH": str(Path(clamp3.__file__).parents[1])}
    selected = [arg for cid in contract_ids for arg in ("--contract", cid)]
    command = [str(LINT_IMPORTS), "--no-cache", "--no-logo", *selected]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_every_top_level_module_is_placed_in_a_layer():
    # A new module that no contract names would be checked by none of them.
    contracts = _contracts()
    placed = set(contracts["library"]["source_modules"]) | set(contracts["library"]["forbidden_modules"])
    found = {f"clamp3.{m.name}" for m in pkgutil.iter_modules(clamp3.__path__)}
    assert found == placed, f"not placed: {sorted(found - placed)}; gone: {sorted(placed - found)}"


def test_layer_contracts_hold():
    layered = [cid for cid in _contracts() if cid != "acyclic"]
    result = _lint(*layered)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(layered)} kept, 0 broken" in result.stdout


def test_no_import_cycles():
    # The model -> encode -> embedding -> model cycle went with the pipeline split (issue 15).
    result = _lint("acyclic")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_a_broken_contract_fails_the_check(tmp_path):
    # The check can fail: a library module importing an application breaks the first contract.
    pkg = tmp_path / "clamp3"
    for part in ("", "utils", "cli"):
        (pkg / part).mkdir(parents=True, exist_ok=True)
        (pkg / part / "__init__.py").write_text("")
    (pkg / "utils" / "bad.py").write_text("import clamp3.cli\n")
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_package = "clamp3"\n[[tool.importlinter.contracts]]\n'
        'name = "n"\ntype = "forbidden"\nsource_modules = ["clamp3.utils"]\n'
        'forbidden_modules = ["clamp3.cli"]\n'
    )
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    command = [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(config)]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "clamp3.utils.bad -> clamp3.cli" in result.stdout
