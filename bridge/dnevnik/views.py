"""The JSON shapes the emulator answers with, made from :mod:`bridge.dnevnik.journal` objects.
Every id is an int64 with its ``*_str`` twin; dates are ``YYYY-MM-DDT00:00:00``
(``docs/dnevnik-emulator.md`` shows each shape and says which parts are guessed).
"""

from __future__ import annotations

from typing import Any

from bridge.dnevnik.journal import Journal, Obj

Json = dict[str, Any]


def stamp(day: str | None) -> str | None:
    """A stored date (``YYYY-MM-DD``) as the API writes it."""
    return f"{day}T00:00:00" if day else None


def ids(name: str, value: int | None) -> Json:
    """``{name: value, name_str: "value"}``."""
    return {name: value, f"{name}_str": None if value is None else str(value)}


def id_list(name: str, values: list[int]) -> Json:
    """``{name: [..], name_str: ["..", ..]}``."""
    return {name: values, f"{name}_str": [str(v) for v in values]}


def person(obj: Obj) -> Json:
    """A person (pupil or teacher)."""
    middle = obj["middleName"]
    initials = f" {obj['firstName'][:1]}." + (f" {middle[:1]}." if middle else "")
    return {
        **ids("id", obj["id"]), **ids("userId", obj["userId"]),
        "lastName": obj["lastName"], "firstName": obj["firstName"], "middleName": middle,
        "shortName": obj["lastName"] + initials, "sex": obj["sex"],
        "birthday": stamp(obj["birthday"]),
    }  # fmt: skip


def member(journal: Journal, group_id: int, obj: Obj, status: str) -> Json:
    """A person of a group, with its membership there (guessed shape: ``membership`` holds
    the status and the dates of the latest stay)."""
    latest = journal.stays(group_id, obj["id"])[-1]
    return {
        **person(obj),
        "membership": {
            **ids("eduGroup", group_id), "status": status,
            "startDate": stamp(latest["start"]), "finishDate": stamp(latest["finish"]),
        },
    }  # fmt: skip


def teacher(obj: Obj) -> Json:
    """A teacher as ``schools/{s}/teachers`` lists it (capitalised keys, as a public Java
    client reads them)."""
    view = person(obj)
    return {
        "Id": obj["id"], "IdStr": str(obj["id"]), "UserId": obj["userId"],
        "UserIdStr": str(obj["userId"]), "FirstName": obj["firstName"],
        "LastName": obj["lastName"], "MiddleName": obj["middleName"],
        "ShortName": view["shortName"], "Sex": obj["sex"], "DateBirth": stamp(obj["birthday"]),
    }  # fmt: skip


def subject(obj: Obj) -> Json:
    """A subject."""
    return {**ids("id", obj["id"]), "name": obj["name"], "knowledgeArea": obj["knowledgeArea"],
            "fgosSubjectId": None}  # fmt: skip


def group(journal: Journal, obj: Obj) -> Json:
    """An edu-group: a class (``Group``) or a subgroup (``Subgroup``, with its class in
    ``parentIds``)."""
    return {
        **ids("id", obj["id"]), **id_list("parentIds", obj["parentIds"]), "type": obj["type"],
        "name": obj["name"], "fullName": obj["fullName"], "parallel": obj["parallel"],
        "status": "Active", "studyyear": obj["studyyear"],
        "subjects": [subject(journal.objects["subject"][s]) for s in obj["subjects"]],
        **ids("schoolId", journal.school["id"]),
    }  # fmt: skip


def period(obj: Obj) -> Json:
    """A reporting period."""
    return {
        **ids("id", obj["id"]), "start": stamp(obj["start"]), "finish": stamp(obj["finish"]),
        "number": obj["number"], "type": obj["type"], "name": obj["name"], "year": obj["year"],
    }  # fmt: skip


def work_type(journal: Journal, obj: Obj) -> Json:
    """A work type of the school."""
    return {**ids("id", obj["id"]), "schoolId": journal.school["id"], "kindId": obj["kindId"],
            "kind": obj["kind"], "title": obj["title"], "abbr": obj["abbr"],
            "weight": obj["weight"]}  # fmt: skip


def work(obj: Obj) -> Json:
    """A work (what marks are given for; homework is a work with ``text`` and
    ``targetDate``)."""
    return {
        **ids("id", obj["id"]), "type": obj["type"], "workType": obj["workType"],
        "markType": obj["markType"], "markCount": obj["markCount"],
        **ids("lesson", obj["lesson"]), "displayInJournal": obj["displayInJournal"],
        "status": "Sent", **ids("eduGroup", obj["eduGroup"]), "tasks": [],
        "text": obj["text"], "periodNumber": obj["periodNumber"],
        "periodType": obj["periodType"], "subjectId": obj["subjectId"],
        "isImportant": obj["isImportant"], "targetDate": stamp(obj["targetDate"]),
        "sentDate": None, "createdBy": obj["createdBy"], "files": [], "oneDriveLinks": [],
    }  # fmt: skip


def lesson(journal: Journal, obj: Obj) -> Json:
    """A lesson with its subject, group, works and teachers; the topic is ``title``."""
    return {
        **ids("id", obj["id"]), "title": obj["title"], "date": stamp(obj["date"]),
        "number": obj["number"], "subject": subject(journal.objects["subject"][obj["subject"]]),
        **ids("group", obj["group"]), "status": "NotCompleted",
        "works": [work(w) for w in journal.works_of(obj["id"])],
        **id_list("teachers", obj["teachers"]),
    }  # fmt: skip


def mark(obj: Obj) -> Json:
    """A mark of a person on a work."""
    return {
        **ids("id", obj["id"]), "type": obj["type"], "value": obj["value"],
        "textValue": obj["value"], **ids("person", obj["person"]), **ids("work", obj["work"]),
        **ids("lesson", obj["lesson"]), "number": obj["number"], "date": stamp(obj["date"]),
        "workType": obj["workType"], "mood": obj["mood"], "use_avg_calc": True,
    }  # fmt: skip


def log_entry(obj: Obj) -> Json:
    """A log entry: a person's attendance on a lesson."""
    return {
        **ids("person", obj["person"]), **ids("lesson", obj["lesson"]),
        "comment": obj["comment"], "status": obj["status"], "createdDate": obj["createdDate"],
    }  # fmt: skip
