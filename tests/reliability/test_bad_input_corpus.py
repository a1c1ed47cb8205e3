"""The bad-input corpus: malformed rows written into the ASIOU database, each synced end to end.

Every kind in :data:`KINDS` is written, with untyped inserts so SQLite stores the value exactly as
given, into a copy of one small generated school (which already carries the generator's journal
mistakes), next to a good row of the same table. A full sync then runs over real HTTP against the
reference portal, and the test asserts that the bad row is rejected (or held, where the gate is
the right outcome) naming table, key, field and reason; that the portal equals the expected export,
holds the good neighbour and not the bad row; and that the sync exits OK.

``bench/reliability_report.py`` runs the same corpus through the planner and prints it as a table
(docs/reliability.md).
"""

from __future__ import annotations

import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.core.errors import ExitCode
from bridge.refportal.server import ReferencePortal
from bridge.service.engine import PlanResult, RunOptions, plan_run
from bridge.testing.fakes import MemoryStateStore
from tests.e2e import (
    AS_OF,
    MAPPINGS,
    NO_GUARD,
    Bridge,
    expected_export,
    make_school,
    running_portal,
    snapshot,
)

Row = dict[str, Any]
BAD, GOOD = 900001, 900002
REJECTED, HELD = "rejected", "held"
MISSING = 999999  # an id no table of the generated school uses
NOT_UTF8 = b"\xff\xfe\x80 \xc3("  # bytes no UTF-8 decoder accepts
SCHOOL = {"pupils": 24, "days": 20, "seed": 3}


@dataclass(frozen=True)
class Base:
    """Rows of the generated school that the corpus copies: each one is delivered as it is."""

    rows: dict[str, Row]
    pairs: tuple[tuple[int, int], tuple[int, int]]
    """Two (lesson, pupil) pairs with a delivered mark and no absence: keys for new absences."""
    no_consent_pupil: int


@dataclass(frozen=True)
class Built:
    """The rows a kind writes, the key of the bad row, and the key of a good row next to it."""

    rows: list[tuple[str, Row]]
    bad_key: str
    good_key: str


@dataclass(frozen=True)
class Kind:
    """One kind of bad input and the outcome the bridge must give it."""

    name: str
    table: str
    column: str
    value: object
    entity: str
    field: str
    words: str
    outcome: str = REJECTED
    build: Callable[[Base, Kind], Built] | None = None
    bad_key_delivered: bool = False
    """True for a duplicate: the first row with the key is good and stays on the portal."""
    extra: dict[str, object] = field(default_factory=dict)

    def built(self, base: Base) -> Built:
        """The rows to write for this kind into a school whose rows are ``base``."""
        return (self.build or copies)(base, self)


def copies(base: Base, kind: Kind) -> Built:
    """A bad copy of a delivered row with ``kind.column`` set to ``kind.value``, and a good copy."""
    template = base.rows[kind.table]
    if kind.table == "absence":
        (lesson_1, pupil_1), (lesson_2, pupil_2) = base.pairs
        bad = {
            **template,
            "lesson_id": lesson_1,
            "pupil_id": pupil_1,
            **kind.extra,
            kind.column: kind.value,
        }
        good = {**template, "lesson_id": lesson_2, "pupil_id": pupil_2}
        missing = bad["lesson_id"] is None or bad["pupil_id"] is None  # no key at all
        return Built(
            [("absence", bad), ("absence", good)],
            "" if missing else f"{bad['lesson_id']}-{bad['pupil_id']}",
            f"{lesson_2}-{pupil_2}",
        )
    bad = {**template, "id": BAD, **kind.extra, kind.column: kind.value}
    good = {**template, "id": GOOD}
    return Built([(kind.table, bad), (kind.table, good)], str(BAD), str(GOOD))


def of_a_pupil_without_consent(base: Base, kind: Kind) -> Built:
    """A bad enrolment or link row naming a pupil already held: a rejected row of an entity the
    gate reads closes its pupil, and this one has nothing on the portal to lose."""
    built = copies(base, kind)
    (table, bad), good = built.rows
    return Built(
        [(table, {**bad, "pupil_id": base.no_consent_pupil}), good], built.bad_key, built.good_key
    )


