"""The journal: lessons with topics and homework, works, marks, absences and period marks.

The work model (kinds of work, their weights and how many pupils each marks), the ability tiers
that shape the marks and the absence rates live here; :class:`Journal` streams the journal into
the writer day by day and then writes the period marks.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

from bridge.demo import schema
from bridge.demo.model import Class, Row, School, stamp_on
from bridge.demo.vocab import (
    HOMEWORK,
    HOMEWORK_DEFAULT,
    HOMEWORK_RATE,
    HOMEWORK_RATE_DEFAULT,
    PERIODS,
    SUBJECT_ID,
    SUBJECTS,
    TOPICS,
)
from bridge.demo.writer import Writer

# The topic texts of the second, third... lesson on one topic, and the weeks in a school year.
_TOPIC_VARIANTS: Final = ("{t}", "{t}. Закрепление", "{t}. Практикум", "{t}. Обобщение")
_WEEKS_PER_YEAR: Final = 34

# kind -> (weight, share of present pupils marked before density scaling)
_WORK_KINDS: Final = MappingProxyType(
    {
        "УО": (1, 0.15),
        "ДЗ": (1, 0.45),
        "СР": (2, 1.0),
        "ПР": (2, 0.9),
        "КР": (3, 1.0),
        "ДИК": (3, 1.0),
    }
)
_FIRST_WORK: Final = (("УО", 45), ("ДЗ", 20), ("СР", 18), ("ПР", 7), ("КР", 6), ("ДИК", 4))
_DICTATION_SUBJECTS: Final = frozenset({SUBJECT_ID["Русский язык"], SUBJECT_ID["Английский язык"]})
_SECOND_WORK_RATE: Final = 0.35
MAX_DENSITY: Final = 1.0 + _SECOND_WORK_RATE
"""The largest ``marks_per_pupil_lesson`` the work model can produce."""

# Cumulative probabilities of 2, 3, 4 (else 5) for five ability tiers, and the tiers' shares.
_TIER_CUMULATIVE: Final = (
    (0.15, 0.65, 0.95),
    (0.05, 0.40, 0.85),
    (0.02, 0.20, 0.68),
    (0.01, 0.08, 0.45),
    (0.0, 0.02, 0.20),
)
TIER_WEIGHTS: Final = (7, 25, 38, 22, 8)
_MINUS_RATE: Final = 0.03
_PLUS_RATE: Final = 0.025

_SPELL_START_RATE: Final = 0.004  # a pupil starts a whole-day absence spell
_SPELL_CODES: Final = (("н", 55), ("б", 35), ("у", 10))
_SKIP_RATE: Final = 0.008  # one missed lesson, code 'н'
_LATE_RATE: Final = 0.003  # late for a lesson, code 'о'
_FEW_MARKS: Final = 3  # fewer current marks than this give 'н/а' as a period mark


def _share(kind: str, scale: float) -> float:
    """Probability that a present pupil is marked for a work of ``kind`` at density ``scale``."""
    return min(1.0, _WORK_KINDS[kind][1] * scale)


def _expected_marks(scale: float) -> float:
    """Expected marks per present pupil and lesson under the work-kind model at ``scale``."""
    total = sum(weight for _, weight in _FIRST_WORK)
    expected = 0.0
    for kind, weight in _FIRST_WORK:
        if kind in ("УО", "ДЗ"):
            second = _share("ДЗ" if kind == "УО" else "УО", scale)
        else:
            second = (_share("УО", scale) + _share("ДЗ", scale)) / 2
        expected += weight / total * (_share(kind, scale) + _SECOND_WORK_RATE * second)
    return expected


def _coverages(density: float) -> dict[str, float]:
    """Per-kind marking probabilities whose expected marks per pupil-lesson equal ``density``."""
    low, high = 0.0, 1.0 / min(share for _, share in _WORK_KINDS.values())
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if _expected_marks(middle) < density else (low, middle)
    return {kind: _share(kind, high) for kind in _WORK_KINDS}


def _second_kind(rng: random.Random, first: str) -> str:
    """The kind of a lesson's second work: an oral answer or a homework check."""
    if first in ("УО", "ДЗ"):
        return "ДЗ" if first == "УО" else "УО"
    return rng.choice(("УО", "ДЗ"))


