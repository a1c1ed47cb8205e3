"""Journal mistakes injected into the written school.

The kinds and what each does are listed in the docstring of :mod:`bridge.demo.generate`;
:data:`MISTAKE_KINDS` holds how many rows each touches.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Final, NamedTuple

import sqlalchemy as sa

from bridge.demo import schema
from bridge.demo.model import School, Stay, stamp_on
from bridge.demo.writer import Writer

MISTAKE_KINDS: Final[Mapping[str, int]] = MappingProxyType(
    {
        "invalid_mark_value": 8,
        "grade1_mark": 3,
        "mark_after_withdrawal": 2,
        "null_lesson_date": 2,
        "control_chars_topic": 3,
        "long_homework": 2,
        "duplicate_absence": 3,
        "unknown_absence_code": 2,
        "ghost_pupil_mark": 2,
        "ghost_lesson_absence": 2,
        "padded_mark_value": 3,
        "upper_case_absence_code": 3,
    }
)
"""How many rows each injected mistake kind touches (see :mod:`bridge.demo.generate`)."""

INVALID_MARK_VALUES: Final = ("6", "0", "H", "")
_CONTROL_CHARS: Final = ("\x07", "\x0b", "\x1b")
_GHOST_ID_OFFSET: Final = 100_000
_LONG_HOMEWORK: Final = "Подготовиться к контрольной работе. " + " ".join(
    f"§{i}: прочитать, ответить на вопросы 1–5, выполнить упр. {10 + 3 * i};" for i in range(1, 91)
)


class _BadMark(NamedTuple):
    work_id: int
    lesson_id: int
    pupil_id: int
    value: str
    stamp: dt.datetime


def inject_mistakes(writer: Writer, school: School, seed: int) -> None:
    """Inject every mistake kind of :data:`MISTAKE_KINDS` into the written school."""
    rng = random.Random(f"asiou-bridge-mistakes-{seed}")
    writer.flush_all()
    base_marks = writer.counts["mark"]
    bad = [
        *_grade1_marks(writer.conn, school, rng),
        *_marks_after_withdrawal(writer.conn, school, rng),
        *_ghost_pupil_marks(writer.conn, school, rng, base_marks),
    ]
    for mark_id, m in enumerate(bad, base_marks + 1):
        writer.add(
            schema.mark,
            {
                "id": mark_id,
                "work_id": m.work_id,
                "pupil_id": m.pupil_id,
                "mark_value": m.value,
                "modified_at": m.stamp,
            },
        )
    _damage_lessons(writer.conn, rng, {m.lesson_id for m in bad})
    _damage_mark_values(writer.conn, rng, base_marks)
    _damage_absences(writer, school, rng)
    writer.flush_all()
    writer.conn.commit()


if TYPE_CHECKING:
    _WorkSelect = sa.Select[int, int, int, dt.date | None, dt.datetime]


def _work_query() -> _WorkSelect:
    """Works with their lesson's id, class and date, in work id order."""
    work, lesson = schema.lesson_work, schema.lesson
    return (
        sa.select(
            work.c.id, lesson.c.id, lesson.c.class_id, lesson.c.lesson_date, work.c.modified_at
        )
        .join_from(work, lesson, work.c.lesson_id == lesson.c.id)
        .order_by(work.c.id)
    )


def _grade1_marks(conn: sa.Connection, school: School, rng: random.Random) -> list[_BadMark]:
    """Marks for enrolled pupils on works of grade-1 lessons, where no marks are given."""
    first_grade = [k.id for k in school.classes if k.grade == 1]
    works = conn.execute(_work_query().where(schema.lesson.c.class_id.in_(first_grade))).all()
    result: list[_BadMark] = []
    for work_id, lesson_id, class_id, day, stamp in rng.sample(
        works, min(len(works), MISTAKE_KINDS["grade1_mark"])
    ):
        roster = school.roster(class_id, day) if day is not None else []
        if roster:
            result.append(
                _BadMark(work_id, lesson_id, rng.choice(roster), rng.choice("545"), stamp)
            )
    return result


def _marks_after_withdrawal(
    conn: sa.Connection, school: School, rng: random.Random
) -> list[_BadMark]:
    """Marks on class lessons after a pupil's withdrawal and before any re-admission."""
    graded = {k.id for k in school.classes if k.grade >= 2}
    withdrawn = [s for s in school.stays if s.date_out is not None and s.class_id in graded]
    candidates: list[list[_BadMark]] = []
    for stay in withdrawn:
        works = conn.execute(_gap_works(school, stay)).all()
        picks = rng.sample(works, min(len(works), MISTAKE_KINDS["mark_after_withdrawal"]))
        candidates.append([_BadMark(w, lid, stay.pupil_id, "4", st) for w, lid, _, _, st in picks])
    return _round_robin(candidates, MISTAKE_KINDS["mark_after_withdrawal"])


def _gap_works(school: School, stay: Stay) -> _WorkSelect:
    """Whole-class works of the stay's class dated after its withdrawal, before re-admission."""
    assert stay.date_out is not None
    later = [
        s.date_in for s in school.stays if s.pupil_id == stay.pupil_id and s.date_in > stay.date_out
    ]
    end = min(later, default=school.cal.end + dt.timedelta(days=1))
    lesson = schema.lesson
    return _work_query().where(
        lesson.c.class_id == stay.class_id,
        lesson.c.group_id.is_(None),
        lesson.c.lesson_date > stay.date_out,
        lesson.c.lesson_date < end,
    )