def linked_guardians(base: Base, kind: Kind) -> Built:
    """A bad guardian and a good one linked to a consenting pupil (only linked guardians go)."""
    built = copies(base, kind)
    link = {**base.rows["pupil_guardian"], "id": GOOD, "guardian_id": GOOD}
    return Built([*built.rows, ("pupil_guardian", link)], built.bad_key, built.good_key)


def duplicate_absence(base: Base, kind: Kind) -> Built:
    """A second absence row with the key of a delivered one; the first row is kept."""
    first = base.rows["absence"]
    (lesson_2, pupil_2) = base.pairs[1]
    good = {**first, "lesson_id": lesson_2, "pupil_id": pupil_2}
    return Built(
        [("absence", {**first, "code": kind.value}), ("absence", good)],
        f"{first['lesson_id']}-{first['pupil_id']}",
        f"{lesson_2}-{pupil_2}",
    )


def mark_before_enrolment(base: Base, kind: Kind) -> Built:
    """A good lesson and work dated before the school year, and a mark on it: held."""
    lesson = {**base.rows["lesson"], "id": BAD, "lesson_date": kind.value}
    work = {**base.rows["lesson_work"], "id": BAD, "lesson_id": BAD}
    mark = {**base.rows["mark"], "id": BAD, "work_id": BAD}
    good = {**base.rows["mark"], "id": GOOD}
    return Built(
        [("lesson", lesson), ("lesson_work", work), ("mark", mark), ("mark", good)],
        str(BAD),
        str(GOOD),
    )


def mark_of_pupil_without_consent(base: Base, kind: Kind) -> Built:
    """A mark of a pupil who has no written consent on file: held, never sent."""
    return copies(base, Kind(kind.name, "mark", "pupil_id", base.no_consent_pupil, "mark", "", ""))


