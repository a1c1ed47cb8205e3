"""Teachers: how many, which subjects each is qualified for, who teaches which class and group.

Primary classes have their own teacher for the core subjects; specialists share the rest by
load, and every class gets a form teacher.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Final

from bridge.demo.model import Class, Person
from bridge.demo.people import adult
from bridge.demo.vocab import PRIMARY_SPECIALISTS, SPLIT, SUBJECTS

_PUPILS_PER_TEACHER: Final = 18
Unit = tuple[int, int, int, int]  # class id, subject id, group no (0 = whole class), hours


def hire_staff(
    rng: random.Random, classes: Sequence[Class], pupils: int
) -> tuple[list[Person], dict[tuple[int, int, int], int]]:
    """Teachers (about one per 18 pupils) and who teaches each class, subject and group."""
    teachers: list[Person] = []
    assignment: dict[tuple[int, int, int], int] = {}
    specialist: list[Unit] = []
    for klass in classes:
        primary = None
        if klass.grade <= 4:
            teachers.append(adult(rng, female_share=0.95))
            primary = klass.form_teacher_id = len(teachers)
        specialist.extend(_class_units(klass, primary, assignment))
    count = max(2, round(pupils / _PUPILS_PER_TEACHER) - len(teachers))
    first_id = len(teachers) + 1
    teachers.extend(adult(rng, female_share=0.8) for _ in range(count))
    _assign(specialist, _qualifications(specialist, count), first_id, assignment)
    _form_teachers(classes, assignment)
    return teachers, assignment


def _class_units(
    klass: Class, primary: int | None, assignment: dict[tuple[int, int, int], int]
) -> list[Unit]:
    """Give a primary class's core subjects to its teacher; return the units left to specialists."""
    left: list[Unit] = []
    for subject, hours in sorted(klass.hours.items()):
        for group in (1, 2) if subject in klass.groups else (0,):
            if primary is not None and SUBJECTS[subject - 1][0] not in PRIMARY_SPECIALISTS:
                assignment[(klass.id, subject, group)] = primary
            else:
                left.append((klass.id, subject, group, hours))
    return left


def _qualifications(units: Sequence[Unit], count: int) -> list[set[int]]:
    """The subjects each of ``count`` specialists teaches, spreading the hours evenly.

    Every subject gets teachers in proportion to its hours (split subjects at least two, so
    that the two groups of a class differ). With fewer teachers than subjects (small schools)
    teachers take several subjects, balanced by load.
    """
    hours: dict[int, int] = {}
    for _, subject, _, h in units:
        hours[subject] = hours.get(subject, 0) + h
    quota = {s: 2 if s in SPLIT else 1 for s in hours}
    while sum(quota.values()) < count:  # D'Hondt: the next teacher goes to the busiest subject
        quota[max(sorted(hours), key=lambda s: hours[s] / quota[s])] += 1
    pieces = sorted(
        ((hours[s] / quota[s], s) for s in quota for _ in range(quota[s])), reverse=True
    )
    qualified: list[set[int]] = [set() for _ in range(count)]
    load = [0.0] * count
    for share, subject in pieces:  # largest piece to the least loaded teacher without it
        free = [i for i in range(count) if subject not in qualified[i]]
        best = min(free, key=lambda i: (load[i], i))
        qualified[best].add(subject)
        load[best] += share
    return qualified


def _assign(
    units: Sequence[Unit],
    qualified: Sequence[set[int]],
    first_id: int,
    assignment: dict[tuple[int, int, int], int],
) -> None:
    """Give each unit to the least loaded qualified teacher (the two groups get different ones)."""
    load = [0] * len(qualified)
    for class_id, subject, group, hours in units:
        sibling = assignment.get((class_id, subject, 3 - group)) if group else None
        candidates = [
            i for i, q in enumerate(qualified) if subject in q and first_id + i != sibling
        ]
        best = min(candidates, key=lambda i: (load[i], i))
        load[best] += hours
        assignment[(class_id, subject, group)] = first_id + best


def _form_teachers(
    classes: Sequence[Class], assignment: Mapping[tuple[int, int, int], int]
) -> None:
    """Make the busiest free teacher of each class from grade 5 its form teacher."""
    taken = {k.form_teacher_id for k in classes if k.form_teacher_id is not None}
    for klass in classes:
        if klass.form_teacher_id is not None:
            continue
        load: dict[int, int] = {}
        for (class_id, subject, _), teacher in assignment.items():
            if class_id == klass.id:
                load[teacher] = load.get(teacher, 0) + klass.hours[subject]
        ranked = sorted(load, key=lambda t: (-load[t], t))
        klass.form_teacher_id = next((t for t in ranked if t not in taken), ranked[0])
        taken.add(klass.form_teacher_id)
