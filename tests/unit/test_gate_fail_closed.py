"""The gate and the planner fail closed: an unclear consent or a rejected row of a pupil,
enrolment or guardian link holds the pupil's records and deletes what was published."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bridge.core import gate
from bridge.core.builder import RowRejected
from bridge.core.gate import Context, MissingReference, compile_check
from bridge.core.mapping import load_mappings, sort_key_part
from bridge.core.model import HoldReason, Op, Record, Rejection, StateEntry
from bridge.core.plan import decide, diff_sorted

MAPPINGS = load_mappings(Path("mappings"))


def record(entity: str, key: str, **payload: Any) -> Record:
    """A record with the given payload (and consent, for a pupil, in its attrs)."""
    attrs = {"consent": payload.pop("consent")} if "consent" in payload else {}
    return Record(entity, key, sort_key_part(int(key)), payload, "fp", attrs)


def entry(entity: str, key: str) -> StateEntry:
    """A delivered record in the state store."""
    return StateEntry(entity, key, sort_key_part(int(key)), "fp", "active", pupil_key=key)


@pytest.mark.parametrize(
    ("consent", "want"),
    [
        (True, None),
        (False, HoldReason.NO_CONSENT),
        (None, HoldReason.NO_CONSENT),
        ("unclear", HoldReason.CONSENT_UNCLEAR),
        (1, HoldReason.CONSENT_UNCLEAR),
        (2, HoldReason.CONSENT_UNCLEAR),
    ],
)
def test_only_a_clear_yes_is_consent(consent: object, want: HoldReason | None) -> None:
    """A pupil passes only with consent True; no or nothing is no_consent, anything else
    (the field's fallback, a stray number) is consent_unclear, and their marks say so."""
    ctx = Context()
    pupil = record("pupil", "7", consent=consent)
    assert gate.RULES["pupil"](pupil, ctx) == want
    gate.LEARNERS["pupil"](ctx, pupil)
    assert ctx.consent["7"] is (want is None)
    ctx.lesson["1"] = ctx.work_lesson["1"] = ("2025-09-02", "5")  # work → its lesson's pair
    ctx.stays["7"] = [("5", "2025-09-01", None)]
    mark = record("mark", "9", work="1", pupil="7", value="5")
    assert gate.COMPILED_RULES["mark"](ctx)(mark) == want


@pytest.mark.parametrize("entity", ["pupil", "enrollment", "guardian_link"])
def test_a_rejected_row_of_an_entity_the_gate_reads_closes(entity: str) -> None:
    """A rejected pupil, enrolment or link row carries its hold reason; a pupil row also
    closes the pupil, so references to it are held for that reason, not rejected."""
    ctx = Context()
    reason = gate.reject_row(ctx, entity, "7")
    assert reason == gate.ROW_REJECTED[entity]
    check = compile_check("absence", {"pupil": "pupil", "lesson": "lesson"}, ctx)
    ctx.lesson["1"] = ("2025-09-02", "5")
    verdict = check(record("absence", "3", lesson="1", pupil="7", code="н"))
    if entity == "pupil":
        assert verdict is HoldReason.PUPIL_ROW_REJECTED
    else:
        assert isinstance(verdict, MissingReference)


def test_a_row_of_another_entity_or_without_a_key_does_not_close() -> None:
    """A rejected lesson row, or a row whose key cannot be read, closes nobody."""
    ctx = Context()
    assert gate.reject_row(ctx, "lesson", "7") is None
    assert gate.reject_row(ctx, "pupil", "") is None
    assert ctx.closed == {}


def test_a_closed_pupil_holds_every_record_with_the_first_cause() -> None:
    """A pupil closed for a rejected enrolment holds themselves, their links and period marks
    with that cause, and a guardian only they had."""
    ctx = Context()
    ctx.close("7", HoldReason.ENROLLMENT_ROW_REJECTED)
    ctx.close("7", HoldReason.GUARDIAN_LINK_ROW_REJECTED)
    gate.LEARNERS["pupil"](ctx, record("pupil", "7", consent=True))
    ctx.allow_guardians([("7", "4")])
    why = HoldReason.ENROLLMENT_ROW_REJECTED
    assert gate.RULES["pupil"](record("pupil", "7", consent=True), ctx) is why
    assert gate.RULES["guardian_link"](record("guardian_link", "2", pupil="7"), ctx) is why
    assert gate.RULES["guardian"](record("guardian", "4"), ctx) is why


@pytest.mark.parametrize("complete", [True, False], ids=["full", "incremental"])
def test_a_closing_rejection_deletes_what_was_published(complete: bool) -> None:
    """A rejection that closes deletes its delivered record, for its cause, in full and
    incremental runs; one that does not close leaves the portal as it is."""
    closing = Rejection(
        "pupil",
        "pupil",
        "7",
        "first_name",
        "text contains control characters",
        sort_key_part(7),
        closes=HoldReason.PUPIL_ROW_REJECTED,
    )
    change = decide(closing, entry("pupil", "7"), complete)
    assert change is not None
    assert (change.op, change.key, change.reason) == (Op.DELETE, "7", "pupil_row_rejected")
    assert decide(closing, None, complete) is None
    plain = Rejection("lesson", "lesson", "7", "topic", "bad", sort_key_part(7))
    assert decide(plain, entry("lesson", "7"), complete) is None


def test_the_merge_deletes_the_record_of_a_closing_rejection() -> None:
    """The full run's merge deletes the delivered record of a closing rejection."""
    closing = Rejection(
        "enrollment",
        "pupil_move",
        "7",
        "date_to",
        "before",
        sort_key_part(7),
        closes=HoldReason.ENROLLMENT_ROW_REJECTED,
    )
    state = iter([(sort_key_part(7), "fp", "active")])
    out = list(diff_sorted("enrollment", [closing], state))
    deletes = [c for c in out if not isinstance(c, Rejection)]
    assert [(c.op, c.key, c.reason) for c in deletes] == [  # type: ignore[union-attr]
        (Op.DELETE, "7", "enrollment_row_rejected")
    ]


@pytest.mark.parametrize(
    ("date_in", "date_out", "rejected"),
    [
        ("2025-09-01", "2025-08-31", True),
        ("2025-09-01", "2025-09-01", False),
        ("2025-09-01", None, False),
    ],
)
def test_an_enrolment_ending_before_it_begins_is_rejected(
    date_in: str, date_out: str | None, rejected: bool
) -> None:
    """The shipped enrolment mapping rejects date_out before date_in (field date_to); a stay
    of one day or an open stay is fine."""
    mapping = MAPPINGS["enrollment"]
    values = {
        "id": 3,
        "pupil_id": 7,
        "class_id": 1,
        "date_in": date_in,
        "order_in": "№1",
        "date_out": date_out,
        "order_out": None,
        "modified_at": None,
    }
    row = tuple(values.get(c) for c in mapping.columns)
    if not rejected:
        assert mapping.build(row).payload["date_to"] == date_out
        return
    with pytest.raises(RowRejected) as caught:
        mapping.build(row)
    assert (caught.value.key, caught.value.field) == ("3", "date_to")
    assert "before" in caught.value.reason
