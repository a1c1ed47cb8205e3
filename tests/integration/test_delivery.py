"""Delivery with exactly-once effect: acknowledged changes only, dead letters, failures midway.

The portal here is a keyed store test double with switchable misbehaviour (refusing some
records, failing after some batches, losing answers after applying them); the same behaviours
over real HTTP against the reference portal are in ``test_sync_http.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.adapters.state import SqlStateStore, open_state
from bridge.core.errors import ExitCode, PortalUnavailable
from bridge.core.guard import Thresholds
from bridge.core.mapping import MappingSet, load_mappings
from bridge.core.support import full_support
from bridge.demo import schema
from bridge.ports import ENTITIES, Operation, OperationResult
from bridge.service.engine import RunOptions, SyncResult, run_sync
from tests import school

AS_OF = date(2025, 12, 1)


@dataclass
class KeyedPortal:
    """PUT/DELETE by (entity, sourcedId), idempotent; counts every write it applied."""

    batch_size: int = 7
    support = full_support(ENTITIES)
    concurrency: int = 1
    records: dict[tuple[str, str], str] = field(default_factory=dict)
    writes: int = 0
    refuse: Callable[[Operation], bool] = lambda op: False
    fail_after_batches: int | None = None
    lose_answer_after_batches: int | None = None
    batches: int = 0

    def send(self, operations: Sequence[Operation]) -> list[OperationResult]:
        self.batches += 1
        if self.fail_after_batches is not None and self.batches > self.fail_after_batches:
            raise PortalUnavailable(8, "HTTP 503")
        results = [self._apply(op) for op in operations]
        if (
            self.lose_answer_after_batches is not None
            and self.batches > self.lose_answer_after_batches
        ):
            raise PortalUnavailable(8, "connection reset after the portal committed")
        return results

    def _apply(self, op: Operation) -> OperationResult:
        if self.refuse(op):
            return OperationResult(op.op_id, False, 422, "valueInvalid", "refused by the test")
        self.writes += 1
        if op.method == "PUT":
            self.records[(op.entity, op.sourced_id)] = op.fingerprint or ""
        else:
            self.records.pop((op.entity, op.sourced_id), None)
        return OperationResult(op.op_id, True, 200)

    def fingerprints(self, entity: str) -> dict[str, str]:
        return {k: f for (e, k), f in self.records.items() if e == entity}


@dataclass
class Rig:
    engine: sa.Engine
    mappings: MappingSet
    state: SqlStateStore
    portal: KeyedPortal
    runs: int = 0

    def sync(self, incremental: bool = False, **options: Any) -> SyncResult:
        self.runs += 1
        return run_sync(
            self.mappings,
            SqlSource(self.engine),
            self.state,
            self.portal,
            RunOptions(as_of=AS_OF, incremental=incremental, **options),
            run_id=f"run-{self.runs}",
            max_attempts=2,
        )

    def sql(self, statement: sa.Executable) -> None:
        with self.engine.begin() as conn:
            conn.execute(statement)

    def expected(self) -> dict[tuple[str, str], str]:
        """What the portal should hold: every live state entry, by fingerprint."""
        found = {}
        for entity in self.mappings.entities:
            keys = [e[0] for e in self.state.entries(entity)]
            for entry in self.state.lookup(entity, keys).values():
                found[(entity, entry.key)] = entry.fingerprint
        return found


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'asiou.sqlite'}")
    school.write_school(engine)
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    yield Rig(engine, load_mappings(Path("mappings")), state, KeyedPortal())
    state.close()
    engine.dispose()


def test_full_sync_delivers_exactly_the_allowed_export(rig: Rig) -> None:
    """After one full sync the portal holds exactly the allowed records, and the state agrees."""
    outcome = rig.sync()
    assert outcome.exit_code == ExitCode.OK
    marks = {k for (e, k) in rig.portal.records if e == "mark"}
    assert marks == school.expected_marks()
    assert rig.portal.records == rig.expected()
    assert outcome.delivery.total == len(rig.portal.records)


def test_second_sync_sends_nothing_and_incremental_sends_only_changes(rig: Rig) -> None:
    """A repeated sync writes nothing; after one edit an incremental sync writes one record."""
    rig.sync()
    writes = rig.portal.writes
    assert rig.sync().delivery.total == 0
    rig.sql(
        schema.mark.update()
        .where(schema.mark.c.id == 1001)
        .values(mark_value="2", modified_at=school.T0 + timedelta(days=120))
    )
    outcome = rig.sync(incremental=True)
    assert outcome.delivery.delivered == {"mark": {"update": 1}}
    assert rig.portal.writes == writes + 1


def test_portal_failing_midway_records_only_what_was_acknowledged(rig: Rig) -> None:
    """When the portal gives out after three batches, the run fails, the state holds exactly the
    acknowledged records, and the next run completes with nothing duplicated or lost."""
    rig.portal.fail_after_batches = 3
    failed = rig.sync()
    assert failed.exit_code == ExitCode.PARTIAL
    assert failed.delivery.failure is not None
    assert rig.expected() == rig.portal.records
    assert len(rig.portal.records) == 3 * rig.portal.batch_size
    assert rig.state.watermark("mark") is None
    rig.portal.fail_after_batches = None
    done = rig.sync()
    assert done.exit_code == ExitCode.OK
    assert rig.portal.records == rig.expected()
    assert {k for (e, k) in rig.portal.records if e == "mark"} == school.expected_marks()


def test_a_lost_answer_is_sent_again_without_duplicates(rig: Rig) -> None:
    """A batch the portal applied but whose answer was lost is not recorded; sending it again
    changes nothing on the portal (PUT by key), and the state catches up."""
    rig.portal.lose_answer_after_batches = 2
    assert rig.sync().exit_code == ExitCode.PARTIAL
    applied = dict(rig.portal.records)
    assert len(rig.expected()) == 2 * rig.portal.batch_size < len(applied)
    rig.portal.lose_answer_after_batches = None
    assert rig.sync().exit_code == ExitCode.OK
    assert rig.portal.records == rig.expected()
    assert all(rig.portal.records[k] == f for k, f in applied.items())


def test_refused_record_becomes_a_dead_letter_and_is_then_skipped(rig: Rig) -> None:
    """A record the portal refuses is retried on the next run, then kept back as a dead letter
    with the portal's reason, and sent again after it is revived."""
    rig.portal.refuse = lambda op: op.entity == "mark" and op.sourced_id == "1001"
    first = rig.sync()
    assert first.exit_code == ExitCode.PARTIAL
    assert first.delivery.refused == {"mark": 1}
    letter = rig.state.dead_letters()[("mark", school_sort_key(1001))]
    assert (letter.attempts, letter.status, letter.kind) == (1, "retrying", "valueInvalid")
    second = rig.sync()
    assert second.delivery.refused == {"mark": 1}
    assert rig.state.dead_letters()[("mark", school_sort_key(1001))].is_dead
    third = rig.sync()
    assert third.delivery.skipped_dead == {"mark": 1}
    assert third.delivery.refused == {}
    assert third.exit_code == ExitCode.PARTIAL
    rig.portal.refuse = lambda op: False
    assert rig.state.revive() == 1
    fourth = rig.sync()
    assert fourth.exit_code == ExitCode.OK
    assert ("mark", "1001") in rig.portal.records
    assert rig.state.dead_letters() == {}


