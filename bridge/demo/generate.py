"""A deterministic synthetic school written into the reference ASIOU schema.

``generate(engine, SchoolSpec(...))`` drops and recreates the tables of :mod:`bridge.demo.schema`
and fills them with one academic year (2025/2026) of an imaginary Russian school: classes of
grades 1-11, subjects, teachers, pupils with guardians and contingent movement, a full timetable
of lessons with specific topics and homework, works, marks, absences and period marks.

Everything comes from ``random.Random(spec.seed)`` and fixed calendar constants, never from the
clock: the same spec always gives the same rows (``modified_at`` included). The calendar, the
codes and every column are described in ``docs/asiou-schema.md``.

Journal mistakes
----------------
With ``SchoolSpec.mistakes`` (the default) a handful of each field mistake below is injected after
the clean school is written. They come from a second generator seeded from ``spec.seed``, so the
rest of the school is identical with and without them. :data:`MISTAKE_KINDS` holds how many rows
each kind touches; a kind is skipped (or thinned) only when the school is too small to host it.

- ``invalid_mark_value``: existing marks rewritten to ``'6'``, ``'0'``, latin ``'H'`` and ``''``
  (two of each).
- ``grade1_mark``: marks inserted in grade-1 classes, where marks are not given (§3.2.4.11).
- ``mark_after_withdrawal``: marks inserted on class lessons dated after the pupil's withdrawal
  (``pupil_move.date_out``) and before any re-admission.
- ``null_lesson_date``: lessons (with their works and marks) whose ``lesson_date`` is NULL.
- ``control_chars_topic``: lesson topics containing control characters (``\\x07``, ``\\x0b``,
  ``\\x1b``).
- ``long_homework``: homework texts longer than 4000 characters.
- ``duplicate_absence``: a second ``absence`` row with the same ``lesson_id`` and ``pupil_id``.
- ``unknown_absence_code``: absences whose code is ``'x'``.
- ``ghost_pupil_mark``: marks whose ``pupil_id`` matches no pupil.
- ``ghost_lesson_absence``: absences whose ``lesson_id`` matches no lesson.
- ``padded_mark_value``: noisy but valid marks with surrounding spaces (``' 5 '``).
- ``upper_case_absence_code``: noisy but valid absence code ``'Н'`` (upper-case Cyrillic).

Where things live
-----------------
This module is the entry point. The school is drawn in memory first: :mod:`~bridge.demo.model`
(the model and the calendar), :mod:`~bridge.demo.timetable` (classes and timetable),
:mod:`~bridge.demo.staff` (teachers), :mod:`~bridge.demo.contingent` (stays in classes and
groups) and :mod:`~bridge.demo.people` (pupils and guardians). Then :mod:`~bridge.demo.rows`
writes the reference rows, :mod:`~bridge.demo.journal` the journal and
:mod:`~bridge.demo.mistakes` the mistakes, all through :mod:`~bridge.demo.writer`. The literal
data (calendar, subjects, curricula, names, topics, homework) is in ``bridge/demo/data/*.toml``,
read by :mod:`~bridge.demo.vocab`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import sqlalchemy as sa

from bridge.demo import schema
from bridge.demo.contingent import enrol, group_memberships
from bridge.demo.journal import MAX_DENSITY, Journal
from bridge.demo.mistakes import INVALID_MARK_VALUES, MISTAKE_KINDS, inject_mistakes
from bridge.demo.model import School, make_calendar
from bridge.demo.people import make_people
from bridge.demo.rows import write_school
from bridge.demo.staff import hire_staff
from bridge.demo.timetable import build_timetable, make_classes
from bridge.demo.vocab import YEAR_BEGIN, YEAR_END
from bridge.demo.writer import Progress, Writer, bulk_session

__all__ = [
    "INVALID_MARK_VALUES",
    "MAX_DENSITY",
    "MISTAKE_KINDS",
    "YEAR_BEGIN",
    "YEAR_END",
    "SchoolSpec",
    "generate",
]


@dataclass(frozen=True)
class SchoolSpec:
    """What school to generate; the same spec always produces the same rows.

    ``days`` limits the year to its first N calendar days from 2025-09-01 (None: the whole year
    up to 2026-05-29). ``marks_per_pupil_lesson`` is the expected number of marks a present pupil
    gets per lesson in grades 2-11 (0..MAX_DENSITY).
    """

    pupils: int = 1100
    seed: int = 1
    days: int | None = None
    mistakes: bool = True
    marks_per_pupil_lesson: float = 1.0

    def __post_init__(self) -> None:
        """Reject specs that cannot describe a school."""
        if self.pupils < 1:
            raise ValueError("pupils must be at least 1")
        if self.days is not None and self.days < 1:
            raise ValueError("days must be at least 1 (or None for the whole year)")
        if not 0.0 <= self.marks_per_pupil_lesson <= MAX_DENSITY:
            raise ValueError(f"marks_per_pupil_lesson must be within 0..{MAX_DENSITY}")


def generate(
    engine: sa.Engine, spec: SchoolSpec, progress: Progress | None = None
) -> dict[str, int]:
    """Drop and (re)create the reference schema in ``engine`` and fill it; return row counts.

    The result maps every table of :data:`bridge.demo.schema.metadata` to its row count.
    ``progress(table, rows_written_so_far)`` is called after every written chunk. Only tables of
    the reference schema are dropped. Nothing personal is printed or logged.
    """
    rng = random.Random(spec.seed)
    school = _build_school(rng, spec)
    with engine.connect() as conn, bulk_session(conn):
        schema.metadata.drop_all(conn)
        schema.metadata.create_all(conn)
        conn.commit()
        writer = Writer(conn, progress)
        write_school(writer, school)
        Journal(school, rng, writer, spec.marks_per_pupil_lesson).run()
        if spec.mistakes:
            inject_mistakes(writer, school, spec.seed)
        writer.flush_all()
    return dict(writer.counts)


def _build_school(rng: random.Random, spec: SchoolSpec) -> School:
    """Draw the whole school except the journal (lessons, works, marks, absences)."""
    cal = make_calendar(spec.days)
    classes = make_classes(rng, spec.pupils)
    teachers, assignment = hire_staff(rng, classes, spec.pupils)
    build_timetable(rng, classes, assignment)
    stays = enrol(rng, classes, cal, spec.pupils)
    memberships = group_memberships(rng, classes, stays)
    pupils, guardians, links = make_people(rng, stays, classes)
    return School(cal, classes, teachers, assignment, stays, memberships, pupils, guardians, links)
