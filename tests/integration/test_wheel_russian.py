"""A non-editable install speaks Russian: the wheel carries the compiled catalog, and the
installed program, run from another folder, prints its messages from it."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_installed_wheel_prints_russian_from_another_folder(tmp_path: Path) -> None:
    """`pip wheel .`, installed into a fresh venv (its dependencies borrowed from this one),
    run from an empty folder under LANG=ru_RU.UTF-8: a configuration error comes in Russian."""
    built = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr
    wheel = next(tmp_path.glob("asiou_bridge-*.whl"))
    assert "bridge/locale/ru/LC_MESSAGES/bridge.mo" in zipfile.ZipFile(wheel).namelist()
    venv.create(tmp_path / "venv", with_pip=True)
    python = tmp_path / "venv" / "bin" / "python"
    install = [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)]
    subprocess.run(install, check=True, capture_output=True, timeout=600)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "bad.toml").write_text("[source]\nurl = 5\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "ASIOU_"))}
    env |= {"LANG": "ru_RU.UTF-8", "PYTHONPATH": sysconfig.get_paths()["purelib"]}
    code = "import bridge, bridge.cli.main as m; print(bridge.__file__); raise SystemExit(m.main())"
    result = subprocess.run(
        [str(python), "-c", code, "--config", "bad.toml", "plan"],
        capture_output=True,
        text=True,
        check=False,
        cwd=elsewhere,
        env=env,
        timeout=300,
    )
    assert result.stdout.startswith(str(tmp_path / "venv")), result.stdout  # not this checkout
    assert result.returncode == 3, result.stderr
    assert "Ошибка в настройках (ничего не сделано):" in result.stderr
