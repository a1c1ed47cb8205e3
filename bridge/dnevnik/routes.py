"""The ``/v2`` endpoints: :data:`ROUTES` maps (method, path pattern) to a function of the
service, the request and the path's parameters. Reads answer from the journal under the
service's lock; writes go through :meth:`DnevnikService.commit` (validated, applied, written
through, then answered). The shapes are in :mod:`bridge.dnevnik.views`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bridge.dnevnik import views
from bridge.dnevnik.journal import (
    LOG_STATUSES,
    MARK_SYSTEMS,
    ParameterInvalidError,
    parse_day,
    parse_id,
)
from bridge.dnevnik.wire import ApiRequest, body_ids, body_object, ok
from bridge.refportal.wire import Reply

if TYPE_CHECKING:
    from bridge.dnevnik.service import DnevnikService

Params = dict[str, str]
Endpoint = Callable[["DnevnikService", ApiRequest, Params], Reply]


def _read(svc: DnevnikService, make: Callable[[], object]) -> Reply:
    with svc.lock:
        return ok(make())


# --- the contingent (read only) -------------------------------------------------------------


def school_groups(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``GET schools/{school}/edu-groups``."""
    j = svc.journal

    def make() -> object:
        j.check_school(parse_id(p["school"], "school"))
        return [views.group(j, g) for g in j.objects["group"].values()]

    return _read(svc, make)


