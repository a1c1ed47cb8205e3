"""The emulator's state and the diary's rules: :class:`Journal` holds every object the portal
keeps (the contingent it owns and the journal partners write), keyed by the ids it assigned,
and applies each write after validating it as a real diary would.

Objects are plain JSON dicts of one *kind* each (:data:`KINDS`); the wire shapes are made from
them by :mod:`bridge.dnevnik.views`. A write returns its :data:`Change` list (kind, id, the new
object or None when removed), which the service writes through to the file in one transaction.
A rejected write raises :class:`ParameterInvalidError` and changes nothing.

Glossary: a *person* is a pupil or a teacher; a *group* (edu-group) is a class (``Group``) or a
subgroup (``Subgroup``); a *membership* is one stay of a person in a group (start, finish: the
first day out, or None while it lasts); a *work* is what marks are given for (homework is a work
too); a *log entry* is a person's attendance on a lesson, at most one per person and lesson.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

Obj = dict[str, Any]
Change = tuple[str, int, Obj | None]

KINDS = (
    "school", "group", "person", "membership", "subject", "period", "worktype",
    "lesson", "work", "mark", "logentry",
)  # fmt: skip
"""Every kind of object, contingent first, then the journal."""
JOURNAL_KINDS = ("lesson", "work", "mark", "logentry")

FIRST_ID = 2**60 + 1
"""The first id the portal assigns: far above 2**53, so a client that reads ids as floats
loses digits (most of these ids have no exact double)."""

MARK_SYSTEMS: dict[str, tuple[str, ...]] = {
    "mark5": tuple(f"{n}{s}" for n in range(1, 6) for s in ("-", "", "+")),
    "mark10": tuple(str(n) for n in range(1, 11)),
}
"""Mark system → its values, lowest first (``GET marks/values``)."""
LOG_STATUSES = ("Attend", "Absent", "Ill", "Late", "Pass")
"""Attendance statuses (``GET lesson-log-entries/statuses``)."""
WORK_KINDS = ("CommonWork", "Homework", "LessonTestWork", "PeriodMark")
"""Values a work's ``type`` may take (guessed; the real list is longer)."""
MOODS = ("Good", "Average", "Bad")
"""Values a mark's ``mood`` may take (guessed)."""


