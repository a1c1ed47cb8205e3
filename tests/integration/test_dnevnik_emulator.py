"""The dnevnik.ru emulator over real HTTP on 127.0.0.1: the seeded contingent and its
mismatches, every /v2 endpoint with its validation, the Access-Token, the error envelope and
the HTML pages, every injected fault as a client sees it, persistence across a restart, the
inspection endpoints and the program's command line."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from structlog.testing import capture_logs

from bridge.core.errors import ConfigError
from bridge.dnevnik.emulator import DnevnikEmulator
from bridge.dnevnik.service import DEMO_TOKEN
from tests.dnevnik import WITHDRAWN_ON, Api, asiou_rows, write_school

BIG = 2**53


@pytest.fixture(scope="module")
def school(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The small demo school (60 pupils, 20 days, one pupil withdrawn), written once."""
    path = tmp_path_factory.mktemp("dnevnik") / "school.sqlite"
    return path, write_school(path)


@pytest.fixture
def emulator(tmp_path: Path, school: tuple[Path, dict[str, Any]]) -> Iterator[DnevnikEmulator]:
    """A fresh emulator seeded from the school, on a free port, with its data file."""
    with DnevnikEmulator(data_path=tmp_path / "emu.sqlite", seed_school=school[0]) as running:
        yield running


@pytest.fixture
def api(emulator: DnevnikEmulator) -> Api:
    """A client of the emulator with the demo token."""
    return Api(emulator)


def _mismatch(emulator: DnevnikEmulator, kind: str) -> Any:
    found = [m for m in emulator.mismatches() if m.kind == kind]
    assert len(found) == 1, kind
    return found[0]


def _class_of(school: Path, pupil: int) -> int:
    rows = asiou_rows(school, "SELECT class_id FROM pupil_move WHERE pupil_id = ?", pupil)
    return int(rows[0]["class_id"])


def _active_pupils(api: Api, group: int) -> list[int]:
    """The pupils of the group who are Active since September 1 and not part of any
    mismatch."""
    involved = {p for m in api.emulator.mismatches() for p in m.portal_ids}
    persons = api.ok("GET", f"edu-groups/{group}/persons")
    return [
        p["id"]
        for p in persons
        if p["id"] not in involved and p["membership"]["startDate"] == "2025-09-01T00:00:00"
    ]


def _active_pupil(api: Api, group: int) -> int:
    """The first of :func:`_active_pupils`."""
    return _active_pupils(api, group)[0]


# --- seeding and mismatches -------------------------------------------------------------------


def test_seeding_injects_each_mismatch_once(
    api: Api, emulator: DnevnikEmulator, school: tuple[Path, dict[str, Any]]
) -> None:
    """Each of the four mismatch kinds is injected once and listed at /_emulator/mismatches."""
    kinds = sorted(m.kind for m in emulator.mismatches())
    assert kinds == ["class_name", "missing_person", "name_spelling", "same_name_twins"]
    assert api.inspect("mismatches") == [m.as_json() for m in emulator.mismatches()]


def test_missing_pupil_has_no_portal_person(
    api: Api, emulator: DnevnikEmulator, school: tuple[Path, dict[str, Any]]
) -> None:
    """The missing pupil has no portal id and is in no group's persons, archive included."""
    missing = _mismatch(emulator, "missing_person")
    assert emulator.portal_id("pupil", missing.asiou_id) is None
    (row,) = asiou_rows(school[0], "SELECT * FROM pupil WHERE id = ?", missing.asiou_id)
    group = api.klass(_class_of(school[0], missing.asiou_id))
    persons = api.ok("GET", f"edu-groups/{group}/persons", params={"includeArchive": "true"})
    keys = {(p["lastName"], p["firstName"], p["birthday"][:10]) for p in persons}
    assert (row["last_name"], row["first_name"], row["birth_date"]) not in keys


def test_misspelled_pupil_differs_in_the_named_field_only(
    api: Api, emulator: DnevnikEmulator, school: tuple[Path, dict[str, Any]]
) -> None:
    """The misspelled pupil's portal person differs from ASIOU in one name field."""
    spelled = _mismatch(emulator, "name_spelling")
    (row,) = asiou_rows(school[0], "SELECT * FROM pupil WHERE id = ?", spelled.asiou_id)
    person = api.ok("GET", f"persons/{spelled.portal_ids[0]}")
    asiou = {"lastName": row["last_name"], "firstName": row["first_name"]}
    assert person[spelled.detail] != asiou[spelled.detail]
    other = next(k for k in asiou if k != spelled.detail)
    assert person[other] == asiou[other]
    assert person["birthday"] == f"{row['birth_date']}T00:00:00"


