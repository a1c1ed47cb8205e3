"""A small, explicit school written into the reference ASIOU schema, for precise tests.

Unlike the synthetic generator, every row here is chosen by hand so a test can name exactly what
it expects: pupil 1 (5А, consent), pupil 2 (5А, no consent), pupil 3 (5А, withdrawn on
2025-10-15), pupil 4 (1А, grade 1), pupil 5 (5А, withdrawn 2025-10-15, re-admitted 2025-11-10).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bridge.demo import schema

T0 = datetime(2025, 9, 1, 8, 0)
FIRST_DAY = date(2025, 9, 1)


def _pupil(pid: int, consent: int) -> dict[str, Any]:
    return {
        "id": pid,
        "last_name": f"Фамилия{pid}",
        "first_name": f"Имя{pid}",
        "middle_name": f"Отчество{pid}",
        "birth_date": date(2014, 1, pid),
        "gender": "м",
        "pd_consent": consent,
        "consent_date": None,
        "modified_at": T0,
    }


def _move(mid: int, pid: int, cid: int, start: date, end: date | None) -> dict[str, Any]:
    return {
        "id": mid,
        "pupil_id": pid,
        "class_id": cid,
        "date_in": start,
        "order_in": f"№{mid}",
        "date_out": end,
        "order_out": f"№{mid}-у" if end else None,
        "reason_out": "Перевод в другую ОО" if end else None,
        "modified_at": T0,
    }


def base_rows() -> dict[sa.Table, list[dict[str, Any]]]:
    """The fixed part of the school: periods, subjects, teachers, classes, pupils, guardians."""
    return {
        schema.study_period: [
            {
                "id": 1,
                "year_id": 1,
                "kind": "quarter",
                "num": 1,
                "name": "1 четверть",
                "date_begin": date(2025, 9, 1),
                "date_end": date(2025, 10, 24),
                "modified_at": T0,
            },
            {
                "id": 2,
                "year_id": 1,
                "kind": "quarter",
                "num": 2,
                "name": "2 четверть",
                "date_begin": date(2025, 11, 5),
                "date_end": date(2025, 12, 28),
                "modified_at": T0,
            },
        ],
        schema.subject: [
            {"id": 1, "name": "Математика", "short_name": "Мат", "modified_at": T0},
            {"id": 2, "name": "Русский язык", "short_name": "Рус", "modified_at": T0},
        ],
        schema.teacher: [
            {
                "id": 1,
                "last_name": "Учителева",
                "first_name": "Анна",
                "middle_name": "Петровна",
                "birth_date": date(1980, 5, 5),
                "modified_at": T0,
            }
        ],
        schema.class_unit: [
            {
                "id": 1,
                "year_id": 1,
                "grade": 5,
                "letter": "А",
                "form_teacher_id": 1,
                "modified_at": T0,
            },
            {
                "id": 2,
                "year_id": 1,
                "grade": 1,
                "letter": "А",
                "form_teacher_id": 1,
                "modified_at": T0,
            },
        ],
        schema.pupil: [_pupil(1, 1), _pupil(2, 0), _pupil(3, 1), _pupil(4, 1), _pupil(5, 1)],
        schema.pupil_move: [
            _move(1, 1, 1, FIRST_DAY, None),
            _move(2, 2, 1, FIRST_DAY, None),
            _move(3, 3, 1, FIRST_DAY, date(2025, 10, 15)),
            _move(4, 4, 2, FIRST_DAY, None),
            _move(5, 5, 1, FIRST_DAY, date(2025, 10, 15)),
            _move(6, 5, 1, date(2025, 11, 10), None),
        ],
        schema.guardian: [
            {
                "id": g,
                "last_name": f"Родитель{g}",
                "first_name": "Мария",
                "middle_name": None,
                "phone": f"+7 900 000-00-0{g}",
                "email": None,
                "modified_at": T0,
            }
            for g in (1, 2)
        ],
        schema.pupil_guardian: [
            {"id": 1, "pupil_id": 1, "guardian_id": 1, "relation": "мать", "modified_at": T0},
            {"id": 2, "pupil_id": 2, "guardian_id": 2, "relation": "мать", "modified_at": T0},
        ],
    }


def _at(row_id: int) -> datetime:
    """Journal rows were edited at different times: a minute apart per id."""
    return T0 + timedelta(minutes=row_id)


LESSON_DAYS = [FIRST_DAY + timedelta(days=7 * w) for w in range(12)]  # Mondays to 2025-11-17


def journal_rows() -> dict[sa.Table, list[dict[str, Any]]]:
    """Lessons every Monday for both classes, one work each, a mark for every pupil present."""
    lessons, works, marks, absences = [], [], [], []
    for n, day in enumerate(LESSON_DAYS):
        for cid, pupils in ((1, (1, 2, 3, 5)), (2, (4,))):
            lid = 100 * cid + n
            lessons.append(
                {
                    "id": lid,
                    "class_id": cid,
                    "group_id": None,
                    "subject_id": 1,
                    "teacher_id": 1,
                    "lesson_date": day,
                    "lesson_num": 1,
                    "topic": f"Тема урока {n}",
                    "homework": f"§{n}, упр. {n}",
                    "modified_at": _at(lid),
                }
            )
            works.append(
                {
                    "id": lid,
                    "lesson_id": lid,
                    "work_kind": "УО",
                    "weight": 1,
                    "modified_at": _at(lid),
                }
            )
            marks.extend(
                {
                    "id": lid * 10 + p,
                    "work_id": lid,
                    "pupil_id": p,
                    "mark_value": "5",
                    "modified_at": _at(lid * 10 + p),
                }
                for p in pupils
            )
        absences.append(
            {"lesson_id": 100 + n, "pupil_id": 1, "code": "н", "modified_at": _at(100 + n)}
        )
    return {
        schema.lesson: lessons,
        schema.lesson_work: works,
        schema.mark: marks,
        schema.absence: absences,
    }


def write_school(engine: sa.Engine) -> None:
    """Create the reference schema in ``engine`` and fill it with the small school."""
    schema.metadata.drop_all(engine)
    schema.metadata.create_all(engine)
    with engine.begin() as conn:
        for rows in (base_rows(), journal_rows()):
            for table, values in rows.items():
                conn.execute(table.insert(), values)


def expected_marks() -> set[str]:
    """Keys of the marks that may leave: consenting, enrolled that day, not grade 1."""
    allowed = set()
    withdrawn, back = date(2025, 10, 15), date(2025, 11, 10)
    for n, day in enumerate(LESSON_DAYS):
        lid = 100 + n
        allowed.add(str(lid * 10 + 1))
        if day <= withdrawn:
            allowed.add(str(lid * 10 + 3))
        if day <= withdrawn or day >= back:
            allowed.add(str(lid * 10 + 5))
    return allowed


WITHDRAWN_ON = date(2025, 9, 15)
"""The day pupil 1 leaves in the re-gating trials (after a full sync)."""
EDITED_LATER = datetime(2026, 3, 1, 8, 0)


def withdraw_pupil_1(
    conn: sa.Connection, day: date = WITHDRAWN_ON, modified_at: datetime | None = EDITED_LATER
) -> None:
    """Pupil 1's stay in 5А ends on ``day`` (with ``modified_at`` None the row's watermark
    stays as it was: the withdrawal was entered earlier)."""
    values: dict[str, Any] = {"date_out": day, "order_out": "№9-у"}
    if modified_at is not None:
        values["modified_at"] = modified_at
    conn.execute(schema.pupil_move.update().where(schema.pupil_move.c.id == 1).values(**values))


def withdraw_consent_of_pupil_1(conn: sa.Connection) -> None:
    """Pupil 1's written consent is withdrawn."""
    conn.execute(
        schema.pupil.update()
        .where(schema.pupil.c.id == 1)
        .values(pd_consent=0, modified_at=EDITED_LATER)
    )


