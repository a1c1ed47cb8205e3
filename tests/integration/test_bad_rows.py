"""Bad rows never stop the line: each kind is rejected with table, key, field and reason."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.adapters.state import open_state
from bridge.core.mapping import load_mappings
from bridge.core.model import Change, Op, Rejection
from bridge.core.plan import SAMPLE_LIMIT
from bridge.demo import schema
from bridge.service.engine import RunOptions, plan_run
from tests import school

T = datetime(2025, 9, 2, 9, 0)
GOOD_LESSON = 105
GOOD_WORK = 105


def _mark(mid: int, value: str, pupil: int = 1, work: int = GOOD_WORK) -> dict[str, object]:
    return {"id": mid, "work_id": work, "pupil_id": pupil, "mark_value": value, "modified_at": T}


def _lesson(lid: int, **changes: object) -> dict[str, object]:
    row: dict[str, object] = {
        "id": lid,
        "class_id": 1,
        "group_id": None,
        "subject_id": 1,
        "teacher_id": 1,
        "lesson_date": date(2025, 9, 3),
        "lesson_num": 2,
        "topic": "Дроби",
        "homework": "§1",
        "modified_at": T,
    }
    return {**row, **changes}


# kind -> (rows to add, expected (entity, key, field, words in the reason))
BAD_ROWS: dict[str, tuple[dict[sa.Table, list[dict[str, object]]], tuple[str, str, str, str]]] = {
    "invalid mark value": (
        {schema.mark: [_mark(90001, "6")]},
        ("mark", "90001", "value", "not in the value map"),
    ),
    "empty mark value": (
        {schema.mark: [_mark(90002, "  ")]},
        ("mark", "90002", "value", "missing value"),
    ),
    "missing key": (
        {schema.absence: [{"lesson_id": None, "pupil_id": 1, "code": "н", "modified_at": T}]},
        ("absence", "", "lesson_id", "missing key"),
    ),
    "duplicate key": (
        {schema.absence: [{"lesson_id": 100, "pupil_id": 1, "code": "б", "modified_at": T}]},
        ("absence", "100-1", "lesson_id,pupil_id", "duplicate key"),
    ),
    "impossible date": (
        {schema.lesson: [_lesson(90003, lesson_date="2025-02-30")]},
        ("lesson", "90003", "date", "not a valid date"),
    ),
    "unparseable date": (
        {schema.lesson: [_lesson(90004, lesson_date="вчера")]},
        ("lesson", "90004", "date", "not a valid date"),
    ),
    "date out of range": (
        {schema.lesson: [_lesson(90005, lesson_date="1025-09-01")]},
        ("lesson", "90005", "date", "outside"),
    ),
    "missing date": (
        {schema.lesson: [_lesson(90006, lesson_date=None)]},
        ("lesson", "90006", "date", "missing value"),
    ),
    "missing pupil": (
        {schema.mark: [_mark(90007, "5", pupil=999)]},
        ("mark", "90007", "pupil", "pupil 999, which is missing"),
    ),
    "missing lesson": (
        {schema.absence: [{"lesson_id": 99999, "pupil_id": 1, "code": "н", "modified_at": T}]},
        ("absence", "99999-1", "lesson", "lesson 99999, which is missing"),
    ),
    "overlong text": (
        {schema.lesson: [_lesson(90008, homework="д" * 2500)]},
        ("lesson", "90008", "homework", "2500 characters"),
    ),
    "control characters": (
        {schema.lesson: [_lesson(90009, topic="Тема\x07урока")]},
        ("lesson", "90009", "topic", "control characters"),
    ),
    "unknown absence code": (
        {schema.absence: [{"lesson_id": 101, "pupil_id": 1, "code": "x", "modified_at": T}]},
        ("absence", "101-1", "code", "not in the value map"),
    ),
    "grade out of range": (
        {
            schema.class_unit: [
                {
                    "id": 9,
                    "year_id": 1,
                    "grade": 14,
                    "letter": "А",
                    "form_teacher_id": 1,
                    "modified_at": T,
                }
            ]
        },
        ("class", "9", "grade", "outside 1..11"),
    ),
}


def _plan(
    tmp_path: Path, extra: dict[sa.Table, list[dict[str, object]]]
) -> tuple[list[Rejection], list[Change], dict[str, int]]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'asiou.sqlite'}")
    school.write_school(engine)
    with engine.begin() as conn:
        for table, rows in extra.items():
            for row in rows:  # untyped, so text lands as written, as it can in ASIOU
                raw = sa.table(table.name, *(sa.column(c) for c in row))
                conn.execute(raw.insert().values(row))
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    sent: list[Change] = []
    result = plan_run(
        load_mappings(Path("mappings")),
        SqlSource(engine),
        state,
        RunOptions(as_of=date(2025, 12, 1)),
        sent.append,
    )
    state.close()
    engine.dispose()
    return result.plan.rejections, sent, dict(result.plan.rejection_counts)


@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_each_bad_row_kind_is_rejected_with_its_reason(tmp_path: Path, kind: str) -> None:
    """The bad row is rejected naming table, key, field and reason; the rest is planned."""
    rows, (entity, key, field, words) = BAD_ROWS[kind]
    rejections, sent, _ = _plan(tmp_path, rows)
    assert len(rejections) == 1, rejections
    (rejection,) = rejections
    assert (rejection.entity, rejection.key, rejection.field) == (entity, key, field)
    assert words in rejection.reason
    assert rejection.table == school_table(entity)
    assert {c.key for c in sent if c.entity == "mark"} >= school.expected_marks()


def school_table(entity: str) -> str:
    return load_mappings(Path("mappings"))[entity].location


def test_all_bad_rows_together_are_rejected_and_the_rest_is_planned(tmp_path: Path) -> None:
    """With every kind of bad row at once, each is rejected and every good record is planned."""
    merged: dict[sa.Table, list[dict[str, object]]] = {}
    for rows, _ in BAD_ROWS.values():
        for table, values in rows.items():
            merged.setdefault(table, []).extend(values)
    rejections, sent, counts = _plan(tmp_path, merged)
    assert sum(counts.values()) == len(BAD_ROWS)
    assert len(rejections) == len(BAD_ROWS)
    assert {
        c.key for c in sent if c.entity == "mark" and c.op == Op.CREATE
    } == school.expected_marks()
    assert len([c for c in sent if c.entity == "lesson"]) == 24


def test_mark_values_never_appear_in_rejection_reasons(tmp_path: Path) -> None:
    """A personal field's bad value is not quoted in the reason (mark values are not logged)."""
    rejections, _, _ = _plan(tmp_path, {schema.mark: [_mark(90010, "77")]})
    assert "77" not in rejections[0].reason


def test_rejection_samples_are_bounded(tmp_path: Path) -> None:
    """Thousands of bad rows keep a bounded sample but count every one."""
    bad = [_mark(100000 + i, "9") for i in range(SAMPLE_LIMIT + 30)]
    rejections, _, counts = _plan(tmp_path, {schema.mark: bad})
    assert counts["mark"] == SAMPLE_LIMIT + 30
    assert len(rejections) == SAMPLE_LIMIT