def _mark_value(tier: int, r_value: float, r_suffix: float) -> tuple[int, str]:
    """A mark for a pupil of ability ``tier``: its digit and its text ('4', '5+', '3-')."""
    digit = 2 + bisect.bisect_right(_TIER_CUMULATIVE[tier], r_value)
    if digit == 2 or r_suffix >= _MINUS_RATE + _PLUS_RATE:
        return digit, str(digit)
    return digit, f"{digit}{'-' if r_suffix < _MINUS_RATE else '+'}"


def _topic_text(base: str, repeat: int, kinds: Sequence[str]) -> str:
    """The topic of the ``repeat``-th lesson on ``base``; tests and dictations say so."""
    if "КР" in kinds or "ДИК" in kinds:
        text = f"{'Контрольная работа' if 'КР' in kinds else 'Диктант'} по теме: {base}"
        return text if repeat == 0 else f"{text} (урок {repeat + 1})"
    if repeat < len(_TOPIC_VARIANTS):
        return _TOPIC_VARIANTS[repeat].format(t=base)
    return f"{base} (урок {repeat + 1})"


@dataclass(frozen=True)
class _Slot:
    """One lesson to write: a class (or one of its groups), a subject, a day and a number."""

    klass: Class
    subject: int
    group_no: int  # 0 = whole class
    group_id: int | None
    day: dt.date
    num: int


_FIRST_KINDS: Final = tuple(kind for kind, _ in _FIRST_WORK)
_FIRST_CUMULATIVE: Final = tuple(
    sum(weight for _, weight in _FIRST_WORK[: i + 1]) for i in range(len(_FIRST_WORK))
)
_SPELL_KINDS: Final = tuple(code for code, _ in _SPELL_CODES)
_SPELL_WEIGHTS: Final = tuple(weight for _, weight in _SPELL_CODES)


