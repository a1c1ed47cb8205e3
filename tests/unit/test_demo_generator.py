"""The synthetic school generator: deterministic, complete, plausible, and exact about mistakes."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.demo import schema
from bridge.demo.generate import (
    INVALID_MARK_VALUES,
    MAX_DENSITY,
    MISTAKE_KINDS,
    SchoolSpec,
    generate,
)

# 70 days reach past the end of the first quarter (Oct 31), so period marks exist too.
SMALL = SchoolSpec(pupils=60, seed=7, days=70)
CLEAN = SchoolSpec(pupils=60, seed=7, days=70, mistakes=False)
VALID_MARKS = {f"{d}{s}" for d in "345" for s in ("", "+", "-")} | {"2"}
VALID_ABSENCE_CODES = {"н", "б", "у", "о"}
ROOT = Path(__file__).resolve().parents[2]

Table = list[tuple[object, ...]]


def _engine(directory: Path, spec: SchoolSpec, name: str = "school.sqlite") -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{directory / name}")
    generate(engine, spec)
    return engine


def _dump(engine: sa.Engine) -> dict[str, Table]:
    """Every table's rows, ordered by all columns."""
    with engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(sa.select(t).order_by(*t.columns))]
            for t in schema.metadata.sorted_tables
        }


@pytest.fixture(scope="module")
def dirty(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    """The small school with the injected journal mistakes."""
    engine = _engine(tmp_path_factory.mktemp("dirty"), SMALL)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Iterator[sa.Engine]:
    """The same small school without mistakes."""
    engine = _engine(tmp_path_factory.mktemp("clean"), CLEAN)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def dirty_rows(dirty: sa.Engine) -> dict[str, Table]:
    return _dump(dirty)


@pytest.fixture(scope="module")
def clean_rows(clean: sa.Engine) -> dict[str, Table]:
    return _dump(clean)


# --- Determinism and completeness -------------------------------------------------------------


def test_same_spec_gives_identical_tables(tmp_path: Path, dirty_rows: dict[str, Table]) -> None:
    """Generating the same spec again yields exactly the same rows in every table."""
    engine = _engine(tmp_path, SMALL)
    try:
        assert _dump(engine) == dirty_rows
    finally:
        engine.dispose()


def test_same_spec_is_identical_across_processes(
    tmp_path: Path, dirty_rows: dict[str, Table]
) -> None:
    """Another interpreter with another hash seed writes the same rows (no set-order leaks)."""
    path = tmp_path / "other-process.sqlite"
    script = (
        "import sqlalchemy as sa, sys\n"
        "from bridge.demo.generate import SchoolSpec, generate\n"
        "engine = sa.create_engine('sqlite:///' + sys.argv[1])\n"
        f"spec = SchoolSpec(pupils={SMALL.pupils}, seed={SMALL.seed}, days={SMALL.days})\n"
        "generate(engine, spec)\n"
        "engine.dispose()\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", script, str(path)], env=env, check=True, timeout=120)
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        assert _dump(engine) == dirty_rows
    finally:
        engine.dispose()


def test_other_seed_gives_another_school(tmp_path: Path, dirty_rows: dict[str, Table]) -> None:
    """A different seed yields different pupils, lessons and marks."""
    engine = _engine(tmp_path, SchoolSpec(pupils=60, seed=8, days=70))
    try:
        other = _dump(engine)
    finally:
        engine.dispose()
    for table in ("pupil", "guardian", "lesson", "mark", "absence"):
        assert other[table] != dirty_rows[table], table


def test_regenerating_replaces_the_previous_school(tmp_path: Path) -> None:
    """generate() drops and recreates the tables, so a second run leaves only its own rows."""
    engine = _engine(tmp_path, SchoolSpec(pupils=200, seed=1, days=20))
    try:
        counts = generate(engine, SMALL)
        assert {name: len(rows) for name, rows in _dump(engine).items()} == counts
    finally:
        engine.dispose()


