"""Guards against destructive plans: a mass delete is held until an admin approves it.

Pure: takes the plan and what the state holds, returns what is suspicious. In the spirit of
Clever's sync holds: more than ``max_delete_fraction`` of an entity (default 10 %, and at least
``min_deletes`` records), or every enrolment of a class (or the class itself), is held.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from bridge.plan import Plan


@dataclass(frozen=True)
class Thresholds:
    """When a plan's deletes are suspicious enough to hold (``[guard]`` in the config)."""

    max_delete_fraction: float = 0.10
    min_deletes: int = 20
    hold_whole_class: bool = True


@dataclass(frozen=True)
class GuardHold:
    """One reason a plan is held: which entity (and class), how many deletes out of how many."""

    entity: str
    deletes: int
    total: int
    class_key: str | None = None

    def describe(self) -> str:
        """One line for admins."""
        if self.class_key is not None:
            return (f"would delete all {self.deletes} {self.entity} records of class "
                    f"{self.class_key}")
        share = 100.0 * self.deletes / self.total if self.total else 100.0
        return f"would delete {self.deletes} of {self.total} {self.entity} records ({share:.1f} %)"


def check(
    plan: Plan,
    totals: Mapping[str, int],
    enrollments_by_class: Mapping[str, int],
    thresholds: Thresholds,
) -> list[GuardHold]:
    """Every reason to hold ``plan``; ``totals`` are live state entries per entity."""
    deletes = Counter(c.entity for c in plan.deletes)
    holds = [GuardHold(e, n, totals.get(e, 0)) for e, n in sorted(deletes.items())
             if _too_many(n, totals.get(e, 0), thresholds)]
    if thresholds.hold_whole_class:
        holds.extend(_whole_classes(plan, enrollments_by_class))
    return holds


def _too_many(deletes: int, total: int, thresholds: Thresholds) -> bool:
    return deletes >= thresholds.min_deletes and deletes > thresholds.max_delete_fraction * total


def _whole_classes(plan: Plan, enrollments_by_class: Mapping[str, int]) -> list[GuardHold]:
    gone = Counter(c.class_key for c in plan.deletes
                   if c.entity == "enrollment" and c.class_key is not None)
    holds = [GuardHold("enrollment", n, n, k) for k, n in sorted(gone.items())
             if n >= enrollments_by_class.get(k, 0) > 0]
    holds.extend(GuardHold("class", 1, 1, c.key) for c in plan.deletes if c.entity == "class")
    return holds
