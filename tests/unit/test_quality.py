"""The code passes the project's static checks: ruff (broad selection), ruff format, mypy
--strict and the import contracts of the layers (import-linter, ``pyproject.toml``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)


def test_ruff_finds_nothing() -> None:
    """ruff reports no problem in the package, the tests or the benchmarks."""
    result = _run(str(BIN / "ruff"), "check", "bridge", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_would_change_nothing() -> None:
    """The whole tree is as ``ruff format`` writes it."""
    result = _run(str(BIN / "ruff"), "format", "--check", "bridge", "tests", "bench")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_finds_nothing() -> None:
    """mypy --strict reports no problem in the package."""
    result = _run(str(BIN / "mypy"), "--strict", "bridge")
    assert result.returncode == 0, result.stdout + result.stderr


def test_import_contracts_are_kept() -> None:
    """Every import-linter contract in pyproject.toml holds (the layers, a pure core, ports
    that import only the model, a reference portal apart from the service)."""
    result = _run(str(BIN / "lint-imports"), "--no-cache")
    assert result.returncode == 0, result.stdout + result.stderr