def test_every_table_has_rows_and_counts_are_true(
    tmp_path: Path, dirty_rows: dict[str, Table]
) -> None:
    """The returned counts cover every table, none is zero, and they match the database."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'count.sqlite'}")
    try:
        counts = generate(engine, SMALL)
    finally:
        engine.dispose()
    assert set(counts) == {t.name for t in schema.metadata.sorted_tables}
    assert all(n > 0 for n in counts.values()), counts
    assert counts == {name: len(rows) for name, rows in dirty_rows.items()}


def test_progress_is_reported_per_table_up_to_the_final_count(tmp_path: Path) -> None:
    """progress(table, rows_so_far) grows per table and ends at the table's row count."""
    seen: dict[str, list[int]] = {}
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'progress.sqlite'}")
    try:
        counts = generate(engine, SMALL, lambda table, n: seen.setdefault(table, []).append(n))
    finally:
        engine.dispose()
    assert set(seen) == set(counts)
    for table, reported in seen.items():
        assert reported == sorted(reported), table
        assert reported[-1] == counts[table], table


def test_sqlite_journal_settings_are_restored(tmp_path: Path) -> None:
    """The journal and sync settings switched off for the load are back to normal afterwards."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'pragma.sqlite'}")
    try:
        generate(engine, SchoolSpec(pupils=30, days=5))
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "delete"
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "spec",
    [SchoolSpec(pupils=1, days=1), SchoolSpec(pupils=30, days=10), SchoolSpec(pupils=5, days=400)],
)
def test_tiny_schools_generate(tmp_path: Path, spec: SchoolSpec) -> None:
    """Degenerate specs (one pupil, one day, one class) still produce a consistent school."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'tiny.sqlite'}")
    try:
        counts = generate(engine, spec)
        with engine.connect() as conn:
            grades = conn.execute(sa.select(schema.class_unit.c.grade)).scalars().all()
    finally:
        engine.dispose()
    assert counts["pupil"] == spec.pupils
    assert counts["lesson"] > 0
    assert grades == [5]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"pupils": 0},
        {"days": 0},
        {"marks_per_pupil_lesson": -0.1},
        {"marks_per_pupil_lesson": MAX_DENSITY + 0.1},
    ],
)
def test_spec_rejects_impossible_values(kwargs: dict[str, float]) -> None:
    """A spec with no pupils, no days or an impossible mark density is refused."""
    with pytest.raises(ValueError, match="must be"):
        SchoolSpec(**kwargs)  # type: ignore[arg-type]


# --- Plausible content ------------------------------------------------------------------------


def _pupils_by_id(rows: dict[str, Table]) -> dict[int, tuple[object, ...]]:
    return {int(str(r[0])): r for r in rows["pupil"]}


def test_contingent_has_withdrawals_readmissions_and_late_arrivals(
    clean_rows: dict[str, Table],
) -> None:
    """Some pupils leave mid-year, some come back under the same id later, some arrive late."""
    moves = clean_rows["pupil_move"]  # id, pupil_id, class_id, date_in, order_in, date_out, ...
    withdrawn = [m for m in moves if m[5] is not None]
    assert withdrawn
    assert all(m[6] and str(m[6]).startswith("№") and m[7] for m in withdrawn)
    by_pupil: dict[object, list[tuple[object, ...]]] = {}
    for m in moves:
        by_pupil.setdefault(m[1], []).append(m)
    readmitted = {p: ms for p, ms in by_pupil.items() if len(ms) == 2}
    assert readmitted
    for first, second in (sorted(ms, key=lambda m: str(m[3])) for ms in readmitted.values()):
        assert first[5] is not None
        assert str(second[3]) > str(first[5])
    assert any(str(m[3]) > "2025-09-01" and len(by_pupil[m[1]]) == 1 for m in moves)


def test_some_pupils_have_no_consent(clean_rows: dict[str, Table]) -> None:
    """About 2 % of pupils have pd_consent=0 and no consent date; the rest have both."""
    pupils = clean_rows["pupil"]  # ..., pd_consent (6), consent_date (7)
    without = [p for p in pupils if p[6] == 0]
    assert without
    assert all(p[7] is None for p in without)
    assert all(p[7] is not None for p in pupils if p[6] == 1)


