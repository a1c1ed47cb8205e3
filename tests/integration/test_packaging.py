"""The built wheel, installed into a fresh virtualenv and run from another folder, works on its own:
it finds its shipped mappings and example files, knows its version, and the demo delivers.

Offline: the wheel is built from a copy of this tree with this virtualenv's setuptools (no build
isolation, so nothing is downloaded), and installed with this virtualenv's pip (``--python``,
``--no-deps --no-index``) into a virtualenv made without pip or system site packages. Only the
bridge's *dependencies* are borrowed: a ``.pth`` line puts this virtualenv's site-packages after
the fresh one's, which holds the installed wheel; the test checks the bridge it runs is that one.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

import pytest

from tests.conftest import ROOT

SMALL = ("--pupils", "20", "--days", "5")
"""The demo's smallest school worth a sync."""
NOT_SHIPPED = shutil.ignore_patterns(
    ".git", ".venv", "build", "var", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


def _run(command: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``command`` in ``cwd``, its output kept; a non-zero exit fails the test, with the output."""
    done = subprocess.run(
        command, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` folder of a fresh virtualenv holding the wheel built from this tree."""
    top = tmp_path_factory.mktemp("packaging")
    tree, wheels, env = top / "tree", top / "wheels", top / "env"
    shutil.copytree(ROOT, tree, symlinks=True, ignore=NOT_SHIPPED)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), "."], tree)
    (wheel,) = wheels.glob("asiou_bridge-*.whl")
    venv.EnvBuilder(with_pip=False, system_site_packages=False).create(env)
    python = env / "bin" / "python"
    install = ["install", "-q", "--no-deps", "--no-index", str(wheel)]
    _run([*pip, "--python", str(python), *install], top)
    where = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    fresh = _run([str(python), "-c", where], top)
    ours = sysconfig.get_paths()["purelib"]
    (Path(fresh.stdout.strip()) / "borrowed-dependencies.pth").write_text(ours + "\n")
    return env / "bin"


def test_installed_wheel_runs_the_demo_from_another_folder(installed: Path, tmp_path: Path) -> None:
    """``asiou-bridge demo`` of the installed wheel, run outside the tree, exits 0 and delivers,
    with the mappings shipped in the wheel."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = _run(
        [str(installed / "asiou-bridge"), "demo", "--dir", str(tmp_path / "demo"), *SMALL],
        elsewhere,
    )
    assert "OK: every planned change was delivered." in done.stdout
    assert "mark 0," not in done.stdout.split("The portal's own counts")[1]
    written = (tmp_path / "demo" / "bridge.toml").read_text(encoding="utf-8")
    assert str(installed.parent / "lib") in written  # the mappings inside the fresh virtualenv
    assert str(ROOT) not in written


def test_installed_wheel_knows_its_version_and_ships_its_files(
    installed: Path, tmp_path: Path
) -> None:
    """``--version`` comes from the package's metadata; ``files`` names the shipped example
    config, mappings and units, each inside the fresh virtualenv and there."""
    version = _run([str(installed / "asiou-bridge"), "--version"], tmp_path)
    assert version.stdout.split() == ["asiou-bridge", _project_version()]
    listed = _run([str(installed / "asiou-bridge"), "files"], tmp_path).stdout.splitlines()
    paths = {line.split()[0]: Path(line.split()[1]) for line in listed}
    assert set(paths) == {
        "mappings",
        "config",
        "dnevnik-tables",
        "unit",
        "unit-template",
        "changelog",
    }
    for path in paths.values():
        assert path.exists(), path
        assert path.is_relative_to(installed.parent), path
    assert len(list(paths["mappings"].glob("*.toml"))) == len(list((ROOT / "mappings").glob("*")))
    python = str(installed / "python")
    source = _run([python, "-c", "import bridge; print(bridge.__file__)"], tmp_path).stdout
    assert Path(source.strip()).is_relative_to(installed.parent)


def test_installed_wheel_speaks_russian_from_its_catalog(installed: Path, tmp_path: Path) -> None:
    """The wheel carries the compiled Russian catalog: under ``LANG=ru_RU.UTF-8`` the installed
    program, run outside the tree, reports a configuration error in Russian (exit 3)."""
    (tmp_path / "bad.toml").write_text("[source]\nurl = 5\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LC_", "LANG", "ASIOU_"))}
    done = subprocess.run(
        [str(installed / "asiou-bridge"), "--config", "bad.toml", "plan"],
        cwd=tmp_path,
        env={**env, "LANG": "ru_RU.UTF-8"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 3, done.stderr
    assert "Ошибка в настройках (ничего не сделано):" in done.stderr


def _project_version() -> str:
    """The version pyproject.toml gives."""
    import tomllib

    return str(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"])
