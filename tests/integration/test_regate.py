"""Gate-relevant changes are durable across a crash, and time is an input.

A withdrawal (or consent change) marks its pupil for re-gating in the state store before
anything that follows from it is delivered; the mark goes only when a run delivered everything.
A run that ends after some batches, whichever, is followed by an incremental run that removes
what the change forbids. A withdrawal dated ahead takes effect in the incremental run after its
day passes, with no row changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.demo import schema
from bridge.engine import RunOptions
from bridge.errors import ExitCode, PortalUnavailable
from bridge.guard import Thresholds
from bridge.mapping import load_mappings
from bridge.portal import Operation, OperationResult
from bridge.portal.store import MemoryPortal
from bridge.source import SqlSource
from bridge.state import SqlStateStore, open_state
from bridge.sync import SyncResult, run_sync
from tests import school

MAPPINGS = load_mappings(Path("mappings"))
AS_OF = date(2025, 12, 31)
NO_GUARD = Thresholds(max_delete_fraction=1.0, min_deletes=10**9, hold_whole_class=False)
LEFT = date(2025, 9, 15)


class CrashingPortal(MemoryPortal):
    """A portal that stops answering after ``allowed`` more batches (a crash's effect)."""

    def __init__(self) -> None:
        super().__init__(batch_size=1)
        self.allowed: int | None = None

    def send(self, operations: Sequence[Operation]) -> list[OperationResult]:
        if self.allowed is not None:
            if self.allowed <= 0:
                raise PortalUnavailable(1, "the bridge was killed")
            self.allowed -= 1
        return super().send(operations)


def live(portal: MemoryPortal, entity: str) -> set[str]:
    return set(portal.fingerprints(entity))


def pupil_1_after(day: date) -> tuple[set[str], set[str]]:
    """Keys of pupil 1's marks and absences dated after ``day``."""
    late = [n for n, d in enumerate(school.LESSON_DAYS) if d > day]
    return {str((100 + n) * 10 + 1) for n in late}, {f"{100 + n}-1" for n in late}


def sync(engine: sa.Engine, state: SqlStateStore, portal: MemoryPortal, run: str, *,
         incremental: bool, as_of: date = AS_OF) -> SyncResult:
    return run_sync(MAPPINGS, SqlSource(engine), state, portal,
                    RunOptions(as_of=as_of, incremental=incremental, thresholds=NO_GUARD),
                    run_id=run)


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    built = sa.create_engine(f"sqlite:///{tmp_path / 'asiou.sqlite'}")
    school.write_school(built)
    return built


def withdraw(conn: sa.Connection) -> None:
    """Pupil 1 leaves on LEFT."""
    conn.execute(schema.pupil_move.update().where(schema.pupil_move.c.id == 1).values(
        date_out=LEFT, order_out="№9-у", modified_at=school.T0.replace(year=2026)))


def withdraw_consent(conn: sa.Connection) -> None:
    """Pupil 1's written consent is withdrawn."""
    conn.execute(schema.pupil.update().where(schema.pupil.c.id == 1).values(
        pd_consent=0, modified_at=school.T0.replace(year=2026)))


def forbidden(portal: MemoryPortal, change: str) -> set[tuple[str, str]]:
    """What of pupil 1 the portal holds that ``change`` forbids."""
    if change == "withdrawal":
        marks, absences = pupil_1_after(LEFT)
    else:
        marks, absences = pupil_1_after(date(2000, 1, 1))
        marks |= {"pupil:1", "enrollment:1", "guardian_link:1"}
    held = {f"{e}:{k}" for e in ("pupil", "enrollment", "guardian_link") for k in live(portal, e)}
    return ({("mark", k) for k in marks & live(portal, "mark")}
            | {("absence", k) for k in absences & live(portal, "absence")}
            | {(k.split(":")[0], k) for k in marks & held})


@pytest.mark.parametrize("change", ["withdrawal", "consent"])
@pytest.mark.parametrize("batches", range(12))
def test_a_run_cut_off_after_any_batch_of_a_gate_change_leaves_nothing_forbidden(
        engine: sa.Engine, tmp_path: Path, batches: int, change: str) -> None:
    """Withdraw a pupil (or their consent), cut the incremental run off after ``batches``
    batches: the next incremental run leaves nothing on the portal that the change forbids."""
    portal = CrashingPortal()
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        assert sync(engine, state, portal, "full", incremental=False).exit_code == ExitCode.OK
        assert pupil_1_after(LEFT)[0] <= live(portal, "mark")
        with engine.begin() as conn:
            (withdraw if change == "withdrawal" else withdraw_consent)(conn)
        portal.allowed = batches
        sync(engine, state, portal, "cut", incremental=True)
        portal.allowed = None
        again = sync(engine, state, portal, "again", incremental=True)
        assert again.exit_code == ExitCode.OK
        assert forbidden(portal, change) == set()
        assert state.regate_marks() == set()
    finally:
        state.close()
        engine.dispose()


def test_a_withdrawal_dated_ahead_takes_effect_when_its_day_passes(
        engine: sa.Engine, tmp_path: Path) -> None:
    """A stay ending on a day after the full run: the incremental run after that day archives
    the pupil, though no row changed."""
    later_edit = school.T0.replace(month=11)  # other rows moved the watermarks on since
    with engine.begin() as conn:
        conn.execute(schema.pupil_move.update().where(schema.pupil_move.c.id == 1).values(
            date_out=date(2025, 12, 10), order_out="№9-у"))
        conn.execute(schema.pupil_move.update().where(schema.pupil_move.c.id == 6).values(
            modified_at=later_edit))
        conn.execute(schema.pupil.update().where(schema.pupil.c.id == 5).values(
            modified_at=later_edit))
    portal = CrashingPortal()
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        first = sync(engine, state, portal, "full", incremental=False, as_of=date(2025, 12, 1))
        assert first.exit_code == ExitCode.OK
        pupil = {r.sourced_id: r for r in portal.model.records("demo", "pupil")}
        assert pupil["1"].data["active"] is True
        later = sync(engine, state, portal, "later", incremental=True, as_of=date(2025, 12, 11))
        assert later.exit_code == ExitCode.OK
        pupil = {r.sourced_id: r for r in portal.model.records("demo", "pupil")}
        assert pupil["1"].data["active"] is False
    finally:
        state.close()
        engine.dispose()