def test_names_have_matching_gender_forms(clean_rows: dict[str, Table]) -> None:
    """Girls have female surnames and patronymics in -овна/-евна/-ична, boys male ones."""
    for row in clean_rows["pupil"]:
        last, middle, gender = str(row[1]), str(row[3]), row[5]
        if gender == "ж":
            assert middle.endswith("на"), middle
            assert not last.endswith(("ов", "ев", "ёв", "ин", "ский")), last
        else:
            assert gender == "м"
            assert middle.endswith(("ич", "ович", "евич")), middle
            assert not last.endswith(("ова", "ева", "ина", "ская")), last


def test_guardians_have_russian_phones_and_relations(clean_rows: dict[str, Table]) -> None:
    """Every pupil has one or two guardians (mother, father or опекун) with +7 9xx phones."""
    links: dict[object, list[object]] = {}
    for _, pupil_id, _, relation, _ in clean_rows["pupil_guardian"]:
        links.setdefault(pupil_id, []).append(relation)
    assert set(links) == set(_pupils_by_id(clean_rows))
    assert all(1 <= len(r) <= 2 for r in links.values())
    assert {r for rs in links.values() for r in rs} <= {"мать", "отец", "опекун"}
    phones = [str(g[4]) for g in clean_rows["guardian"] if g[4] is not None]
    assert phones
    assert all(p.startswith("+7 9") and len(p) == 16 for p in phones)


def test_clean_school_has_no_marks_in_grade_1(clean: sa.Engine) -> None:
    """Without mistakes no mark belongs to a lesson of a grade-1 class (§3.2.4.11)."""
    with clean.connect() as conn:
        assert conn.execute(_grade1_marks()).scalar_one() == 0
        grades = set(conn.execute(sa.select(schema.class_unit.c.grade)).scalars())
    assert 1 in grades


def test_clean_school_marks_only_enrolled_pupils(clean: sa.Engine) -> None:
    """Every mark is for a pupil enrolled in the lesson's class (and group) on its date."""
    with clean.connect() as conn:
        assert _not_enrolled(conn) == 0
        assert conn.execute(sa.select(sa.func.count()).select_from(schema.mark)).scalar_one() > 0


def test_clean_values_use_the_documented_codes(clean_rows: dict[str, Table]) -> None:
    """Marks are 2..5 with rare +/-, absences use н/б/у/о once per pupil and lesson."""
    marks = [str(m[3]) for m in clean_rows["mark"]]
    assert set(marks) <= VALID_MARKS
    assert marks.count("4") + marks.count("5") > 2 * (marks.count("2") + marks.count("3"))
    codes = [str(a[2]) for a in clean_rows["absence"]]
    assert set(codes) <= VALID_ABSENCE_CODES
    assert codes.count("н") > len(codes) / 2
    keys = [(a[0], a[1]) for a in clean_rows["absence"]]
    assert len(keys) == len(set(keys))
    kinds = {str(w[2]) for w in clean_rows["lesson_work"]}
    assert kinds <= {"УО", "ДЗ", "СР", "ПР", "КР", "ДИК"}


def test_lessons_have_specific_changing_topics(clean_rows: dict[str, Table]) -> None:
    """Consecutive lessons of a class, subject and group never repeat the same topic."""
    streams: dict[tuple[object, ...], list[tuple[object, ...]]] = {}
    for lesson in clean_rows["lesson"]:  # id, class, group, subject, teacher, date, num, topic
        streams.setdefault((lesson[1], lesson[2], lesson[3]), []).append(lesson)
    for lessons in streams.values():
        lessons.sort(key=lambda r: (str(r[5]), int(str(r[6]))))
        topics = [str(r[7]) for r in lessons]
        assert all(len(t) >= 10 for t in topics)
        assert all(a != b for a, b in itertools.pairwise(topics))
    homework = [r[8] for r in clean_rows["lesson"]]
    assert sum(h is not None for h in homework) > len(homework) / 2


