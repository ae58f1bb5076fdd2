"""The import direction of ARCHITECTURE.md holds: ``import-linter``'s contracts in ``pyproject.toml`` pass.

``renderers/`` and ``policies/`` install inside the package (``optical_memory.renderers``, ``optical_memory.policies``)
through setuptools' ``package-dir``; import-linter reads packages from disk, so the check runs on the tree as it
installs: the package with those folders placed where the mapping puts them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def installed_tree(target: Path) -> Path:
    """Lay the package out under ``target`` as ``pip install`` would, from ``pyproject.toml``'s ``package-dir``."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "optical_memory", target / "optical_memory", ignore=ignore)
    for package, folder in config["tool"]["setuptools"]["package-dir"].items():
        shutil.copytree(ROOT / folder, target.joinpath(*package.split(".")), ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", target / "pyproject.toml")
    return target


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"]
    return subprocess.run(command, cwd=tree, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True)


def test_import_contracts_are_kept(tmp_path):
    result = lint_imports(installed_tree(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kept, 0 broken" in result.stdout


def test_a_crossed_layer_breaks_the_contracts(tmp_path):
    tree = installed_tree(tmp_path)
    renderer = tree / "optical_memory" / "renderers" / "renderer.py"
    renderer.write_text("from optical_memory.memory import OpticalMemory  # noqa: F401\n" + renderer.read_text(encoding="utf-8"))
    result = lint_imports(tree)
    assert result.returncode != 0
    assert "optical_memory.renderers.renderer -> optical_memory.memory" in result.stdout