def test_twins_share_surname_first_name_and_birthday_in_one_class(
    api: Api, emulator: DnevnikEmulator, school: tuple[Path, dict[str, Any]]
) -> None:
    """Two Active persons of the pupil's class share surname, first name and birthday."""
    twins = _mismatch(emulator, "same_name_twins")
    group = api.klass(_class_of(school[0], twins.asiou_id))
    persons = {p["id"]: p for p in api.ok("GET", f"edu-groups/{group}/persons")}
    first, second = (persons[i] for i in twins.portal_ids)
    assert first["id"] != second["id"]
    for name in ("lastName", "firstName", "birthday"):
        assert first[name] == second[name]


def test_renamed_class_has_another_name(
    api: Api, emulator: DnevnikEmulator, school: tuple[Path, dict[str, Any]]
) -> None:
    """The renamed class is called "5 А" where ASIOU's grade and letter make "5А"."""
    renamed = _mismatch(emulator, "class_name")
    (row,) = asiou_rows(school[0], "SELECT * FROM class_unit WHERE id = ?", renamed.asiou_id)
    group = api.ok("GET", f"edu-groups/{renamed.portal_ids[0]}")
    assert group["name"] == f"{row['grade']} {row['letter']}"
    names = {g["name"] for g in api.ok("GET", f"schools/{emulator.school_id}/edu-groups")}
    assert f"{row['grade']}{row['letter']}" not in names


def test_seeding_is_deterministic(tmp_path: Path, school: tuple[Path, dict[str, Any]]) -> None:
    """Two emulators seeded from one school hold the same objects and mismatches."""
    states = []
    for name in ("a", "b"):
        with DnevnikEmulator(data_path=tmp_path / name, seed_school=school[0]) as emulator:
            states.append((emulator.state()["objects"], emulator.mismatches()))
    assert states[0] == states[1]


def test_a_new_data_file_needs_a_seed_school(tmp_path: Path) -> None:
    """Starting on a new data file without --seed-school is a configuration error."""
    with pytest.raises(ConfigError, match="seed-school"):
        DnevnikEmulator(data_path=tmp_path / "new.sqlite")


def test_a_seed_school_that_is_not_one_is_refused(tmp_path: Path) -> None:
    """A seed file that is missing or has no ASIOU tables is a configuration error."""
    with pytest.raises(ConfigError, match="no such"):
        DnevnikEmulator(data_path=tmp_path / "a.sqlite", seed_school=tmp_path / "none.sqlite")
    (tmp_path / "empty.sqlite").write_bytes(b"")
    with pytest.raises(ConfigError, match="not an ASIOU"):
        DnevnikEmulator(data_path=tmp_path / "b.sqlite", seed_school=tmp_path / "empty.sqlite")


# --- the contingent ---------------------------------------------------------------------------


def test_ids_are_int64_above_2_53_with_string_twins(api: Api, emulator: DnevnikEmulator) -> None:
    """Every id is above 2**53 and mirrored exactly by its ``*_str`` field."""
    groups = api.ok("GET", f"schools/{emulator.school_id}/edu-groups")
    persons = api.ok("GET", f"edu-groups/{groups[0]['id']}/persons")
    for obj in [*groups, *persons]:
        assert obj["id"] > BIG
        assert obj["id_str"] == str(obj["id"])
    assert float(groups[0]["id"]) != groups[0]["id"] or float(persons[0]["id"]) != persons[0]["id"]


def test_edu_groups_are_classes_and_subgroups(
    api: Api, emulator: DnevnikEmulator, school: tuple[Path, dict[str, Any]]
) -> None:
    """The school lists every class (Group) and subgroup (Subgroup, its class in parentIds)."""
    groups = api.ok("GET", f"schools/{emulator.school_id}/edu-groups")
    classes = asiou_rows(school[0], "SELECT * FROM class_unit")
    subgroups = asiou_rows(school[0], "SELECT * FROM class_group")
    assert len(groups) == len(classes) + len(subgroups)
    by_id = {g["id"]: g for g in groups}
    for row in subgroups:
        group = by_id[emulator.portal_id("class_group", row["id"])]
        assert group["type"] == "Subgroup"
        assert group["name"] == row["name"]
        assert group["parentIds"] == [api.klass(row["class_id"])]
        assert group["parentIds_str"] == [str(api.klass(row["class_id"]))]
    one = api.ok("GET", f"edu-groups/{groups[0]['id']}")
    assert one == groups[0]
    assert one["type"] == "Group"
    assert one["subjects"]
    assert {"id", "id_str", "name"} <= set(one["subjects"][0])


def test_persons_carry_names_sex_birthday_and_short_name(
    api: Api, emulator: DnevnikEmulator
) -> None:
    """A person has lastName, firstName, middleName, sex, birthday (ISO) and shortName."""
    group = api.ok("GET", f"schools/{emulator.school_id}/edu-groups")[0]
    person = api.ok("GET", f"edu-groups/{group['id']}/persons")[0]
    one = api.ok("GET", f"persons/{person['id']}")
    assert {k: person[k] for k in one} == one
    assert one["sex"] in ("Male", "Female")
    assert len(one["birthday"]) == 19
    assert one["birthday"].endswith("T00:00:00")
    assert one["shortName"].startswith(one["lastName"] + " ")
    assert one["userId_str"] == str(one["userId"])