def _round_robin(lists: Sequence[Sequence[_BadMark]], count: int) -> list[_BadMark]:
    """Up to ``count`` items taken one from each list in turn."""
    result: list[_BadMark] = []
    for depth in range(count):
        for items in lists:
            if depth < len(items) and len(result) < count:
                result.append(items[depth])
    return result


def _ghost_pupil_marks(
    conn: sa.Connection, school: School, rng: random.Random, base_marks: int
) -> list[_BadMark]:
    """Marks on real (graded) works whose pupil id matches no pupil."""
    count = min(base_marks, MISTAKE_KINDS["ghost_pupil_mark"])
    mark_ids = sorted(rng.sample(range(1, base_marks + 1), count))
    query = (
        sa.select(schema.mark.c.work_id, schema.lesson_work.c.lesson_id, schema.mark.c.modified_at)
        .join_from(
            schema.mark, schema.lesson_work, schema.mark.c.work_id == schema.lesson_work.c.id
        )
        .where(schema.mark.c.id.in_(mark_ids))
        .order_by(schema.mark.c.id)
    )
    ghost = len(school.pupils) + _GHOST_ID_OFFSET
    return [
        _BadMark(w, lid, ghost + i, "5", st) for i, (w, lid, st) in enumerate(conn.execute(query))
    ]


def _damage_lessons(conn: sa.Connection, rng: random.Random, used: set[int]) -> None:
    """NULL dates, control characters in topics and over-long homework on graded lessons."""
    lesson = schema.lesson
    graded = (
        sa.select(lesson.c.id)
        .join(schema.class_unit, schema.class_unit.c.id == lesson.c.class_id)
        .where(schema.class_unit.c.grade >= 2)
        .order_by(lesson.c.id)
    )
    ids = [i for i in conn.execute(graded).scalars() if i not in used]
    sizes = [MISTAKE_KINDS[k] for k in ("null_lesson_date", "control_chars_topic", "long_homework")]
    picks = rng.sample(ids, min(len(ids), sum(sizes)))
    nulls, controls, longs = (
        picks[: sizes[0]],
        picks[sizes[0] : sizes[0] + sizes[1]],
        picks[sizes[0] + sizes[1] :],
    )
    conn.execute(sa.update(lesson).where(lesson.c.id.in_(nulls)).values(lesson_date=None))
    for lesson_id, char in zip(controls, _CONTROL_CHARS, strict=False):
        topic = conn.execute(sa.select(lesson.c.topic).where(lesson.c.id == lesson_id)).scalar_one()
        middle = len(topic or "") // 2
        damaged = f"{(topic or '')[:middle]}{char}{(topic or '')[middle:]}"
        conn.execute(sa.update(lesson).where(lesson.c.id == lesson_id).values(topic=damaged))
    conn.execute(sa.update(lesson).where(lesson.c.id.in_(longs)).values(homework=_LONG_HOMEWORK))


def _damage_mark_values(conn: sa.Connection, rng: random.Random, base_marks: int) -> None:
    """Invalid values ('6', '0', latin 'H', '') and space-padded valid values on existing marks."""
    mark = schema.mark
    n_bad, n_pad = MISTAKE_KINDS["invalid_mark_value"], MISTAKE_KINDS["padded_mark_value"]
    ids = rng.sample(range(1, base_marks + 1), min(base_marks, n_bad + n_pad))
    for mark_id, value in zip(ids[:n_bad], itertools.cycle(INVALID_MARK_VALUES), strict=False):
        conn.execute(sa.update(mark).where(mark.c.id == mark_id).values(mark_value=value))
    padded = sa.literal(" ") + mark.c.mark_value + sa.literal(" ")
    conn.execute(sa.update(mark).where(mark.c.id.in_(ids[n_bad:])).values(mark_value=padded))


def _damage_absences(writer: Writer, school: School, rng: random.Random) -> None:
    """Upper-case 'Н', unknown 'x', duplicate rows and absences of lessons that do not exist."""
    absence = schema.absence
    rows = writer.conn.execute(
        sa.select(absence).order_by(absence.c.lesson_id, absence.c.pupil_id)
    ).all()
    plain = [r for r in rows if r.code == "н"]
    upper = rng.sample(plain, min(len(plain), MISTAKE_KINDS["upper_case_absence_code"]))
    taken = {(r.lesson_id, r.pupil_id) for r in upper}
    rest = [r for r in rows if (r.lesson_id, r.pupil_id) not in taken]
    n_unknown = MISTAKE_KINDS["unknown_absence_code"]
    others = rng.sample(rest, min(len(rest), n_unknown + MISTAKE_KINDS["duplicate_absence"]))
    for code, targets in (("Н", upper), ("x", others[:n_unknown])):
        for r in targets:
            key = sa.and_(absence.c.lesson_id == r.lesson_id, absence.c.pupil_id == r.pupil_id)
            writer.conn.execute(sa.update(absence).where(key).values(code=code))
    for r in others[n_unknown:]:
        writer.add(absence, {**r._asdict(), "modified_at": r.modified_at + dt.timedelta(days=1)})
    ghost = writer.counts["lesson"] + _GHOST_ID_OFFSET
    for i in range(MISTAKE_KINDS["ghost_lesson_absence"] if school.pupils else 0):
        writer.add(
            absence,
            {
                "lesson_id": ghost + i,
                "pupil_id": rng.choice(school.pupils).id,
                "code": "н",
                "modified_at": stamp_on(school.cal.end, 18, i),
            },
        )
