"""The daemon's triggers, built from ``[schedule]``: once when the configuration is loaded (so that
``check`` and every command refuse a schedule APScheduler cannot run, naming the key), and again
by the daemon before it tells systemd it is ready.

    incremental   every ``incremental_every``; in ``hours`` on ``days`` a cron trigger on the
                  minutes that divide the hour (``1h``: on the hour)
    full          daily at ``full_at``
    dead_letters  daily at ``dead_letters_at``
    reconcile     at ``reconcile_at`` (days and a time), or none when it is empty

The three nightly ones start the school's own number of minutes late (``spread_minutes``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bridge.core.errors import ConfigError, Problem
from bridge.service.settings import Schedule
from bridge.service.spread import shifted, shifted_days

T = TypeVar("T")


@dataclass(frozen=True)
class Triggers:
    """One trigger per scheduled job (``reconcile`` None: only on demand)."""

    incremental: IntervalTrigger | CronTrigger
    full: CronTrigger
    dead_letters: CronTrigger
    reconcile: CronTrigger | None


def build_triggers(schedule: Schedule, file: str, late: int = 0) -> Triggers:
    """The triggers of ``schedule``, the nightly ones ``late`` minutes after their set times
    (the school's spread, ``bridge.service.spread``); ConfigError naming the key of every one
    that cannot be built (``file`` is where the schedule was read)."""
    problems: list[Problem] = []

    def attempt(key: str, build: Callable[[], T]) -> T | None:
        try:
            return build()
        except ValueError as exc:
            problems.append(Problem(file, f"schedule.{_culprit(key, schedule)}", _reason(exc)))
            return None

    incremental = attempt("incremental_every", lambda: incremental_trigger(schedule))
    full = attempt("full_at", lambda: daily(schedule.full_time, late))
    dead_letters = attempt("dead_letters_at", lambda: daily(schedule.dead_letters_time, late))
    reconcile = attempt("reconcile_at", lambda: reconcile_trigger(schedule.reconcile, late))
    if problems or incremental is None or full is None or dead_letters is None:
        raise ConfigError(problems)
    return Triggers(incremental, full, dead_letters, reconcile)


def incremental_trigger(schedule: Schedule) -> IntervalTrigger | CronTrigger:
    """Every ``incremental_every``; within a window, on the minutes that divide the hour."""
    if not schedule.windowed:
        return IntervalTrigger(seconds=schedule.every)
    minutes = max(1, int(schedule.every // 60))
    minute = "0" if minutes >= 60 else f"*/{minutes}"
    return CronTrigger(minute=minute, hour=schedule.hours or "*", day_of_week=schedule.days)


def daily(at: tuple[int, int], late: int = 0) -> CronTrigger:
    """Every day at (hour, minute), ``late`` minutes later (past midnight still daily)."""
    _, hour, minute = shifted(*at, late)
    return CronTrigger(hour=hour, minute=minute)


def reconcile_trigger(when: tuple[str, int, int] | None, late: int = 0) -> CronTrigger | None:
    """The trigger of ``schedule.reconcile_at`` (days and a time) ``late`` minutes later (past
    midnight: on the next days); None when it is off."""
    if when is None:
        return None
    days, hour, minute = when
    later, hour, minute = shifted(hour, minute, late)
    return CronTrigger(day_of_week=shifted_days(days, later), hour=hour, minute=minute)


def _culprit(key: str, schedule: Schedule) -> str:
    """The key to blame: the incremental trigger is built from three, tried one by one."""
    if key != "incremental_every" or not schedule.windowed:
        return key
    for part, given in (
        ("hours", {"hour": schedule.hours or "*"}),
        ("days", {"day_of_week": schedule.days}),
    ):
        try:
            CronTrigger(**given)
        except ValueError:
            return part
    return key


def _reason(exc: ValueError) -> str:
    return (
        f"the scheduler cannot run this ({exc}); ranges go from low to high, like 7-19 or mon-fri"
    )
