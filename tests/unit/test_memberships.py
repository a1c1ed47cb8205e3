"""Subgroup memberships close when their pupil leaves the group's class, and dated stays
become due for re-gating when their day comes (issue 9, items 9 and 8)."""

from __future__ import annotations

from bridge.core import gate
from bridge.core.gate import Context
from bridge.core.model import Record


def member(date_to: str | None = None) -> Record:
    payload = {"group": "g1", "pupil": "p1", "date_from": "2025-09-01", "date_to": date_to}
    return Record("group_member", "m1", "im1", payload, "fp")


def context(*stays: tuple[str, str, str | None], as_of: str = "2025-12-01") -> Context:
    ctx = Context(as_of=as_of)
    ctx.group_class["g1"] = "c5"
    ctx.stays["p1"] = list(stays)
    return ctx


def test_an_open_membership_closes_on_the_day_the_pupil_left_the_class() -> None:
    """A pupil whose every stay in the group's class ended: the membership ends that day,
    with a fingerprint of its own (so the closure is sent once)."""
    ctx = context(("c5", "2025-09-01", "2025-10-15"))
    closed = gate.derive(member(), ctx)
    assert closed.payload["date_to"] == "2025-10-15"
    assert closed.fingerprint != member().fingerprint


def test_a_readmitted_pupil_keeps_the_membership_open() -> None:
    """A stay open again in the class leaves the membership as the source has it."""
    ctx = context(("c5", "2025-09-01", "2025-10-15"), ("c5", "2025-11-10", None))
    assert gate.derive(member(), ctx) == member()


def test_a_withdrawal_dated_ahead_does_not_close_yet() -> None:
    """A stay ending after the run's day is still open on that day."""
    ctx = context(("c5", "2025-09-01", "2025-12-20"))
    assert gate.derive(member(), ctx).payload["date_to"] is None


def test_a_membership_the_school_closed_is_left_as_it_is() -> None:
    """A membership ASIOU already ended keeps its own end."""
    ctx = context(("c5", "2025-09-01", "2025-10-15"))
    assert gate.derive(member("2025-10-01"), ctx).payload["date_to"] == "2025-10-01"


def test_leaving_another_class_does_not_close_the_membership() -> None:
    """Only the stays in the group's own class count."""
    ctx = context(("c7", "2025-09-01", "2025-10-15"), ("c5", "2025-09-01", None))
    assert gate.derive(member(), ctx).payload["date_to"] is None


def stay(pupil: str, start: str, end: str | None) -> Record:
    payload = {"pupil": pupil, "class": "c5", "date_from": start, "date_to": end}
    return Record("enrollment", pupil, "i" + pupil, payload, "fp")


def test_stays_whose_day_came_since_the_last_run_are_due() -> None:
    """A stay that ended or began between the last run's day and this one's makes its pupil
    due for re-gating; one outside that window does not."""
    from bridge.service.engine import due_stays

    stays = [
        stay("1", "2025-09-01", "2025-12-10"),
        stay("2", "2025-12-05", None),
        stay("3", "2025-09-01", "2025-10-01"),
        stay("4", "2025-09-01", None),
    ]
    assert due_stays(stays, "2025-12-01", "2025-12-11") == {"1", "2"}
    assert due_stays(stays, "2025-12-11", "2025-12-11") == set()


def test_with_no_day_remembered_every_ended_stay_is_due() -> None:
    """The first run after an upgrade knows no last day: every pupil whose stay ended by the
    run's day is re-gated (fail closed), admissions are not."""
    from bridge.service.engine import due_stays

    stays = [
        stay("1", "2025-09-01", "2025-12-10"),
        stay("2", "2025-12-05", None),
        stay("3", "2025-09-01", "2025-10-01"),
    ]
    assert due_stays(stays, None, "2025-12-11") == {"1", "3"}
