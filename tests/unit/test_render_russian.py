"""The CLI's words for facts the core hands over (guard holds, hold reasons) in English and in
Russian: English is exactly the core's own wording, which the JSON keeps."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from bridge import i18n
from bridge.cli.render.explain import HOLD_WORDS, hold_words
from bridge.cli.render.holds import guard_hold_text, portal_hold_text
from bridge.cli.render.plans import HOLD_LABELS, reason_table
from bridge.cli.render.rejections import rejection_words
from bridge.core.guard import GuardHold
from bridge.core.model import HoldReason
from bridge.core.reconcile import PortalHold

GUARD_HOLDS = [
    GuardHold("mark", 30, 200),
    GuardHold("pupil", 25, 100, archives=5),
    GuardHold("enrollment", 0, 90, closures=40),
    GuardHold("pupil", 0, 0),
    GuardHold("enrollment", 28, 28, class_key="12"),
    GuardHold("pupil", 3, 28, class_key="12", archives=25),
    GuardHold("enrollment", 0, 28, class_key="7", closures=28),
]
PORTAL_HOLDS = [PortalHold(None, 1, 1), PortalHold(None, 900, 900), PortalHold("mark", 150, 600)]


@pytest.fixture
def in_russian() -> Iterator[None]:
    i18n.activate("ru")
    yield
    i18n.activate("en")


@pytest.mark.parametrize("hold", GUARD_HOLDS)
def test_a_guard_hold_in_english_is_the_cores_wording(hold: GuardHold) -> None:
    """In English the CLI words a guard hold exactly as ``describe()`` (the JSON's reasons)."""
    i18n.activate("en")
    assert guard_hold_text(hold) == hold.describe()


@pytest.mark.parametrize("hold", PORTAL_HOLDS)
def test_a_read_back_hold_in_english_is_the_cores_wording(hold: PortalHold) -> None:
    """In English the CLI words a read-back hold exactly as ``describe()``."""
    i18n.activate("en")
    assert portal_hold_text(hold) == hold.describe()


@pytest.mark.usefixtures("in_russian")
def test_guard_holds_in_russian() -> None:
    """In Russian each hold says what the plan would do, with the numbers, in Russian."""
    assert (
        guard_hold_text(GuardHold("mark", 30, 200)) == "удалил бы 30 из 200 записей mark (15.0 %)"
    )
    assert guard_hold_text(GuardHold("mark", 30, 21)).endswith("из 21 записи mark (142.9 %)")
    assert (
        guard_hold_text(GuardHold("pupil", 3, 28, class_key="12", archives=25))
        == "удалил бы 3 и перевёл бы в архив 25 записей pupil класса 12: в классе не осталось "
        "бы ни одного ученика"
    )
    assert guard_hold_text(GuardHold("enrollment", 28, 28, class_key="12")) == (
        "удалил бы все записи enrollment класса 12 (28)"
    )
    assert portal_hold_text(PortalHold("mark", 150, 600)) == (
        "на портале нет 150 из 600 доставленных записей mark (25.0 %)"
    )
    assert portal_hold_text(PortalHold(None, 1, 1)).endswith("доставлена 1")


def test_every_hold_reason_has_words_and_a_label() -> None:
    """A hold reason the core adds without words for `explain` or a label for the plan's table
    fails here (it would print an empty explanation)."""
    assert set(HOLD_WORDS) == set(HoldReason)
    assert set(HOLD_LABELS) == set(HoldReason)


@pytest.mark.usefixtures("in_russian")
def test_the_held_back_table_names_reasons_in_russian_with_their_codes() -> None:
    """In Russian the plan's held-back table says why in words and keeps the code (what the
    logs and docs name); `explain` words each reason."""
    lines = reason_table("Отложено:", {"mark": {"no_consent": 12, "grade_1_mark": 3}}, HOLD_LABELS)
    assert (
        lines[2]
        == "  mark          отметка в 1 классе (grade_1_mark) 3, нет согласия (no_consent) 12"
    )
    assert hold_words("not_matched").startswith("ученик не привязан")


def test_the_held_back_table_in_english_prints_the_codes() -> None:
    """In English the table is as before: codes and counts."""
    i18n.activate("en")
    lines = reason_table("Held:", {"mark": {"no_consent": 12, "grade_1_mark": 3}}, HOLD_LABELS)
    assert lines[2] == "  mark          grade_1_mark 3, no_consent 12"


REJECTIONS = [
    "missing value",
    "text is not valid UTF-8",
    "text contains control characters",
    "text is 312 characters long, over the limit of 255",
    "text is N characters long, over the limit of N",
    "not a whole number: 'abc'",
    "not a whole number:",
    "not a yes/no value: '…'",
    "not a valid date '2025-13-01'",
    "not a valid date",
    "value not in the value map of the mapping",
    "value not in the value map of the mapping: '6'",
    "empty key",
    "key contains control characters",
    "could not be converted",
    "missing key (NULL in a key column)",
    "refers to lesson 17, which was rejected",
    "refers to pupil N, which is missing from the source",
    "date_to is before date_from: the interval ends before it begins",
    "duplicate key: an earlier row has the same key and was kept",
    "12 is outside 1..11",
    "'1899-01-01' is outside 1990-01-01..2100-12-31",
]
"""The core's wordings of a rejection, as rows give them and as the plan groups them."""


@pytest.mark.parametrize("reason", REJECTIONS)
def test_a_rejection_in_english_is_the_cores_wording(reason: str) -> None:
    """In English the CLI prints the core's wording of a rejection unchanged."""
    i18n.activate("en")
    assert rejection_words(reason) == reason


@pytest.mark.usefixtures("in_russian")
@pytest.mark.parametrize("reason", REJECTIONS)
def test_every_rejection_the_core_words_is_said_in_russian(reason: str) -> None:
    """In Russian each wording is recognised and said in Russian with the same facts."""
    said = rejection_words(reason)
    assert said != reason
    assert re.search("[а-я]", said)
    assert set(re.findall(r"\d+", said)) == set(re.findall(r"\d+", reason))


@pytest.mark.usefixtures("in_russian")
def test_an_unknown_rejection_is_printed_as_it_is() -> None:
    """A wording no pattern knows (a core newer than the catalog) is printed unchanged."""
    assert rejection_words("a brand new reason 7") == "a brand new reason 7"
    assert rejection_words("text is 3 characters long, over the limit of 2") == (
        "длина текста 3 симв., больше предела 2"
    )