def group(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``GET edu-groups/{group}``."""
    j = svc.journal
    return _read(svc, lambda: views.group(j, j.get("group", parse_id(p["group"], "eduGroup"))))


def group_persons(svc: DnevnikService, request: ApiRequest, p: Params) -> Reply:
    """``GET edu-groups/{group}/persons[?includeArchive=true]``."""
    return _members(svc, p["group"], (request.arg("includeArchive") or "").lower() == "true")


def persons(svc: DnevnikService, request: ApiRequest, _: Params) -> Reply:
    """``GET persons?eduGroup={group}`` (pydnevnikruapi's get_group_persons)."""
    return _members(svc, request.arg("eduGroup"), False)


def _members(svc: DnevnikService, group_id: object, archive: bool) -> Reply:
    j = svc.journal

    def make() -> object:
        gid = int(j.get("group", parse_id(group_id, "eduGroup"), "eduGroup")["id"])
        return [views.member(j, gid, obj, status) for obj, status in j.members(gid, archive)]

    return _read(svc, make)


def person(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``GET persons/{person}``."""
    return _read(
        svc, lambda: views.person(svc.journal.get("person", parse_id(p["person"], "person")))
    )


def group_subjects(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``GET edu-groups/{group}/subjects``."""
    j = svc.journal

    def make() -> object:
        found = j.get("group", parse_id(p["group"], "eduGroup"), "eduGroup")
        return [views.subject(j.objects["subject"][s]) for s in found["subjects"]]

    return _read(svc, make)


def school_subjects(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``GET schools/{school}/subjects``."""
    j = svc.journal

    def make() -> object:
        j.check_school(parse_id(p["school"], "school"))
        return [views.subject(s) for s in j.objects["subject"].values()]

    return _read(svc, make)


def reporting_periods(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``GET edu-groups/{group}/reporting-periods``: the periods of the group's kind."""
    j = svc.journal

    def make() -> object:
        found = j.get("group", parse_id(p["group"], "eduGroup"), "eduGroup")
        periods = [x for x in j.objects["period"].values() if x["kind"] == found["periodKind"]]
        return [views.period(x) for x in sorted(periods, key=lambda x: x["start"])]

    return _read(svc, make)


def work_types(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``GET work-types/{school}``."""
    j = svc.journal

    def make() -> object:
        j.check_school(parse_id(p["school"], "school"))
        return [views.work_type(j, w) for w in j.objects["worktype"].values()]

    return _read(svc, make)


def teachers(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``GET schools/{school}/teachers``."""
    j = svc.journal

    def make() -> object:
        j.check_school(parse_id(p["school"], "school"))
        return [views.teacher(x) for x in j.objects["person"].values() if x["role"] == "teacher"]

    return _read(svc, make)


def mark_values(_: DnevnikService, __: ApiRequest, ___: Params) -> Reply:
    """``GET marks/values``: every mark system with its values."""
    return ok([{"type": kind, "values": list(values)} for kind, values in MARK_SYSTEMS.items()])


def mark_values_of(_: DnevnikService, __: ApiRequest, p: Params) -> Reply:
    """``GET marks/values/type/{type}``: the values of one system."""
    if p["type"] not in MARK_SYSTEMS:
        raise ParameterInvalidError(f"unknown mark type; known: {', '.join(MARK_SYSTEMS)}")
    return ok(list(MARK_SYSTEMS[p["type"]]))


def log_statuses(_: DnevnikService, __: ApiRequest, ___: Params) -> Reply:
    """``GET lesson-log-entries/statuses``."""
    return ok(list(LOG_STATUSES))


# --- lessons --------------------------------------------------------------------------------


def create_lesson(svc: DnevnikService, request: ApiRequest, _: Params) -> Reply:
    """``POST lessons``."""
    body = body_object(request, "lesson")
    return svc.commit("lesson", lambda j: j.create_lesson(body), views.lesson)


def lesson(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``GET lessons/{lesson}``."""
    j = svc.journal

    def make() -> object:
        return views.lesson(j, j.get("lesson", parse_id(p["lesson"], "lesson")))

    return _read(svc, make)


def many_lessons(svc: DnevnikService, request: ApiRequest, _: Params) -> Reply:
    """``POST lessons/many``: the lessons of the ids that exist."""
    wanted = [parse_id(x, "lessons") for x in body_ids(request, "lessons")]
    j = svc.journal
    return _read(
        svc,
        lambda: [
            views.lesson(j, j.objects["lesson"][i]) for i in wanted if i in j.objects["lesson"]
        ],
    )


def group_lessons(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``GET edu-groups/{group}/lessons/{start}/{end}`` (dates or date-times, both included)."""
    first, last = parse_day(p["start"], "startDate"), parse_day(p["end"], "endDate")
    j = svc.journal

    def make() -> object:
        gid = int(j.get("group", parse_id(p["group"], "eduGroup"), "eduGroup")["id"])
        return [views.lesson(j, x) for x in j.lessons_between(gid, first, last)]

    return _read(svc, make)


# --- works ----------------------------------------------------------------------------------


def create_work(svc: DnevnikService, request: ApiRequest, _: Params) -> Reply:
    """``POST works``."""
    body = body_object(request, "work")
    return svc.commit("work", lambda j: j.create_work(body, svc.user_id), _work_view)


def lesson_works(svc: DnevnikService, request: ApiRequest, _: Params) -> Reply:
    """``GET works?lesson={lesson}``."""
    j = svc.journal

    def make() -> object:
        lid = int(j.get("lesson", parse_id(request.arg("lesson"), "lesson"))["id"])
        return [views.work(w) for w in j.works_of(lid)]

    return _read(svc, make)


def work(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``GET works/{work}``."""
    return _read(svc, lambda: views.work(svc.journal.get("work", parse_id(p["work"], "work"))))


def update_work(svc: DnevnikService, request: ApiRequest, p: Params) -> Reply:
    """``PUT works/{work}``."""
    body, wid = body_object(request, "work"), parse_id(p["work"], "work")
    return svc.commit("work", lambda j: j.update_work(wid, body), _work_view)


def delete_work(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``DELETE works/{work}`` (answers the deleted work)."""
    wid = parse_id(p["work"], "work")
    return svc.commit("work", lambda j: j.delete_work(wid), _work_view)


def _work_view(_: Any, obj: dict[str, Any]) -> object:
    return views.work(obj)


# --- marks ----------------------------------------------------------------------------------


def create_mark(svc: DnevnikService, request: ApiRequest, p: Params) -> Reply:
    """``POST persons/{person}/works/{work}/mark``."""
    body = body_object(request, "mark")
    pid, wid = parse_id(p["person"], "person"), parse_id(p["work"], "work")
    return svc.commit("mark", lambda j: j.create_mark(pid, wid, body), _mark_view)


def _mark_view(_: Any, obj: dict[str, Any]) -> object:
    return views.mark(obj)


def mark(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``GET marks/{mark}``."""
    return _read(svc, lambda: views.mark(svc.journal.get("mark", parse_id(p["mark"], "mark"))))


def work_marks(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``GET works/{work}/marks``."""
    j = svc.journal

    def make() -> object:
        wid = int(j.get("work", parse_id(p["work"], "work"))["id"])
        return [views.mark(m) for m in j.marks_of(wid)]

    return _read(svc, make)


def person_work_marks(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``GET persons/{person}/works/{work}/marks``."""
    j = svc.journal

    def make() -> object:
        pid = int(j.get("person", parse_id(p["person"], "person"))["id"])
        wid = int(j.get("work", parse_id(p["work"], "work"))["id"])
        return [views.mark(m) for m in j.marks_of(wid) if m["person"] == pid]

    return _read(svc, make)


def lesson_marks(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``GET lessons/{lesson}/marks``."""
    j = svc.journal

    def make() -> object:
        lid = int(j.get("lesson", parse_id(p["lesson"], "lesson"))["id"])
        return [views.mark(m) for w in j.works_of(lid) for m in j.marks_of(w["id"])]

    return _read(svc, make)


def many_lesson_marks(svc: DnevnikService, request: ApiRequest, _: Params) -> Reply:
    """``POST lessons/marks``: the marks of the lessons that exist."""
    wanted = [parse_id(x, "lessons") for x in body_ids(request, "lessons")]
    j = svc.journal
    return _read(
        svc,
        lambda: [
            views.mark(m) for lid in wanted for w in j.works_of(lid) for m in j.marks_of(w["id"])
        ],
    )


# --- log entries ----------------------------------------------------------------------------


def lesson_log(svc: DnevnikService, _: ApiRequest, p: Params) -> Reply:
    """``GET lessons/{lesson}/log-entries``."""
    j = svc.journal

    def make() -> object:
        lid = int(j.get("lesson", parse_id(p["lesson"], "lesson"))["id"])
        return [views.log_entry(e) for e in j.log_of(lid)]

    return _read(svc, make)


def create_log_entry(svc: DnevnikService, request: ApiRequest, p: Params) -> Reply:
    """``POST lessons/{lesson}/log-entries``."""
    body, lid = body_object(request, "lessonLogEntry"), parse_id(p["lesson"], "lesson")
    now = svc.now()
    return svc.commit("logentry", lambda j: j.create_log_entry(lid, body, now), _log_view)


def update_log_entry(svc: DnevnikService, request: ApiRequest, p: Params) -> Reply:
    """``PUT lessons/{lesson}/log-entries`` (the person in the entry or a ``person`` field)."""
    body, lid = body_object(request, "lessonLogEntry"), parse_id(p["lesson"], "lesson")
    outer = body_object(request, "") if "person" not in body else {}
    if "person" in outer:
        body = {**body, "person": outer["person"]}
    return svc.commit("logentry", lambda j: j.update_log_entry(lid, body), _log_view)


def delete_log_entry(svc: DnevnikService, request: ApiRequest, p: Params) -> Reply:
    """``DELETE lessons/{lesson}/log-entries?person={person}`` (answers the deleted entry)."""
    lid, who = parse_id(p["lesson"], "lesson"), request.arg("person")
    return svc.commit("logentry", lambda j: j.delete_log_entry(lid, who), _log_view)


def _log_view(_: Any, obj: dict[str, Any]) -> object:
    return views.log_entry(obj)


def log_entries(svc: DnevnikService, request: ApiRequest, _: Params) -> Reply:
    """``GET lesson-log-entries?lessons=1&lessons=2``."""
    wanted = [parse_id(x, "lessons") for x in request.args("lessons")]
    j = svc.journal
    return _read(svc, lambda: [views.log_entry(e) for lid in wanted for e in j.log_of(lid)])


# --- the table ------------------------------------------------------------------------------

_TABLE: list[tuple[str, str, Endpoint]] = [
    ("GET", "schools/{school}/edu-groups", school_groups),
    ("GET", "edu-groups/{group}", group),
    ("GET", "edu-groups/{group}/persons", group_persons),
    ("GET", "persons", persons),
    ("GET", "persons/{person}", person),
    ("GET", "edu-groups/{group}/subjects", group_subjects),
    ("GET", "schools/{school}/subjects", school_subjects),
    ("GET", "edu-groups/{group}/reporting-periods", reporting_periods),
    ("GET", "work-types/{school}", work_types),
    ("GET", "schools/{school}/teachers", teachers),
    ("GET", "marks/values", mark_values),
    ("GET", "marks/values/type/{type}", mark_values_of),
    ("GET", "lesson-log-entries/statuses", log_statuses),
    ("POST", "lessons", create_lesson),
    ("GET", "lessons/{lesson}", lesson),
    ("POST", "lessons/many", many_lessons),
    ("GET", "edu-groups/{group}/lessons/{start}/{end}", group_lessons),
    ("POST", "works", create_work),
    ("GET", "works", lesson_works),
    ("GET", "works/{work}", work),
    ("PUT", "works/{work}", update_work),
    ("DELETE", "works/{work}", delete_work),
    ("POST", "persons/{person}/works/{work}/mark", create_mark),
    ("GET", "marks/{mark}", mark),
    ("GET", "works/{work}/marks", work_marks),
    ("GET", "persons/{person}/works/{work}/marks", person_work_marks),
    ("GET", "lessons/{lesson}/marks", lesson_marks),
    ("POST", "lessons/marks", many_lesson_marks),
    ("GET", "lessons/{lesson}/log-entries", lesson_log),
    ("POST", "lessons/{lesson}/log-entries", create_log_entry),
    ("PUT", "lessons/{lesson}/log-entries", update_log_entry),
    ("DELETE", "lessons/{lesson}/log-entries", delete_log_entry),
    ("GET", "lesson-log-entries", log_entries),
]


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", pattern) + "$")


ROUTES: list[tuple[str, str, re.Pattern[str], Endpoint]] = [
    (method, pattern, _compile(pattern), endpoint) for method, pattern, endpoint in _TABLE
]
"""(method, pattern, compiled pattern, endpoint), fewest parameters first, so that a literal
path (``marks/values``) wins over a pattern that also matches it (``marks/{mark}``)."""
ROUTES.sort(key=lambda r: r[1].count("{"))


def match(method: str, path: str) -> tuple[str, Endpoint, Params] | list[str]:
    """(route name, endpoint, parameters) for ``path`` (relative to ``/v2/``), or the methods
    the path takes when the method is wrong (an empty list: no such path)."""
    allowed: list[str] = []
    for verb, pattern, regex, endpoint in ROUTES:
        found = regex.match(path)
        if found is None:
            continue
        if verb == method:
            return f"{verb} {pattern}", endpoint, found.groupdict()
        allowed.append(verb)
    return allowed
