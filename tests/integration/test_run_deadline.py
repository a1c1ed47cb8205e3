"""The run deadline: a run still delivering when ``sync.run_deadline_minutes`` passes stops
after the batch in flight, reports a partial delivery, and loses nothing."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.adapters.state import open_state
from bridge.core.errors import ExitCode, RunDeadline
from bridge.core.mapping import load_mappings
from bridge.service.engine import Deadline, RunOptions, run_sync
from bridge.testing.portal import MemoryPortal
from tests import school

MAPPINGS = load_mappings(Path("mappings"))
AS_OF = date(2025, 12, 31)


class FakeClock:
    """A clock that moves a minute each time it is read."""

    def __init__(self) -> None:
        self.minutes = 0.0

    def passed(self, limit: float) -> bool:
        self.minutes += 1.0
        return self.minutes > limit


def test_a_run_past_its_deadline_stops_after_the_batch_in_flight(tmp_path: Path) -> None:
    """Past the deadline the run stops after the batch in flight with exit 6 and the reason;
    the state holds exactly what the portal acknowledged, and the next run completes."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'asiou.sqlite'}")
    school.write_school(engine)
    portal = MemoryPortal(batch_size=5)
    clock = FakeClock()
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        cut = run_sync(
            MAPPINGS,
            SqlSource(engine),
            state,
            portal,
            RunOptions(as_of=AS_OF),
            run_id="r1",
            deadline=Deadline(3, lambda: clock.passed(3)),
        )
        assert isinstance(cut.plan.error, RunDeadline)
        assert cut.exit_code == ExitCode.PARTIAL
        assert cut.delivery.batches == 4
        assert "sync.run_deadline_minutes" in (cut.delivery.failure or "")
        recorded = {(e, k) for e in MAPPINGS.entities for k in portal.fingerprints(e)}
        assert len(recorded) == sum(
            cut.delivery.delivered[e].total() for e in cut.delivery.delivered
        )
        done = run_sync(
            MAPPINGS, SqlSource(engine), state, portal, RunOptions(as_of=AS_OF), run_id="r2"
        )
    finally:
        state.close()
        engine.dispose()
    assert done.exit_code == ExitCode.OK
    assert done.delivery.total > 0
