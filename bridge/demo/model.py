"""The in-memory model of the synthetic school, built before anything is written.

Classes, people, pupils' stays in classes and memberships of groups, families, and the
:class:`School` that holds them and answers roster questions; the :class:`Calendar` of the
school days in the generated window; and :func:`stamp_on`, the deterministic time stamps of rows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from bridge.demo.vocab import BREAKS, PERIODS, PUBLIC_HOLIDAYS, YEAR_BEGIN, YEAR_END

Row = dict[str, object]


@dataclass(frozen=True)
class Calendar:
    """The school days of the generated window and the quarter of each."""

    end: dt.date  # last calendar day of the generated window
    days: tuple[dt.date, ...]  # school days within the window
    quarter: Mapping[dt.date, int]  # school day -> quarter index 0..3


@dataclass
class Class:
    """A class (grade and letter) with its curriculum, weekly plan, groups and form teacher."""

    id: int
    grade: int
    letter: str
    hours: dict[int, int]  # subject id -> lessons per week
    plan: tuple[tuple[int, ...], ...] = ()  # Monday..Friday -> subject id per lesson number
    groups: dict[int, tuple[int, int]] = field(default_factory=dict)  # split subject -> groups
    form_teacher_id: int | None = None


@dataclass(frozen=True)
class Person:
    """The name, gender and birth date of a teacher or a pupil."""

    last: str
    first: str
    middle: str
    gender: str
    birth: dt.date


@dataclass(frozen=True)
class Stay:
    """One stay of a pupil in a class: enrolled on ``date_in`` .. the day before ``date_out``."""

    pupil_id: int
    class_id: int
    date_in: dt.date
    order_in: str
    date_out: dt.date | None = None
    order_out: str | None = None
    reason_out: str | None = None

    def covers(self, day: dt.date) -> bool:
        """True when the pupil is in the class on ``day`` (``date_out`` itself excluded)."""
        return self.date_in <= day and (self.date_out is None or day < self.date_out)


@dataclass(frozen=True)
class Membership:
    """One stay of a pupil in a group of a split subject."""

    group_id: int
    pupil_id: int
    date_in: dt.date
    date_out: dt.date | None

    def covers(self, day: dt.date) -> bool:
        """True when the pupil is in the group on ``day`` (``date_out`` itself excluded)."""
        return self.date_in <= day and (self.date_out is None or day < self.date_out)


@dataclass(frozen=True)
class Pupil:
    """A pupil: the person, an ability tier and when consent to data processing was given."""

    id: int
    person: Person
    tier: int  # ability 0 (weak) .. 4 (excellent)
    consent_date: dt.date | None
    created: dt.datetime


@dataclass
class Family:
    """The family of one or more pupils: its surname, father's names and guardians."""

    surname: str  # male form
    father: tuple[str, str, str]  # his first name and the patronymics he gives
    guardians: list[tuple[int, str]] = field(default_factory=list)  # guardian id, relation
    children: int = 0


@dataclass
class School:
    """The whole school but its journal, with rosters by class and by group."""

    cal: Calendar
    classes: list[Class]
    teachers: list[Person]
    assignment: dict[tuple[int, int, int], int]  # (class, subject, group no or 0) -> teacher
    stays: list[Stay]  # in pupil_move id order
    memberships: list[Membership]  # in group_pupil id order
    pupils: list[Pupil]  # in id order
    guardians: list[Row]
    links: list[Row]  # pupil_guardian rows
    _by_class: dict[int, list[Stay]] = field(default_factory=dict)
    _by_group: dict[int, list[Membership]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Index stays by class and memberships by group."""
        for stay in self.stays:
            self._by_class.setdefault(stay.class_id, []).append(stay)
        for member in self.memberships:
            self._by_group.setdefault(member.group_id, []).append(member)

    def roster(self, class_id: int, day: dt.date) -> list[int]:
        """Ids of the pupils enrolled in the class on ``day``, ascending."""
        return sorted(s.pupil_id for s in self._by_class.get(class_id, []) if s.covers(day))

    def group_roster(self, group_id: int, day: dt.date) -> list[int]:
        """Ids of the pupils in the group on ``day``, ascending."""
        return sorted(m.pupil_id for m in self._by_group.get(group_id, []) if m.covers(day))


# Calendar ------------------------------------------------------------------------------------


def make_calendar(days: int | None) -> Calendar:
    """The school days from 2025-09-01 to the end of the window, with their quarters."""
    end = YEAR_END if days is None else min(YEAR_END, YEAR_BEGIN + dt.timedelta(days=days - 1))
    count = (end - YEAR_BEGIN).days + 1
    dates = (YEAR_BEGIN + dt.timedelta(days=i) for i in range(count))
    school_days = tuple(d for d in dates if _is_school_day(d))
    return Calendar(end, school_days, {d: _quarter_of(d) for d in school_days})


def _is_school_day(day: dt.date) -> bool:
    """Monday..Friday outside the breaks and public holidays."""
    if day.weekday() >= 5 or day in PUBLIC_HOLIDAYS:
        return False
    return not any(begin <= day <= end for begin, end in BREAKS)


def _quarter_of(day: dt.date) -> int:
    """Index 0..3 of the quarter a school day belongs to."""
    return next(p.quarters[0] for p in PERIODS if p.kind == "quarter" and day <= p.end)


def stamp_on(day: dt.date, hour: int, n: int) -> dt.datetime:
    """A deterministic time on ``day`` from ``hour`` o'clock, spread by ``n`` minutes (< 5 h)."""
    return dt.datetime.combine(day, dt.time(hour)) + dt.timedelta(minutes=n % 300)