class Journal:
    """Streams the journal day by day into the writer and accumulates marks for period marks."""

    def __init__(self, school: School, rng: random.Random, writer: Writer, density: float) -> None:
        self._school = school
        self._rng = rng
        self._writer = writer
        self._coverage = _coverages(density)
        self._tiers = [0, *(p.tier for p in school.pupils)]  # indexed by pupil id
        self._lesson_id = self._work_id = self._mark_id = 0
        self._topic_no: dict[tuple[int, int, int], int] = {}
        self._spells: dict[int, tuple[int, str]] = {}  # pupil -> (last day index, code)
        self._totals: dict[tuple[int, int, int], list[int]] = {}  # (pupil, subject, quarter)

    def run(self) -> None:
        """Write every school day of the window, then the period marks."""
        for index, day in enumerate(self._school.cal.days):
            rosters = {k.id: self._school.roster(k.id, day) for k in self._school.classes}
            away = self._whole_day_absences(index, rosters)
            for klass in self._school.classes:
                self._class_day(klass, day, rosters[klass.id], away)
        for row in _period_mark_rows(self._school, self._totals):
            self._writer.add(schema.period_mark, row)

    def _whole_day_absences(self, index: int, rosters: Mapping[int, list[int]]) -> dict[int, str]:
        """Pupils away for the whole day (illness spells of 2-6 school days) and their codes."""
        away: dict[int, str] = {}
        rand = self._rng.random
        for roster in rosters.values():
            for pupil_id in roster:
                spell = self._spells.get(pupil_id)
                if spell is not None and spell[0] >= index:
                    away[pupil_id] = spell[1]
                elif rand() < _SPELL_START_RATE:
                    code = self._rng.choices(_SPELL_KINDS, weights=_SPELL_WEIGHTS)[0]
                    self._spells[pupil_id] = (index + self._rng.randrange(1, 6), code)
                    away[pupil_id] = code
        return away

    def _class_day(
        self, klass: Class, day: dt.date, roster: list[int], away: Mapping[int, str]
    ) -> None:
        """All lessons of one class on one day; split subjects give one lesson per group."""
        for num, subject in enumerate(klass.plan[day.weekday()], 1):
            groups = klass.groups.get(subject)
            if groups is None:
                self._lesson(_Slot(klass, subject, 0, None, day, num), roster, away)
                continue
            for group_no, group_id in enumerate(groups, 1):
                audience = self._school.group_roster(group_id, day)
                self._lesson(_Slot(klass, subject, group_no, group_id, day, num), audience, away)

    def _lesson(self, slot: _Slot, audience: list[int], away: Mapping[int, str]) -> None:
        """Write a lesson with its works, absences and (from grade 2) marks."""
        self._lesson_id += 1
        kinds = self._work_kinds(slot)
        stamp = dt.datetime.combine(slot.day, dt.time(8, 30)) + dt.timedelta(
            minutes=55 * (slot.num - 1) + 40 + self._rng.randrange(360)
        )
        topic, homework = self._texts(slot, kinds)
        self._writer.add(
            schema.lesson,
            {
                "id": self._lesson_id,
                "class_id": slot.klass.id,
                "group_id": slot.group_id,
                "subject_id": slot.subject,
                "teacher_id": self._school.assignment[(slot.klass.id, slot.subject, slot.group_no)],
                "lesson_date": slot.day,
                "lesson_num": slot.num,
                "topic": topic,
                "homework": homework,
                "modified_at": stamp,
            },
        )
        present = self._attendance(audience, away, stamp)
        for kind in kinds:
            work_id, work_stamp = self._work(kind, stamp)
            if slot.klass.grade >= 2:
                self._marks(work_id, kind, present, slot, work_stamp)

    def _work_kinds(self, slot: _Slot) -> tuple[str, ...]:
        """One or two forms of work; dictations only in language lessons, no tests in grade 1."""
        first = self._rng.choices(_FIRST_KINDS, cum_weights=_FIRST_CUMULATIVE)[0]
        if first == "ДИК" and slot.subject not in _DICTATION_SUBJECTS:
            first = "СР"
        if slot.klass.grade == 1 and first in ("КР", "ДИК"):
            first = "ПР"
        if self._rng.random() >= _SECOND_WORK_RATE:
            return (first,)
        return first, _second_kind(self._rng, first)

    def _texts(self, slot: _Slot, kinds: Sequence[str]) -> tuple[str, str | None]:
        """A specific topic (consecutive lessons differ) and the homework, if any."""
        key = (slot.klass.id, slot.subject, slot.group_no)
        lesson_no = self._topic_no.get(key, 0)
        self._topic_no[key] = lesson_no + 1
        name = SUBJECTS[slot.subject - 1][0]
        topics = TOPICS[name]
        per_topic = max(
            1, math.ceil(slot.klass.hours[slot.subject] * _WEEKS_PER_YEAR / len(topics))
        )
        index = (slot.klass.grade * 3 + lesson_no // per_topic) % len(topics)
        topic = _topic_text(topics[index], lesson_no % per_topic, kinds)
        return topic, self._homework(name, index + 1, lesson_no)

    def _homework(self, subject_name: str, paragraph: int, lesson_no: int) -> str | None:
        """Homework text such as "§12, упр. 145" for most lessons, None for the rest."""
        if self._rng.random() >= HOMEWORK_RATE.get(subject_name, HOMEWORK_RATE_DEFAULT):
            return None
        template = self._rng.choice(HOMEWORK.get(subject_name, HOMEWORK_DEFAULT))
        n = 10 + 3 * lesson_no + self._rng.randrange(3)
        page = 8 + 2 * lesson_no
        return template.format(
            p=paragraph, n=n, n2=n + 2, n3=n + 5, q=3 + lesson_no % 4, pg=page, pg2=page + 6
        )

    def _attendance(
        self, audience: list[int], away: Mapping[int, str], stamp: dt.datetime
    ) -> list[int]:
        """Write the absences of one lesson; return the pupils present (late ones included)."""
        present: list[int] = []
        rand = self._rng.random
        add = self._writer.add
        for pupil_id in audience:
            code = away.get(pupil_id)
            if code is None:
                r = rand()
                code = "н" if r < _SKIP_RATE else "о" if r < _SKIP_RATE + _LATE_RATE else None
            if code is not None:
                add(
                    schema.absence,
                    {
                        "lesson_id": self._lesson_id,
                        "pupil_id": pupil_id,
                        "code": code,
                        "modified_at": stamp,
                    },
                )
            if code is None or code == "о":
                present.append(pupil_id)
        return present

    def _work(self, kind: str, stamp: dt.datetime) -> tuple[int, dt.datetime]:
        """Write one work of the current lesson; marks are sometimes entered days later."""
        self._work_id += 1
        if self._rng.random() < 0.06:
            stamp += dt.timedelta(days=self._rng.randrange(1, 5))
        self._writer.add(
            schema.lesson_work,
            {
                "id": self._work_id,
                "lesson_id": self._lesson_id,
                "work_kind": kind,
                "weight": _WORK_KINDS[kind][0],
                "modified_at": stamp,
            },
        )
        return self._work_id, stamp

    def _marks(
        self, work_id: int, kind: str, present: list[int], slot: _Slot, stamp: dt.datetime
    ) -> None:
        """Mark a share of the present pupils for one work and add the marks to the totals."""
        share = self._coverage[kind]
        weight = _WORK_KINDS[kind][0]
        quarter = self._school.cal.quarter[slot.day]
        rand = self._rng.random
        add = self._writer.add
        for pupil_id in present:
            if rand() >= share:
                continue
            digit, value = _mark_value(self._tiers[pupil_id], rand(), rand())
            self._mark_id += 1
            add(
                schema.mark,
                {
                    "id": self._mark_id,
                    "work_id": work_id,
                    "pupil_id": pupil_id,
                    "mark_value": value,
                    "modified_at": stamp,
                },
            )
            totals = self._totals.setdefault((pupil_id, slot.subject, quarter), [0, 0, 0])
            totals[0] += digit * weight
            totals[1] += weight
            totals[2] += 1


def _period_mark_rows(
    school: School, totals: Mapping[tuple[int, int, int], list[int]]
) -> Iterator[Row]:
    """Period marks of pupils (grades 2-11) enrolled at the end of each period that has ended."""
    classes = {k.id: k for k in school.classes}
    stays = sorted(school.stays, key=lambda s: (s.pupil_id, s.date_in))
    row_id = 0
    for period in PERIODS:
        if period.end > school.cal.end:
            continue
        for stay in stays:
            klass = classes[stay.class_id]
            if klass.grade < 2 or not stay.covers(period.end):
                continue
            for subject in sorted(klass.hours):
                row_id += 1
                yield {
                    "id": row_id,
                    "pupil_id": stay.pupil_id,
                    "subject_id": subject,
                    "period_id": period.id,
                    "mark_value": _period_value(totals, stay.pupil_id, subject, period.quarters),
                    "modified_at": stamp_on(period.end, 14, stay.pupil_id),
                }


def _period_value(
    totals: Mapping[tuple[int, int, int], list[int]],
    pupil_id: int,
    subject: int,
    quarters: Sequence[int],
) -> str:
    """The rounded weighted average of the period's marks, or 'н/а' with fewer than three."""
    weighted = weights = count = 0
    for quarter in quarters:
        found = totals.get((pupil_id, subject, quarter))
        if found is not None:
            weighted, weights, count = weighted + found[0], weights + found[1], count + found[2]
    if count < _FEW_MARKS:
        return "н/а"
    return str(min(5, max(2, math.floor(weighted / weights + 0.5))))
