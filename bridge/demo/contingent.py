"""The contingent: pupils' stays in classes and their memberships of split-subject groups.

Enrolment on September 1 and later, mid-year withdrawals with their orders and reasons, and
re-admissions (sometimes into another class of the same grade).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import replace

from bridge.demo.model import Calendar, Class, Membership, Stay
from bridge.demo.people import share_count
from bridge.demo.vocab import WITHDRAWAL_REASONS, YEAR_BEGIN


def _order_no(rng: random.Random, day: dt.date) -> str:
    """A contingent order number ("№123-у") growing through the year."""
    return f"№{100 + (day - YEAR_BEGIN).days + rng.randrange(3)}-у"


def enrol(rng: random.Random, classes: Sequence[Class], cal: Calendar, pupils: int) -> list[Stay]:
    """Stays of every pupil, withdrawals and re-admissions included, in pupil_move id order."""
    sizes = [
        pupils // len(classes) + (1 if i < pupils % len(classes) else 0)
        for i in range(len(classes))
    ]
    seats = [k.id for k, size in zip(classes, sizes, strict=True) for _ in range(size)]
    late = _late_arrivals(rng, cal, pupils)
    ordered = sorted((late.get(i, YEAR_BEGIN), class_id, i) for i, class_id in enumerate(seats))
    stays = [
        Stay(
            pid, class_id, day, f"№{40 + class_id}-у" if day == YEAR_BEGIN else _order_no(rng, day)
        )
        for pid, (day, class_id, _) in enumerate(ordered, 1)
    ]
    _withdraw(rng, stays, classes, cal)
    return sorted(stays, key=lambda s: (s.date_in, s.pupil_id))


def _late_arrivals(rng: random.Random, cal: Calendar, pupils: int) -> dict[int, dt.date]:
    """Seats (about 2 %) filled by pupils enrolled after September 1, with their dates."""
    if len(cal.days) < 10:
        return {}
    seats = rng.sample(range(pupils), share_count(pupils, 0.02))
    return {seat: cal.days[rng.randrange(3, len(cal.days) - 5)] for seat in seats}


def _withdraw(
    rng: random.Random, stays: list[Stay], classes: Sequence[Class], cal: Calendar
) -> None:
    """Withdraw about 3 % of the pupils mid-year and re-admit about a third of them later."""
    n_days = len(cal.days)
    count = share_count(len(stays), 0.03) if n_days >= 20 else 0
    picks = _withdrawal_picks(rng, stays, classes, count)
    back = max(1, round(count / 3)) if count >= 2 else 0
    for k, index in enumerate(picks):
        day_no = rng.randrange(max(5, n_days // 10), n_days - 10)
        out = cal.days[day_no]
        stays[index] = replace(
            stays[index],
            date_out=out,
            order_out=_order_no(rng, out),
            reason_out=rng.choice(WITHDRAWAL_REASONS),
        )
        if k >= len(picks) - back:
            stays.append(_readmission(rng, stays[index], classes, cal, day_no))


def _withdrawal_picks(
    rng: random.Random, stays: Sequence[Stay], classes: Sequence[Class], count: int
) -> list[int]:
    """Indexes of ``count`` September pupils to withdraw, one class at a time.

    The first pick is from a class of grade 2 or above when there is one, so that small schools
    still have a withdrawn pupil whose class gets marks.
    """
    order = list(classes)
    rng.shuffle(order)
    graded = next((k for k in order if k.grade >= 2), order[0])
    order.remove(graded)
    order.insert(0, graded)
    pools = {
        k.id: [i for i, s in enumerate(stays) if s.class_id == k.id and s.date_in == YEAR_BEGIN]
        for k in order
    }
    for pool in pools.values():
        rng.shuffle(pool)
    picks: list[int] = []
    while len(picks) < count and any(pools.values()):
        for klass in order:
            if pools[klass.id] and len(picks) < count:
                picks.append(pools[klass.id].pop())
    return picks


def _readmission(
    rng: random.Random, left: Stay, classes: Sequence[Class], cal: Calendar, day_no: int
) -> Stay:
    """A later stay of the same pupil, sometimes in another class of the same grade."""
    grade = next(k.grade for k in classes if k.id == left.class_id)
    same_grade = [k.id for k in classes if k.grade == grade]
    class_id = rng.choice(same_grade) if rng.random() < 0.5 else left.class_id
    day = cal.days[rng.randrange(day_no + 3, min(day_no + 30, len(cal.days) - 3))]
    return Stay(left.pupil_id, class_id, day, _order_no(rng, day))


def group_memberships(
    rng: random.Random, classes: Sequence[Class], stays: Sequence[Stay]
) -> list[Membership]:
    """Put every stay's pupil into one group of each split subject, keeping groups even."""
    by_id = {k.id: k for k in classes}
    sizes: dict[int, int] = {}
    result: list[Membership] = []
    for stay in stays:
        for first, second in (g for _, g in sorted(by_id[stay.class_id].groups.items())):
            a, b = sizes.get(first, 0), sizes.get(second, 0)
            group = first if a < b or (a == b and rng.random() < 0.5) else second
            sizes[group] = sizes.get(group, 0) + 1
            result.append(Membership(group, stay.pupil_id, stay.date_in, stay.date_out))
    return result
