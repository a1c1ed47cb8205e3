"""The nightly jobs of a region's schools spread over a window (issue #13, defect 11)."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import pytest

from bridge.service.schedule import build_triggers
from bridge.service.settings import Schedule
from bridge.service.spread import WEEK, offset_minutes, shifted, shifted_days

SCHOOLS = [f"school-{n}" for n in range(300)]


def test_an_offset_is_stable_and_within_the_spread() -> None:
    for school in SCHOOLS:
        late = offset_minutes(school, 60)
        assert 0 <= late <= 60
        assert offset_minutes(school, 60) == late
    assert {offset_minutes(s, 0) for s in SCHOOLS} == {0}


def test_three_hundred_schools_do_not_start_in_the_same_minute() -> None:
    """With the default spread of 60 minutes, 300 schools fall on all 61 minutes, none holding
    more than a small multiple of its fair share (300 / 61, about 5)."""
    minutes = Counter(offset_minutes(s, 60) for s in SCHOOLS)
    assert len(minutes) == 61
    assert max(minutes.values()) <= 12


@pytest.mark.parametrize(
    ("at", "late", "expected"),
    [((2, 30), 0, (0, 2, 30)), ((2, 30), 45, (0, 3, 15)), ((23, 50), 20, (1, 0, 10))],
)
def test_shifted_carries_past_midnight(
    at: tuple[int, int], late: int, expected: tuple[int, int, int]
) -> None:
    assert shifted(*at, late) == expected


@pytest.mark.parametrize(
    ("days", "later", "expected"),
    [
        ("sun", 0, "sun"),
        ("sun", 1, "mon"),
        ("mon-fri", 1, "tue,wed,thu,fri,sat"),
        ("sat-mon", 1, "mon,tue,sun"),
        ("mon,wed-thu", 1, "tue,thu,fri"),
        ("mon", 7, "mon"),
    ],
)
def test_days_move_with_a_run_past_midnight(days: str, later: int, expected: str) -> None:
    assert shifted_days(days, later) == expected
    assert all(day in WEEK for day in shifted_days(days, later).split(","))


def test_the_triggers_fire_at_the_schools_own_minute() -> None:
    """full_at 23:50 with 20 minutes late: the full run at 00:10 every day; the Sunday
    reconciliation at 23:55 moves to Monday 00:15."""
    schedule = Schedule(full_at="23:50", dead_letters_at="23:40", reconcile_at="sun 23:55")
    triggers = build_triggers(schedule, "bridge.toml", late=20)
    saturday_noon = datetime(2026, 12, 5, 12, 0).astimezone()
    full = triggers.full.get_next_fire_time(None, saturday_noon)
    revive = triggers.dead_letters.get_next_fire_time(None, saturday_noon)
    assert triggers.reconcile is not None
    reconcile = triggers.reconcile.get_next_fire_time(None, saturday_noon)
    assert (full.day, full.hour, full.minute) == (6, 0, 10)
    assert (revive.day, revive.hour, revive.minute) == (6, 0, 0)
    assert (reconcile.strftime("%a"), reconcile.hour, reconcile.minute) == ("Mon", 0, 15)
