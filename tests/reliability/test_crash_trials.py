"""Crash trials: `asiou-bridge sync` killed with SIGKILL at random instants, then run again.

After each kill and rerun the portal must hold exactly the expected export: nothing missing,
nothing extra, nothing duplicated. ASIOU_BRIDGE_CRASH_TRIALS sets the number of trials
(default 4, as in CI; the long form in docs/reliability.md uses 50).
"""

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

import pytest
import sqlalchemy as sa

from bridge.core.errors import ExitCode
from bridge.refportal.server import ReferencePortal
from tests import school as small
from tests.e2e import (
    duplicates,
    expected_export,
    make_school,
    running_portal,
    snapshot,
    write_config,
)
from tests.tiers import first_fast, one_fast_each

TRIALS = int(os.environ.get("ASIOU_BRIDGE_CRASH_TRIALS", "10"))
"""Trials drawn: the first two in the fast tier (concurrency 1, then 4), the rest long."""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("crash")


@pytest.fixture(scope="module")
def school(folder: Path) -> Path:
    return make_school(folder, pupils=60, days=45, seed=11)


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[ReferencePortal]:
    yield from running_portal(tmp_path)


@pytest.fixture(scope="module")
def batches(folder: Path, school: Path) -> int:
    """How many batches an undisturbed sync of the school acknowledges: kills are drawn among
    the first 60 % of them (by progress, not by time: this machine's speed drifts)."""
    timing = folder / "timing"
    timing.mkdir()
    for portal in running_portal(timing):
        done = _sync(_config(timing, school, portal.url))
        done.communicate(timeout=300)
        assert done.returncode == ExitCode.OK
        return _acked(timing / "state.sqlite")
    raise AssertionError("the portal did not start")


def _config(folder: Path, school: Path, url: str, concurrency: int = 1) -> Path:
    return write_config(
        folder,
        school,
        url,
        batch_size=25,
        extra=f"concurrency = {concurrency}\n[guard]\nmin_deletes = 1000000\n",
    )


def _sync(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "bridge", "--config", str(config), "sync", "--as-of", "2026-06-01"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("trial", first_fast(range(TRIALS), 2))
def test_sigkill_at_a_random_instant_then_rerun_leaves_the_portal_exact(
    trial: int, tmp_path: Path, school: Path, portal: ReferencePortal, batches: int
) -> None:
    """Killed mid-sync with SIGKILL and run again, the portal equals the expected export.
    Every other trial keeps four batch requests in flight (portal.concurrency = 4)."""
    config = _config(tmp_path, school, portal.url, concurrency=1 + 3 * (trial % 2))
    draw = random.Random(trial)
    target, extra = draw.randint(1, max(1, int(0.6 * batches))), draw.uniform(0, 0.02)
    state = tmp_path / "state.sqlite"
    victim = _sync(config)
    while victim.poll() is None and _acked_or_none(state) < target:
        time.sleep(0.002)
    time.sleep(extra)  # somewhere in the next batch: sent, answered, or being recorded
    victim.send_signal(signal.SIGKILL)
    victim.communicate(timeout=60)
    assert victim.returncode == -signal.SIGKILL  # it really died mid-run
    rerun = _sync(config)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == ExitCode.OK, out + err
    assert snapshot(portal.url) == expected_export(school)
    assert duplicates(portal.url) == []


# --- incremental runs killed after a gate-relevant change -------------------------------------


def _acked_or_none(state: Path) -> int:
    """Acknowledged batches so far; 0 while the state store is not there yet."""
    try:
        return _acked(state) if state.exists() else 0
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


def _acked(state: Path) -> int:
    with closing(sqlite3.connect(state, timeout=5)) as conn:
        return int(
            conn.execute("SELECT count(*) FROM delivery_batch WHERE status = 'acked'").fetchone()[0]
        )


@pytest.mark.parametrize(("change", "first"), one_fast_each(small.GATE_CHANGES, [1, 2]))
def test_sigkill_of_an_incremental_run_after_a_gate_change_at_every_batch_boundary(
    change: str, first: int, tmp_path: Path
) -> None:
    """An incremental run after a withdrawal or a consent withdrawal (batches of 3), killed
    with SIGKILL once its first, third, … (or second, fourth, …) batch was acknowledged, up to
    its last boundary: after each kill the next incremental run leaves nothing on the portal
    the change forbids. The fast tier cuts each change at every other boundary (withdrawal at
    the odd ones, consent at the even ones); the long tier cuts the rest, so the two tiers
    together cut each change at every boundary."""
    cut = first
    while _kill_after_batches(change, cut, tmp_path / f"cut-{cut}"):
        cut += 2
    killed = (cut - first) // 2
    print(f"\n{change}: killed after {killed} batch boundaries, from boundary {first} in twos")
    assert cut > 5  # the run has at least five boundaries; fewer means the trial broke
    assert killed >= 2


def _kill_after_batches(change: str, batches: int, folder: Path) -> bool:
    """One trial: full sync, ``change``, an incremental run killed after ``batches`` batches,
    then a rerun; False when the incremental run ended before that many batches."""
    folder.mkdir()
    path = folder / "asiou.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    small.write_school(engine)
    for portal in running_portal(folder):
        config = write_config(
            folder, path, portal.url, batch_size=3, extra="[guard]\nmin_deletes = 1000000\n"
        )
        _run(config, "--as-of", "2025-12-31")
        forbidden = small.forbidden_by(change)
        assert forbidden <= set(snapshot(portal.url))  # delivered before the change
        with engine.begin() as conn:
            small.make_gate_change(conn, change)
        engine.dispose()
        state, before = folder / "state.sqlite", _acked(folder / "state.sqlite")
        victim = subprocess.Popen(
            _command(config, "--incremental", "--as-of", "2025-12-31"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        while victim.poll() is None and _acked(state) < before + batches:
            time.sleep(0.002)
        victim.send_signal(signal.SIGKILL)
        victim.communicate(timeout=60)
        if victim.returncode != -signal.SIGKILL:
            return False  # it had ended: no boundary left to cut
        _run(config, "--incremental", "--as-of", "2025-12-31")
        assert forbidden & set(snapshot(portal.url)) == set(), f"killed after {batches}"
        assert duplicates(portal.url) == []
        return True
    raise AssertionError("the portal did not start")


def _command(config: Path, *options: str) -> list[str]:
    return [sys.executable, "-m", "bridge", "--config", str(config), "sync", *options]


def _run(config: Path, *options: str) -> None:
    done = subprocess.run(
        _command(config, *options), capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == ExitCode.OK, done.stderr[-2000:]
