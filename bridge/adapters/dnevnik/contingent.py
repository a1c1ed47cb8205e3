"""Reading the portal's contingent (its classes, subgroups, persons, subjects and periods)
for matching (``bridge.core.matching``). Names stay in memory; nothing here is logged."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.adapters.dnevnik.answers import bad_answer, listed, portal_id, same_id
from bridge.adapters.dnevnik.http import DnevnikHttp
from bridge.core.matching import Contingent, PortalNamed, PortalPerson

SUBGROUP = "Subgroup"
"""The edu-group ``type`` of a subgroup of a class; any other type is a class."""


def read_contingent(http: DnevnikHttp, school: str) -> Contingent:
    """The school's contingent as the portal holds it: every class and subgroup, the active
    members of every class, the school's subjects and the classes' reporting periods."""
    what = f"GET schools/{school}/edu-groups"
    groups = listed(http.get(f"schools/{school}/edu-groups"), what=what)
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
        what = f"GET edu-groups/{group.id}/persons"
        for person in listed(http.get(f"edu-groups/{group.id}/persons"), what=what):
            if _active(person, group.id, what):
                pid = portal_id(person, what=what)
                if pid in people and _who(people[pid]) != _who(person):
                    raise bad_answer(what, f"person {pid} is listed otherwise in another class")
                people[pid] = person
                members.setdefault(pid, set()).add(group.id)
        what = f"GET edu-groups/{group.id}/reporting-periods"
        for period in listed(http.get(f"edu-groups/{group.id}/reporting-periods"), what=what):
            named = _named(period, what=what)
            periods.setdefault(named.id, named)
    what = f"GET schools/{school}/subjects"
    subjects = [
        _named(s, what=what) for s in listed(http.get(f"schools/{school}/subjects"), what=what)
    ]
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
    for name, value in (("parentIds_str", texts), ("parentIds", numbers)):
        if value is not None and not isinstance(value, list):
            raise bad_answer(what, f"{name} is not a list")
    text = texts[0] if texts else None
    number = numbers[0] if numbers else None
    if text is None and number is None:
        return None
    return portal_id({"id_str": text, "id": number}, what=f"{what} (parentIds)")


def _active(person: Mapping[str, Any], group: str, what: str) -> bool:
    """True unless the person's membership says it is not active, or is another group's."""
    membership = person.get("membership")
    if not isinstance(membership, dict):
        return True
    return bool(membership.get("status", "Active") == "Active") and same_id(
        membership, "eduGroup", group, what=what
    )


def _who(person: Mapping[str, Any]) -> tuple[object, ...]:
    """What matching reads of a person (a person listed in two classes must agree)."""
    return (person.get("lastName"), person.get("firstName"), _day(person.get("birthday")))


def _day(value: object) -> str | None:
    """``YYYY-MM-DDT00:00:00`` (or a date) as ``YYYY-MM-DD``."""
    return str(value)[:10] if value else None