def test_membership_status_and_archive(api: Api, school: tuple[Path, dict[str, Any]]) -> None:
    """A withdrawn pupil is left out of a group's persons unless includeArchive=true, where
    it shows status Archive with the finish date; the others are Active."""
    facts = school[1]
    group = api.klass(facts["withdrawn_class"])
    gone = api.pupil(facts["withdrawn_pupil"])
    active = api.ok("GET", f"edu-groups/{group}/persons")
    every = api.ok("GET", f"edu-groups/{group}/persons", params={"includeArchive": "true"})
    assert gone not in {p["id"] for p in active}
    assert {p["membership"]["status"] for p in active} == {"Active"}
    (archived,) = [p for p in every if p["id"] == gone]
    assert archived["membership"]["status"] == "Archive"
    assert archived["membership"]["finishDate"] == f"{WITHDRAWN_ON}T00:00:00"
    assert len(every) == len(active) + 1
    same = api.ok("GET", "persons", params={"eduGroup": group})
    assert [p["id"] for p in same] == [p["id"] for p in active]


def test_subjects_periods_work_types_teachers_and_codes(
    api: Api, emulator: DnevnikEmulator, school: tuple[Path, dict[str, Any]]
) -> None:
    """The read-only lists: school and group subjects, reporting periods of the group's kind,
    work types, teachers, mark systems and attendance statuses."""
    s = emulator.school_id
    subjects = api.ok("GET", f"schools/{s}/subjects")
    assert len(subjects) == len(asiou_rows(school[0], "SELECT id FROM subject"))
    groups = {g["parallel"]: g for g in api.ok("GET", f"schools/{s}/edu-groups")
              if g["type"] == "Group"}  # fmt: skip
    quarters = api.ok("GET", f"edu-groups/{groups[1]['id']}/reporting-periods")
    halves = api.ok("GET", f"edu-groups/{groups[11]['id']}/reporting-periods")
    assert [(p["type"], p["number"]) for p in quarters] == [("Quarter", n) for n in (1, 2, 3, 4)]
    assert [(p["type"], p["number"]) for p in halves] == [("HalfYear", 1), ("HalfYear", 2)]
    assert quarters[0]["start"] == "2025-09-01T00:00:00"
    kinds = api.ok("GET", f"work-types/{s}")
    assert {k["abbr"] for k in kinds} >= {"УО", "КР", "ДЗ"}
    teachers = api.ok("GET", f"schools/{s}/teachers")
    assert len(teachers) == len(asiou_rows(school[0], "SELECT id FROM teacher"))
    assert {"Id", "IdStr", "LastName", "FirstName"} <= set(teachers[0])
    systems = {m["type"]: m["values"] for m in api.ok("GET", "marks/values")}
    assert systems["mark5"][0] == "1-"
    assert systems["mark5"][-1] == "5+"
    assert api.ok("GET", "marks/values/type/mark5") == systems["mark5"]
    assert "unknown mark type" in api.rejected("GET", "marks/values/type/mark7")
    statuses = api.ok("GET", "lesson-log-entries/statuses")
    assert statuses == ["Attend", "Absent", "Ill", "Late", "Pass"]


def test_unknown_ids_in_reads_are_parameter_invalid(api: Api, emulator: DnevnikEmulator) -> None:
    """Reading an id the portal never assigned answers parameterInvalid."""
    for path in (
        "edu-groups/42",
        "persons/42",
        "lessons/42",
        "works/42",
        "marks/42",
        f"schools/{emulator.school_id + 1}/edu-groups",
        "edu-groups/x/persons",
    ):
        api.rejected("GET", path)  # fmt: skip


# --- lessons ----------------------------------------------------------------------------------


def test_lesson_create_and_read(api: Api, emulator: DnevnikEmulator) -> None:
    """POST lessons assigns an id; GET lessons/{id} answers the same lesson."""
    group = api.klass(1)
    teacher = api.ok("GET", f"schools/{emulator.school_id}/teachers")[0]["Id"]
    lesson = api.lesson(group, teacher=teacher)
    assert lesson["id"] > BIG
    assert lesson["id_str"] == str(lesson["id"])
    assert lesson["date"] == "2025-09-10T00:00:00"
    assert lesson["group"] == group
    assert lesson["title"] == "Тема урока"
    assert lesson["works"] == []
    assert lesson["teachers"] == [teacher]
    assert api.ok("GET", f"lessons/{lesson['id']}") == lesson


def test_a_lesson_posted_twice_is_two_lessons(api: Api) -> None:
    """The same lesson posted twice makes two, shown as duplicates in /_emulator/state."""
    first, second = api.lesson(api.klass(1)), api.lesson(api.klass(1))
    assert first["id"] != second["id"]
    assert api.inspect("state")["duplicates"]["lessons"] == [[first["id"], second["id"]]]


