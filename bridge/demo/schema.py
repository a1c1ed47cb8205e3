"""The reference ASIOU schema: a stand-in for a school's ASIOU journal database.

Real ASIOU installations differ and their schema is not public; this one is modelled on an ASIOU
journal and is what the shipped ``mappings/`` read. It lives under ``bridge.demo`` because it is
the *source system's* schema, not the bridge's: the sync code never names these tables or
columns (``tests/unit/test_no_schema_names.py`` checks that), it only follows the mappings.

Documented in ``docs/asiou-schema.md``. Deliberately loose where real journals are loose: mark and
absence codes are free text, ``absence`` has no unique constraint, dates of withdrawal may be
missing, so the bridge meets the same mistakes it meets in the field.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()


def _modified() -> sa.Column[object]:
    return sa.Column("modified_at", sa.DateTime, nullable=False, index=True)


edu_year = sa.Table(
    "edu_year",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(20), nullable=False),
    sa.Column("date_begin", sa.Date, nullable=False),
    sa.Column("date_end", sa.Date, nullable=False),
)

study_period = sa.Table(
    "study_period",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("year_id", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(10), nullable=False),  # 'quarter' | 'half' | 'year'
    sa.Column("num", sa.Integer, nullable=False),
    sa.Column("name", sa.String(40), nullable=False),
    sa.Column("date_begin", sa.Date, nullable=False),
    sa.Column("date_end", sa.Date, nullable=False),
    _modified(),
)

teacher = sa.Table(
    "teacher",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("last_name", sa.String(60), nullable=False),
    sa.Column("first_name", sa.String(60), nullable=False),
    sa.Column("middle_name", sa.String(60)),
    sa.Column("birth_date", sa.Date),
    _modified(),
)

subject = sa.Table(
    "subject",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(120), nullable=False),
    sa.Column("short_name", sa.String(20)),
    _modified(),
)

class_unit = sa.Table(
    "class_unit",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("year_id", sa.Integer, nullable=False),
    sa.Column("grade", sa.Integer, nullable=False),
    sa.Column("letter", sa.String(4), nullable=False),
    sa.Column("form_teacher_id", sa.Integer),
    _modified(),
)

class_group = sa.Table(
    "class_group",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("class_id", sa.Integer, nullable=False),
    sa.Column("subject_id", sa.Integer, nullable=False),
    sa.Column("name", sa.String(60), nullable=False),
    _modified(),
)

pupil = sa.Table(
    "pupil",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("last_name", sa.String(60), nullable=False),
    sa.Column("first_name", sa.String(60), nullable=False),
    sa.Column("middle_name", sa.String(60)),
    sa.Column("birth_date", sa.Date),
    sa.Column("gender", sa.String(1)),  # 'м' | 'ж'
    sa.Column("pd_consent", sa.Integer, nullable=False),  # 1 = written consent on file
    sa.Column("consent_date", sa.Date),
    _modified(),
)

# Contingent movement: one row per stay in a class (enrolment order in, withdrawal order out).
pupil_move = sa.Table(
    "pupil_move",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("pupil_id", sa.Integer, nullable=False, index=True),
    sa.Column("class_id", sa.Integer, nullable=False),
    sa.Column("date_in", sa.Date, nullable=False),
    sa.Column("order_in", sa.String(30)),
    sa.Column("date_out", sa.Date),
    sa.Column("order_out", sa.String(30)),
    sa.Column("reason_out", sa.String(200)),
    _modified(),
)

group_pupil = sa.Table(
    "group_pupil",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("group_id", sa.Integer, nullable=False),
    sa.Column("pupil_id", sa.Integer, nullable=False, index=True),
    sa.Column("date_in", sa.Date, nullable=False),
    sa.Column("date_out", sa.Date),
    _modified(),
)

guardian = sa.Table(
    "guardian",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("last_name", sa.String(60), nullable=False),
    sa.Column("first_name", sa.String(60), nullable=False),
    sa.Column("middle_name", sa.String(60)),
    sa.Column("phone", sa.String(20)),
    sa.Column("email", sa.String(120)),
    _modified(),
)

pupil_guardian = sa.Table(
    "pupil_guardian",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("pupil_id", sa.Integer, nullable=False, index=True),
    sa.Column("guardian_id", sa.Integer, nullable=False),
    sa.Column("relation", sa.String(20)),  # 'мать' | 'отец' | 'опекун' | ...
    _modified(),
)

lesson = sa.Table(
    "lesson",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("class_id", sa.Integer, nullable=False),
    sa.Column("group_id", sa.Integer),
    sa.Column("subject_id", sa.Integer, nullable=False),
    sa.Column("teacher_id", sa.Integer, nullable=False),
    sa.Column("lesson_date", sa.Date),
    sa.Column("lesson_num", sa.Integer, nullable=False),
    sa.Column("topic", sa.Text),
    sa.Column("homework", sa.Text),
    _modified(),
)

# A form of work on a lesson (answer in class, test, dictation...): several marks for one lesson
# are several works (§3.2.4.9).
lesson_work = sa.Table(
    "lesson_work",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("lesson_id", sa.Integer, nullable=False, index=True),
    sa.Column("work_kind", sa.String(10), nullable=False),
    sa.Column("weight", sa.Integer, nullable=False),
    _modified(),
)

mark = sa.Table(
    "mark",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("work_id", sa.Integer, nullable=False),
    sa.Column("pupil_id", sa.Integer, nullable=False, index=True),
    sa.Column("mark_value", sa.String(10), nullable=False),
    _modified(),
)

# No unique constraint on purpose: real journals hold duplicate absence rows.
absence = sa.Table(
    "absence",
    metadata,
    sa.Column("lesson_id", sa.Integer),
    sa.Column("pupil_id", sa.Integer, index=True),
    sa.Column("code", sa.String(5)),
    _modified(),
    sa.Index("ix_absence_key", "lesson_id", "pupil_id"),
)

period_mark = sa.Table(
    "period_mark",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("pupil_id", sa.Integer, nullable=False, index=True),
    sa.Column("subject_id", sa.Integer, nullable=False),
    sa.Column("period_id", sa.Integer, nullable=False),
    sa.Column("mark_value", sa.String(10), nullable=False),
    _modified(),
)
