"""The reference portal's checks: small functions compiled once per entity from the rules
(:mod:`bridge.refportal.rules`) plus the domain rules that read other records (grade 1, closed
membership), and the :class:`Verdict` each operation gets.

Descriptions of rejections name entities, keys, fields and limits, never a value a record carries
(a mark, a name), so a client may log them as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from bridge.ports import ENTITIES, Operation, OperationResult
from bridge.refportal.records import SchoolData, StoredRecord
from bridge.refportal.rules import (
    DATES,
    ISO_DATE,
    METHODS,
    REFS,
    SCALARS,
    TEXT_LIMITS,
    VALUES,
    Ref,
)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one operation: an HTTP status and, for a rejection, type and reason."""

    status: int
    type: str | None = None
    description: str | None = None

    @property
    def ok(self) -> bool:
        """True when the operation took effect (or had nothing to do)."""
        return self.status < 300

    def result(self, op_id: str) -> OperationResult:
        """This verdict as the port's per-operation result."""
        return OperationResult(op_id, self.ok, self.status, self.type, self.description)


def invalid(description: str) -> Verdict:
    """A 422 validationFailed: the data has the wrong shape (missing field, wrong type)."""
    return Verdict(422, "validationFailed", description)


Check = Callable[[SchoolData, Mapping[str, Any]], Verdict | None]