KINDS: list[Kind] = [
    # current marks
    Kind("mark value 6", "mark", "mark_value", "6", "mark", "value", "not in the value map"),
    Kind("mark value 0", "mark", "mark_value", "0", "mark", "value", "not in the value map"),
    Kind("mark value latin H", "mark", "mark_value", "H", "mark", "value", "not in the value map"),
    Kind(
        "mark value whitespace only", "mark", "mark_value", " \t ", "mark", "value", "missing value"
    ),
    Kind(
        "mark value with a NUL byte",
        "mark",
        "mark_value",
        "5\x00",
        "mark",
        "value",
        "control characters",
    ),
    Kind(
        "mark value not UTF-8 (BLOB)",
        "mark",
        "mark_value",
        NOT_UTF8,
        "mark",
        "value",
        "not valid UTF-8",
    ),
    Kind(
        "mark of a missing pupil",
        "mark",
        "pupil_id",
        MISSING,
        "mark",
        "pupil",
        f"pupil {MISSING}, which is missing",
    ),
    Kind(
        "mark of a missing work",
        "mark",
        "work_id",
        MISSING,
        "mark",
        "work",
        f"work {MISSING}, which is missing",
    ),
    Kind(
        "mark pupil_id as text", "mark", "pupil_id", "Иванов", "mark", "pupil", "which is missing"
    ),
    # lessons
    Kind(
        "lesson date 2025-02-30",
        "lesson",
        "lesson_date",
        "2025-02-30",
        "lesson",
        "date",
        "not a valid date",
    ),
    Kind(
        "lesson date month 13",
        "lesson",
        "lesson_date",
        "2025-13-01",
        "lesson",
        "date",
        "not a valid date",
    ),
    Kind(
        "lesson date 31/31/2025",
        "lesson",
        "lesson_date",
        "31/31/2025",
        "lesson",
        "date",
        "not a valid date",
    ),
    Kind(
        "lesson date in 2101",
        "lesson",
        "lesson_date",
        "2101-01-01",
        "lesson",
        "date",
        "outside 1900-01-01..2100-12-31",
    ),
    Kind(
        "lesson date in 1850",
        "lesson",
        "lesson_date",
        "1850-01-01",
        "lesson",
        "date",
        "outside 1900-01-01..2100-12-31",
    ),
    Kind("lesson date NULL", "lesson", "lesson_date", None, "lesson", "date", "missing value"),
    Kind(
        "lesson number 2.5", "lesson", "lesson_num", 2.5, "lesson", "number", "not a whole number"
    ),
    Kind("lesson number 13", "lesson", "lesson_num", 13, "lesson", "number", "13 is outside 0..12"),
    Kind("lesson number -1", "lesson", "lesson_num", -1, "lesson", "number", "-1 is outside 0..12"),
    Kind(
        "lesson number as words",
        "lesson",
        "lesson_num",
        "пятый",
        "lesson",
        "number",
        "not a whole number",
    ),
    Kind(
        "topic over 500 characters",
        "lesson",
        "topic",
        "т" * 501,
        "lesson",
        "topic",
        "501 characters long, over the limit of 500",
    ),
    Kind(
        "homework over 2000 characters",
        "lesson",
        "homework",
        "д" * 2001,
        "lesson",
        "homework",
        "2001 characters long, over the limit of 2000",
    ),
    Kind("topic with NUL", "lesson", "topic", "Дроби\x00", "lesson", "topic", "control characters"),
    Kind("topic with BEL", "lesson", "topic", "Дроби\x07", "lesson", "topic", "control characters"),
    Kind(
        "topic with ESC",
        "lesson",
        "topic",
        "\x1b[31mДроби",
        "lesson",
        "topic",
        "control characters",
    ),
    Kind(
        "topic not UTF-8 (BLOB)", "lesson", "topic", NOT_UTF8, "lesson", "topic", "not valid UTF-8"
    ),
    Kind(
        "homework in cp1251 (BLOB)",
        "lesson",
        "homework",
        "Упражнение 5".encode("cp1251"),
        "lesson",
        "homework",
        "not valid UTF-8",
    ),
    Kind(
        "lesson of a missing teacher",
        "lesson",
        "teacher_id",
        MISSING,
        "lesson",
        "teacher",
        f"teacher {MISSING}, which is missing",
    ),
    Kind(
        "lesson of a missing subject",
        "lesson",
        "subject_id",
        MISSING,
        "lesson",
        "subject",
        f"subject {MISSING}, which is missing",
    ),
    Kind(
        "lesson of a missing class",
        "lesson",
        "class_id",
        MISSING,
        "lesson",
        "class",
        f"class {MISSING}, which is missing",
    ),
    # works
    Kind("work kind ZZ", "lesson_work", "work_kind", "ZZ", "work", "kind", "not in the value map"),
    Kind(
        "work weight negative", "lesson_work", "weight", -2, "work", "weight", "-2 is outside 1..10"
    ),
    Kind(
        "work weight as words",
        "lesson_work",
        "weight",
        "тяжёлая",
        "work",
        "weight",
        "not a whole number",
    ),
    Kind(
        "work of a missing lesson",
        "lesson_work",
        "lesson_id",
        MISSING,
        "work",
        "lesson",
        f"lesson {MISSING}, which is missing",
    ),
    # absences
    Kind("absence code x", "absence", "code", "x", "absence", "code", "not in the value map"),
    Kind("absence code latin H", "absence", "code", "H", "absence", "code", "not in the value map"),
    Kind(
        "absence code whitespace only", "absence", "code", "   ", "absence", "code", "missing value"
    ),
    Kind(
        "absence duplicate key",
        "absence",
        "code",
        "б",
        "absence",
        "lesson_id,pupil_id",
        "duplicate key",
        build=duplicate_absence,
        bad_key_delivered=True,
    ),
    Kind(
        "absence lesson_id NULL",
        "absence",
        "lesson_id",
        None,
        "absence",
        "lesson_id",
        "missing key",
    ),
    Kind(
        "absence pupil_id NULL", "absence", "pupil_id", None, "absence", "pupil_id", "missing key"
    ),
    Kind(
        "absence of a missing lesson",
        "absence",
        "lesson_id",
        MISSING,
        "absence",
        "lesson",
        f"lesson {MISSING}, which is missing",
    ),
    # classes
    Kind("class grade 0", "class_unit", "grade", 0, "class", "grade", "0 is outside 1..11"),
    Kind("class grade 12", "class_unit", "grade", 12, "class", "grade", "12 is outside 1..11"),
    Kind(
        "class grade as words",
        "class_unit",
        "grade",
        "пять",
        "class",
        "grade",
        "not a whole number",
    ),
    Kind(
        "class letter whitespace only",
        "class_unit",
        "letter",
        "  ",
        "class",
        "letter",
        "missing value",
    ),
    Kind(
        "class letter overlong",
        "class_unit",
        "letter",
        "АБВГД",
        "class",
        "letter",
        "5 characters long, over the limit of 4",
    ),
    Kind(
        "class of a missing form teacher",
        "class_unit",
        "form_teacher_id",
        MISSING,
        "class",
        "form_teacher",
        f"teacher {MISSING}, which is missing",
    ),
    # pupils
    Kind("pupil gender x", "pupil", "gender", "x", "pupil", "gender", "not in the value map"),
    Kind(
        "pupil last name over 60",
        "pupil",
        "last_name",
        "Тестова" * 9,
        "pupil",
        "last_name",
        "63 characters long, over the limit of 60",
    ),
    Kind(
        "pupil last name whitespace only",
        "pupil",
        "last_name",
        "   ",
        "pupil",
        "last_name",
        "missing value",
    ),
    Kind(
        "pupil first name with BEL",
        "pupil",
        "first_name",
        "Тест\x07",
        "pupil",
        "first_name",
        "control characters",
    ),
    Kind(
        "pupil last name in cp1251 (BLOB)",
        "pupil",
        "last_name",
        "Тестов".encode("cp1251"),
        "pupil",
        "last_name",
        "not valid UTF-8",
    ),
    Kind(
        "pupil birth date 2025-02-30",
        "pupil",
        "birth_date",
        "2025-02-30",
        "pupil",
        "birth_date",
        "not a valid date",
    ),
    Kind(
        "pupil birth date in 1850",
        "pupil",
        "birth_date",
        "1850-01-01",
        "pupil",
        "birth_date",
        "the date is outside",
    ),
    # enrolments, periods, period marks, guardians, staff
    Kind(
        "enrolment in a missing class",
        "pupil_move",
        "class_id",
        MISSING,
        "enrollment",
        "class",
        f"class {MISSING}, which is missing",
    ),
    Kind(
        "enrolment of a missing pupil",
        "pupil_move",
        "pupil_id",
        MISSING,
        "enrollment",
        "pupil",
        f"pupil {MISSING}, which is missing",
    ),
    Kind(
        "enrolment date month 13",
        "pupil_move",
        "date_in",
        "2025-13-01",
        "enrollment",
        "date_from",
        "not a valid date",
        build=of_a_pupil_without_consent,
    ),
    Kind(
        "enrolment ending before it begins",
        "pupil_move",
        "date_out",
        "2020-01-01",
        "enrollment",
        "date_to",
        "date_to is before date_from",
        build=of_a_pupil_without_consent,
    ),
    Kind(
        "guardian link relation with VT",
        "pupil_guardian",
        "relation",
        "мать\x0b",
        "guardian_link",
        "relation",
        "control characters",
        build=of_a_pupil_without_consent,
    ),
    Kind(
        "lesson topic with VT",
        "lesson",
        "topic",
        "Тема\x0bурока",
        "lesson",
        "topic",
        "control characters",
    ),
    Kind(
        "period kind semester",
        "study_period",
        "kind",
        "semester",
        "period",
        "kind",
        "not in the value map",
    ),
    Kind("period number 5", "study_period", "num", 5, "period", "number", "5 is outside 1..4"),
    Kind(
        "period end date impossible",
        "study_period",
        "date_end",
        "2025-10-32",
        "period",
        "date_to",
        "not a valid date",
    ),
    Kind(
        "period mark of a missing period",
        "period_mark",
        "period_id",
        MISSING,
        "period_mark",
        "period",
        f"period {MISSING}, which is missing",
    ),
    Kind(
        "period mark value 6",
        "period_mark",
        "mark_value",
        "6",
        "period_mark",
        "value",
        "not in the value map",
    ),
    Kind(
        "period mark н/а in cp1251 (BLOB)",
        "period_mark",
        "mark_value",
        "н/а".encode("cp1251"),
        "period_mark",
        "value",
        "not valid UTF-8",
    ),
    Kind(
        "guardian link to a missing guardian",
        "pupil_guardian",
        "guardian_id",
        MISSING,
        "guardian_link",
        "guardian",
        f"guardian {MISSING}, which is missing",
    ),
    Kind(
        "guardian phone over 20",
        "guardian",
        "phone",
        "+7 900 000-00-00 доб. 1234",
        "guardian",
        "phone",
        "over the limit of 20",
        build=linked_guardians,
    ),
    Kind(
        "teacher last name with ESC",
        "teacher",
        "last_name",
        "\x1bУчителева",
        "teacher",
        "last_name",
        "control characters",
    ),
    Kind(
        "subject name whitespace only",
        "subject",
        "name",
        " \t ",
        "subject",
        "name",
        "missing value",
    ),
    # held by the gate: valid rows that must not leave the school
    Kind(
        "pupil consent blank",
        "pupil",
        "pd_consent",
        "  ",
        "pupil",
        "consent",
        "no_consent",
        outcome=HELD,
    ),
    Kind(
        "pupil consent maybe",
        "pupil",
        "pd_consent",
        "maybe",
        "pupil",
        "consent",
        "consent_unclear",
        outcome=HELD,
    ),
    Kind(
        "pupil consent 2",
        "pupil",
        "pd_consent",
        2,
        "pupil",
        "consent",
        "consent_unclear",
        outcome=HELD,
    ),
    Kind(
        "pupil consent отозвано",
        "pupil",
        "pd_consent",
        "отозвано",
        "pupil",
        "consent",
        "consent_unclear",
        outcome=HELD,
    ),
    Kind(
        "pupil consent 1.5",
        "pupil",
        "pd_consent",
        1.5,
        "pupil",
        "consent",
        "consent_unclear",
        outcome=HELD,
    ),
    Kind(
        "pupil consent as a BLOB",
        "pupil",
        "pd_consent",
        b"\x00\xff",
        "pupil",
        "consent",
        "consent_unclear",
        outcome=HELD,
    ),
    Kind(
        "mark of a pupil without consent",
        "mark",
        "pupil_id",
        "(a pupil with consent 0)",
        "mark",
        "pupil",
        "no_consent",
        outcome=HELD,
        build=mark_of_pupil_without_consent,
    ),
    Kind(
        "mark dated before enrolment",
        "lesson",
        "lesson_date",
        "2025-08-25",
        "mark",
        "",
        "not_enrolled",
        outcome=HELD,
        build=mark_before_enrolment,
    ),
]


