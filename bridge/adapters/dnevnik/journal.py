"""The journal on dnevnik.ru, one record per request: what each canonical operation becomes.

* lesson: found by group, subject, date and number, else ``POST lessons`` (the topic as its
  ``title``; its homework as a ``Homework`` work); no update, no delete (the API has neither);
* work: ``POST works`` (the work type from the school's table), ``PUT works/{id}``,
  ``DELETE works/{id}``;
* mark: ``POST persons/{p}/works/{w}/mark``; no correction, no retraction (none in the API);
* absence: a lesson log entry, ``POST``, ``PUT`` and ``DELETE lessons/{l}/log-entries`` (the
  status from the school's table); its id on the portal is ``lesson/person``.

References are translated at send time: a mark needs its pupil's matched person and its work's
id. The lessons of a group on a day are listed once a batch (:class:`LessonDays`), and a lesson
this operation has just created is known to have no homework yet. A create whose outcome is
unknown (an answer lost) is followed by a fresh lookup of the record on the portal by its
natural key, and so is every create of a run that starts after one that did not end cleanly
(``careful``): a record found there, and held by no other record of the bridge, is the one
sent. A refusal for good becomes the operation's result (the portal's type and
description); anything else is raised.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Any

from bridge.adapters.dnevnik.answers import bad_answer, listed, portal_id, same_id
from bridge.adapters.dnevnik.http import DnevnikHttp, OutcomeUnknown, Refused
from bridge.adapters.dnevnik.ids import IdBook
from bridge.adapters.dnevnik.settings import DnevnikSettings
from bridge.core.errors import PortalFatalError, PortalUnavailable
from bridge.ports import Operation, OperationResult

HOMEWORK = "homework"
Found = Callable[[], str | None]
"""A lookup of a record on the portal by its natural key: its id, or None."""


class NotOnPortal(Exception):  # noqa: N818 - a state of a reference, reported as a refusal
    """A record this one refers to has no id on the portal (unmatched, or not sent)."""

    def __init__(self, entity: str, key: str) -> None:
        super().__init__(f"its {entity} {key} has no record on the portal")
        self.entity, self.key = entity, key


class LessonDays:
    """The lessons of a group on a day as the portal listed them, read once and kept for one
    batch (one thread), with the lessons the batch created added as the portal answers."""

    def __init__(self, http: DnevnikHttp) -> None:
        self._http = http
        self._days: dict[tuple[str, str], list[Mapping[str, Any]]] = {}

    def find(self, group: str, day: str, subject: str, number: int, *, fresh: bool) -> str | None:
        """The id of the group's lesson of ``subject`` numbered ``number`` on ``day``, or None;
        ``fresh`` lists the day again (after an unknown outcome: never trust the copy then)."""
        what = f"GET edu-groups/{group}/lessons"
        if fresh or (group, day) not in self._days:
            answer = self._http.get(f"edu-groups/{group}/lessons/{day}/{day}")
            self._days[(group, day)] = listed(answer, what=what)
        for lesson in self._days[(group, day)]:
            if (
                lesson.get("number").__class__ is int
                and lesson.get("number") == number
                and portal_id(lesson.get("subject"), what=what) == subject
                and same_id(lesson, "group", group, what=what)
                and str(lesson.get("date") or day)[:10] == day
            ):
                return portal_id(lesson, what=what)
        return None

    def add(self, group: str, day: str, subject: str, number: int, lesson: str) -> None:
        """A lesson this batch created (the portal answered with its id)."""
        created = {"id_str": lesson, "subject": {"id_str": subject}, "number": number, "date": day}
        self._days.setdefault((group, day), []).append(created)


class Journal:
    """Writes one operation at a time (thread-safe: the state is the id book's; the lessons
    listed are kept per batch, see :meth:`for_batch`)."""

    def __init__(
        self, http: DnevnikHttp, settings: DnevnikSettings, ids: IdBook, *, careful: bool
    ) -> None:
        self.http, self.settings, self.ids, self.careful = http, settings, ids, careful
        self._work_types: dict[str, str] = {}  # filled once, in place (shared by batches)
        self._lessons = LessonDays(http)

    def for_batch(self) -> Journal:
        """This journal with a list of lessons of its own, for one batch in one thread."""
        batch = copy.copy(self)
        batch._lessons = LessonDays(self.http)
        return batch

    def apply(self, op: Operation) -> OperationResult:
        """One operation's result: done (with the portal's id), or refused for good."""
        write = WRITERS.get((op.entity, op.method))
        try:
            if write is None:
                return _refused(op, 0, "notSupported", f"no {op.method} of {op.entity} here")
            return OperationResult(op.op_id, True, 200, portal_id=write(self, op))
        except Refused as refusal:
            return _refused(op, refusal.status, refusal.kind, refusal.detail)
        except NotOnPortal as missing:
            return _refused(op, 0, "notOnPortal", str(missing))
        except OutcomeUnknown as unknown:  # a write with no lookup to settle it: stop here
            raise PortalUnavailable(1, f"outcome unknown: {unknown.reason}") from unknown

    # --- lessons ----------------------------------------------------------------------------

    def put_lesson(self, op: Operation) -> str:
        data = _data(op)
        group = self._group_of(data)
        subject = self._matched("subject", data.get("subject"))
        day, number = str(data["date"]), int(str(data["number"]))
        lessons = self._lessons

        def found() -> str | None:
            return lessons.find(group, day, subject, number, fresh=False)

        def recheck() -> str | None:
            return lessons.find(group, day, subject, number, fresh=True)

        body = {"group": group, "subject": subject, "date": day, "number": number}
        body["title"] = str(data.get("topic") or "")
        lesson, posted = self._place("lessons", body, found, recheck, always=True)
        if posted:  # a new lesson: its id must be nobody's (a timetable's may be shared)
            if not self.ids.claim("lesson", lesson, op.sourced_id):
                raise bad_answer("POST lessons", "the id it gave is another lesson's")
            lessons.add(group, day, subject, number, lesson)
        self.ids.note("lesson", op.sourced_id, lesson)
        homework = data.get("homework")
        if homework:
            self._homework(lesson, str(homework), day, new_lesson=posted)
        return lesson

    def _homework(self, lesson: str, text: str, day: str, *, new_lesson: bool) -> None:
        """The lesson's homework as a ``Homework`` work, unless the lesson has one already (a
        lesson this operation has just created has none: no need to look, then)."""

        def found() -> str | None:
            what = "GET works"
            for work in listed(self.http.get("works", {"lesson": lesson}), what=what):
                if (
                    work.get("type") == "Homework"
                    and work.get("text") == text
                    and same_id(work, "lesson", lesson, what=what)
                ):
                    return portal_id(work, what=what)
            return None

        body = {
            "lesson": lesson,
            "type": "Homework",
            "workType": self._work_type(HOMEWORK),
            "markType": None,
            "text": text,
            "targetDate": day,
            "displayInJournal": True,
        }
        self._post_once("works", body, found, always=not new_lesson)

    # --- works ------------------------------------------------------------------------------

    def put_work(self, op: Operation) -> str:
        data = _data(op)
        lesson = self._written("lesson", data.get("lesson"))
        kind = str(data.get("kind") or "")
        work_type = self._work_type(kind)
        body = {
            "lesson": lesson,
            "type": "Homework" if kind == HOMEWORK else "CommonWork",
            "workType": work_type,
            "markType": self.settings.mark_system,
            "displayInJournal": True,
        }
        own = self.ids.get("work", op.sourced_id)
        if own is not None:
            self.http.put(f"works/{own}", body)
            return own

        def found() -> str | None:
            what = "GET works"
            for work in listed(self.http.get("works", {"lesson": lesson}), what=what):
                marked = work.get("markType") is not None  # not a lesson's homework text
                typed = work.get("workType") is not None or work.get("workType_str") is not None
                if (
                    marked
                    and typed
                    and same_id(work, "workType", work_type, what=what)
                    and same_id(work, "lesson", lesson, what=what)
                ):
                    there = portal_id(work, what=what)
                    if self.ids.claim("work", there, op.sourced_id):
                        return there
            return None

        return self._create("work", op.sourced_id, "works", body, found)

    def delete_work(self, op: Operation) -> str | None:
        own = self.ids.get("work", op.sourced_id)
        if own is None:
            return None  # never on the portal: nothing to delete
        try:
            self.http.delete(f"works/{own}")
        except Refused:
            if self._exists(f"works/{own}"):
                raise
        self.ids.note("work", op.sourced_id, None)
        return None

    # --- marks ------------------------------------------------------------------------------

    def put_mark(self, op: Operation) -> str:
        data = _data(op)
        person = self._matched("pupil", data.get("pupil"))
        work = self._written("work", data.get("work"))
        path = f"persons/{person}/works/{work}/mark"

        def found() -> str | None:
            what = "GET persons/{p}/works/{w}/marks"
            for mark in listed(self.http.get(f"persons/{person}/works/{work}/marks"), what=what):
                if same_id(mark, "person", person, what=what) and same_id(
                    mark, "work", work, what=what
                ):
                    there = portal_id(mark, what=what)
                    if self.ids.claim("mark", there, op.sourced_id):
                        return there
            return None

        body = {"value": str(data.get("value")), "mood": None}
        return self._create("mark", op.sourced_id, path, body, found)

    # --- absences (lesson log entries) ------------------------------------------------------

    def put_absence(self, op: Operation) -> str:
        data = _data(op)
        person = self._matched("pupil", data.get("pupil"))
        lesson = self._written("lesson", data.get("lesson"))
        code = str(data.get("code") or "")
        status = self.settings.statuses.get(code)
        if status is None:
            raise Refused.of(0, "notMapped", f"absence code {code!r} has no log-entry status")
        entry = {"person": person, "lesson": lesson, "status": status}
        path = f"lessons/{lesson}/log-entries"
        own = f"{lesson}/{person}"  # a log entry is the lesson's and the person's: its id

        def found() -> str | None:
            return own if self._log_entry(lesson, person) is not None else None

        recorded = self.ids.get("absence", op.sourced_id) is not None
        if recorded or (self.careful and found() is not None):  # an update, or there already
            try:
                self.http.put(path, {"person": person, "lessonLogEntry": entry})
                return own
            except Refused:
                if found() is not None:
                    raise  # it is there, and the portal will not take the change
            # gone from the portal meanwhile: created again below

        try:
            self._post_once(path, {"lessonLogEntry": entry}, found, always=False, keyed=False)
        except Refused:
            if found() is None:
                raise
            self.http.put(path, {"person": person, "lessonLogEntry": entry})  # there after all
        return own

    def delete_absence(self, op: Operation) -> None:
        own = self.ids.get("absence", op.sourced_id)
        if own is None:
            return  # never on the portal: nothing to delete
        lesson, person = own.split("/")
        if self._log_entry(lesson, person) is not None:
            self.http.delete(f"lessons/{lesson}/log-entries", {"person": person})
        self.ids.note("absence", op.sourced_id, None)

    def _log_entry(self, lesson: str, person: str) -> Mapping[str, Any] | None:
        what = f"GET lessons/{lesson}/log-entries"
        for entry in listed(self.http.get(f"lessons/{lesson}/log-entries"), what=what):
            if portal_id(entry, "person", what=what) == person:
                return entry
        return None

    # --- shared -----------------------------------------------------------------------------

    def _create(
        self,
        entity: str,
        key: str,
        path: str,
        body: Mapping[str, Any],
        found: Found,
        *,
        always: bool = False,
    ) -> str:
        """Create one record (or find it, when a lookup is due) and take its id: an id the
        portal gives that another record of the bridge holds is a bad answer (two records would
        share one portal record, and an edit of one would change the other)."""
        there = self._place(path, body, found, found, always=always)[0]
        if not self.ids.claim(entity, there, key):  # a record found was claimed by its lookup
            raise bad_answer(f"POST {_shape(path)}", f"the id it gave is another {entity}'s")
        return there

    def _post_once(
        self, path: str, body: Mapping[str, Any], found: Found, *, always: bool, keyed: bool = True
    ) -> str:
        """POST unless the record is already there; after an unknown outcome, look before
        posting again. Gives up as PortalUnavailable after ``max_attempts`` unknown outcomes."""
        return self._place(path, body, found, found, always=always, keyed=keyed)[0]

    def _place(
        self,
        path: str,
        body: Mapping[str, Any],
        found: Found,
        recheck: Found,
        *,
        always: bool,
        keyed: bool = True,
    ) -> tuple[str, bool]:
        """(id, True when this POST created it): looked up first by ``found`` when ``always``
        or ``careful``; after an unknown outcome always by ``recheck`` (a fresh lookup). The
        answer's id is read strictly unless the record has none of its own (not ``keyed``: a
        log entry is its lesson's and person's; the id is then "")."""
        if always or self.careful:
            there = found()
            if there is not None:
                return there, False
        reason = "unknown"
        for _ in range(self.settings.max_attempts):
            try:
                answer = self.http.post(path, body)
            except OutcomeUnknown as unknown:
                reason = unknown.reason
                there = recheck()
                if there is not None:
                    return there, False
                continue
            if not keyed:
                return "", True
            try:
                return portal_id(answer, what=f"POST {_shape(path)}"), True
            except PortalFatalError:  # it took effect, but which record it made is not said:
                there = recheck()  # look it up (never post again: it would be a second one)
                if there is None:
                    raise
                return there, False
        raise PortalUnavailable(self.settings.max_attempts, f"outcome unknown: {reason}")

    def _exists(self, path: str) -> bool:
        try:
            self.http.get(path)
        except Refused:
            return False
        return True

    def _group_of(self, data: Mapping[str, Any]) -> str:
        """The portal group of a lesson: its subgroup's match, else its class's."""
        if data.get("group") not in (None, ""):
            return self._matched("group", data.get("group"))
        return self._matched("class", data.get("class"))

    def put_matched(self, op: Operation) -> str | None:
        """A record the portal owns: 'delivered' when it is matched (its id recorded); a
        delete drops it from the state only (the portal's record is the school's, not the
        bridge's)."""
        if op.method == "DELETE":
            return None
        return self._matched(op.entity, op.sourced_id)

    def _matched(self, entity: str, key: object) -> str:
        found = None if key is None else self.ids.matched(entity, str(key))
        if found is None:
            raise NotOnPortal(entity, str(key))
        return found

    def _written(self, entity: str, key: object) -> str:
        found = None if key is None else self.ids.get(entity, str(key))
        if found is None:
            raise NotOnPortal(entity, str(key))
        return found

    def _work_type(self, kind: str) -> str:
        """The portal's id of the school's work type for a canonical work kind."""
        if not self._work_types:
            what = "GET work-types"
            types = listed(self.http.get(f"work-types/{self.settings.school}"), what=what)
            self._work_types.update(
                {str(t["abbr"]): portal_id(t, what=what) for t in types if t.get("abbr")}
            )
        abbr = self.settings.work_types.get(kind)
        found = self._work_types.get(abbr or "")
        if found is None:
            raise Refused.of(0, "notMapped", f"work kind {kind!r} has no work type on the portal")
        return found


WRITERS: dict[tuple[str, str], Callable[[Journal, Operation], str | None]] = {
    ("lesson", "PUT"): Journal.put_lesson,
    ("work", "PUT"): Journal.put_work,
    ("work", "DELETE"): Journal.delete_work,
    ("mark", "PUT"): Journal.put_mark,
    ("absence", "PUT"): Journal.put_absence,
    ("absence", "DELETE"): Journal.delete_absence,
    **{
        (entity, method): Journal.put_matched
        for entity in ("class", "group", "subject", "period", "pupil")
        for method in ("PUT", "DELETE")
    },
}
"""(entity, method) → the write; anything else is refused as not supported."""


def _refused(op: Operation, status: int, kind: str, detail: str) -> OperationResult:
    return OperationResult(op.op_id, False, status, kind, detail[:300])


def _data(op: Operation) -> Mapping[str, Any]:
    if op.data is None:
        raise ValueError(f"a {op.method} of {op.entity} carries its record")
    return op.data


def _shape(path: str) -> str:
    """A request path with its ids as ``{id}`` (``persons/{id}/works/{id}/mark``)."""
    return re.sub(r"[0-9]+", "{id}", path)
