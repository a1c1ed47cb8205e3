"""A portal that writes one record per request stops partway through a batch: what it wrote
is recorded, nothing else, and the next run sends the rest once (no duplicate, nothing lost),
with one batch or several in flight."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.adapters.state import SqlStateStore, open_state
from bridge.adapters.state.schema import delivery_batch
from bridge.core.errors import ExitCode, PortalUnavailable
from bridge.core.mapping import load_mappings
from bridge.ports import Operation, OperationResult, PartialDelivery
from bridge.service.engine import RunOptions, run_sync
from bridge.testing.portal import MemoryPortal
from tests import school

MAPPINGS = load_mappings(Path("mappings"))
AS_OF = date(2025, 12, 31)


class StoppingPortal(MemoryPortal):
    """Writes one record at a time; the ``stop_at``-th batch stops after ``done`` records
    with its retries run out. Counts every write it applied."""

    def __init__(self, stop_at: int, done: int, concurrency: int) -> None:
        super().__init__(batch_size=4, concurrency=concurrency)
        self.stop_at, self.done = stop_at, done
        self.batches, self.writes = 0, Counter[tuple[str, str]]()
        self.lock = threading.Lock()

    def send(self, operations: Sequence[Operation]) -> list[OperationResult]:
        with self.lock:
            self.batches += 1
            stopping = self.batches == self.stop_at
        if not stopping:
            return self._write(operations)
        results = self._write(operations[: self.done])
        raise PartialDelivery(results, PortalUnavailable(8, "HTTP 503 unavailable"))

    def _write(self, operations: Sequence[Operation]) -> list[OperationResult]:
        results = super().send(operations)
        with self.lock:
            self.writes.update((op.entity, op.sourced_id) for op in operations)
        return results


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("done", [0, 3])
def test_what_a_stopped_batch_wrote_is_recorded_and_nothing_is_written_twice(
    tmp_path: Path, concurrency: int, done: int
) -> None:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'asiou.sqlite'}")
    school.write_school(engine)
    portal = StoppingPortal(stop_at=12, done=done, concurrency=concurrency)
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        cut = run_sync(
            MAPPINGS, SqlSource(engine), state, portal, RunOptions(as_of=AS_OF), run_id="r1"
        )
        assert cut.exit_code == ExitCode.PARTIAL
        assert "503" in (cut.delivery.failure or "")
        on_portal = {(e, k) for e in MAPPINGS.entities for k in portal.fingerprints(e)}
        recorded = {
            (e, entry.key)
            for e in MAPPINGS.entities
            for entry in state.lookup(e, [s for s, *_ in state.entries(e)]).values()
        }
        # Exactly what the portal holds is recorded, the stopped batch's part included.
        assert recorded == on_portal
        assert len(on_portal) == cut.delivery.total
        # The stopped batch stays in doubt (its rest may have taken effect unanswered): a
        # portal that only creates looks its records up in the next run.
        assert state.batches_in_doubt() >= 1  # with others in flight, they may be too
        assert batch_statuses(state)["partial"] == 1
        done_run = run_sync(
            MAPPINGS, SqlSource(engine), state, portal, RunOptions(as_of=AS_OF), run_id="r2"
        )
    finally:
        state.close()
        engine.dispose()
    assert done_run.exit_code == ExitCode.OK
    assert max(portal.writes.values()) == 1  # nothing written twice
    assert sum(portal.writes.values()) == cut.delivery.total + done_run.delivery.total


def batch_statuses(state: SqlStateStore) -> Counter[str]:
    """How many delivery batches the state store holds in each status."""
    with state.engine.connect() as conn:
        rows = conn.execute(sa.select(delivery_batch.c.status))
        return Counter(str(status) for (status,) in rows)
