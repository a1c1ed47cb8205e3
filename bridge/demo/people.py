"""People: names and birth dates of adults and children, and the pupils with their families.

:func:`make_people` draws every pupil (name, ability tier, consent) with a family of one or two
guardians (with phones and e-mails), siblings sharing a family; :func:`adult` also serves for
teachers.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from typing import Final

from bridge.demo.journal import TIER_WEIGHTS
from bridge.demo.model import Class, Family, Person, Pupil, Row, Stay, stamp_on
from bridge.demo.vocab import (
    ADULT_FEMALE,
    ADULT_MALE,
    CHILD_FEMALE,
    CHILD_MALE,
    MAIL_DOMAINS,
    SURNAMES,
    TRANSLIT,
    YEAR_BEGIN,
)


def _female_surname(male: str) -> str:
    """The female form of a Russian surname (Иванов -> Иванова, Островский -> Островская)."""
    if male.endswith(("ов", "ев", "ёв", "ин", "ын")):
        return male + "а"
    if male.endswith(("ий", "ой")):
        return male[:-2] + "ая"
    return male


def _adult_birth(rng: random.Random) -> dt.date:
    """A birth date between 1962 and 2000."""
    return dt.date(1962, 1, 1) + dt.timedelta(days=rng.randrange(38 * 365))


def adult(rng: random.Random, female_share: float) -> Person:
    """A random adult with a gendered surname and patronymic."""
    surname = rng.choice(SURNAMES)
    patronymics = rng.choice(ADULT_MALE)
    if rng.random() < female_share:
        first = rng.choice(ADULT_FEMALE)
        return Person(_female_surname(surname), first, patronymics[2], "ж", _adult_birth(rng))
    first = rng.choice(ADULT_MALE)[0]
    return Person(surname, first, patronymics[1], "м", _adult_birth(rng))


def share_count(total: int, share: float) -> int:
    """How many of ``total`` make up ``share`` (at least one from ten up, none below)."""
    return max(1, round(total * share)) if total >= 10 else 0


# Pupils and guardians ------------------------------------------------------------------------

_SIBLING_RATE: Final = 0.12
_MAX_CHILDREN: Final = 3
_HOUSEHOLDS: Final = (
    (("мать", "ж"), ("отец", "м")),
    (("мать", "ж"),),
    (("отец", "м"),),
    (("опекун", "ж"),),
)
_HOUSEHOLD_WEIGHTS: Final = (70, 22, 5, 3)


class _GuardianBook:
    """Families with their guardian rows and the pupil_guardian links, built pupil by pupil."""

    def __init__(self) -> None:
        self.families: list[Family] = []
        self.guardians: list[Row] = []
        self.links: list[Row] = []

    def family_for(self, rng: random.Random, created: dt.datetime) -> Family:
        """A family for the next pupil: sometimes an existing one (siblings), else a new one."""
        if self.families and rng.random() < _SIBLING_RATE:
            family = rng.choice(self.families)
            if family.children < _MAX_CHILDREN:
                return family
        return self._new_family(rng, created)

    def link(self, pupil_id: int, family: Family, created: dt.datetime) -> None:
        """Link the pupil to every guardian of the family."""
        family.children += 1
        for guardian_id, relation in family.guardians:
            self.links.append(
                {
                    "id": len(self.links) + 1,
                    "pupil_id": pupil_id,
                    "guardian_id": guardian_id,
                    "relation": relation,
                    "modified_at": created,
                }
            )

    def _new_family(self, rng: random.Random, created: dt.datetime) -> Family:
        """A new family with one or two guardians, whose rows are added to the book."""
        family = Family(rng.choice(SURNAMES), rng.choice(ADULT_MALE))
        self.families.append(family)
        for relation, _ in rng.choices(_HOUSEHOLDS, weights=_HOUSEHOLD_WEIGHTS)[0]:
            guardian_id = len(self.guardians) + 1
            last, first, middle = _guardian_name(rng, family, relation)
            self.guardians.append(
                {
                    "id": guardian_id,
                    "last_name": last,
                    "first_name": first,
                    "middle_name": middle,
                    "phone": _phone(rng) if rng.random() < 0.95 else None,
                    "email": _email(rng, last) if rng.random() < 0.45 else None,
                    "modified_at": created,
                }
            )
            family.guardians.append((guardian_id, relation))
        return family


def _guardian_name(rng: random.Random, family: Family, relation: str) -> tuple[str, str, str]:
    """Last, first and middle name of a father, a mother or a (grandmother) guardian."""
    if relation == "отец":
        return family.surname, family.father[0], rng.choice(ADULT_MALE)[1]
    own = family.surname if relation == "мать" and rng.random() < 0.9 else rng.choice(SURNAMES)
    return _female_surname(own), rng.choice(ADULT_FEMALE), rng.choice(ADULT_MALE)[2]


def _phone(rng: random.Random) -> str:
    """A Russian mobile number such as "+7 912 345-67-89"."""
    return (
        f"+7 9{rng.randrange(100):02d} {rng.randrange(1000):03d}-"
        f"{rng.randrange(100):02d}-{rng.randrange(100):02d}"
    )


def _email(rng: random.Random, last_name: str) -> str:
    """A plausible personal e-mail address built from the transliterated surname."""
    login = "".join(TRANSLIT.get(ch, ch) for ch in last_name.lower()).replace("-", "")
    return f"{login}{rng.randrange(70, 100)}@{rng.choice(MAIL_DOMAINS)}"


def make_people(
    rng: random.Random, stays: Sequence[Stay], classes: Sequence[Class]
) -> tuple[list[Pupil], list[Row], list[Row]]:
    """Pupils (by id) with their families: guardian rows and pupil_guardian rows."""
    grade = {k.id: k.grade for k in classes}
    first: dict[int, Stay] = {}
    for stay in stays:
        first.setdefault(stay.pupil_id, stay)
    without_consent = set(rng.sample(range(1, len(first) + 1), share_count(len(first), 0.02)))
    book = _GuardianBook()
    pupils: list[Pupil] = []
    for pupil_id in range(1, len(first) + 1):
        stay = first[pupil_id]
        created = stamp_on(stay.date_in, 9, pupil_id)
        family = book.family_for(rng, created)
        person = _child(rng, family, grade[stay.class_id])
        consent = (
            None if pupil_id in without_consent else _consent_date(rng, grade[stay.class_id], stay)
        )
        tier = rng.choices(range(len(TIER_WEIGHTS)), weights=TIER_WEIGHTS)[0]
        pupils.append(Pupil(pupil_id, person, tier, consent, created))
        book.link(pupil_id, family, created)
    return pupils, book.guardians, book.links


def _child(rng: random.Random, family: Family, grade: int) -> Person:
    """A child of the family with the gendered surname and the father's patronymic."""
    born = dt.date(2018 - grade, 12, 1) + dt.timedelta(days=rng.randrange(365))
    if rng.random() < 0.05:  # started school late or repeated a year
        born -= dt.timedelta(days=365)
    if rng.random() < 0.5:
        return Person(family.surname, rng.choice(CHILD_MALE), family.father[1], "м", born)
    surname = _female_surname(family.surname)
    return Person(surname, rng.choice(CHILD_FEMALE), family.father[2], "ж", born)


def _consent_date(rng: random.Random, grade: int, stay: Stay) -> dt.date:
    """When the written consent was signed: at first enrolment, never after it."""
    if stay.date_in == YEAR_BEGIN:
        return dt.date(2026 - grade, 8, 20) + dt.timedelta(days=rng.randrange(12))
    return stay.date_in - dt.timedelta(days=rng.randrange(5))
