"""Crash trials on dnevnik.ru, where the portal assigns ids and a create cannot be repeated:
`asiou-bridge sync` killed with SIGKILL at random instants, then run again, leaves the
emulator with every record exactly once, as an undisturbed sync does."""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from bridge.core.errors import ExitCode
from bridge.dnevnik.emulator import DnevnikEmulator
from bridge.dnevnik.service import DEMO_TOKEN
from tests import dnevnik
from tests.tiers import first_fast

TRIALS = int(os.environ.get("ASIOU_BRIDGE_CRASH_TRIALS", "10"))
"""Trials drawn: the first two in the fast tier (concurrency 1, then 4), the rest long."""
JOURNAL = ("lesson", "work", "mark", "logentry")


@pytest.fixture(scope="module")
def school(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dnevnik-crash") / "school.sqlite"
    dnevnik.write_school(path, days=10)
    return path


def _config(folder: Path, school: Path, emulator: DnevnikEmulator, concurrency: int) -> Path:
    token = folder / "token"
    token.write_text(DEMO_TOKEN, encoding="utf-8")
    path = folder / "bridge.toml"
    mappings = Path("mappings").resolve()
    path.write_text(
        f'[source]\nurl = "sqlite:///{school}"\n[state]\nurl = "sqlite:///{folder}/state.sqlite"\n'
        f'[mappings]\ndir = "{mappings}"\n'
        f'[portal]\nkind = "dnevnik"\nurl = "{emulator.api_url}"\n'
        f'school = "{emulator.school_id}"\nsecret_file = "{token}"\nbatch_size = 7\n'
        f"concurrency = {concurrency}\n"
        "[guard]\nmin_deletes = 1000000\n",
        encoding="utf-8",
    )
    return path


def _sync(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge", "--config", str(config), "sync", "--as-of", "2025-09-12"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _journal(emulator: DnevnikEmulator) -> dict[str, Any]:
    state = emulator.state()
    return {"counts": {k: state["counts"][k] for k in JOURNAL}, "duplicates": state["duplicates"]}


@pytest.fixture(scope="module")
def undisturbed(
    school: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[dict[str, int], int]:
    """The emulator's journal after an undisturbed sync, and how many batches it took."""
    folder = tmp_path_factory.mktemp("undisturbed")
    with DnevnikEmulator(data_path=folder / "emu.sqlite", seed_school=school) as emulator:
        done = _sync(_config(folder, school, emulator, 1))
        out, err = done.communicate(timeout=600)
        assert done.returncode == ExitCode.OK, out + err
        return _journal(emulator)["counts"], _acked(folder / "state.sqlite")


@pytest.fixture
def emulator(tmp_path: Path, school: Path) -> Iterator[DnevnikEmulator]:
    with DnevnikEmulator(data_path=tmp_path / "emu.sqlite", seed_school=school) as em:
        yield em


@pytest.mark.parametrize("trial", first_fast(range(TRIALS), 2))
def test_sigkill_at_a_random_instant_then_rerun_leaves_the_diary_exact(
    trial: int,
    tmp_path: Path,
    school: Path,
    emulator: DnevnikEmulator,
    undisturbed: tuple[dict[str, int], int],
) -> None:
    expected, batches = undisturbed
    config = _config(tmp_path, school, emulator, concurrency=1 + 3 * (trial % 2))
    draw = random.Random(trial)
    target, extra = draw.randint(1, max(1, int(0.8 * batches))), draw.uniform(0, 0.05)
    state = tmp_path / "state.sqlite"
    victim = _sync(config)
    while victim.poll() is None and _acked_or_none(state) < target:
        time.sleep(0.002)
    time.sleep(extra)  # somewhere in the next batch: posted, answered, or being recorded
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL  # it really died mid-run
    rerun = _sync(config)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == ExitCode.OK, out[-3000:] + err[-3000:]
    found = _journal(emulator)
    assert all(not ids for ids in found["duplicates"].values()), found["duplicates"]
    assert found["counts"] == expected


def _acked_or_none(state: Path) -> int:
    try:
        return _acked(state) if state.exists() else 0
    except sqlite3.OperationalError:
        return 0


def _acked(state: Path) -> int:
    with closing(sqlite3.connect(state, timeout=5)) as conn:
        return int(
            conn.execute("SELECT count(*) FROM delivery_batch WHERE status = 'acked'").fetchone()[0]
        )