def test_timetable_has_four_to_seven_lessons_from_grade_2(clean: sa.Engine) -> None:
    """From grade 2 each class has 4-7 lessons a school day, numbered from 1 without gaps."""
    lesson, klass = schema.lesson, schema.class_unit
    query = (
        sa.select(
            lesson.c.class_id,
            lesson.c.lesson_date,
            sa.func.max(lesson.c.lesson_num),
            sa.func.count(sa.distinct(lesson.c.lesson_num)),
        )
        .join(klass, klass.c.id == lesson.c.class_id)
        .where(klass.c.grade >= 2)
        .group_by(lesson.c.class_id, lesson.c.lesson_date)
    )
    with clean.connect() as conn:
        days = conn.execute(query).all()
    assert days
    assert all(4 <= most <= 7 and most == distinct for _, _, most, distinct in days)


def test_period_marks_only_for_ended_periods_and_grades_2_up(clean: sa.Engine) -> None:
    """Period marks exist for the first quarter only (70 days) and never for grade 1."""
    pm, move, klass = schema.period_mark, schema.pupil_move, schema.class_unit
    with clean.connect() as conn:
        periods = set(conn.execute(sa.select(pm.c.period_id).distinct()).scalars())
        grade_one = conn.execute(
            sa.select(sa.func.count())
            .select_from(pm.join(move, move.c.pupil_id == pm.c.pupil_id))
            .join(klass, klass.c.id == move.c.class_id)
            .where(klass.c.grade == 1)
        ).scalar_one()
        values = set(conn.execute(sa.select(pm.c.mark_value).distinct()).scalars())
    assert periods == {1}
    assert grade_one == 0
    assert values <= {"2", "3", "4", "5", "н/а"}


# --- Mistakes ---------------------------------------------------------------------------------


def _grade1_marks() -> sa.Select[int]:
    mark, work, lesson, klass = schema.mark, schema.lesson_work, schema.lesson, schema.class_unit
    return (
        sa.select(sa.func.count())
        .select_from(mark.join(work, work.c.id == mark.c.work_id))
        .join(lesson, lesson.c.id == work.c.lesson_id)
        .join(klass, klass.c.id == lesson.c.class_id)
        .where(klass.c.grade == 1)
    )


def _covers(spans: list[tuple[dt.date, dt.date | None]], day: dt.date) -> bool:
    return any(start <= day and (end is None or day < end) for start, end in spans)


def _not_enrolled(conn: sa.Connection) -> int:
    """Marks of existing pupils on dated lessons the pupil was not enrolled for."""
    stays: dict[tuple[int, int], list[tuple[dt.date, dt.date | None]]] = {}
    for pupil_id, class_id, start, end in conn.execute(
        sa.select(*schema.pupil_move.c["pupil_id", "class_id", "date_in", "date_out"])
    ):
        stays.setdefault((pupil_id, class_id), []).append((start, end))
    members: dict[tuple[int, int], list[tuple[dt.date, dt.date | None]]] = {}
    for pupil_id, group_id, start, end in conn.execute(
        sa.select(*schema.group_pupil.c["pupil_id", "group_id", "date_in", "date_out"])
    ):
        members.setdefault((pupil_id, group_id), []).append((start, end))
    mark, work, lesson = schema.mark, schema.lesson_work, schema.lesson
    rows = conn.execute(
        sa.select(mark.c.pupil_id, lesson.c.class_id, lesson.c.group_id, lesson.c.lesson_date)
        .join(work, work.c.id == mark.c.work_id)
        .join(lesson, lesson.c.id == work.c.lesson_id)
        .where(lesson.c.lesson_date.is_not(None), mark.c.pupil_id.in_(sa.select(schema.pupil.c.id)))
    )
    bad = 0
    for pupil_id, class_id, group_id, day in rows:
        enrolled = _covers(stays.get((pupil_id, class_id), []), day)
        if group_id is not None:
            enrolled = enrolled and _covers(members.get((pupil_id, group_id), []), day)
        bad += not enrolled
    return bad


def _count(query: sa.Select[int]) -> Callable[[sa.Connection], int]:
    return lambda conn: conn.execute(query).scalar_one()


def _python_count(
    table: sa.Table, column: str, test: Callable[[str], bool]
) -> Callable[[sa.Connection], int]:
    def count(conn: sa.Connection) -> int:
        values = conn.execute(sa.select(table.c[column])).scalars()
        return sum(1 for v in values if v is not None and test(v))

    return count