def test_lesson_validation(api: Api, emulator: DnevnikEmulator) -> None:
    """Unknown group, subject not of the group, bad or out-of-year date, bad number and a
    non-teacher are refused."""
    group = api.klass(1)
    subject = api.subject_of(group)
    good = {"eduGroup": group, "subject": subject, "date": "2025-09-10", "number": 1}
    all_subjects = {s["id"] for s in api.ok("GET", f"schools/{emulator.school_id}/subjects")}
    untaught = all_subjects - {s["id"] for s in api.ok("GET", f"edu-groups/{group}/subjects")}
    pupil = _active_pupil(api, group)
    for change, words in (
        ({"eduGroup": 42}, "eduGroup"),
        ({"subject": 42}, "subject"),
        ({"date": "tomorrow"}, "date"),
        ({"date": "2024-09-10"}, "outside the study year"),
        ({"number": 40}, "number"),
        ({"teacher": pupil}, "not a teacher"),
    ):
        assert words in api.rejected("POST", "lessons", json={**good, **change})
    if untaught:
        body = {**good, "subject": min(untaught)}
        assert "not taught" in api.rejected("POST", "lessons", json=body)
    assert api.inspect("state")["counts"]["lesson"] == 0


def test_lesson_from_a_form_body(api: Api) -> None:
    """A form-encoded lesson (plain fields) is accepted like JSON."""
    group = api.klass(1)
    form = {"eduGroup": str(group), "subject": str(api.subject_of(group)),
            "date": "2025-09-11T00:00:00", "number": "3", "title": "Тема"}  # fmt: skip
    lesson = api.ok("POST", "lessons", data=form)
    assert (lesson["number"], lesson["date"]) == (3, "2025-09-11T00:00:00")


def test_lessons_many_and_group_range(api: Api) -> None:
    """POST lessons/many takes JSON or repeated form keys; the group's lessons between two
    dates (ISO dates or str(datetime)) include both ends."""
    group = api.klass(1)
    ids = [api.lesson(group, day)["id"] for day in ("2025-09-08", "2025-09-10", "2025-09-12")]
    many = api.ok("POST", "lessons/many", json=[*ids[:2], 42])
    assert [x["id"] for x in many] == ids[:2]
    form = api.ok("POST", "lessons/many", data={"lessons": ids[1:]})
    assert [x["id"] for x in form] == ids[1:]
    ranged = api.ok("GET", f"edu-groups/{group}/lessons/2025-09-08/2025-09-10")
    assert [x["id"] for x in ranged] == ids[:2]
    spaced = api.ok("GET", f"edu-groups/{group}/lessons/2025-09-10 00:00:00/2025-09-12 23:59:59.5")
    assert [x["id"] for x in spaced] == ids[1:]
    assert "startDate" in api.rejected("GET", f"edu-groups/{group}/lessons/soon/2025-09-12")


# --- works ------------------------------------------------------------------------------------


def test_work_create_read_update_delete(api: Api) -> None:
    """A work is created on a lesson (JSON, or a form whose ``work`` holds JSON), listed by
    lesson and in the lesson, changed with PUT and deleted."""
    lesson = api.lesson(api.klass(1))
    work = api.work(lesson["id"], text="§1", targetDate="2025-09-12T00:00:00", type="Homework")
    assert work["id"] > BIG
    assert (work["lesson"], work["lesson_str"]) == (lesson["id"], str(lesson["id"]))
    assert work["eduGroup"] == lesson["group"]
    assert work["targetDate"] == "2025-09-12T00:00:00"
    assert work["periodType"] == "Quarter"
    assert work["periodNumber"] == 1
    form = api.ok("POST", "works", data={"work": json.dumps({"lesson": lesson["id"]})})
    assert form["markType"] == "mark5"
    listed = api.ok("GET", "works", params={"lesson": lesson["id"]})
    assert [w["id"] for w in listed] == [work["id"], form["id"]]
    assert [w["id"] for w in api.ok("GET", f"lessons/{lesson['id']}")["works"]] == [
        work["id"], form["id"]
    ]  # fmt: skip
    changed = api.ok("PUT", f"works/{work['id']}", json={"text": "§2"})
    assert changed["text"] == "§2"
    assert api.ok("GET", f"works/{work['id']}") == changed
    assert api.ok("DELETE", f"works/{work['id']}")["id"] == work["id"]
    assert [w["id"] for w in api.ok("GET", "works", params={"lesson": lesson["id"]})] == [
        form["id"]
    ]  # fmt: skip
    api.rejected("GET", f"works/{work['id']}")