def _ref_check(entity: str, ref: Ref) -> Check:
    where, name, target = f"{entity}.{ref.field}", ref.field, ref.target

    def check(school: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
        key = data.get(name)
        if key is None:
            return invalid(f"{where} is required") if ref.required else None
        if not isinstance(key, str):
            return invalid(f"{where} must be a key string")
        record = school.records[target].get(key)
        if record is not None and record.live:
            return None
        gone = "is deleted" if key in school.records[ref.target] else "does not exist"
        return Verdict(
            422, "referenceMissing", f"{where} refers to {ref.target} {key}, which {gone}"
        )

    return check


def _value_check(entity: str, name: str, allowed: frozenset[str], words: str) -> Check:
    where = f"{entity}.{name}"

    def check(_: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
        value = data.get(name)
        if value is None:
            return invalid(f"{where} is required")
        if value in allowed:
            return None
        return Verdict(422, "valueInvalid", f"{where} is not one of {words}")

    return check


def _text_check(entity: str, name: str, limit: int) -> Check:
    where = f"{entity}.{name}"

    def check(_: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
        text = data.get(name)
        if text is None or (isinstance(text, str) and len(text) <= limit):
            return None
        if not isinstance(text, str):
            return invalid(f"{where} must be text")
        return Verdict(
            422, "textTooLong", f"{where} has {len(text)} characters, more than the {limit} allowed"
        )

    return check


def _date_check(entity: str, name: str, required: bool) -> Check:
    where = f"{entity}.{name}"

    def check(_: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
        value = data.get(name)
        if value is None:
            return invalid(f"{where} is required") if required else None
        if is_iso_date(value):
            return None
        return invalid(f"{where} must be an ISO date (YYYY-MM-DD)")

    return check


def is_iso_date(value: object) -> bool:
    """True for an ISO ``YYYY-MM-DD`` string naming a real day."""
    if not isinstance(value, str) or not ISO_DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


SCALAR_TYPES = frozenset(SCALARS)
"""The exact types of the values JSON gives; anything else is checked with isinstance."""


def _scalars(entity: str) -> Check:
    def check(_: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
        if SCALAR_TYPES.issuperset(map(type, data.values())):
            return None
        for name, value in data.items():
            if not isinstance(value, SCALARS):
                return invalid(f"{entity}.{name} must be a string, number, boolean or null")
        return None

    return check


def _grade(_: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
    grade = data.get("grade")
    if grade is None or (isinstance(grade, int) and not isinstance(grade, bool)):
        return None
    return invalid("class.grade must be an integer")


def _lesson_of_work(school: SchoolData, work_key: object) -> StoredRecord | None:
    work = school.live("work", work_key)
    return school.live("lesson", work.data.get("lesson")) if work is not None else None


def _is_grade_one(school: SchoolData, class_key: object) -> bool:
    klass = school.live("class", class_key)
    return klass is not None and klass.data.get("grade") == 1


def _grade_one_mark(school: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
    return _grade_one_lesson(school, data, _lesson_of_work(school, data.get("work")))


def _grade_one_lesson(
    school: SchoolData, data: Mapping[str, Any], lesson: StoredRecord | None
) -> Verdict | None:
    if lesson is None or not _is_grade_one(school, lesson.data.get("class")):
        return None
    return Verdict(
        422,
        "grade1Mark",
        f"work {data.get('work')} is on lesson "
        f"{lesson.sourced_id} of class {lesson.data.get('class')}, which is grade 1",
    )


def _grade_one_period_mark(school: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
    period = school.live("period", data.get("period"))
    day = period.data.get("date_to") if period is not None else None
    if not isinstance(day, str):
        return None
    for stay in school.enrollments(str(data.get("pupil"))):
        if _covers(stay, day) and _is_grade_one(school, stay.data.get("class")):
            return Verdict(
                422,
                "grade1Mark",
                f"pupil {data.get('pupil')} is in class "
                f"{stay.data.get('class')} (grade 1) at the end of period "
                f"{data.get('period')}",
            )
    return None


def _covers(stay: StoredRecord, day: str) -> bool:
    start, end = stay.data.get("date_from"), stay.data.get("date_to")
    return isinstance(start, str) and start <= day and (end is None or end >= day)


def _membership(school: SchoolData, pupil: object, lesson: StoredRecord | None) -> Verdict | None:
    """membershipClosed when the pupil has stays in the lesson's class and every one of them
    ended before the lesson's day (a pupil never enrolled in the class is not refused)."""
    if lesson is None or not isinstance(pupil, str):
        return None
    keys = school.stays.get(pupil)
    if not keys:
        return None
    day, class_key = lesson.data.get("date"), lesson.data.get("class")
    table, in_class = school.records["enrollment"], False
    for key in keys:
        stay = table[key].data
        if stay.get("class") == class_key:
            end = stay.get("date_to")
            if end is None or end >= day:
                return None  # a stay open on the lesson's day
            in_class = True
    if not in_class:
        return None
    return Verdict(
        422,
        "membershipClosed",
        f"pupil {pupil} left class {class_key} before lesson {lesson.sourced_id} on {day}",
    )


def _membership_mark(school: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
    return _membership(school, data.get("pupil"), _lesson_of_work(school, data.get("work")))


def _mark_rules(school: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
    """:func:`_grade_one_mark`, then :func:`_membership_mark`, finding the lesson once."""
    lesson = _lesson_of_work(school, data.get("work"))
    if lesson is None:
        return None
    verdict = _grade_one_lesson(school, data, lesson)
    return verdict if verdict is not None else _membership(school, data.get("pupil"), lesson)


def _membership_absence(school: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
    return _membership(school, data.get("pupil"), school.live("lesson", data.get("lesson")))


DOMAIN_CHECKS: dict[str, tuple[Check, ...]] = {
    "class": (_grade,),
    "mark": (_mark_rules,),  # _grade_one_mark, then _membership_mark
    "absence": (_membership_absence,),
    "period_mark": (_grade_one_period_mark,),
}
"""Checks that read other records, run after the references resolved."""


def compile_checks(entity: str) -> tuple[Check, ...]:
    """Every check of ``entity`` in the order the portal applies them: shape, values, text
    lengths, references, then the domain rules (grade 1, closed membership)."""
    checks: list[Check] = [_scalars(entity)]
    checks += [_date_check(entity, n, req) for n, req in DATES.get(entity, {}).items()]
    if entity in VALUES:
        checks.append(_value_check(entity, *VALUES[entity]))
    checks += [_text_check(entity, n, limit) for n, limit in TEXT_LIMITS.get(entity, {}).items()]
    checks += [_ref_check(entity, ref) for ref in REFS.get(entity, ())]
    checks += DOMAIN_CHECKS.get(entity, ())
    return tuple(checks)


CHECKS: dict[str, tuple[Check, ...]] = {e: compile_checks(e) for e in ENTITIES}


def check_shape(op: Operation) -> Verdict | None:
    """400 badRequest or 404 unknownResource when the operation itself is malformed."""
    return shape_of(op.method, op.entity, op.sourced_id, op.fingerprint, op.data)


def shape_of(
    method: object, entity: object, key: object, fingerprint: object, data: object
) -> Verdict | None:
    """:func:`check_shape` on an operation's parts (the batch path reads them off the wire)."""
    if method not in METHODS:
        return Verdict(400, "badRequest", "method must be PUT or DELETE")
    if entity not in CHECKS:
        return Verdict(404, "unknownResource", "entity is not one of the API's resources")
    if not isinstance(key, str) or not key:
        return Verdict(400, "badRequest", "sourcedId must be a non-empty string")
    return _put_body(fingerprint, data) if method == "PUT" else None


def _put_body(fingerprint: object, data: object) -> Verdict | None:
    if not isinstance(fingerprint, str) or not fingerprint:
        return Verdict(400, "badRequest", "a PUT needs a fingerprint string")
    if type(data) is not dict and not isinstance(data, Mapping):
        return Verdict(400, "badRequest", "a PUT needs a data object")
    return None