def _duplicate_absences(conn: sa.Connection) -> int:
    absence = schema.absence
    groups = (
        sa.select(absence.c.lesson_id)
        .group_by(absence.c.lesson_id, absence.c.pupil_id)
        .having(sa.func.count() > 1)
        .subquery()
    )
    return conn.execute(sa.select(sa.func.count()).select_from(groups)).scalar_one()


def _counted(table: sa.Table, *where: sa.ColumnElement[bool]) -> Callable[[sa.Connection], int]:
    return _count(sa.select(sa.func.count()).select_from(table).where(*where))


DETECTORS: dict[str, Callable[[sa.Connection], int]] = {
    "invalid_mark_value": _counted(schema.mark, schema.mark.c.mark_value.in_(INVALID_MARK_VALUES)),
    "grade1_mark": _count(_grade1_marks()),
    "mark_after_withdrawal": _not_enrolled,
    "null_lesson_date": _counted(schema.lesson, schema.lesson.c.lesson_date.is_(None)),
    "control_chars_topic": _python_count(
        schema.lesson, "topic", lambda t: any(ord(c) < 32 for c in t)
    ),
    "long_homework": _python_count(schema.lesson, "homework", lambda h: len(h) > 4000),
    "duplicate_absence": _duplicate_absences,
    "unknown_absence_code": _counted(schema.absence, schema.absence.c.code == "x"),
    "ghost_pupil_mark": _counted(
        schema.mark, schema.mark.c.pupil_id.not_in(sa.select(schema.pupil.c.id))
    ),
    "ghost_lesson_absence": _counted(
        schema.absence, schema.absence.c.lesson_id.not_in(sa.select(schema.lesson.c.id))
    ),
    "padded_mark_value": _python_count(schema.mark, "mark_value", lambda v: v != v.strip()),
    "upper_case_absence_code": _counted(schema.absence, schema.absence.c.code == "Н"),
}


def test_every_mistake_kind_has_a_detector() -> None:
    """The detectors below cover exactly the documented mistake kinds."""
    assert set(DETECTORS) == set(MISTAKE_KINDS)


@pytest.mark.parametrize("kind", sorted(MISTAKE_KINDS))
def test_mistake_is_injected_exactly(dirty: sa.Engine, kind: str) -> None:
    """With mistakes=True each kind touches exactly the documented number of rows."""
    with dirty.connect() as conn:
        assert DETECTORS[kind](conn) == MISTAKE_KINDS[kind]


@pytest.mark.parametrize("kind", sorted(MISTAKE_KINDS))
def test_mistake_is_absent_from_a_clean_school(clean: sa.Engine, kind: str) -> None:
    """With mistakes=False no kind of mistake is present."""
    with clean.connect() as conn:
        assert DETECTORS[kind](conn) == 0


def test_noisy_values_become_valid_after_trim_and_lower(dirty_rows: dict[str, Table]) -> None:
    """Padded marks and upper-case 'Н' are valid once trimmed and lower-cased."""
    marks = {str(m[3]) for m in dirty_rows["mark"]} - set(INVALID_MARK_VALUES)
    assert {m.strip() for m in marks} <= VALID_MARKS
    codes = {str(a[2]) for a in dirty_rows["absence"]} - {"x"}
    assert {c.strip().lower() for c in codes} <= VALID_ABSENCE_CODES


def test_mistakes_leave_the_rest_of_the_school_alone(
    clean_rows: dict[str, Table], dirty_rows: dict[str, Table]
) -> None:
    """Reference tables are identical with and without mistakes; marks only gain the inserts."""
    for table in (
        "pupil",
        "pupil_move",
        "guardian",
        "teacher",
        "class_unit",
        "period_mark",
        "lesson_work",
        "group_pupil",
    ):
        assert clean_rows[table] == dirty_rows[table], table
    inserted = sum(
        MISTAKE_KINDS[k] for k in ("grade1_mark", "mark_after_withdrawal", "ghost_pupil_mark")
    )
    assert len(dirty_rows["mark"]) == len(clean_rows["mark"]) + inserted
    clean_ids = {m[0] for m in clean_rows["mark"]}
    assert clean_ids <= {m[0] for m in dirty_rows["mark"]}