def _fetch(conn: sqlite3.Connection, sql: str, *args: object) -> Row:
    conn.row_factory = sqlite3.Row
    found = conn.execute(sql, args).fetchone()
    assert found is not None, sql
    return dict(found)


def describe_school(path: Path) -> Base:
    """The delivered rows of the school at ``path`` that the corpus copies."""
    export = expected_export(path)
    out = {k for e, k in export if e == "enrollment"}
    with closing(sqlite3.connect(path)) as conn:
        conn.row_factory = sqlite3.Row
        stays = {r["id"]: r for r in conn.execute("SELECT * FROM pupil_move")}
        settled = {s["pupil_id"] for s in stays.values() if str(s["id"]) in out} - {
            s["pupil_id"] for s in stays.values() if s["date_out"] is not None
        }
        marks = [
            dict(r)
            for r in conn.execute("SELECT * FROM mark ORDER BY id")
            if ("mark", str(r["id"])) in export and r["pupil_id"] in settled
        ]
        mark = marks[0]
        work = _fetch(conn, "SELECT * FROM lesson_work WHERE id = ?", mark["work_id"])
        lesson = _fetch(conn, "SELECT * FROM lesson WHERE id = ?", work["lesson_id"])
        lesson_of = {w["id"]: w["lesson_id"] for w in conn.execute("SELECT * FROM lesson_work")}
        absences = [dict(r) for r in conn.execute("SELECT * FROM absence ORDER BY rowid")]
        taken = {(a["lesson_id"], a["pupil_id"]) for a in absences}
        free = sorted({(lesson_of[m["work_id"]], m["pupil_id"]) for m in marks} - taken)
        absence = next(
            a for a in absences if ("absence", f"{a['lesson_id']}-{a['pupil_id']}") in export
        )
        rows = {
            "mark": mark,
            "lesson_work": work,
            "lesson": lesson,
            "absence": absence,
            "class_unit": _fetch(conn, "SELECT * FROM class_unit WHERE id = ?", lesson["class_id"]),
            "pupil": _fetch(conn, "SELECT * FROM pupil WHERE id = ?", mark["pupil_id"]),
            "pupil_move": _fetch(
                conn, "SELECT * FROM pupil_move WHERE pupil_id = ?", mark["pupil_id"]
            ),
            "study_period": _fetch(conn, "SELECT * FROM study_period ORDER BY id"),
            "pupil_guardian": _fetch(
                conn, "SELECT * FROM pupil_guardian WHERE pupil_id = ?", mark["pupil_id"]
            ),
            "teacher": _fetch(conn, "SELECT * FROM teacher WHERE id = ?", lesson["teacher_id"]),
            "subject": _fetch(conn, "SELECT * FROM subject WHERE id = ?", lesson["subject_id"]),
        }
        rows["guardian"] = _fetch(
            conn, "SELECT * FROM guardian WHERE id = ?", rows["pupil_guardian"]["guardian_id"]
        )
        rows["period_mark"] = {
            "id": 0,
            "pupil_id": mark["pupil_id"],
            "subject_id": lesson["subject_id"],
            "period_id": rows["study_period"]["id"],
            "mark_value": "5",
            "modified_at": mark["modified_at"],
        }
        no_consent = _fetch(conn, "SELECT id FROM pupil WHERE pd_consent = 0 ORDER BY id")["id"]
    for table, row in rows.items():
        if table != "period_mark":
            entity = next(e for e in MAPPINGS.entities if MAPPINGS[e].location == table)
            key = f"{row['lesson_id']}-{row['pupil_id']}" if table == "absence" else str(row["id"])
            assert (entity, key) in export, (table, key)
    return Base(rows, (free[0], free[1]), no_consent)