def test_work_validation(api: Api) -> None:
    """Unknown lesson, work type, mark system or work kind, and a bad flag are refused; a work
    with marks can neither change its mark system nor be deleted."""
    group = api.klass(1)
    lesson = api.lesson(group)["id"]
    for body, words in (
        ({"lesson": 42}, "lesson"),
        ({"lesson": lesson, "workType": 42}, "workType"),
        ({"lesson": lesson, "markType": "mark7"}, "markType"),
        ({"lesson": lesson, "type": "Party"}, "type"),
        ({"lesson": lesson, "displayInJournal": "maybe"}, "displayInJournal"),
        ({"lesson": lesson, "markCount": 9}, "markCount"),
    ):
        assert words in api.rejected("POST", "works", json=body)
    work = api.work(lesson)
    api.mark(_active_pupil(api, group), work["id"])
    assert "has marks" in api.rejected("PUT", f"works/{work['id']}", json={"markType": "mark10"})
    assert "has marks" in api.rejected("DELETE", f"works/{work['id']}")


# --- marks ------------------------------------------------------------------------------------


def test_mark_create_and_every_read(api: Api) -> None:
    """A mark is created on a person's work and read by id, work, lesson, lessons and
    person-and-work; its value, type and ids are as sent."""
    group = api.klass(1)
    lesson = api.lesson(group)
    work = api.work(lesson["id"])
    pupil = _active_pupil(api, group)
    mark = api.mark(pupil, work["id"], "4-")
    assert mark["id"] > BIG
    assert (mark["value"], mark["type"]) == ("4-", "mark5")
    assert (mark["person"], mark["person_str"]) == (pupil, str(pupil))
    assert (mark["work"], mark["lesson"]) == (work["id"], lesson["id"])
    assert mark["date"] == lesson["date"]
    assert api.ok("GET", f"marks/{mark['id']}") == mark
    assert api.ok("GET", f"works/{work['id']}/marks") == [mark]
    assert api.ok("GET", f"lessons/{lesson['id']}/marks") == [mark]
    assert api.ok("POST", "lessons/marks", json=[lesson["id"]]) == [mark]
    assert api.ok("POST", "lessons/marks", data={"lessons": [lesson["id"]]}) == [mark]
    assert api.ok("GET", f"persons/{pupil}/works/{work['id']}/marks") == [mark]
    form = api.ok("POST", f"persons/{pupil}/works/{work['id']}/mark", data={"value": "5"})
    assert form["value"] == "5"


def test_a_mark_posted_twice_is_two_marks(api: Api) -> None:
    """The same mark posted twice makes two, shown as duplicates in /_emulator/state."""
    group = api.klass(1)
    work = api.work(api.lesson(group)["id"])
    pupil = _active_pupil(api, group)
    first, second = api.mark(pupil, work["id"]), api.mark(pupil, work["id"])
    assert first["id"] != second["id"]
    assert (first["number"], second["number"]) == (0, 1)
    assert api.inspect("state")["duplicates"]["marks"] == [[first["id"], second["id"]]]


def test_mark_validation(
    api: Api, emulator: DnevnikEmulator, school: tuple[Path, dict[str, Any]]
) -> None:
    """A value outside the work's system, an unknown work or person, a teacher, a pupil of
    another class, and a pupil on a lesson after the withdrawal are refused; before it, the
    withdrawn pupil takes marks."""
    facts = school[1]
    group = api.klass(facts["withdrawn_class"])
    other = next(g["id"] for g in api.ok("GET", f"schools/{emulator.school_id}/edu-groups")
                 if g["type"] == "Group" and g["id"] != group)  # fmt: skip
    work = api.work(api.lesson(group, "2025-09-16")["id"])["id"]
    pupil, stranger = _active_pupil(api, group), _active_pupil(api, other)
    teacher = api.ok("GET", f"schools/{emulator.school_id}/teachers")[0]["Id"]
    gone = api.pupil(facts["withdrawn_pupil"])
    for person, value, words in (
        (pupil, "6", "not a mark of mark5"),
        (pupil, "", "not a mark"),
        (42, "5", "unknown person"),
        (teacher, "5", "not an active member"),
        (stranger, "5", "not an active member"),
        (gone, "5", "not an active member"),
    ):
        path = f"persons/{person}/works/{work}/mark"
        assert words in api.rejected("POST", path, json={"value": value})
    assert "unknown work" in api.rejected(
        "POST", f"persons/{pupil}/works/42/mark", json={"value": "5"}
    )
    earlier = api.work(api.lesson(group, "2025-09-12")["id"])["id"]
    assert api.mark(gone, earlier)["person"] == gone
    tens = api.work(api.lesson(group, "2025-09-12", 3)["id"], markType="mark10")["id"]
    assert api.mark(pupil, tens, "10")["type"] == "mark10"
    assert api.inspect("state")["counts"]["mark"] == 2


def test_marks_cannot_be_changed_or_deleted(api: Api) -> None:
    """PUT and DELETE on a mark answer 405 with the methods it takes (GET)."""
    group = api.klass(1)
    mark = api.mark(_active_pupil(api, group), api.work(api.lesson(group)["id"])["id"])
    for method in ("PUT", "DELETE"):
        response = api.call(method, f"marks/{mark['id']}", json={"value": "3"})
        assert response.status_code == 405
        assert response.json()["type"] == "methodNotAllowed"
        assert response.headers["Allow"] == "GET"
    assert api.ok("GET", f"marks/{mark['id']}")["value"] == "5"


