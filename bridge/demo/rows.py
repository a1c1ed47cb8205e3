"""The rows of every table but the journal's, written from the school model.

Year, study periods, subjects, teachers, classes, groups, pupils, pupil moves, group
memberships, guardians and pupil-guardian links.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Sequence

import sqlalchemy as sa

from bridge.demo import schema
from bridge.demo.model import Class, Membership, Person, Pupil, Row, School, Stay, stamp_on
from bridge.demo.vocab import (
    BASE_TIME,
    PERIODS,
    SHORT_NAME,
    SUBJECTS,
    YEAR_BEGIN,
    YEAR_END,
    YEAR_NAME,
    Period,
)
from bridge.demo.writer import Writer


def write_school(writer: Writer, school: School) -> None:
    """Write everything but the journal."""
    for table, rows in _reference_rows(school):
        for row in rows:
            writer.add(table, row)


def _reference_rows(school: School) -> Iterator[tuple[sa.Table, Iterable[Row]]]:
    """Every table but the journal's, with its rows."""
    yield (
        schema.edu_year,
        [{"id": 1, "name": YEAR_NAME, "date_begin": YEAR_BEGIN, "date_end": YEAR_END}],
    )
    yield schema.study_period, map(_period_row, PERIODS)
    yield (
        schema.subject,
        (
            {"id": i, "name": name, "short_name": short, "modified_at": _setup_time(i)}
            for i, (name, short) in enumerate(SUBJECTS, 1)
        ),
    )
    yield schema.teacher, (_teacher_row(i, t) for i, t in enumerate(school.teachers, 1))
    yield schema.class_unit, map(_class_row, school.classes)
    yield schema.class_group, _group_rows(school.classes)
    yield schema.pupil, map(_pupil_row, school.pupils)
    yield schema.pupil_move, _move_rows(school.stays)
    yield schema.group_pupil, _membership_rows(school.memberships)
    yield schema.guardian, school.guardians
    yield schema.pupil_guardian, school.links


def _setup_time(n: int) -> dt.datetime:
    """When the ``n``-th reference row was set up: minutes after the year's first morning."""
    return BASE_TIME + dt.timedelta(minutes=n)


def _period_row(p: Period) -> Row:
    """A study_period row."""
    return {
        "id": p.id,
        "year_id": 1,
        "kind": p.kind,
        "num": p.num,
        "name": p.name,
        "date_begin": p.begin,
        "date_end": p.end,
        "modified_at": _setup_time(p.id),
    }


def _teacher_row(teacher_id: int, t: Person) -> Row:
    """A teacher row."""
    return {
        "id": teacher_id,
        "last_name": t.last,
        "first_name": t.first,
        "middle_name": t.middle,
        "birth_date": t.birth,
        "modified_at": _setup_time(teacher_id),
    }


def _class_row(k: Class) -> Row:
    """A class_unit row."""
    return {
        "id": k.id,
        "year_id": 1,
        "grade": k.grade,
        "letter": k.letter,
        "form_teacher_id": k.form_teacher_id,
        "modified_at": _setup_time(k.id),
    }


def _group_rows(classes: Sequence[Class]) -> Iterator[Row]:
    """class_group rows: two groups per split subject of a class."""
    for klass in classes:
        for subject, groups in sorted(klass.groups.items()):
            for number, group_id in enumerate(groups, 1):
                yield {
                    "id": group_id,
                    "class_id": klass.id,
                    "subject_id": subject,
                    "name": f"{klass.grade}{klass.letter} {SHORT_NAME[subject]} гр. {number}",
                    "modified_at": _setup_time(group_id),
                }


def _pupil_row(pupil: Pupil) -> Row:
    """A pupil row."""
    p = pupil.person
    return {
        "id": pupil.id,
        "last_name": p.last,
        "first_name": p.first,
        "middle_name": p.middle,
        "birth_date": p.birth,
        "gender": p.gender,
        "pd_consent": int(pupil.consent_date is not None),
        "consent_date": pupil.consent_date,
        "modified_at": pupil.created,
    }


def _move_rows(stays: Sequence[Stay]) -> Iterator[Row]:
    """pupil_move rows, one per stay; modified when the last of its dates was entered."""
    for move_id, s in enumerate(stays, 1):
        yield {
            "id": move_id,
            "pupil_id": s.pupil_id,
            "class_id": s.class_id,
            "date_in": s.date_in,
            "order_in": s.order_in,
            "date_out": s.date_out,
            "order_out": s.order_out,
            "reason_out": s.reason_out,
            "modified_at": stamp_on(s.date_out or s.date_in, 10, move_id),
        }


def _membership_rows(memberships: Sequence[Membership]) -> Iterator[Row]:
    """group_pupil rows, one per membership."""
    for row_id, m in enumerate(memberships, 1):
        yield {
            "id": row_id,
            "group_id": m.group_id,
            "pupil_id": m.pupil_id,
            "date_in": m.date_in,
            "date_out": m.date_out,
            "modified_at": stamp_on(m.date_out or m.date_in, 11, row_id),
        }