def write_rows(path: Path, rows: list[tuple[str, Row]]) -> None:
    """Insert ``rows`` untyped, so SQLite keeps each value exactly as given (text in an integer
    column, a BLOB in a text column)."""
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        for table, row in rows:
            raw = sa.table(table, *(sa.column(c) for c in row))
            conn.execute(raw.insert().values(row))
    engine.dispose()


def plan_of(path: Path) -> PlanResult:
    """A full plan of the school at ``path`` against an empty state store."""
    engine = sa.create_engine(f"sqlite:///{path}")
    try:
        return plan_run(
            MAPPINGS,
            SqlSource(engine),
            MemoryStateStore(),
            RunOptions(as_of=AS_OF, thresholds=NO_GUARD),
            lambda _change: None,
        )
    finally:
        engine.dispose()


def new_rejections(result: PlanResult, baseline: PlanResult) -> list[Any]:
    """The rejections of ``result`` that the unmodified school does not have."""
    known = {(r.entity, r.key, r.field, r.reason) for r in baseline.plan.rejections}
    return [r for r in result.plan.rejections if (r.entity, r.key, r.field, r.reason) not in known]


def hold_counts(result: PlanResult) -> Counter[tuple[str, str]]:
    """Held records by (entity, reason)."""
    return Counter(
        {
            (entity, reason): n
            for entity, reasons in result.plan.holds.items()
            for reason, n in reasons.items()
        }
    )