def move_watermarks_on(conn: sa.Connection) -> None:
    """Other pupil and enrolment rows were edited later, so the watermarks pass every row of
    pupil 1 (an incremental run re-reads none of them for their own sake)."""
    later = T0.replace(month=11)
    conn.execute(
        schema.pupil_move.update().where(schema.pupil_move.c.id == 6).values(modified_at=later)
    )
    conn.execute(schema.pupil.update().where(schema.pupil.c.id == 5).values(modified_at=later))


def records_of_pupil_1_after(day: date) -> set[tuple[str, str]]:
    """(entity, key) of pupil 1's marks and absences dated after ``day``."""
    late = [n for n, d in enumerate(LESSON_DAYS) if d > day]
    return {("mark", str((100 + n) * 10 + 1)) for n in late} | {
        ("absence", f"{100 + n}-1") for n in late
    }


GATE_CHANGES = ("withdrawal", "consent")


def make_gate_change(conn: sa.Connection, change: str) -> None:
    """Withdraw pupil 1 on WITHDRAWN_ON, or withdraw their consent."""
    if change == "withdrawal":
        withdraw_pupil_1(conn)
    else:
        withdraw_consent_of_pupil_1(conn)


def forbidden_by(change: str) -> set[tuple[str, str]]:
    """(entity, key) of what the portal may no longer hold after ``change`` to pupil 1: after a
    withdrawal, their records dated after it; without consent, everything of theirs (guardian 1
    represents only pupil 1)."""
    if change == "withdrawal":
        return records_of_pupil_1_after(WITHDRAWN_ON)
    everything = {("pupil", "1"), ("enrollment", "1"), ("guardian_link", "1"), ("guardian", "1")}
    return records_of_pupil_1_after(date(2000, 1, 1)) | everything


def write_local_config(folder: Path, *, with_school: bool = True) -> Path:
    """``folder/bridge.toml`` naming ``asiou.sqlite`` and ``state.sqlite`` beside it (relative
    paths, as an admin writes them) and the shipped mappings; with the small school written
    into ``asiou.sqlite`` unless ``with_school`` is False."""
    if with_school:
        engine = sa.create_engine(f"sqlite:///{folder / 'asiou.sqlite'}")
        write_school(engine)
        engine.dispose()
    path = folder / "bridge.toml"
    path.write_text(
        '[source]\nurl = "sqlite:///asiou.sqlite"\n'
        '[state]\nurl = "sqlite:///state.sqlite"\n'
        f'[mappings]\ndir = "{Path("mappings").resolve()}"\n',
        encoding="utf-8",
    )
    return path
