"""Batches in flight (issue 11, item 2): up to ``portal.concurrency`` batch requests at once,
never two that could depend on each other, and the state records exactly what the portal
acknowledged, whatever ends the run."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from bridge.adapters.dnevnik.portal import DNEVNIK_SUPPORT
from bridge.adapters.portal_client import PortalClient, PortalSettings
from bridge.adapters.portal_client.retries import _Pacer
from bridge.core.errors import ExitCode, Interrupted, PortalFatalError, PortalUnavailable
from bridge.core.mapping import load_mappings
from bridge.core.model import Change, Op, Record
from bridge.core.support import EntitySupport, full_support
from bridge.ports import ENTITIES, Operation, OperationResult
from bridge.refportal.server import ReferencePortal
from bridge.service.engine import Deliverer
from bridge.service.engine.inflight import kind_of
from bridge.testing.fakes import MemoryStateStore
from tests.e2e import (
    DEMO_CLIENT,
    Bridge,
    duplicates,
    expected_export,
    make_school,
    running_portal,
    set_faults,
    snapshot,
)

MAPPINGS = load_mappings(Path("mappings"))
BATCH = 5


def changes(entity: str, count: int, op: Op = Op.CREATE) -> list[Change]:
    out = []
    for n in range(1, count + 1):
        record = Record(entity, f"{n:06d}", f"{n:06d}", {"name": f"N{n}"}, f"fp{n}")
        out.append(Change(op, entity, record.key, record.sort_key, record))
    return out


def test_a_batch_has_a_kind_only_when_all_its_changes_share_entity_and_direction() -> None:
    marks = changes("mark", 3)
    assert kind_of(marks) == ("mark", False)
    assert kind_of(changes("mark", 2, Op.DELETE)) == ("mark", True)
    assert kind_of([*marks, *changes("work", 1)]) is None
    assert kind_of([*marks, *changes("mark", 1, Op.DELETE)]) is None
    assert kind_of(marks, alone={"mark"}) is None  # an entity whose records refer to each other
    assert kind_of([]) is None


class WatchingPortal:
    """Acknowledges every operation, and watches what is in flight at once: each batch waits
    (up to ``patience`` s) until ``concurrency`` batches are in flight, so overlap is seen
    whenever the deliverer allows it, however fast the machine is."""

    batch_size = BATCH
    support = full_support(ENTITIES)

    def __init__(
        self,
        concurrency: int,
        fail_key: str | None = None,
        failures: dict[str, Exception] | None = None,
    ) -> None:
        self.concurrency, self.patience = concurrency, 2.0
        self.failures = dict(failures or {})
        if fail_key is not None:
            self.failures[fail_key] = PortalUnavailable(8, "down")
        self.changed = threading.Condition()
        self.active: list[tuple[str, ...]] = []  # the entities of each batch in flight
        self.most = 0
        self.mixed_overlap = False  # two batches in flight that could depend on each other
        self.sent = 0
        self.acked: set[tuple[str, str]] = set()

    def send(self, operations: Sequence[Operation]) -> list[OperationResult]:
        entities = tuple(sorted({op.entity for op in operations}))
        with self.changed:
            others = list(self.active)
            if others and (len(entities) > 1 or any(o != entities for o in others)):
                self.mixed_overlap = True
            self.sent += 1
            self.active.append(entities)
            self.most = max(self.most, len(self.active))
            self.changed.notify_all()
            self.changed.wait_for(lambda: len(self.active) >= self.concurrency, self.patience)
            self.active.remove(entities)
            self.changed.notify_all()
            for op in operations:
                if op.sourced_id in self.failures:
                    raise self.failures[op.sourced_id]
            self.acked |= {(op.entity, op.sourced_id) for op in operations}
        return [OperationResult(op.op_id, True, 200) for op in operations]

    def fingerprints(self, entity: str) -> dict[str, str]:
        return {}


def recorded(state: MemoryStateStore, *entities: str) -> set[tuple[str, str]]:
    return {(entity, e[0]) for entity in entities for e in state.entries(entity)}


def test_batches_of_one_entity_overlap_up_to_the_limit_and_entities_never_do() -> None:
    portal = WatchingPortal(concurrency=4)
    state = MemoryStateStore()
    deliverer = Deliverer(portal, state, MAPPINGS, run_id="r")  # type: ignore[arg-type]
    plan = [*changes("subject", 6 * BATCH + 2), *changes("teacher", 5 * BATCH)]
    portal.patience = 0.3  # the tail of each entity cannot fill the flight
    deliverer.add_all(plan)
    assert portal.most == 4  # as many as allowed, never more
    assert not portal.mixed_overlap  # a subject batch never beside a teacher batch
    assert (
        recorded(state, "subject", "teacher") == portal.acked == {(c.entity, c.key) for c in plan}
    )
    assert deliverer.report.total == len(plan)


def test_an_entity_the_portal_sends_alone_never_has_two_batches_in_flight() -> None:
    """A portal that finds its records by natural key before creating them (dnevnik.ru's
    lessons) asks for that entity's batches one at a time: two in flight could both create
    one lesson. Its other entities still overlap."""
    portal = WatchingPortal(concurrency=4)
    portal.support = {**full_support(ENTITIES), "lesson": EntitySupport(alone=True)}
    portal.patience = 0.2
    state = MemoryStateStore()
    deliverer = Deliverer(portal, state, MAPPINGS, run_id="r")  # type: ignore[arg-type]
    deliverer.add_all(changes("lesson", 6 * BATCH))
    assert portal.most == 1
    deliverer.add_all(changes("subject", 6 * BATCH))
    assert portal.most == 4
    assert DNEVNIK_SUPPORT["lesson"].alone


def test_a_failed_batch_in_flight_leaves_the_others_recorded_and_the_run_failed() -> None:
    """The third of eight batches fails while others are in flight: every batch the portal
    acknowledged is recorded, nothing of the failed one is, and the failure is raised."""
    plan = changes("subject", 8 * BATCH)
    third = plan[2 * BATCH : 3 * BATCH]
    portal = WatchingPortal(concurrency=4, fail_key=third[0].key)
    portal.patience = 0.3
    state = MemoryStateStore()
    deliverer = Deliverer(portal, state, MAPPINGS, run_id="r")  # type: ignore[arg-type]
    with pytest.raises(PortalUnavailable):
        deliverer.add_all(plan)
    assert recorded(state, "subject") == portal.acked
    assert 3 * BATCH <= len(portal.acked) <= len(plan) - BATCH  # 1, 2 and 4 were in flight too
    assert {("subject", c.key) for c in third}.isdisjoint(portal.acked)
    assert deliverer.report.total == len(portal.acked)


def test_the_first_failure_in_flight_is_the_one_raised() -> None:
    """The second batch fails for good (the portal refused the request), the third, in flight
    beside it, for now: the run reports the fatal failure, not the retriable one after it."""
    plan = changes("subject", 6 * BATCH)  # the fatal one is settled while sending the fifth
    failures: dict[str, Exception] = {
        plan[BATCH].key: PortalFatalError(413, "batchTooLarge", "too large"),
        plan[2 * BATCH].key: PortalUnavailable(8, "down"),
    }
    portal = WatchingPortal(concurrency=3, failures=failures)
    portal.patience = 0.3
    state = MemoryStateStore()
    deliverer = Deliverer(portal, state, MAPPINGS, run_id="r")  # type: ignore[arg-type]
    with pytest.raises(PortalFatalError):
        deliverer.add_all(plan)
    assert recorded(state, "subject") == portal.acked
    assert ("subject", plan[0].key) in portal.acked


def test_a_stop_with_batches_in_flight_records_their_answers_then_interrupts() -> None:
    portal = WatchingPortal(concurrency=3)
    portal.patience = 0.2
    state = MemoryStateStore()
    stop = threading.Event()
    deliverer = Deliverer(portal, state, MAPPINGS, run_id="r", stop=stop)  # type: ignore[arg-type]
    plan = changes("subject", 10 * BATCH)
    for change in plan[: 3 * BATCH]:
        deliverer.add(change)
    stop.set()
    with pytest.raises(Interrupted):
        deliverer.add_all(plan[3 * BATCH :])
    assert recorded(state, "subject") == portal.acked
    assert 3 * BATCH <= len(portal.acked) < len(plan)


# --- over HTTP, against the reference portal ---------------------------------------------------


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[ReferencePortal]:
    yield from running_portal(tmp_path, seed=5)


@pytest.mark.parametrize("concurrency", [4, 16])
def test_a_full_and_an_incremental_sync_with_batches_in_flight_leave_the_portal_exact(
    tmp_path: Path, portal: ReferencePortal, concurrency: int
) -> None:
    """The reference portal refuses a record whose parent it does not hold: a sync with many
    batches in flight that sent a child before its parent would see refusals."""
    set_faults(portal.url, {"rates": {"slow": 1.0}, "slow_seconds": 0.01})
    bridge = Bridge(make_school(tmp_path), tmp_path / "state.sqlite", portal.url)
    bridge.concurrency = concurrency
    outcome = bridge.sync()
    assert outcome.exit_code == ExitCode.OK, outcome.delivery
    assert not outcome.delivery.refused
    set_faults(portal.url, {})
    assert snapshot(portal.url) == expected_export(bridge.school)
    assert duplicates(portal.url) == []
    again = bridge.sync(incremental=True, run_id="again")
    assert again.exit_code == ExitCode.OK
    assert again.delivery.total == 0


def test_one_token_serves_every_thread_and_a_refused_token_is_replaced(
    portal: ReferencePortal,
) -> None:
    """Eight threads sending at once through one client fetch one token between them."""
    settings = PortalSettings(
        base_url=portal.url,
        school="demo",
        client_id=DEMO_CLIENT[0],
        client_secret=DEMO_CLIENT[1],
        concurrency=8,
    )
    with PortalClient(settings) as client:
        start = threading.Barrier(8)
        answers: list[list[OperationResult]] = []

        def send(n: int) -> None:
            start.wait()
            op = Operation("0", "PUT", "subject", f"s{n}", "fp", {"name": f"S{n}"})
            answers.append(client.send([op]))

        threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert [a[0].ok for a in answers] == [True] * 8
        assert client.stats.token_fetches == 1
        assert client.stats.requests == 9  # eight sends and one token


def test_the_rate_limit_books_one_slot_per_request_for_all_threads_together() -> None:
    """Request starts are booked 1/rate apart however many threads ask for a turn: with the
    clock standing still, 24 requests from 6 threads wait 0, 1, 2 … 23 intervals, each once."""
    waits: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            waits.append(seconds)

    pacer = _Pacer(50.0, lambda: 100.0, sleep)

    def ask() -> None:
        for _ in range(4):
            pacer.wait_turn()

    threads = [threading.Thread(target=ask) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(round(w / 0.02) for w in waits) == list(range(1, 24))  # the first waits not