@dataclass(frozen=True)
class Corpus:
    """The generated school every kind starts from, what it copies, and its own plan."""

    school: Path
    base: Base
    baseline: PlanResult


def _personal(entity: str, name: str) -> bool:
    return any(f.personal for f in MAPPINGS[entity].fields if f.name == name)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    school = make_school(tmp_path_factory.mktemp("corpus"), **SCHOOL)
    return Corpus(school, describe_school(school), plan_of(school))


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[ReferencePortal]:
    yield from running_portal(tmp_path)


def test_the_corpus_has_at_least_thirty_kinds_with_distinct_names() -> None:
    """The corpus covers at least thirty kinds of bad input, each named once."""
    assert len(KINDS) >= 30
    assert len({k.name for k in KINDS}) == len(KINDS)


@pytest.mark.parametrize("kind", KINDS, ids=[k.name for k in KINDS])
def test_each_bad_input_is_stopped_and_everything_else_is_delivered(
    kind: Kind, corpus: Corpus, tmp_path: Path, portal: ReferencePortal
) -> None:
    """The bad row is rejected or held with its table, key, field and reason, the rest of the
    school reaches the portal over HTTP, and the sync exits OK."""
    school = tmp_path / "school.sqlite"
    shutil.copy(corpus.school, school)
    built = kind.built(corpus.base)
    write_rows(school, built.rows)

    outcome = Bridge(school, tmp_path / "state.sqlite", portal.url).sync()

    assert outcome.exit_code == ExitCode.OK, outcome.delivery
    fresh = new_rejections(outcome.plan, corpus.baseline)
    counts = outcome.plan.plan.rejection_counts
    before = corpus.baseline.plan.rejection_counts
    if kind.outcome == REJECTED:
        assert len(fresh) == 1, fresh
        (rejection,) = fresh
        assert (rejection.table, rejection.entity, rejection.key, rejection.field) == (
            kind.table,
            kind.entity,
            built.bad_key,
            kind.field,
        ), rejection
        assert kind.words in rejection.reason, rejection.reason
        assert sum(counts.values()) == sum(before.values()) + 1
    else:
        assert fresh == []
        assert counts == before
        held = hold_counts(outcome.plan) - hold_counts(corpus.baseline)
        assert held == Counter({(kind.entity, kind.words): 1}), held
    portal_holds = snapshot(portal.url)
    assert portal_holds == expected_export(school)
    assert (kind.entity, built.good_key) in portal_holds
    if kind.bad_key_delivered:  # the first row with the key was kept, as it was
        assert (
            portal_holds[(kind.entity, built.bad_key)]
            == expected_export(corpus.school)[(kind.entity, built.bad_key)]
        )
    else:
        assert (kind.entity, built.bad_key) not in portal_holds


def test_a_bad_value_of_a_personal_field_is_never_quoted(corpus: Corpus, tmp_path: Path) -> None:
    """Reasons for personal fields (names, birth dates, mark values) never repeat the value."""
    personal = [
        k
        for k in KINDS
        if k.outcome == REJECTED
        and isinstance(k.value, str)
        and len(k.value.strip()) >= 2
        and _personal(k.entity, k.field)
    ]
    assert len(personal) >= 4
    for kind in personal:
        school = tmp_path / f"{len(kind.name)}-{abs(hash(kind.name))}.sqlite"
        shutil.copy(corpus.school, school)
        write_rows(school, kind.built(corpus.base).rows)
        for rejection in new_rejections(plan_of(school), corpus.baseline):
            assert kind.value.strip()[:10] not in rejection.reason, (kind.name, rejection)