# --- log entries ------------------------------------------------------------------------------


def test_log_entries_create_read_update_delete(api: Api) -> None:
    """A log entry is posted (JSON, or a form whose lessonLogEntry holds JSON), read by lesson
    and by lessons, changed with PUT (the form of pydnevnikruapi) and deleted by person."""
    group = api.klass(1)
    lessons = [api.lesson(group, number=n)["id"] for n in (1, 2)]
    first, second = _active_pupils(api, group)[:2]
    path = f"lessons/{lessons[0]}/log-entries"
    entry = api.ok("POST", path, json={"person": first, "lesson": lessons[0], "status": "Absent"})
    assert (entry["person"], entry["lesson"], entry["status"]) == (first, lessons[0], "Absent")
    assert entry["person_str"] == str(first)
    body = json.dumps({"person": second, "status": "Ill", "comment": "справка"})
    api.ok("POST", f"lessons/{lessons[1]}/log-entries", data={"lessonLogEntry": body})
    assert api.ok("GET", path) == [entry]
    both = api.ok("GET", "lesson-log-entries", params={"lessons": lessons})
    assert [(e["lesson"], e["status"]) for e in both] == [
        (lessons[0], "Absent"),
        (lessons[1], "Ill"),
    ]
    update = {"person": first, "lessonLogEntry": json.dumps({"status": "Late"})}
    assert api.ok("PUT", path, data=update)["status"] == "Late"
    assert api.ok("PUT", path, json={"person": first, "status": "Pass"})["status"] == "Pass"
    assert api.ok("DELETE", path, params={"person": first})["person"] == first
    assert api.ok("GET", path) == []


def test_log_entry_validation(api: Api, school: tuple[Path, dict[str, Any]]) -> None:
    """A second entry for the same person and lesson, an unknown status, a person who is no
    member, a mismatched lesson, and a PUT or DELETE of a missing entry are refused."""
    group = api.klass(school[1]["withdrawn_class"])
    lesson = api.lesson(group, "2025-09-16")["id"]
    path = f"lessons/{lesson}/log-entries"
    pupil, other = _active_pupils(api, group)[:2]
    api.ok("POST", path, json={"person": pupil, "status": "Absent"})
    gone = api.pupil(school[1]["withdrawn_pupil"])
    for body, words in (
        ({"person": pupil, "status": "Absent"}, "already has"),
        ({"person": other, "status": "Asleep"}, "status"),
        ({"person": gone, "status": "Absent"}, "not an active member"),
        ({"person": other, "lesson": 42, "status": "Absent"}, "differs"),
    ):
        assert words in api.rejected("POST", path, json=body)
    assert "no log entry" in api.rejected("PUT", path, json={"person": other, "status": "Ill"})
    assert "no log entry" in api.rejected("DELETE", path, params={"person": other})
    assert "unknown lesson" in api.rejected("GET", "lessons/42/log-entries")


# --- auth, errors, faults ---------------------------------------------------------------------


def test_a_missing_or_unknown_token_is_401(emulator: DnevnikEmulator) -> None:
    """Without Access-Token, or with one the emulator does not know, /v2 answers 401
    authorizationFailed in the JSON envelope."""
    for token in (None, "not-a-token"):
        response = Api(emulator, token).call("GET", "marks/values")
        assert response.status_code == 401
        assert response.headers["Content-Type"] == "application/json"
        body = response.json()
        assert set(body) == {"type", "description"}
        assert body["type"] == "authorizationFailed"


def test_v2_0_is_an_alias_of_v2(api: Api, emulator: DnevnikEmulator) -> None:
    """``/v2.0/`` (where pydnevnikruapi calls marks/values) serves the same API as ``/v2/``."""
    response = api.session.get(f"{emulator.url}/v2.0/marks/values", timeout=10)
    assert response.json() == api.ok("GET", "marks/values")


def test_tokens_are_configurable(tmp_path: Path, school: tuple[Path, dict[str, Any]]) -> None:
    """Given tokens replace the demo token."""
    with DnevnikEmulator(
        data_path=tmp_path / "t", seed_school=school[0], tokens=["t1", "t2"]
    ) as em:
        assert Api(em, "t2").call("GET", "marks/values").status_code == 200
        assert Api(em, DEMO_TOKEN).call("GET", "marks/values").status_code == 401


def test_unknown_routes_answer_an_html_page(api: Api, emulator: DnevnikEmulator) -> None:
    """A path the API does not have answers 404 with an HTML page (Content-Type exactly
    text/html) holding the description where clients look for it."""
    for response in (api.call("GET", "users/me/feed"),
                     requests.get(f"{emulator.url}/elsewhere", timeout=10)):  # fmt: skip
        assert response.status_code == 404
        assert response.headers["Content-Type"] == "text/html"
        page = response.content.decode()
        assert '<div class="error__description"><p>' in page


