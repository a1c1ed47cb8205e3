"""The reference portal's rules, as data: the batch limit, the references each entity resolves,
the allowed values, text limits and dates (``docs/portal-api.md``, "Validation"). The checks
that apply them live in :mod:`bridge.refportal.checks`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.ports import ENTITIES

MAX_BATCH = 1000
"""The most operations one batch may carry (413 beyond)."""

METHODS = ("PUT", "DELETE")


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference field: ``entity.field`` holds the key of a live ``target`` record."""

    field: str
    target: str
    required: bool = True


REFS: dict[str, tuple[Ref, ...]] = {
    "class": (Ref("form_teacher", "teacher", required=False),),
    "group": (Ref("class", "class"), Ref("subject", "subject")),
    "enrollment": (Ref("pupil", "pupil"), Ref("class", "class")),
    "group_member": (Ref("pupil", "pupil"), Ref("group", "group")),
    "guardian_link": (Ref("pupil", "pupil"), Ref("guardian", "guardian")),
    "lesson": (
        Ref("class", "class"),
        Ref("group", "group", required=False),
        Ref("subject", "subject"),
        Ref("teacher", "teacher"),
    ),
    "work": (Ref("lesson", "lesson"),),
    "mark": (Ref("work", "work"), Ref("pupil", "pupil")),
    "absence": (Ref("lesson", "lesson"), Ref("pupil", "pupil")),
    "period_mark": (Ref("pupil", "pupil"), Ref("subject", "subject"), Ref("period", "period")),
}
"""Every reference the portal resolves; a live record keeps its targets from being deleted."""

REFERRERS: dict[str, tuple[str, ...]] = {
    target: tuple(e for e in ENTITIES if any(r.target == target for r in REFS.get(e, ())))
    for target in ENTITIES
}
"""For each entity, the entities whose records may refer to it."""

DIGITS = ("5", "4", "3", "2", "1")
MARK_VALUES = frozenset(DIGITS) | {d + s for d in DIGITS for s in "+-"}
PERIOD_MARK_VALUES = frozenset(DIGITS) | {"not_attested", "pass", "fail", "exempt"}
ABSENCE_CODES = frozenset({"absent", "ill", "excused", "late"})

VALUES: dict[str, tuple[str, frozenset[str], str]] = {
    "mark": ("value", MARK_VALUES, "5, 4, 3, 2 or 1, optionally followed by + or -"),
    "period_mark": (
        "value",
        PERIOD_MARK_VALUES,
        "5, 4, 3, 2, 1, not_attested, pass, fail or exempt",
    ),
    "absence": ("code", ABSENCE_CODES, "absent, ill, excused or late"),
}
"""entity → (field, allowed values, the allowed values in words)."""

NAMES = {"last_name": 60, "first_name": 60, "middle_name": 60}
TEXT_LIMITS: dict[str, dict[str, int]] = {
    "lesson": {"topic": 500, "homework": 2000},
    "pupil": NAMES,
    "teacher": NAMES,
    "guardian": NAMES,
    "class": {"name": 60},
    "group": {"name": 60},
    "period": {"name": 60},
    "subject": {"name": 200},
}
"""entity → field → most characters (textTooLong beyond)."""

DATES: dict[str, dict[str, bool]] = {
    "lesson": {"date": True},
    "enrollment": {"date_from": True, "date_to": False},
    "group_member": {"date_from": False, "date_to": False},
    "period": {"date_from": False, "date_to": True},
}
"""entity → date field → required; dates are ISO ``YYYY-MM-DD`` strings."""

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
SCALARS = (str, int, float, bool, type(None))
