"""LabelRegLib's shape: layers that import downwards only, no import circle, files and functions a reader can hold.

The contract is pyproject.toml's ``[tool.importlinter]`` (import-linter's ``lint-imports``); the sizes are the
project's own rule: no LabelRegLib file over 300 lines, no ``cli`` module over 200, no function over 60.
"""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "LabelReg" / "LabelRegLib"


def test_the_layers_contract_holds():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if lint is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    environment = {**os.environ, "PYTHONPATH": str(REPO / "LabelReg")}
    result = subprocess.run([lint, "--no-cache"], cwd=REPO, env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout


def test_every_module_sits_in_a_layer():
    """A module directly under LabelRegLib would be outside every layer (the contract could not see it)."""
    assert sorted(p.name for p in LIB.glob("*.py")) == ["__init__.py"]
    for package in (p for p in LIB.iterdir() if p.is_dir() and p.name != "__pycache__"):
        init = package / "__init__.py"
        assert init.is_file() and ast.get_docstring(ast.parse(init.read_text())), f"{package.name}: no docstring"


def _functions(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


def test_no_file_over_300_lines_no_cli_module_over_200_no_function_over_60():
    too_long = []
    for path in sorted(LIB.rglob("*.py")):
        lines = path.read_text().splitlines()
        limit = 200 if path.parent.name == "cli" else 300
        if len(lines) > limit:
            too_long.append(f"{path.relative_to(LIB)}: {len(lines)} lines (at most {limit})")
        for function in _functions(ast.parse("\n".join(lines))):
            length = function.end_lineno - function.lineno + 1
            if length > 60:
                too_long.append(f"{path.relative_to(LIB)}:{function.lineno} {function.name}: {length} lines")
    assert not too_long, "\n".join(too_long)
