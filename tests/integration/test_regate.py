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

from bridge.adapters.source import SqlSource
from bridge.adapters.state import SqlStateStore, open_state
from bridge.core.errors import ExitCode, PortalUnavailable
from bridge.core.guard import Thresholds
from bridge.core.mapping import load_mappings
from bridge.ports import Operation, OperationResult
from bridge.service.engine import RunOptions, SyncResult, run_sync
from bridge.testing.portal import MemoryPortal
from tests import school

MAPPINGS = load_mappings(Path("mappings"))
AS_OF = date(2025, 12, 31)
NO_GUARD = Thresholds(max_delete_fraction=1.0, min_deletes=10**9, hold_whole_class=False)


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


def live(portal: MemoryPortal) -> set[tuple[str, str]]:
    """(entity, key) of every live record on the portal."""
    return {(e, k) for e in MAPPINGS.entities for k in portal.fingerprints(e)}


def sync(
    engine: sa.Engine,
    state: SqlStateStore,
    portal: MemoryPortal,
    run: str,
    *,
    incremental: bool,
    as_of: date = AS_OF,
) -> SyncResult:
    return run_sync(
        MAPPINGS,
        SqlSource(engine),
        state,
        portal,
        RunOptions(as_of=as_of, incremental=incremental, thresholds=NO_GUARD),
        run_id=run,
    )


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    built = sa.create_engine(f"sqlite:///{tmp_path / 'asiou.sqlite'}")
    school.write_school(built)
    return built


@pytest.mark.parametrize("change", school.GATE_CHANGES)
@pytest.mark.parametrize("batches", range(12))
def test_a_run_cut_off_after_any_batch_of_a_gate_change_leaves_nothing_forbidden(
    engine: sa.Engine, tmp_path: Path, batches: int, change: str
) -> None:
    """Withdraw a pupil (or their consent), cut the incremental run off after ``batches``
    batches: the next incremental run leaves nothing on the portal that the change forbids."""
    portal = CrashingPortal()
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        assert sync(engine, state, portal, "full", incremental=False).exit_code == ExitCode.OK
        assert school.forbidden_by(change) <= live(portal)
        with engine.begin() as conn:
            school.make_gate_change(conn, change)
        portal.allowed = batches
        sync(engine, state, portal, "cut", incremental=True)
        portal.allowed = None
        again = sync(engine, state, portal, "again", incremental=True)
        assert again.exit_code == ExitCode.OK
        assert school.forbidden_by(change) & live(portal) == set()
        assert state.regate_marks() == set()
    finally:
        state.close()
        engine.dispose()


def test_a_withdrawal_dated_ahead_takes_effect_when_its_day_passes(
    engine: sa.Engine, tmp_path: Path
) -> None:
    """A stay ending on a day after the full run: the incremental run after that day archives
    the pupil, though no row changed."""
    with engine.begin() as conn:
        school.withdraw_pupil_1(conn, date(2025, 12, 10), modified_at=None)
        school.move_watermarks_on(conn)
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
