"""Reading the portal's contingent (its classes, subgroups, persons, subjects and periods)
for matching (``bridge.core.matching``). Names stay in memory; nothing here is logged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.adapters.dnevnik.answers import portal_id
from bridge.adapters.dnevnik.http import DnevnikHttp
from bridge.core.matching import Contingent, PortalNamed, PortalPerson

SUBGROUP = "Subgroup"
"""The edu-group ``type`` of a subgroup of a class; any other type is a class."""


def read_contingent(http: DnevnikHttp, school: str) -> Contingent:
    """The school's contingent as the portal holds it: every class and subgroup, the active
    members of every class, the school's subjects and the classes' reporting periods."""
    groups = _listed(http.get(f"schools/{school}/edu-groups"))
    what = f"GET schools/{school}/edu-groups"
    classes = [_named(g, what=what) for g in groups if g.get("type") != SUBGROUP]
    subgroups = [
        _named(g, what=what, parent=_first_parent(g, what))
        for g in groups
        if g.get("type") == SUBGROUP
    ]
    members: dict[str, set[str]] = {}
    people: dict[str, Mapping[str, Any]] = {}
    periods: dict[str, PortalNamed] = {}
    for group in classes:
        for person in _listed(http.get(f"edu-groups/{group.id}/persons")):
            if _active(person, group.id):
                pid = portal_id(person, what=f"GET edu-groups/{group.id}/persons")
                people[pid] = person
                members.setdefault(pid, set()).add(group.id)
        for period in _listed(http.get(f"edu-groups/{group.id}/reporting-periods")):
            named = _named(period, what=f"GET edu-groups/{group.id}/reporting-periods")
            periods.setdefault(named.id, named)
    what = f"GET schools/{school}/subjects"
    subjects = [_named(s, what=what) for s in _listed(http.get(f"schools/{school}/subjects"))]
    persons = tuple(
        PortalPerson(
            pid,
            str(p.get("lastName") or ""),
            str(p.get("firstName") or ""),
            _day(p.get("birthday")),
            frozenset(members[pid]),
        )
        for pid, p in people.items()
    )
    return Contingent(
        persons, tuple(classes), tuple(subgroups), tuple(subjects), tuple(periods.values())
    )


def _listed(answer: object) -> list[Mapping[str, Any]]:
    """The objects of a list answer (a portal may wrap a list; anything else is an error)."""
    if isinstance(answer, dict):
        for value in answer.values():
            if isinstance(value, list):
                answer = value
                break
    if not isinstance(answer, list):
        raise ValueError("the portal answered a list read with something else")
    return [item for item in answer if isinstance(item, dict)]


def _named(obj: Mapping[str, Any], *, what: str, parent: str | None = None) -> PortalNamed:
    year = obj.get("studyyear", obj.get("year"))
    return PortalNamed(
        portal_id(obj, what=what),
        str(obj.get("name") or ""),
        year if isinstance(year, int) and not isinstance(year, bool) else None,
        parent,
    )


def _first_parent(group: Mapping[str, Any], what: str) -> str | None:
    """A subgroup's class: the first of its parents' ids (the exact twins first), if any."""
    texts, numbers = group.get("parentIds_str"), group.get("parentIds")
    if isinstance(texts, list) and texts:
        return portal_id({"id_str": texts[0]}, what=f"{what} (parentIds_str)")
    if isinstance(numbers, list) and numbers:
        return portal_id({"id": numbers[0]}, what=f"{what} (parentIds)")
    return None


def _active(person: Mapping[str, Any], group: str) -> bool:
    """True unless the person's membership of ``group`` says it is not active."""
    membership = person.get("membership")
    if not isinstance(membership, dict):
        return True
    return bool(membership.get("status", "Active") == "Active")


def _day(value: object) -> str | None:
    """``YYYY-MM-DDT00:00:00`` (or a date) as ``YYYY-MM-DD``."""
    return str(value)[:10] if value else None
