"""Matching the school's contingent with the portal's: the mismatches real schools have are
reported, never guessed."""

from __future__ import annotations

import pytest

from bridge.core.matching import (
    Match,
    Matches,
    MatchStatus,
    PortalNamed,
    PortalPerson,
    SchoolNamed,
    SchoolPupil,
    Settled,
    fold,
    fold_class,
    match_named,
    match_pupils,
)

CLASS_5A, CLASS_6B = "g5a", "g6b"
PORTAL_CLASSES = [
    PortalNamed(CLASS_5A, "5 А", 2025),
    PortalNamed(CLASS_6B, "6Б", 2025),
    PortalNamed("g7v-old", "7В", 2024),
]
PERSONS = [
    PortalPerson("p1", "Иванов", "Пётр", "2014-03-01", frozenset({CLASS_5A})),
    PortalPerson("p2", "Смирнова", "Анна", "2014-05-02", frozenset({CLASS_5A})),
    # Twins of name and birth date in one class.
    PortalPerson("p3", "Кузнецов", "Илья", "2014-07-07", frozenset({CLASS_5A})),
    PortalPerson("p4", "Кузнецов", "Илья", "2014-07-07", frozenset({CLASS_5A})),
    # Spelled otherwise on the portal.
    PortalPerson("p5", "Попова", "Дарья", "2013-01-09", frozenset({CLASS_6B})),
    # The same name and birthday as p1, in another class.
    PortalPerson("p6", "Иванов", "Пётр", "2014-03-01", frozenset({CLASS_6B})),
]


def pupil(key: str, names: str, born: str, cls: str | None, pid: str | None = None) -> SchoolPupil:
    last, first = names.split()
    return SchoolPupil(key, last, first, born, cls, pid)


def by_key(found: list[Match]) -> dict[str, Match]:
    return {m.key: m for m in found}


def test_names_fold_case_spaces_and_yo_and_class_names_their_noise() -> None:
    assert fold("  ПЁТР  Иванович ") == fold("петр иванович")
    assert fold_class("5 А") == fold_class("5-а") == fold_class("5A") == fold_class("«5а»")
    assert fold_class("5А") != fold_class("5Б")
    assert fold_class("10А") != fold_class("1 0 Б")


def test_classes_by_name_and_year_and_by_the_schools_table() -> None:
    school = [
        SchoolNamed("1", "5А", 2025),
        SchoolNamed("2", "6 «Б»", 2025),
        SchoolNamed("3", "7В", 2025),  # the portal's 7В is of another year
        SchoolNamed("4", "8 углублённый", 2025),
    ]
    found = by_key(
        match_named("class", school, PORTAL_CLASSES, {}, {"8 углублённый": "6Б"}, folding="class")
    )
    assert found["1"].status is MatchStatus.MATCHED
    assert found["1"].portal_id == CLASS_5A
    # Two school classes claim 6Б: neither gets it.
    assert found["2"].status is found["4"].status is MatchStatus.AMBIGUOUS
    assert found["2"].candidates == (CLASS_6B,)
    assert found["3"].status is MatchStatus.MISSING
    assert found["3"].portal_id is None


def test_pupils_by_name_and_birth_date_within_their_matched_class() -> None:
    classes = {"c5a": CLASS_5A, "c6b": CLASS_6B}
    pupils = [
        pupil("1", "ИВАНОВ Петр", "2014-03-01", "c5a"),  # ё folded, case folded
        pupil("2", "Смирнова Анна", "2014-05-02", "c5a"),
        pupil("3", "Кузнецов Илья", "2014-07-07", "c5a"),  # twins on the portal
        pupil("4", "Попова Дарина", "2013-01-09", "c6b"),  # spelled otherwise
        pupil("5", "Сидоров Олег", "2014-02-02", "c5a"),  # not on the portal
        pupil("6", "Смирнова Анна", "2014-05-02", "c9z"),  # class not matched
        pupil("7", "Смирнова Анна", "2014-05-03", "c5a"),  # a birth date mistyped
    ]
    found = by_key(match_pupils(pupils, PERSONS, classes, {}))
    assert (found["1"].status, found["1"].portal_id) == (MatchStatus.MATCHED, "p1")
    assert (found["2"].status, found["2"].portal_id) == (MatchStatus.MATCHED, "p2")
    assert found["3"].status is MatchStatus.AMBIGUOUS
    assert found["3"].portal_id is None
    assert found["3"].candidates == ("p3", "p4")
    assert found["4"].status is MatchStatus.MISSING
    assert found["4"].candidates == ("p5",)
    assert found["5"].status is MatchStatus.MISSING
    assert found["5"].candidates == ()
    assert found["6"].status is MatchStatus.MISSING
    assert found["6"].rule == "class not matched"
    assert found["7"].status is MatchStatus.MISSING
    assert found["7"].candidates == ("p2",)


def test_the_admins_decision_stands_and_a_stored_id_is_not_looked_for_by_name() -> None:
    classes = {"c5a": CLASS_5A}
    pupils = [
        pupil("3", "Кузнецов Илья", "2014-07-07", "c5a"),
        pupil("1", "Иванов Пётр", "2014-03-01", "c5a"),
        pupil("2", "Смирнова Анна", "2014-05-02", "c5a", pid="p2"),
        pupil("8", "Смирнова Анна", "2014-05-02", "c5a", pid="gone"),
        pupil("9", "Кузнецов Илья", "2014-07-07", "c5a"),
    ]
    settled = {
        "3": Settled("pupil", "3", MatchStatus.CONFIRMED, "p4"),
        "1": Settled("pupil", "1", MatchStatus.REJECTED),
        "9": Settled("pupil", "9", MatchStatus.CONFIRMED, "p-removed"),
    }
    found = by_key(match_pupils(pupils, PERSONS, classes, settled))
    assert (found["3"].status, found["3"].portal_id) == (MatchStatus.CONFIRMED, "p4")
    assert found["1"].status is MatchStatus.REJECTED
    assert found["1"].portal_id is None
    assert (found["2"].status, found["2"].rule) == (MatchStatus.MATCHED, "portal id in ASIOU")
    assert found["8"].status is MatchStatus.MISSING
    assert found["9"].status is MatchStatus.MISSING
    assert found["9"].rule == "confirmed id not on the portal"


def test_one_portal_person_claimed_twice_is_ambiguous_for_both() -> None:
    pupils = [
        pupil("1", "Иванов Пётр", "2014-03-01", "c5a"),
        pupil("2", "Иванов Петр", "2014-03-01", "c5a"),
    ]
    found = by_key(match_pupils(pupils, PERSONS, {"c5a": CLASS_5A}, {}))
    assert {m.status for m in found.values()} == {MatchStatus.AMBIGUOUS}
    assert found["1"].candidates == found["2"].candidates == ("p1",)


@pytest.mark.parametrize(
    ("status", "usable"),
    [
        (MatchStatus.MATCHED, True),
        (MatchStatus.CONFIRMED, True),
        (MatchStatus.AMBIGUOUS, False),
        (MatchStatus.MISSING, False),
        (MatchStatus.REJECTED, False),
    ],
)
def test_only_a_match_or_a_confirmation_gives_an_id(status: MatchStatus, usable: bool) -> None:
    matches = Matches()
    matches.add([Match("pupil", "1", status, "p1" if usable else None)])
    assert (matches.portal_id("pupil", "1") is not None) is usable
    assert ("1" in matches.unusable("pupil")) is not usable
    assert matches.counts() == {"pupil": {status.value: 1}}
    assert matches.portal_id("pupil", "other") is None
