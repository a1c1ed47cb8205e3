"""Journal changes for the demo: what happens in a school between two syncs.

New marks, an edited mark, a pupil withdrawn, a pupil whose consent was withdrawn. Written into
the reference schema (this is the demo's ASIOU, so it may name its tables). Returns the keys it
touched so the demo can say what to expect.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa

from bridge.demo import schema


@dataclass(frozen=True)
class JournalChanges:
    """What ``change_journal`` did, by key."""

    new_marks: tuple[int, ...]
    edited_mark: int
    withdrawn_pupil: int
    withdrawn_on: date
    consent_withdrawn_pupil: int


def change_journal(engine: sa.Engine, when: datetime) -> JournalChanges:
    """Apply the demo's changes, stamped ``when`` (after the last sync's watermark)."""
    with engine.begin() as conn:
        edited = _edit_a_mark(conn, when)
        new = _add_marks(conn, when, count=5)
        withdrawn, day = _withdraw_a_pupil(conn, when)
        no_consent = _withdraw_consent(conn, when, not_pupil=withdrawn)
    return JournalChanges(new, edited, withdrawn, day, no_consent)


def _edit_a_mark(conn: sa.Connection, when: datetime) -> int:
    mark = schema.mark
    row = conn.execute(
        sa.select(mark.c.id, mark.c.mark_value)
        .where(mark.c.mark_value.in_(["4", "5"]))
        .order_by(mark.c.id)
        .limit(1)
    ).one()
    value = "3" if row.mark_value == "4" else "4"
    conn.execute(
        mark.update().where(mark.c.id == row.id).values(mark_value=value, modified_at=when)
    )
    return int(row.id)


def _add_marks(conn: sa.Connection, when: datetime, count: int) -> tuple[int, ...]:
    """Marks for the latest works of grades 2-11, for pupils with consent and an open stay in
    that class."""
    mark, work, lesson, move, pupil, unit = (
        schema.mark,
        schema.lesson_work,
        schema.lesson,
        schema.pupil_move,
        schema.pupil,
        schema.class_unit,
    )
    candidates = conn.execute(
        sa.select(work.c.id, move.c.pupil_id)
        .join(lesson, lesson.c.id == work.c.lesson_id)
        .join(unit, (unit.c.id == lesson.c.class_id) & (unit.c.grade > 1))
        .join(move, (move.c.class_id == lesson.c.class_id) & move.c.date_out.is_(None))
        .join(pupil, (pupil.c.id == move.c.pupil_id) & (pupil.c.pd_consent == 1))
        .where(lesson.c.lesson_date.is_not(None), lesson.c.group_id.is_(None))
        .order_by(lesson.c.lesson_date.desc(), work.c.id, move.c.pupil_id)
        .limit(200)
    ).all()
    taken = {
        tuple(r)
        for r in conn.execute(
            sa.select(mark.c.work_id, mark.c.pupil_id).where(
                mark.c.work_id.in_({c[0] for c in candidates})
            )
        )
    }
    fresh = [c for c in candidates if tuple(c) not in taken][:count]
    first = int(conn.execute(sa.select(sa.func.max(mark.c.id))).scalar_one()) + 1
    rows = [
        {"id": first + i, "work_id": w, "pupil_id": p, "mark_value": "5", "modified_at": when}
        for i, (w, p) in enumerate(fresh)
    ]
    if rows:
        conn.execute(mark.insert(), rows)
    return tuple(r["id"] for r in rows)


def _withdraw_a_pupil(conn: sa.Connection, when: datetime) -> tuple[int, date]:
    """Close the open stay of the first consenting pupil with marks in spring."""
    move, pupil = schema.pupil_move, schema.pupil
    row = conn.execute(
        sa.select(move.c.id, move.c.pupil_id)
        .join(pupil, pupil.c.id == move.c.pupil_id)
        .where(move.c.date_out.is_(None), pupil.c.pd_consent == 1)
        .order_by(move.c.pupil_id)
        .limit(1)
    ).one()
    day = date(2026, 3, 2)
    conn.execute(
        move.update()
        .where(move.c.id == row.id)
        .values(date_out=day, order_out="№77-у", reason_out="Перевод в другую ОО", modified_at=when)
    )
    return int(row.pupil_id), day


def _withdraw_consent(conn: sa.Connection, when: datetime, not_pupil: int) -> int:
    pupil = schema.pupil
    pid = conn.execute(
        sa.select(pupil.c.id)
        .where(pupil.c.pd_consent == 1, pupil.c.id != not_pupil)
        .order_by(pupil.c.id.desc())
        .limit(1)
    ).scalar_one()
    conn.execute(
        pupil.update()
        .where(pupil.c.id == pid)
        .values(pd_consent=0, consent_date=None, modified_at=when)
    )
    return int(pid)