def school_sort_key(key: int) -> str:
    from bridge.core.mapping import make_keys

    return make_keys([key])[1]


def test_deletes_go_children_first_and_held_deletes_wait(rig: Rig) -> None:
    """A deleted lesson goes after its marks and works; a mass delete is not sent until approved."""
    rig.sync()
    order: list[str] = []
    original = rig.portal._apply

    def spy(op: Operation) -> OperationResult:
        if op.method == "DELETE":
            order.append(op.entity)
        return original(op)

    rig.portal._apply = spy  # type: ignore[method-assign]
    for table, column in (
        (schema.mark, schema.mark.c.work_id),
        (schema.lesson_work, schema.lesson_work.c.lesson_id),
        (schema.absence, schema.absence.c.lesson_id),
        (schema.lesson, schema.lesson.c.id),
    ):
        rig.sql(table.delete().where(column == 100))
    done = rig.sync(thresholds=Thresholds(min_deletes=1000))
    assert done.exit_code == ExitCode.OK
    assert order.index("lesson") > max(order.index("work"), order.index("mark"))
    assert ("lesson", "100") not in rig.portal.records
    rig.sql(schema.mark.delete())
    held = rig.sync(thresholds=Thresholds(min_deletes=5))
    assert held.exit_code == ExitCode.PLAN_HELD
    assert any(e == "mark" for e, _ in rig.portal.records)
    rig.state.approve(held.plan.plan.plan_id, "admin")
    released = rig.sync(thresholds=Thresholds(min_deletes=5))
    assert released.exit_code == ExitCode.OK
    assert not any(e == "mark" for e, _ in rig.portal.records)
