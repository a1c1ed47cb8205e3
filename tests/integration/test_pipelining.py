"""Pipelined delivery (issue 11, item 2): the next batch is sent while the previous answer is
recorded; the state records only acknowledged changes, never more than one batch behind, and
everything answered is recorded before a run reports (also when it stops early)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from bridge.core.errors import Interrupted, PortalUnavailable
from bridge.core.mapping import load_mappings
from bridge.core.model import Change, Op, Record
from bridge.core.support import full_support
from bridge.ports import ENTITIES, Delivered, Operation, OperationResult, Refusal
from bridge.service.engine import Deliverer
from bridge.testing.fakes import MemoryStateStore

MAPPINGS = load_mappings(Path("mappings"))
BATCH = 5


class Portal:
    """Acknowledges every operation; notes how many batches it was sent."""

    batch_size = BATCH
    concurrency = 1
    support = full_support(ENTITIES)

    def __init__(self, fail_at: int | None = None) -> None:
        self.sent = 0
        self.fail_at = fail_at
        self.arrived = threading.Condition()

    def send(self, operations: Sequence[Operation]) -> list[OperationResult]:
        with self.arrived:
            if self.fail_at is not None and self.sent + 1 >= self.fail_at:
                raise PortalUnavailable(8, "down")
            self.sent += 1
            self.arrived.notify_all()
        return [OperationResult(op.op_id, True, 200) for op in operations]

    def fingerprints(self, entity: str) -> dict[str, str]:
        return {}


class SlowRecorder:
    """A state store whose recording of batch N waits (up to ``patience`` seconds) until the
    portal was sent batch N + 1: it notes whether the next batch was in flight meanwhile."""

    def __init__(self, portal: Portal, patience: float = 5.0) -> None:
        self.inner, self.portal, self.patience = MemoryStateStore(), portal, patience
        self.overlapped: list[bool] = []
        self.recorded: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit_batch(
        self,
        run_id: str,
        batch: int,
        delivered: Sequence[Delivered],
        refused: Sequence[Refusal],
        max_attempts: int,
        *,
        complete: bool = True,
    ) -> None:
        with self.portal.arrived:
            seen = self.portal.arrived.wait_for(
                lambda: self.portal.sent > batch, timeout=self.patience
            )
        self.overlapped.append(seen)
        self.recorded.append(batch)
        self.inner.commit_batch(run_id, batch, delivered, refused, max_attempts, complete=complete)


def subjects(count: int) -> list[Change]:
    out = []
    for n in range(1, count + 1):
        record = Record("subject", str(n), f"s{n:05d}", {"name": f"S{n}"}, f"fp{n}")
        out.append(Change(Op.CREATE, "subject", str(n), record.sort_key, record))
    return out


def test_the_next_batch_is_in_flight_while_the_previous_answer_is_recorded() -> None:
    portal = Portal()
    state = SlowRecorder(portal, patience=5.0)
    deliverer = Deliverer(portal, state, MAPPINGS, run_id="r")  # type: ignore[arg-type]
    changes = subjects(4 * BATCH)
    for change in changes[:-BATCH]:
        deliverer.add(change)
    state.patience = 0.2  # the last batch has no batch after it
    deliverer.add_all(changes[-BATCH:])
    assert state.overlapped[:3] == [True, True, True]
    assert state.recorded == [1, 2, 3, 4]
    assert deliverer.report.total == 4 * BATCH
    assert len(list(state.inner.entries("subject"))) == 4 * BATCH


def test_a_failed_send_still_records_every_answered_batch() -> None:
    """The portal fails on the third batch: the first two were answered, and both are recorded
    before the failure leaves the deliverer; nothing of the third is."""
    portal = Portal(fail_at=3)
    state = SlowRecorder(portal, patience=0.2)
    deliverer = Deliverer(portal, state, MAPPINGS, run_id="r")  # type: ignore[arg-type]
    with pytest.raises(PortalUnavailable):
        deliverer.add_all(subjects(4 * BATCH))
    assert state.recorded == [1, 2]
    assert len(list(state.inner.entries("subject"))) == 2 * BATCH
    assert deliverer.report.total == 2 * BATCH


def test_a_stop_records_the_batch_in_flight_then_interrupts() -> None:
    portal = Portal()
    state = SlowRecorder(portal, patience=0.2)
    stop = threading.Event()
    deliverer = Deliverer(portal, state, MAPPINGS, run_id="r", stop=stop)  # type: ignore[arg-type]
    changes = subjects(3 * BATCH)
    for change in changes[:BATCH]:
        deliverer.add(change)
    stop.set()
    with pytest.raises(Interrupted):
        deliverer.add_all(changes[BATCH:])
    assert state.recorded == list(range(1, portal.sent + 1))
    assert portal.sent < 3  # it stopped before sending everything
    assert len(list(state.inner.entries("subject"))) == deliverer.report.total > BATCH


def test_planning_workers_are_never_forked_while_a_batch_is_being_recorded() -> None:
    """Range planning forks while delivery records in its own thread: the fork waits for the
    recording, so no child inherits the recorder's locks held (it could never take them)."""
    import os

    from bridge.adapters import seam

    portal = Portal()
    state = SlowRecorder(portal, patience=0.5)  # recording batch 1 takes ~0.5 s
    deliverer = Deliverer(portal, state, MAPPINGS, run_id="r")  # type: ignore[arg-type]
    for change in subjects(BATCH):
        deliverer.add(change)  # batch 1 answered; its recording runs now
    started = time.monotonic()
    child = os.fork()
    if child == 0:  # the child: the recorder's lock must be free here
        os._exit(0 if seam.FORK_SAFE.acquire(timeout=0.1) else 1)
    waited = time.monotonic() - started
    _, status = os.waitpid(child, 0)
    deliverer.drain()
    assert os.waitstatus_to_exitcode(status) == 0
    assert waited > 0.2  # the fork waited for the recording
    assert state.recorded == [1]


class FailingRecorder(SlowRecorder):
    """Recording batch 1 fails (the state store broke for a moment); later batches record."""

    def commit_batch(
        self,
        run_id: str,
        batch: int,
        delivered: Sequence[Delivered],
        refused: Sequence[Refusal],
        max_attempts: int,
        *,
        complete: bool = True,
    ) -> None:
        if batch == 1:
            raise RuntimeError("state store unavailable")
        super().commit_batch(run_id, batch, delivered, refused, max_attempts, complete=complete)


def test_a_batch_answered_after_a_failed_recording_is_still_recorded() -> None:
    """Batch 1's recording fails while batch 2 is sent: the failure ends the run, and batch 2,
    which the portal acknowledged, is recorded all the same (nothing answered is dropped)."""
    portal = Portal()
    state = FailingRecorder(portal, patience=0.2)
    deliverer = Deliverer(portal, state, MAPPINGS, run_id="r")  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="state store unavailable"):
        deliverer.add_all(subjects(3 * BATCH))
    assert state.recorded == [2]
    assert len(list(state.inner.entries("subject"))) == BATCH
