"""The whole read → map → gate → plan path on a real SQLite ASIOU and a real SQLite state."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.core.errors import SourceError
from bridge.core.guard import Thresholds
from bridge.core.mapping import CompiledMapping
from bridge.core.model import Change, Op
from bridge.demo import schema
from bridge.ports import Rescan
from tests import school
from tests.engine_bench import Bench, make_bench


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    yield from make_bench(tmp_path)


def keys(changes: list[Change], entity: str, op: Op | None = None) -> set[str]:
    return {c.key for c in changes if c.entity == entity and (op is None or c.op == op)}


def later() -> datetime:
    return school.T0 + timedelta(days=90)


def test_first_plan_creates_exactly_the_allowed_records(bench: Bench) -> None:
    """A first full plan creates every allowed mark and nothing else of the pupils held back."""
    result, sent = bench.plan()
    assert keys(sent, "mark", Op.CREATE) == school.expected_marks()
    assert keys(sent, "pupil") == {"1", "3", "4", "5"}
    assert keys(sent, "guardian") == {"1"}
    assert result.plan.holds["mark"] == {
        "no_consent": 12,
        "grade_1_mark": 12,
        "after_withdrawal": 8,
    }


def test_replanning_after_recording_gives_an_empty_plan(bench: Bench) -> None:
    """Once a plan is recorded, planning again finds nothing to change."""
    bench.sync()
    again, sent = bench.plan()
    assert sent == []
    assert again.plan.is_empty


def test_one_changed_mark_gives_exactly_one_update(bench: Bench) -> None:
    """Editing one mark in ASIOU plans one update of that mark and nothing else."""
    bench.sync()
    bench.sql(
        schema.mark.update()
        .where(schema.mark.c.id == 1001)
        .values(mark_value="4", modified_at=later())
    )
    result, sent = bench.plan()
    assert [(c.op, c.entity, c.key) for c in sent] == [(Op.UPDATE, "mark", "1001")]
    assert result.plan.deletes == []
    assert result.plan.updates[0].before == {"work": "100", "pupil": "1", "value": "5"}


def test_incremental_plan_sends_only_the_changed_mark(bench: Bench) -> None:
    """An incremental run reads rows past the watermark and plans just the edited mark."""
    bench.sync()
    bench.sql(
        schema.mark.update()
        .where(schema.mark.c.id == 1001)
        .values(mark_value="3", modified_at=later())
    )
    result, sent = bench.plan(incremental=True)
    assert [(c.op, c.entity, c.key) for c in sent] == [(Op.UPDATE, "mark", "1001")]
    assert result.plan.mode == "incremental"
    assert 1 <= result.plan.records_read["mark"] <= 10  # the edit, and rows within the overlap


def test_deleted_lesson_deletes_its_works_marks_and_absences(bench: Bench) -> None:
    """Removing a lesson with its journal rows deletes all of them from the portal."""
    bench.sync()
    for table in (schema.mark, schema.lesson_work):
        column = table.c.work_id if table is schema.mark else table.c.lesson_id
        bench.sql(table.delete().where(column == 100))
    bench.sql(schema.absence.delete().where(schema.absence.c.lesson_id == 100))
    bench.sql(schema.lesson.delete().where(schema.lesson.c.id == 100))
    result, _ = bench.plan(thresholds=Thresholds(min_deletes=1000))
    gone = {(c.entity, c.key) for c in result.plan.deletes}
    assert gone == {
        ("lesson", "100"),
        ("work", "100"),
        ("absence", "100-1"),
        ("mark", "1001"),
        ("mark", "1003"),
        ("mark", "1005"),
    }
    order = [c.entity for c in result.plan.deletes_children_first()]
    assert order.index("mark") < order.index("work") < order.index("lesson")
    assert order.index("absence") < order.index("lesson")


def test_orphans_of_a_deleted_lesson_are_deleted_and_reported(bench: Bench) -> None:
    """When ASIOU deletes a lesson but leaves its rows, the orphans go too and are rejected."""
    bench.sync()
    bench.sql(schema.lesson.delete().where(schema.lesson.c.id == 100))
    result, _ = bench.plan(thresholds=Thresholds(min_deletes=1000))
    gone = {(c.entity, c.key) for c in result.plan.deletes}
    assert {("lesson", "100"), ("work", "100"), ("mark", "1001"), ("absence", "100-1")} <= gone
    reasons = {r.reason for r in result.plan.rejections if r.entity == "work"}
    assert reasons == {"refers to lesson 100, which is missing from the source"}


def test_consent_withdrawal_removes_everything_of_the_pupil(bench: Bench) -> None:
    """When consent is withdrawn, an incremental run deletes the pupil and all their records."""
    bench.sync()
    bench.sql(
        schema.pupil.update()
        .where(schema.pupil.c.id == 1)
        .values(pd_consent=0, modified_at=later())
    )
    result, sent = bench.plan(incremental=True, thresholds=Thresholds(min_deletes=1000))
    gone = {(c.entity, c.key) for c in result.plan.deletes}
    assert ("pupil", "1") in gone
    assert ("guardian_link", "1") in gone
    assert ("guardian", "1") in gone  # represented only pupil 1
    assert {k for e, k in gone if e == "mark"} == {str(100 * 10 + 1 + 10 * n) for n in range(12)}
    assert {k for e, k in gone if e == "absence"} == {f"{100 + n}-1" for n in range(12)}
    assert all(c.record is None or c.record.payload.get("pupil") != "1" for c in sent)


def test_withdrawal_closes_the_membership_once_and_holds_later_marks(bench: Bench) -> None:
    """A new withdrawal closes the enrolment once, archives the pupil, and holds later marks;
    the closure and the archive are kept for after the guard, not streamed."""
    bench.sync()
    bench.sql(
        schema.pupil_move.update()
        .where(schema.pupil_move.c.id == 1)
        .values(date_out=date(2025, 10, 1), order_out="№9-у", modified_at=later())
    )
    result, sent = bench.plan(thresholds=Thresholds(min_deletes=1000))
    assert {(c.op, c.entity, c.key) for c in result.plan.hiding} == {
        (Op.UPDATE, "enrollment", "1"),
        (Op.ARCHIVE, "pupil", "1"),
    }
    assert sent == []  # the closure and the archive wait for the guard, with the deletes
    late = {str(1001 + 10 * n) for n, d in enumerate(school.LESSON_DAYS) if d > date(2025, 10, 1)}
    assert keys(result.plan.deletes, "mark") == late
    bench.record(result, sent)
    assert bench.plan()[0].plan.is_empty


def test_incremental_withdrawal_archives_the_pupil_in_the_same_run(bench: Bench) -> None:
    """An incremental run that sees a new withdrawal closes the stay, archives the pupil and
    deletes the marks dated after it, all in that run."""
    bench.sync()
    bench.sql(
        schema.pupil_move.update()
        .where(schema.pupil_move.c.id == 1)
        .values(date_out=date(2025, 10, 1), order_out="№9-у", modified_at=later())
    )
    result, sent = bench.plan(incremental=True, thresholds=Thresholds(min_deletes=1000))
    assert {(c.op, c.entity, c.key) for c in result.plan.hiding} == {
        (Op.UPDATE, "enrollment", "1"),
        (Op.ARCHIVE, "pupil", "1"),
    }
    assert sent == []  # the closure and the archive wait for the guard, with the deletes
    late = {str(1001 + 10 * n) for n, d in enumerate(school.LESSON_DAYS) if d > date(2025, 10, 1)}
    assert keys(result.plan.deletes, "mark") == late


def test_readmission_reopens_the_same_pupil(bench: Bench) -> None:
    """Re-admission creates a new stay for the same pupil key and restores the pupil."""
    bench.sql(schema.pupil_move.delete().where(schema.pupil_move.c.id == 6))
    _, first = bench.sync()
    assert any(c.op == Op.CREATE and c.key == "5" and c.entity == "pupil" for c in first)
    bench.sql(
        schema.pupil_move.insert().values(
            id=6,
            pupil_id=5,
            class_id=1,
            date_in=date(2025, 11, 10),
            order_in="№6",
            modified_at=later(),
        )
    )
    _, sent = bench.plan()
    assert {(c.op, c.entity, c.key) for c in sent} >= {
        (Op.CREATE, "enrollment", "6"),
        (Op.UPDATE, "pupil", "5"),
    }
    assert keys(sent, "pupil") == {"5"}
    assert all(c.record is not None and c.record.payload.get("pupil") in (None, "5") for c in sent)


class FailingSource(SqlSource):
    """A real source whose read of one entity dies after some rows, like a dropped link."""

    def __init__(self, engine: sa.Engine, entity: str, after: int) -> None:
        super().__init__(engine)
        self.entity, self.after = entity, after

    def read(
        self, mapping: CompiledMapping, since: datetime | None = None, rescan: Rescan | None = None
    ) -> Iterator[tuple[object, ...]]:
        for n, row in enumerate(super().read(mapping, since, rescan)):
            if mapping.entity == self.entity and n == self.after:
                raise SourceError(f"reading {mapping.entity}", "connection lost")
            yield tuple(row)


def test_a_read_that_fails_midway_plans_no_deletes(bench: Bench) -> None:
    """A read that breaks midway yields a failed plan with no delete at all."""
    bench.sync()
    bench.sql(schema.lesson.delete().where(schema.lesson.c.id.in_([100, 101])))
    result, _ = bench.plan(
        source=FailingSource(bench.engine, "mark", 10), thresholds=Thresholds(min_deletes=1000)
    )
    assert result.error is not None
    assert "connection lost" in str(result.error)
    assert result.plan.deletes == []
    assert result.plan.total(Op.DELETE) == 0
    assert result.watermarks == {}
    complete, _ = bench.plan(thresholds=Thresholds(min_deletes=1000))
    assert ("lesson", "100") in {(c.entity, c.key) for c in complete.plan.deletes}


def test_a_mass_delete_is_held_until_approved(bench: Bench) -> None:
    """Deleting most marks holds the plan; approving its id lets it through."""
    bench.sync()
    bench.sql(schema.mark.delete().where(schema.mark.c.pupil_id == 1))
    held, _ = bench.plan(thresholds=Thresholds(max_delete_fraction=0.1, min_deletes=5))
    assert held.held
    assert any(h.entity == "mark" for h in held.guard_holds)
    bench.state.approve(held.plan.plan_id, "admin")
    approved, _ = bench.plan(thresholds=Thresholds(max_delete_fraction=0.1, min_deletes=5))
    assert approved.approved
    assert not approved.held


def test_deleting_a_whole_class_is_held(bench: Bench) -> None:
    """A plan that removes every enrolment of a class is held whatever the fractions say."""
    bench.sync()
    bench.sql(schema.pupil_move.delete().where(schema.pupil_move.c.class_id == 2))
    result, _ = bench.plan(thresholds=Thresholds(max_delete_fraction=1.0, min_deletes=1000))
    assert result.held
    assert [h.class_key for h in result.guard_holds] == ["2"]
