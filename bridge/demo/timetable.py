"""Classes and their weekly timetable.

:func:`make_classes` draws the classes (grades, letters, curricula and the groups of split
subjects); :func:`build_timetable` gives each class a weekly plan in which, as far as possible, no
teacher teaches two lessons at once.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from typing import Final

from bridge.demo.model import Class
from bridge.demo.vocab import CURRICULUM, SPLIT, SPLIT_FROM_GRADE, SUBJECT_ID

_LETTERS: Final = "АБВГДЕЖЗИКЛМН"
_PUPILS_PER_CLASS: Final = 25
_TIMETABLE_ATTEMPTS: Final = 20


def _class_grades(n: int) -> list[int]:
    """Grades of ``n`` classes: a lone class is grade 5; grade 1 exists whenever n >= 2."""
    if n == 1:
        return [5]
    if n < 11:
        return [1 + round(i * 10 / (n - 1)) for i in range(n)]
    return sorted(1 + i % 11 for i in range(n))


def _letter(index: int) -> str:
    """Letter of the ``index``-th parallel class of a grade: А, Б, В, ... then А2, Б2, ..."""
    letter = _LETTERS[index % len(_LETTERS)]
    return letter if index < len(_LETTERS) else f"{letter}{index // len(_LETTERS) + 1}"


def make_classes(rng: random.Random, pupils: int) -> list[Class]:
    """About one class per 25 pupils, each with its curriculum, weekly plan and groups."""
    classes: list[Class] = []
    parallel: dict[int, int] = {}
    for grade in _class_grades(max(1, round(pupils / _PUPILS_PER_CLASS))):
        hours = {SUBJECT_ID[name]: h for name, h in CURRICULUM[grade]}
        klass = Class(len(classes) + 1, grade, _letter(parallel.get(grade, 0)), hours)
        parallel[grade] = parallel.get(grade, 0) + 1
        classes.append(klass)
    _add_groups(classes)
    return classes


def _add_groups(classes: Sequence[Class]) -> None:
    """Split English and Informatics into two groups in grades 5 and up."""
    next_id = 0
    for klass in classes:
        if klass.grade < SPLIT_FROM_GRADE:
            continue
        for subject in sorted(SPLIT & klass.hours.keys()):
            klass.groups[subject] = (next_id + 1, next_id + 2)
            next_id += 2


def build_timetable(
    rng: random.Random, classes: Sequence[Class], assignment: Mapping[tuple[int, int, int], int]
) -> None:
    """Give every class its weekly plan: the best of a few :class:`_Timetabler` attempts."""
    best: tuple[int, dict[int, tuple[tuple[int, ...], ...]]] | None = None
    for _ in range(_TIMETABLE_ATTEMPTS):
        plans = _Timetabler(rng, classes, assignment).build()
        clashes = _clashes(classes, assignment, plans)
        if best is None or clashes < best[0]:
            best = (clashes, plans)
    assert best is not None
    for klass in classes:
        klass.plan = best[1][klass.id]


def _clashes(
    classes: Sequence[Class],
    assignment: Mapping[tuple[int, int, int], int],
    plans: Mapping[int, tuple[tuple[int, ...], ...]],
) -> int:
    """How many lessons a week find their teacher already teaching elsewhere."""
    seen: set[tuple[int, int, int]] = set()
    clashes = 0
    for klass in classes:
        for weekday, subjects in enumerate(plans[klass.id]):
            for num, subject in enumerate(subjects, 1):
                for group in (1, 2) if subject in klass.groups else (0,):
                    key = (assignment[(klass.id, subject, group)], weekday, num)
                    clashes += key in seen
                    seen.add(key)
    return clashes


class _Timetabler:
    """Builds all weekly plans at once, lesson number by lesson number across the classes.

    Each lesson takes a subject whose teachers are free at that time; among those it prefers
    subjects not yet taught that day, then the most urgent ones (many hours left for the
    subject or its teachers), so a teacher is double-booked only when nothing else fits.
    """

    def __init__(
        self,
        rng: random.Random,
        classes: Sequence[Class],
        assignment: Mapping[tuple[int, int, int], int],
    ) -> None:
        self._rng = rng
        self._classes = classes
        self._teachers: dict[tuple[int, int], set[int]] = {}
        self._teacher_left: dict[int, int] = {}
        for (class_id, subject, _), teacher in assignment.items():
            self._teachers.setdefault((class_id, subject), set()).add(teacher)
        for k in classes:
            for subject, hours in k.hours.items():
                for teacher in self._teachers[(k.id, subject)]:
                    self._teacher_left[teacher] = self._teacher_left.get(teacher, 0) + hours
        self._left = {k.id: dict(k.hours) for k in classes}
        self._lengths = {k.id: _day_lengths(rng, sum(k.hours.values())) for k in classes}
        self._plans: dict[int, list[list[int]]] = {k.id: [[] for _ in range(5)] for k in classes}

    def build(self) -> dict[int, tuple[tuple[int, ...], ...]]:
        """Class id -> Monday..Friday -> subject id per lesson number."""
        longest = max(max(v) for v in self._lengths.values())
        for weekday in range(5):
            for num in range(1, longest + 1):
                self._fill(weekday, num)
        self._repair()
        return {cid: tuple(tuple(day) for day in plan) for cid, plan in self._plans.items()}

    def _repair(self) -> None:
        """Move clashing lessons by swapping them with another lesson of the same class."""
        occupied: dict[tuple[int, int, int], int] = {}
        for class_id, plan in self._plans.items():
            for weekday, num, subject in _lessons_of(plan):
                for teacher in self._teachers[(class_id, subject)]:
                    key = (teacher, weekday, num)
                    occupied[key] = occupied.get(key, 0) + 1
        for strict in (True, False):  # the second pass may put a subject twice in a day
            for class_id, plan in self._plans.items():
                for weekday, num, subject in list(_lessons_of(plan)):
                    teachers = self._teachers[(class_id, subject)]
                    if any(occupied[(t, weekday, num)] > 1 for t in teachers):
                        self._swap_away(class_id, (weekday, num), occupied, strict=strict)

    def _swap_away(
        self,
        class_id: int,
        slot: tuple[int, int],
        occupied: dict[tuple[int, int, int], int],
        *,
        strict: bool,
    ) -> None:
        """Swap the lesson at ``slot`` with one whose teachers are free at each other's time."""
        plan = self._plans[class_id]
        subject = plan[slot[0]][slot[1] - 1]
        mine = self._teachers[(class_id, subject)]
        for weekday, num, other in _lessons_of(plan):
            theirs = self._teachers[(class_id, other)]
            if other == subject or not _free(mine, theirs, (weekday, num), occupied):
                continue
            if not _free(theirs, mine, slot, occupied):
                continue
            doubles = subject in plan[weekday] or other in plan[slot[0]]
            if strict and weekday != slot[0] and doubles:
                continue
            for teacher in mine:
                occupied[(teacher, *slot)] -= 1
                occupied[(teacher, weekday, num)] = occupied.get((teacher, weekday, num), 0) + 1
            for teacher in theirs:
                occupied[(teacher, weekday, num)] -= 1
                occupied[(teacher, *slot)] = occupied.get((teacher, *slot), 0) + 1
            plan[weekday][num - 1], plan[slot[0]][slot[1] - 1] = subject, other
            return

    def _fill(self, weekday: int, num: int) -> None:
        """Choose the lesson ``num`` of ``weekday`` for every class that has one."""
        busy: set[int] = set()
        order = [k for k in self._classes if num <= self._lengths[k.id][weekday]]
        self._rng.shuffle(order)
        for klass in order:
            subject = self._pick(klass.id, weekday, busy)
            self._left[klass.id][subject] -= 1
            self._plans[klass.id][weekday].append(subject)
            for teacher in self._teachers[(klass.id, subject)]:
                self._teacher_left[teacher] -= 1
                busy.add(teacher)

    def _pick(self, class_id: int, weekday: int, busy: set[int]) -> int:
        """The subject for the class's next lesson on ``weekday``; ``busy`` teachers clash."""
        days_left = 5 - weekday
        today = self._plans[class_id][weekday]
        left = self._left[class_id]

        def rank(subject: int) -> tuple[bool, bool, float]:
            teachers = self._teachers[(class_id, subject)]
            scarce = max(self._teacher_left[t] for t in teachers) / (6 * days_left)
            urgency = left[subject] / days_left + scarce + self._rng.random() / 2
            return bool(teachers & busy), subject in today, -urgency

        return min((s for s in sorted(left) if left[s]), key=rank)


def _lessons_of(plan: Sequence[Sequence[int]]) -> Iterator[tuple[int, int, int]]:
    """(weekday, lesson number, subject) of every lesson in a weekly plan."""
    for weekday, subjects in enumerate(plan):
        for num, subject in enumerate(subjects, 1):
            yield weekday, num, subject


def _free(
    moving: set[int],
    leaving: set[int],
    slot: tuple[int, int],
    occupied: Mapping[tuple[int, int, int], int],
) -> bool:
    """True when the ``moving`` teachers are free at ``slot`` once ``leaving`` ones have left."""
    return all(occupied.get((t, *slot), 0) - (t in leaving) == 0 for t in moving)


def _day_lengths(rng: random.Random, total: int) -> list[int]:
    """Lessons per weekday for ``total`` weekly hours, as even as possible, in random order."""
    lengths = [total // 5 + (1 if d < total % 5 else 0) for d in range(5)]
    rng.shuffle(lengths)
    return lengths