class ParameterInvalidError(Exception):
    """A request the diary rejects (``parameterInvalid``); ``description`` says why, with ids
    only, never names or mark values."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def parse_day(value: object, name: str) -> dt.date:
    """A date from ``YYYY-MM-DD``, ISO date-time (``T`` or a space, any fraction or zone), as
    clients put it; ParameterInvalidError otherwise."""
    if isinstance(value, str) and value.strip():
        text = value.strip().replace("Z", "+00:00")
        try:
            return dt.datetime.fromisoformat(text).date()
        except ValueError:
            pass
    raise ParameterInvalidError(f"{name} must be a date (YYYY-MM-DD or ISO date-time)")


def parse_id(value: object, name: str) -> int:
    """An id from an int or a string of digits (the ``*_str`` form); rejected otherwise."""
    if isinstance(value, bool):
        raise ParameterInvalidError(f"{name} must be an id")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    raise ParameterInvalidError(f"{name} must be an id")


class Journal:
    """Every object of the emulator, with indices, and the rules of its writes. Not
    thread-safe: the service calls it under its lock."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[int, Obj]] = {kind: {} for kind in KINDS}
        self.next_id = FIRST_ID
        self.meta: dict[str, Any] = {}
        self._works_of: dict[int, list[int]] = defaultdict(list)
        self._marks_of: dict[int, list[int]] = defaultdict(list)
        self._log_of: dict[int, dict[int, int]] = defaultdict(dict)
        self._stays: dict[tuple[int, int], list[Obj]] = defaultdict(list)
        self._members_of: dict[int, set[int]] = defaultdict(set)
        self._lessons_of: dict[int, list[int]] = defaultdict(list)

    # --- loading ----------------------------------------------------------------------------

    def restore(self, kind: str, obj: Obj) -> None:
        """Put a stored (or seeded) object back, with its indices."""
        self.objects[kind][obj["id"]] = obj
        self.next_id = max(self.next_id, obj["id"] + 1)
        if kind == "work":
            self._works_of[obj["lesson"]].append(obj["id"])
        elif kind == "mark":
            self._marks_of[obj["work"]].append(obj["id"])
        elif kind == "logentry":
            self._log_of[obj["lesson"]][obj["person"]] = obj["id"]
        elif kind == "membership":
            self._stays[obj["group"], obj["person"]].append(obj)
            self._members_of[obj["group"]].add(obj["person"])
        elif kind == "lesson":
            self._lessons_of[obj["group"]].append(obj["id"])

    def new_id(self) -> int:
        """The next id the portal assigns."""
        self.next_id += 1
        return self.next_id - 1

    def clear_journal(self) -> list[Change]:
        """Remove every lesson, work, mark and log entry (the contingent stays)."""
        changes: list[Change] = [
            (kind, oid, None) for kind in JOURNAL_KINDS for oid in self.objects[kind]
        ]
        for kind in JOURNAL_KINDS:
            self.objects[kind].clear()
        self._works_of.clear()
        self._marks_of.clear()
        self._log_of.clear()
        self._lessons_of.clear()
        return changes

    # --- reads ------------------------------------------------------------------------------

    def get(self, kind: str, oid: int, name: str | None = None) -> Obj:
        """The object, or ParameterInvalidError naming the unknown id."""
        obj = self.objects[kind].get(oid)
        if obj is None:
            raise ParameterInvalidError(f"unknown {name or kind} id {oid}")
        return obj

    @property
    def school(self) -> Obj:
        """The one school of the emulator."""
        return next(iter(self.objects["school"].values()))

    def check_school(self, school_id: int) -> None:
        """ParameterInvalidError unless ``school_id`` is the emulator's school."""
        self.get("school", school_id, "school")

    def works_of(self, lesson_id: int) -> list[Obj]:
        """The works of a lesson, oldest first."""
        return [self.objects["work"][w] for w in self._works_of.get(lesson_id, [])]

    def marks_of(self, work_id: int) -> list[Obj]:
        """The marks of a work, oldest first."""
        return [self.objects["mark"][m] for m in self._marks_of.get(work_id, [])]

    def log_of(self, lesson_id: int) -> list[Obj]:
        """The log entries of a lesson."""
        return [self.objects["logentry"][e] for e in self._log_of.get(lesson_id, {}).values()]

    def stays(self, group_id: int, person_id: int) -> list[Obj]:
        """The person's memberships in the group, earliest first."""
        return sorted(self._stays.get((group_id, person_id), []), key=lambda m: m["start"])

    def members(self, group_id: int, include_archive: bool) -> list[tuple[Obj, str]]:
        """(person, ``Active`` | ``Archive``) of the group: a person with an open stay is
        Active; one whose stays are all closed is Archive (listed only with the archive)."""
        found: list[tuple[Obj, str]] = []
        for person_id in sorted(self._members_of.get(group_id, ())):
            stays = self._stays[group_id, person_id]
            status = "Active" if any(s["finish"] is None for s in stays) else "Archive"
            if status == "Active" or include_archive:
                found.append((self.objects["person"][person_id], status))
        return found

    def is_member_on(self, group_id: int, person_id: int, day: dt.date) -> bool:
        """True when the person is in the group on ``day`` (start ≤ day < finish)."""
        text = day.isoformat()
        return any(
            s["start"] <= text and (s["finish"] is None or text < s["finish"])
            for s in self._stays.get((group_id, person_id), [])
        )

    def lessons_between(self, group_id: int, first: dt.date, last: dt.date) -> list[Obj]:
        """The group's lessons dated from ``first`` to ``last`` (both included), by date and
        number."""
        low, high = first.isoformat(), last.isoformat()
        lessons = self.objects["lesson"]
        found = [
            lessons[i]
            for i in self._lessons_of.get(group_id, [])
            if low <= lessons[i]["date"] <= high
        ]
        return sorted(found, key=lambda x: (x["date"], x["number"], x["id"]))

    def period_of(self, group: Obj, day: str) -> Obj | None:
        """The group's reporting period holding ``day``, if any."""
        for period in self.objects["period"].values():
            if period["kind"] == group["periodKind"] and period["start"] <= day <= period["finish"]:
                return period
        return None

    def counts(self) -> dict[str, int]:
        """Objects per kind."""
        return {kind: len(self.objects[kind]) for kind in KINDS}

    # --- lessons ----------------------------------------------------------------------------

    def create_lesson(self, body: Mapping[str, Any]) -> tuple[Obj, list[Change]]:
        """A new lesson (a second identical one is a second lesson, as in a real diary)."""
        group_id = parse_id(body.get("eduGroup", body.get("group")), "eduGroup")
        group = self.get("group", group_id, "eduGroup")
        subject_id = parse_id(_first(body, "subject", "subjectId"), "subject")
        self.get("subject", subject_id)
        if subject_id not in group["subjects"]:
            raise ParameterInvalidError(
                f"subject {subject_id} is not taught in edu-group {group['id']}"
            )
        day = parse_day(body.get("date"), "date")
        year = self.school["year"]
        if not year["start"] <= day.isoformat() <= year["finish"]:
            raise ParameterInvalidError(f"date {day} is outside the study year")
        number = body.get("number")
        if isinstance(number, str) and number.isdigit():
            number = int(number)
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number <= 12:
            raise ParameterInvalidError("number must be a lesson number from 0 to 12")
        title = body.get("title") or ""
        if not isinstance(title, str) or len(title) > 1000:
            raise ParameterInvalidError("title must be a text of at most 1000 characters")
        teachers = [self._teacher(t) for t in _listed(body.get("teacher", body.get("teachers")))]
        lesson = {
            "id": self.new_id(), "group": group["id"], "subject": subject_id,
            "date": day.isoformat(), "number": number, "title": title, "teachers": teachers,
        }  # fmt: skip
        self.restore("lesson", lesson)
        return lesson, [("lesson", lesson["id"], lesson)]

    def _teacher(self, value: object) -> int:
        person = self.get("person", parse_id(value, "teacher"), "teacher")
        if person["role"] != "teacher":
            raise ParameterInvalidError(f"person {person['id']} is not a teacher")
        return int(person["id"])

    # --- works ------------------------------------------------------------------------------

    def create_work(self, body: Mapping[str, Any], created_by: int) -> tuple[Obj, list[Change]]:
        """A new work on a lesson; its group, subject and period come from the lesson."""
        lesson = self.get("lesson", parse_id(body.get("lesson"), "lesson"))
        group = self.objects["group"][lesson["group"]]
        if (
            body.get("eduGroup") not in (None, 0, "0", "")
            and parse_id(body["eduGroup"], "eduGroup") != group["id"]
        ):
            raise ParameterInvalidError(f"lesson {lesson['id']} belongs to another edu-group")
        period = self.period_of(group, lesson["date"])
        work: Obj = {
            "id": self.new_id(), "lesson": lesson["id"], "eduGroup": group["id"],
            "subjectId": lesson["subject"], "createdBy": created_by,
            "periodNumber": period["number"] if period else 0,
            "periodType": period["type"] if period else group["periodType"],
            "type": "CommonWork", "workType": None, "markType": "mark5", "markCount": 1,
            "displayInJournal": True, "isImportant": False, "text": "", "targetDate": None,
        }  # fmt: skip
        self._edit_work(work, body, creating=True)
        self.restore("work", work)
        return work, [("work", work["id"], work)]

    def update_work(self, work_id: int, body: Mapping[str, Any]) -> tuple[Obj, list[Change]]:
        """Change a work's editable fields; its mark system only while it has no marks."""
        work = dict(self.get("work", work_id))
        if (
            body.get("lesson") not in (None, 0, "0", "")
            and parse_id(body["lesson"], "lesson") != work["lesson"]
        ):
            raise ParameterInvalidError("a work cannot move to another lesson")
        self._edit_work(work, body, creating=False)
        self.objects["work"][work_id] = work
        return work, [("work", work_id, work)]

    def _edit_work(self, work: Obj, body: Mapping[str, Any], *, creating: bool) -> None:
        if "type" in body:
            work["type"] = _work_kind(body["type"])
        if "workType" in body or creating:
            work["workType"] = self._work_type(body.get("workType"))
        if "markType" in body and body["markType"] != work["markType"]:
            self._change_mark_type(work, body["markType"], creating=creating)
        if "text" in body:
            if not isinstance(body["text"], str) or len(body["text"]) > 10_000:
                raise ParameterInvalidError("text must be a text of at most 10000 characters")
            work["text"] = body["text"]
        for name in ("displayInJournal", "isImportant"):
            if name in body:
                work[name] = _flag(body[name], name)
        if "markCount" in body:
            work["markCount"] = _mark_count(body["markCount"])
        if body.get("targetDate") not in (None, ""):
            work["targetDate"] = parse_day(body["targetDate"], "targetDate").isoformat()

    def _change_mark_type(self, work: Obj, system: object, *, creating: bool) -> None:
        if system is not None and system not in MARK_SYSTEMS:
            raise ParameterInvalidError(f"markType must be one of {', '.join(MARK_SYSTEMS)}")
        if not creating and self._marks_of.get(work["id"]):
            raise ParameterInvalidError(f"work {work['id']} has marks; its markType cannot change")
        work["markType"] = system

    def _work_type(self, value: object) -> int:
        if value in (None, 0, "0", ""):
            return int(min(self.objects["worktype"]))  # the school's first kind: a common work
        return int(self.get("worktype", parse_id(value, "workType"), "workType")["id"])

    def delete_work(self, work_id: int) -> tuple[Obj, list[Change]]:
        """Remove a work that has no marks (marks are never deleted)."""
        work = self.get("work", work_id)
        if self._marks_of.get(work_id):
            raise ParameterInvalidError(f"work {work_id} has marks and cannot be deleted")
        del self.objects["work"][work_id]
        self._works_of[work["lesson"]].remove(work_id)
        return work, [("work", work_id, None)]

    # --- marks ------------------------------------------------------------------------------

    def create_mark(
        self, person_id: int, work_id: int, body: Mapping[str, Any]
    ) -> tuple[Obj, list[Change]]:
        """A new mark of a person on a work (a second one is a second mark)."""
        work = self.get("work", work_id)
        lesson = self.objects["lesson"][work["lesson"]]
        self._pupil_on(person_id, lesson)
        system = work["markType"]
        if system is None:
            raise ParameterInvalidError(f"work {work_id} takes no marks (markType is null)")
        value = body.get("value")
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if value not in MARK_SYSTEMS[system]:
            raise ParameterInvalidError(f"value is not a mark of {system}")
        mood = body.get("mood")
        if mood not in (None, "", *MOODS):
            raise ParameterInvalidError(f"mood must be one of {', '.join(MOODS)}")
        earlier = sum(1 for m in self.marks_of(work_id) if m["person"] == person_id)
        mark = {
            "id": self.new_id(), "person": person_id, "work": work_id, "lesson": lesson["id"],
            "type": system, "value": value, "number": earlier, "date": lesson["date"],
            "workType": work["workType"], "mood": mood or None,
        }  # fmt: skip
        self.restore("mark", mark)
        return mark, [("mark", mark["id"], mark)]

    def _pupil_on(self, person_id: int, lesson: Obj) -> None:
        person = self.get("person", person_id)
        day = dt.date.fromisoformat(lesson["date"])
        if person["role"] != "pupil" or not self.is_member_on(lesson["group"], person_id, day):
            raise ParameterInvalidError(
                f"person {person_id} is not an active member of edu-group {lesson['group']}"
                f" on {lesson['date']}"
            )

    # --- log entries ------------------------------------------------------------------------

    def create_log_entry(
        self, lesson_id: int, body: Mapping[str, Any], now: str
    ) -> tuple[Obj, list[Change]]:
        """The person's attendance on the lesson; a second one for the same pair is refused."""
        lesson, person_id = self._log_target(lesson_id, body)
        if person_id in self._log_of.get(lesson_id, {}):
            raise ParameterInvalidError(
                f"person {person_id} already has a log entry on lesson {lesson_id}"
            )
        entry = {
            "id": self.new_id(), "lesson": lesson["id"], "person": person_id,
            "createdDate": now, **self._log_fields(body, None),
        }  # fmt: skip
        self.restore("logentry", entry)
        return entry, [("logentry", entry["id"], entry)]

    def update_log_entry(self, lesson_id: int, body: Mapping[str, Any]) -> tuple[Obj, list[Change]]:
        """Change the status or comment of an existing entry."""
        _, person_id = self._log_target(lesson_id, body)
        entry_id = self._log_of.get(lesson_id, {}).get(person_id)
        if entry_id is None:
            raise ParameterInvalidError(
                f"person {person_id} has no log entry on lesson {lesson_id}"
            )
        entry = {**self.objects["logentry"][entry_id]}
        entry.update(self._log_fields(body, entry))
        self.objects["logentry"][entry_id] = entry
        return entry, [("logentry", entry_id, entry)]

    def delete_log_entry(self, lesson_id: int, person: object) -> tuple[Obj, list[Change]]:
        """Remove the person's entry on the lesson."""
        self.get("lesson", lesson_id)
        person_id = parse_id(person, "person")
        entry_id = self._log_of.get(lesson_id, {}).pop(person_id, None)
        if entry_id is None:
            raise ParameterInvalidError(
                f"person {person_id} has no log entry on lesson {lesson_id}"
            )
        entry = self.objects["logentry"].pop(entry_id)
        return entry, [("logentry", entry_id, None)]

    def _log_target(self, lesson_id: int, body: Mapping[str, Any]) -> tuple[Obj, int]:
        lesson = self.get("lesson", lesson_id)
        if (
            body.get("lesson") not in (None, 0, "0", "")
            and parse_id(body["lesson"], "lesson") != lesson_id
        ):
            raise ParameterInvalidError("lessonLogEntry.lesson differs from the lesson in the path")
        person_id = parse_id(body.get("person"), "person")
        self._pupil_on(person_id, lesson)
        return lesson, person_id

    @staticmethod
    def _log_fields(body: Mapping[str, Any], old: Obj | None) -> Obj:
        status = body.get("status", old["status"] if old else None)
        if status not in LOG_STATUSES:
            raise ParameterInvalidError(f"status must be one of {', '.join(LOG_STATUSES)}")
        comment = body.get("comment", old["comment"] if old else None)
        if comment is not None and (not isinstance(comment, str) or len(comment) > 1000):
            raise ParameterInvalidError("comment must be a text of at most 1000 characters")
        return {"status": status, "comment": comment}


def _first(body: Mapping[str, Any], *names: str) -> object:
    for name in names:
        if body.get(name) is not None:
            return body[name]
    return None


def _listed(value: object) -> Iterable[object]:
    if value in (None, "", 0, "0"):
        return []
    return value if isinstance(value, list) else [value]


def _work_kind(value: object) -> str:
    """A work's kind by name, or by its index in :data:`WORK_KINDS` (pydnevnikruapi's example
    work has ``"type": 0``)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(WORK_KINDS):
        return WORK_KINDS[value]
    if value not in WORK_KINDS:
        raise ParameterInvalidError(f"type must be one of {', '.join(WORK_KINDS)}")
    return str(value)


def _mark_count(value: object) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 5:
        raise ParameterInvalidError("markCount must be from 0 to 5")
    return value


def _flag(value: object, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "True", "false", "False"):
        return value in ("true", "True")
    raise ParameterInvalidError(f"{name} must be true or false")
