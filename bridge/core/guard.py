"""Guards against destructive plans: a mass delete, archive or closure is held until an admin
approves it.

Pure: takes the plan and what the state holds, returns what is suspicious. In the spirit of
Clever's sync holds: more than ``max_delete_fraction`` of an entity (default 10 %, and at least
``min_deletes`` records) deleted, archived or closed, or every enrolment of a class (or the
class itself) deleted or closed, is held. Whatever hides a pupil counts: a delete, an archive
(``Op.ARCHIVE``), a membership closure (an update in ``Plan.hiding``). A held plan sends none
of them (``bridge.service.engine.run``); an approval names the plan by its id, a digest of
exactly these changes, and expires after ``approval_valid_hours``.

Other checks (a portal that suddenly looks empty, say) add their holds to the list ``check``
returns; ``GuardHold.describe`` words each for admins.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bridge.core.model import Change, Op
from bridge.core.plan import Plan

DEFAULT_APPROVAL_VALID_HOURS = 72.0


@dataclass(frozen=True)
class Thresholds:
    """When a plan's destructive changes are suspicious enough to hold (``[guard]`` in the
    config), and how long an admin's approval of a held plan stays valid."""

    max_delete_fraction: float = 0.10
    min_deletes: int = 20
    hold_whole_class: bool = True
    approval_valid_hours: float = DEFAULT_APPROVAL_VALID_HOURS


@dataclass(frozen=True)
class GuardHold:
    """One reason a plan is held: which entity (and class), how many deletes, archives and
    membership closures, out of how many live records."""

    entity: str
    deletes: int
    total: int
    class_key: str | None = None
    archives: int = 0
    closures: int = 0

    @property
    def changes(self) -> int:
        """Deletes, archives and closures together."""
        return self.deletes + self.archives + self.closures

    def describe(self) -> str:
        """One line for admins."""
        if self.class_key is not None:
            if not self.archives and not self.closures:
                return (
                    f"would delete all {self.deletes} {self.entity} records of class "
                    f"{self.class_key}"
                )
            left = (
                "no pupil is left in it" if self.entity == "pupil" else "every one still open there"
            )
            return f"would {self._verbs()} {self.entity} records of class {self.class_key}: {left}"
        share = 100.0 * self.changes / self.total if self.total else 100.0
        return f"would {self._verbs()} of {self.total} {self.entity} records ({share:.1f} %)"

    def _verbs(self) -> str:
        done = ((self.deletes, "delete"), (self.archives, "archive"), (self.closures, "close"))
        return " and ".join(f"{verb} {n}" for n, verb in done if n) or "delete 0"


def check(
    plan: Plan,
    totals: Mapping[str, int],
    enrollments_by_class: Mapping[str, int],
    thresholds: Thresholds,
    *,
    open_by_class: Mapping[str, int] | None = None,
    pupils_by_class: Mapping[str, int] | None = None,
) -> list[GuardHold]:
    """Every reason to hold ``plan``; ``totals`` are live state entries per entity,
    ``enrollments_by_class`` the live enrolments per class and ``open_by_class`` those of them
    still open on the portal (no ``date_to``); ``pupils_by_class`` the pupils with a stay open
    in each class after the run (pupil archives carry the class of their last stay)."""
    deletes = Counter(c.entity for c in plan.deletes)
    archives = Counter(c.entity for c in plan.hiding if c.op is Op.ARCHIVE)
    closures = Counter(c.entity for c in plan.hiding if c.op is not Op.ARCHIVE)
    holds = []
    for entity in sorted(deletes | archives | closures):
        hold = GuardHold(
            entity,
            deletes[entity],
            totals.get(entity, 0),
            archives=archives[entity],
            closures=closures[entity],
        )
        if _too_many(hold.changes, hold.total, thresholds):
            holds.append(hold)
    if thresholds.hold_whole_class:
        holds.extend(_whole_classes(plan, enrollments_by_class, open_by_class or {}))
        if pupils_by_class is not None:
            holds.extend(_emptied_classes(plan, pupils_by_class))
    return holds


def _too_many(changes: int, total: int, thresholds: Thresholds) -> bool:
    return changes >= thresholds.min_deletes and changes > thresholds.max_delete_fraction * total


def class_of(change: Change) -> str | None:
    """The class an enrolment change belongs to (the state's owner class, else its record's)."""
    if change.class_key is not None or change.record is None:
        return change.class_key
    value = change.record.payload.get("class")
    return None if value is None else str(value)


def _by_class(changes: Iterable[Change]) -> Counter[str]:
    return Counter(k for c in changes if c.entity == "enrollment" and (k := class_of(c)))


def _whole_classes(
    plan: Plan, enrollments_by_class: Mapping[str, int], open_by_class: Mapping[str, int]
) -> list[GuardHold]:
    """Every class whose live enrolments are all deleted or closed, or whose open ones are
    (a delete counts as of an open one: fail closed)."""
    gone, closed = _by_class(plan.deletes), _by_class(plan.hiding)
    holds = []
    for key in sorted(gone | closed):
        n = gone[key] + closed[key]
        if n >= enrollments_by_class.get(key, 0) > 0 or n >= open_by_class.get(key, 0) > 0:
            holds.append(GuardHold("enrollment", gone[key], n, key, closures=closed[key]))
    holds.extend(GuardHold("class", 1, 1, c.key) for c in plan.deletes if c.entity == "class")
    return holds


def _emptied_classes(plan: Plan, pupils_by_class: Mapping[str, int]) -> list[GuardHold]:
    """Every class whose pupils are archived with none left in it."""
    archived = Counter(
        c.class_key
        for c in plan.hiding
        if c.op is Op.ARCHIVE and c.entity == "pupil" and c.class_key
    )
    return [
        GuardHold("pupil", 0, n, key, archives=n)
        for key, n in sorted(archived.items())
        if pupils_by_class.get(key, 0) == 0
    ]