def test_a_body_that_is_neither_json_nor_a_form_is_refused(api: Api) -> None:
    """A body that is not JSON (nor a form) is parameterInvalid."""
    assert "JSON" in api.rejected(
        "POST", "lessons", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert "JSON object" in api.rejected("POST", "lessons", json=[1])


def _faulted(api: Api, *script: str, **settings: Any) -> None:
    response = api.session.post(
        f"{api.emulator.url}/_emulator/faults",
        json={"script": list(script), **settings},
        timeout=10,
    )
    assert response.status_code == 200, response.text


def test_fault_429_has_retry_after_in_seconds_or_as_a_date(api: Api) -> None:
    """429 carries Retry-After: whole seconds, or an HTTP date for 429-date."""
    _faulted(api, "429", "429-date", retry_after=2)
    first = api.call("GET", "marks/values")
    assert (first.status_code, first.headers["Retry-After"]) == (429, "2")
    assert first.json()["type"] == "apiRequestLimit"
    second = api.call("GET", "marks/values")
    assert second.status_code == 429
    assert parsedate_to_datetime(second.headers["Retry-After"]).timestamp() > time.time()
    assert api.call("GET", "marks/values").status_code == 200


def test_fault_html_500_502_503_and_token_expired(api: Api) -> None:
    """The html fault answers an HTML page with Content-Type text/html; 500 is apiServerError,
    502/503 apiUnknownError; token-expired is a 401 authorizationFailed."""
    _faulted(api, "html", "500", "502", "503", "token-expired")
    page = api.call("GET", "marks/values")
    assert (page.status_code, page.headers["Content-Type"]) == (502, "text/html")
    assert "error__description" in page.text
    for status, kind in ((500, "apiServerError"), (502, "apiUnknownError"),
                         (503, "apiUnknownError"), (401, "authorizationFailed")):  # fmt: skip
        response = api.call("GET", "marks/values")
        assert (response.status_code, response.json()["type"]) == (status, kind)


def test_fault_lost_on_post_commits_without_an_answer(api: Api, emulator: DnevnikEmulator) -> None:
    """A lost POST closes the connection without an answer, yet the lesson was created."""
    group = api.klass(1)
    body = {"eduGroup": group, "subject": api.subject_of(group), "date": "2025-09-10", "number": 1}
    _faulted(api, "lost")
    with pytest.raises(requests.ConnectionError):
        api.call("POST", "lessons", json=body)
    (lesson,) = emulator.state()["objects"]["lesson"]
    assert (lesson["group"], lesson["number"]) == (group, 1)
    assert (
        api.ok("GET", f"edu-groups/{group}/lessons/2025-09-10/2025-09-10")[0]["id"] == lesson["id"]
    )


def test_fault_reset_and_slow(
    api: Api, tmp_path: Path, school: tuple[Path, dict[str, Any]]
) -> None:
    """reset aborts the connection before anything is done; slow answers after a wait."""
    group = api.klass(1)
    body = {"eduGroup": group, "subject": api.subject_of(group), "date": "2025-09-10", "number": 1}
    _faulted(api, "reset")
    with pytest.raises(requests.ConnectionError):
        api.call("POST", "lessons", json=body)
    assert api.inspect("state")["counts"]["lesson"] == 0
    waits: list[float] = []
    with DnevnikEmulator(data_path=tmp_path / "slow", seed_school=school[0], sleep=waits.append,
                         faults={"script": ["slow"], "slow_seconds": 3}) as slow:  # fmt: skip
        assert Api(slow).call("GET", "marks/values").status_code == 200
    assert waits == [3.0]


def test_faults_from_rates_are_seeded_and_counted(
    tmp_path: Path, school: tuple[Path, dict[str, Any]]
) -> None:
    """Rate faults follow the seed; /_emulator/stats counts them and requests by route."""
    results = []
    for name in ("a", "b"):
        with DnevnikEmulator(data_path=tmp_path / name, seed_school=school[0],
                             faults={"rates": {"500": 0.5}, "seed": 3}) as em:  # fmt: skip
            api = Api(em)
            results.append([api.call("GET", "marks/values").status_code for _ in range(20)])
            stats = api.inspect("stats")
    assert results[0] == results[1]
    assert 0 < results[0].count(500) < 20
    assert stats["faults"] == {"500": results[1].count(500)}
    assert stats["by_route"] == {"GET marks/values": results[1].count(200)}


def test_fault_settings_endpoint(api: Api) -> None:
    """GET /_emulator/faults shows the settings and the script left; a bad POST is 400 with
    every problem."""
    _faulted(api, "429", "ok")
    assert api.inspect("faults")["remaining_script"] == ["429", "ok"]
    bad = api.session.post(
        f"{api.emulator.url}/_emulator/faults", json={"rates": {"x": 2}, "y": 1}, timeout=10
    )
    assert bad.status_code == 400
    assert "unknown key" in bad.json()["description"]
    assert "unknown fault kind" in bad.json()["description"]


# --- persistence, inspection, logs ------------------------------------------------------------


def test_restart_keeps_exactly_what_was_acknowledged(
    tmp_path: Path, school: tuple[Path, dict[str, Any]]
) -> None:
    """A restarted emulator (no seed needed) holds the same objects, mismatches and ids, and
    assigns new ids above the old ones; a deleted work stays deleted."""
    path = tmp_path / "emu.sqlite"
    with DnevnikEmulator(data_path=path, seed_school=school[0]) as first:
        api = Api(first)
        group = api.klass(1)
        lesson = api.lesson(group)
        work = api.work(lesson["id"])
        gone = api.work(lesson["id"])
        api.ok("DELETE", f"works/{gone['id']}")
        pupil = _active_pupil(api, group)
        api.mark(pupil, work["id"])
        api.ok(
            "POST", f"lessons/{lesson['id']}/log-entries", json={"person": pupil, "status": "Late"}
        )
        before, mismatches = first.state(), first.mismatches()
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    with DnevnikEmulator(data_path=path) as second:
        assert second.state() == before
        assert second.mismatches() == mismatches
        again = Api(second).lesson(group)
        assert again["id"] > gone["id"]


def test_concurrent_writes_get_distinct_ids_and_all_persist(
    tmp_path: Path, school: tuple[Path, dict[str, Any]]
) -> None:
    """Marks posted from eight threads at once all succeed, with distinct ids, and all of
    them are in the file after a restart."""
    path = tmp_path / "emu.sqlite"
    with DnevnikEmulator(data_path=path, seed_school=school[0]) as emulator:
        api = Api(emulator)
        group = api.klass(1)
        work = api.work(api.lesson(group)["id"])["id"]
        pupils = _active_pupils(api, group)

        def post(index: int) -> int:
            client = Api(emulator)
            return int(client.mark(pupils[index % len(pupils)], work)["id"])

        with ThreadPoolExecutor(8) as pool:
            ids = list(pool.map(post, range(80)))
    assert len(set(ids)) == 80
    with DnevnikEmulator(data_path=path) as again:
        assert {m["id"] for m in again.state()["objects"]["mark"]} == set(ids)


def test_state_and_reset(api: Api, emulator: DnevnikEmulator) -> None:
    """/_emulator/state shows counts and objects per kind; POST /_emulator/reset removes the
    journal and keeps the contingent."""
    api.lesson(api.klass(1))
    state = api.inspect("state")
    assert state["counts"]["lesson"] == 1
    assert len(state["objects"]["person"]) == state["counts"]["person"]
    assert state["school"] == emulator.school_id
    reset = api.session.post(f"{emulator.url}/_emulator/reset", timeout=10)
    assert reset.json() == {"removed": 1}
    after = api.inspect("state")["counts"]
    assert (after["lesson"], after["person"]) == (0, state["counts"]["person"])
    assert api.session.get(f"{emulator.url}/_emulator/nothing", timeout=10).status_code == 404


def test_logs_carry_ids_and_counts_never_names_or_values(
    tmp_path: Path, school: tuple[Path, dict[str, Any]]
) -> None:
    """Seeding and writes log kinds, ids and counts; no name, birthday or mark value."""
    with (
        capture_logs() as logs,
        DnevnikEmulator(data_path=tmp_path / "l", seed_school=school[0]) as em,
    ):
        api = Api(em)
        group = api.klass(1)
        pupil = _active_pupil(api, group)
        api.mark(pupil, api.work(api.lesson(group)["id"])["id"], "4+")
        person = api.ok("GET", f"persons/{pupil}")
    text = json.dumps(logs, ensure_ascii=False, default=str)
    assert any(e["event"] == "seeded" for e in logs)
    assert any(e["event"] == "written" and e["kind"] == "mark" for e in logs)
    for secret in (
        person["lastName"],
        person["firstName"],
        person["birthday"][:10],
        "4+",
        DEMO_TOKEN,
    ):
        assert secret not in text


# --- the program ------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "program", [["-m", "bridge", "dnevnik-emulator"], ["-m", "bridge.dnevnik.server"]]
)
def test_the_program_serves_from_the_command_line(
    tmp_path: Path, school: tuple[Path, dict[str, Any]], program: list[str]
) -> None:
    """``asiou-bridge dnevnik-emulator`` and ``python -m bridge.dnevnik.server`` serve the
    API with the tokens of --token-file."""
    port = _free_port()
    (tmp_path / "tokens").write_text("# tokens\nfile-token\n", encoding="utf-8")
    command = [
        sys.executable, *program, "--port", str(port), "--data", str(tmp_path / "d.sqlite"),
        "--seed-school", str(school[0]), "--token-file", str(tmp_path / "tokens"),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    try:
        url = f"http://127.0.0.1:{port}/v2/marks/values"
        for _ in range(100):
            try:
                response = requests.get(url, headers={"Access-Token": "file-token"}, timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            pytest.fail("the emulator did not answer")
        assert response.status_code == 200
    finally:
        process.terminate()
        process.wait(timeout=10)
