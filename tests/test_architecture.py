"""The house rules that keep the code easy to see and to change, checked on the code itself.

- dependencies point one way (import-linter's contracts in pyproject.toml), and the contracts
  really catch a backend module that imports training;
- no production module over 500 lines, no function over 80 lines outside bench/;
- the README's layout table names only folders that exist, and every package is in it.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

from backend.settings import REPO_ROOT

PACKAGES = ("backend", "training", "ui", "store")
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    """import-linter, run on the packages found in ``cwd`` with ``cwd``'s pyproject.toml."""
    command = [str(Path(sys.executable).with_name("lint-imports")), "--no-cache"]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(cwd)})


def test_dependencies_point_one_way():
    result = lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout


def test_a_backend_module_importing_training_breaks_the_contract(tmp_path):
    """The contracts are not vacuous: one forbidden import in a copy of the code fails the lint."""
    for name in PACKAGES:
        shutil.copytree(REPO_ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "backend" / "serving" / "probe.py").write_text("from training.config import LCPOConfig\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "backend is not allowed to import training" in result.stdout
    assert "backend.serving.probe -> training.config" in result.stdout


def _production_modules() -> list[Path]:
    return [REPO_ROOT / "app.py", *(path for name in PACKAGES for path in sorted((REPO_ROOT / name).rglob("*.py")))]


def test_no_production_module_is_over_500_lines():
    long = {str(path.relative_to(REPO_ROOT)): n for path in _production_modules() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these modules (over {MAX_MODULE_LINES} lines): {long}"


def test_no_function_outside_bench_is_over_80_lines():
    folders = (*PACKAGES, "tests", "scripts")
    paths = [REPO_ROOT / "app.py", *(path for name in folders for path in sorted((REPO_ROOT / name).rglob("*.py")))]
    long = {}
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES:
                long[f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name}"] = node.end_lineno - node.lineno + 1
    assert not long, f"split these functions (over {MAX_FUNCTION_LINES} lines): {long}"


def _layout_paths() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text()
    table = readme.split("## Layout", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([^`]+)` \|", table, flags=re.M)


def test_every_path_in_the_readme_layout_table_exists():
    paths = _layout_paths()
    assert len(paths) >= 10, paths
    missing = [p for p in paths if not (REPO_ROOT / p.rstrip("/")).exists()]
    assert not missing, f"the README's layout table names paths that do not exist: {missing}"


def test_every_package_and_subpackage_is_in_the_readme_layout_table():
    named = {p.rstrip("/") for p in _layout_paths()}
    packages = {str(init.parent.relative_to(REPO_ROOT)) for name in PACKAGES for init in (REPO_ROOT / name).rglob("__init__.py")}
    assert not packages - named, f"packages the README's layout table does not describe: {sorted(packages - named)}"


def test_every_package_says_what_it_is():
    for name in PACKAGES:
        for init in (REPO_ROOT / name).rglob("__init__.py"):
            docstring = ast.get_docstring(ast.parse(init.read_text()))
            assert docstring and len(docstring) > 80, f"{init.relative_to(REPO_ROOT)} needs a docstring that says what the package is"
