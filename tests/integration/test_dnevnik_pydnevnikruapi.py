"""An independent client proves the emulator speaks the dnevnik.ru API: ``pydnevnikruapi``
(PyPI, unpatched; only its public ``host`` is pointed at the emulator) reads the lessons, works,
marks, log entries and persons written over HTTP, writes works and log entries its own way
(form fields holding JSON), and raises its DiaryError on the emulator's JSON and HTML errors."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from pydnevnikruapi.dnevnik.dnevnik import DiaryAPI
from pydnevnikruapi.dnevnik.exceptions import DiaryError

from bridge.dnevnik.emulator import DnevnikEmulator
from bridge.dnevnik.service import DEMO_TOKEN
from tests.dnevnik import Api, write_school


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DnevnikEmulator]:
    """One emulator for the module, seeded from the small demo school."""
    folder = tmp_path_factory.mktemp("pydnevnik")
    write_school(folder / "school.sqlite")
    with DnevnikEmulator(
        data_path=folder / "emu.sqlite", seed_school=folder / "school.sqlite"
    ) as em:
        yield em


@pytest.fixture
def diary(emulator: DnevnikEmulator) -> Iterator[Any]:
    """pydnevnikruapi's DiaryAPI with the demo token and its host set to the emulator."""
    client = DiaryAPI(token=DEMO_TOKEN)
    client.host = emulator.api_url
    yield client
    client.session.close()


@pytest.fixture(scope="module")
def journal(emulator: DnevnikEmulator) -> dict[str, Any]:
    """What a bridge would have exported, written over plain HTTP: two lessons of a class on
    September 9 and 10, a work and two marks on the first, attendance on both."""
    api = Api(emulator)
    group = api.klass(1)
    involved = {p for m in emulator.mismatches() for p in m.portal_ids}
    pupils = [
        p["id"]
        for p in api.ok("GET", f"edu-groups/{group}/persons")
        if p["id"] not in involved and p["membership"]["startDate"] == "2025-09-01T00:00:00"
    ]
    lessons = [
        api.lesson(group, day, 1, title=f"Тема {day}") for day in ("2025-09-09", "2025-09-10")
    ]
    work = api.work(lessons[0]["id"])
    marks = [api.mark(pupils[0], work["id"], "5"), api.mark(pupils[1], work["id"], "3+")]
    log = [
        api.ok("POST", f"lessons/{x['id']}/log-entries", json={"person": pupils[2], "status": s})
        for x, s in zip(lessons, ("Absent", "Ill"), strict=True)
    ]
    return {"group": group, "pupils": pupils, "lessons": lessons, "work": work, "marks": marks,
            "log": log, "lesson_ids": [x["id"] for x in lessons]}  # fmt: skip


def test_it_reads_a_lesson_and_a_group_s_lessons(diary: Any, journal: dict[str, Any]) -> None:
    """get_lesson_info and get_group_lessons_info (str(datetime) in the path) read the lessons
    as written, ids exact; get_many_lessons_info (form lessons=…) too."""
    first = journal["lessons"][0]
    info = diary.get_lesson_info(first["id"])
    assert info["id"] == first["id"]
    assert info["title"] == "Тема 2025-09-09"
    assert [w["id"] for w in info["works"]] == [journal["work"]["id"]]
    ranged = diary.get_group_lessons_info(
        journal["group"], dt.datetime(2025, 9, 9), dt.datetime(2025, 9, 10, 23, 59, 59)
    )
    assert [x["id"] for x in ranged] == journal["lesson_ids"]
    assert [x["id"] for x in diary.get_many_lessons_info(journal["lesson_ids"])] == journal[
        "lesson_ids"
    ]


def test_it_reads_the_marks(diary: Any, journal: dict[str, Any]) -> None:
    """get_marks_by_lesson, get_marks_by_lessons, get_marks_by_work, get_person_work_marks and
    get_mark_by_id read the marks as written."""
    expected = journal["marks"]
    lesson, work = journal["lesson_ids"][0], journal["work"]["id"]
    assert diary.get_marks_by_lesson(lesson) == expected
    assert diary.get_marks_by_lessons(journal["lesson_ids"]) == expected
    assert diary.get_marks_by_work(work) == expected
    assert diary.get_person_work_marks(journal["pupils"][1], work) == [expected[1]]
    assert diary.get_mark_by_id(expected[0]["id"]) == expected[0]
    assert [(m["person"], m["value"]) for m in expected] == [
        (journal["pupils"][0], "5"), (journal["pupils"][1], "3+"),
    ]  # fmt: skip


def test_it_reads_the_log_entries(diary: Any, journal: dict[str, Any]) -> None:
    """get_lesson_log, get_lesson_logs and get_lesson_log_statuses read attendance."""
    assert diary.get_lesson_log(journal["lesson_ids"][0]) == [journal["log"][0]]
    assert diary.get_lesson_logs(journal["lesson_ids"]) == journal["log"]
    assert diary.get_lesson_log_statuses() == ["Attend", "Absent", "Ill", "Late", "Pass"]


def test_it_reads_the_persons_and_groups(
    diary: Any, emulator: DnevnikEmulator, journal: dict[str, Any]
) -> None:
    """get_groups_pupils and get_group_persons list the group's Active persons; get_person_info,
    get_group_info, get_school_groups, subjects, periods, work types and teachers read too."""
    api = Api(emulator)
    group = journal["group"]
    expected = api.ok("GET", f"edu-groups/{group}/persons")
    assert diary.get_groups_pupils(group) == expected
    assert diary.get_group_persons(group) == expected
    assert journal["pupils"][0] in {p["id"] for p in expected}
    person = diary.get_person_info(journal["pupils"][0])
    assert person["id"] == journal["pupils"][0]
    assert diary.get_group_info(group)["id"] == group
    school = emulator.school_id
    assert group in {g["id"] for g in diary.get_school_groups(school)}
    assert diary.get_group_subjects(group) == api.ok("GET", f"edu-groups/{group}/subjects")
    assert diary.get_school_subjects(school) == api.ok("GET", f"schools/{school}/subjects")
    assert [p["type"] for p in diary.get_group_reports(group)] == ["Quarter"] * 4
    assert {w["abbr"] for w in diary.get_work_types(school)} >= {"УО", "КР"}
    assert diary.get_school_teachers(school) == api.ok("GET", f"schools/{school}/teachers")
    assert diary.get_marks_values_by_type("mark5")[-1] == "5+"


def test_its_writes_are_accepted(
    diary: Any, emulator: DnevnikEmulator, journal: dict[str, Any]
) -> None:
    """create_lesson_work (form work=<json>), post_lesson_log (lessonLogEntry=<json>) and
    delete_lesson_log (?person=) act on the emulator; get_lesson_works lists the work."""
    lesson = journal["lesson_ids"][1]
    work = diary.create_lesson_work(json.dumps({"lesson": lesson, "type": "Homework",
                                                "text": "§3", "markType": None}))  # fmt: skip
    assert work["lesson"] == lesson
    assert work["markType"] is None
    assert [w["id"] for w in diary.get_lesson_works(lesson)] == [work["id"]]
    person = journal["pupils"][3]
    entry = diary.post_lesson_log(
        lesson, json.dumps({"person": person, "lesson": lesson, "status": "Late"})
    )
    assert (entry["person"], entry["status"]) == (person, "Late")
    assert diary.delete_lesson_log(lesson, person)["person"] == person
    assert [e["person"] for e in diary.get_lesson_log(lesson)] == [journal["pupils"][2]]


def test_it_raises_diary_error_on_json_errors(diary: Any, emulator: DnevnikEmulator) -> None:
    """parameterInvalid (with the emulator's description), authorizationFailed and
    apiServerError reach its caller as DiaryError."""
    with pytest.raises(DiaryError, match="unknown lesson id 42"):
        diary.get_lesson_info(42)
    stranger = DiaryAPI(token="not-a-token")
    stranger.host = emulator.api_url
    with pytest.raises(DiaryError, match="Ошибка авторизации"):
        stranger.get_lesson_log_statuses()
    _script(emulator, "500")
    with pytest.raises(DiaryError, match="Неизвестная ошибка в API"):
        diary.get_lesson_log_statuses()


def test_it_raises_diary_error_on_html_pages(diary: Any, emulator: DnevnikEmulator) -> None:
    """The html fault and an unknown route answer pages it parses into DiaryError with the
    page's description."""
    _script(emulator, "html")
    with pytest.raises(DiaryError, match=r"^Ведутся технические работы$"):
        diary.get_lesson_log_statuses()
    with pytest.raises(DiaryError, match=r"^Метода users/me/feed нет в API$"):
        diary.get_feed()


def _script(emulator: DnevnikEmulator, *kinds: str) -> None:
    response = requests.post(
        f"{emulator.url}/_emulator/faults", json={"script": list(kinds)}, timeout=10
    )
    assert response.status_code == 200


def test_the_client_s_example_work_is_accepted(
    diary: Any, emulator: DnevnikEmulator, journal: dict[str, Any]
) -> None:
    """The work of pydnevnikruapi's docstring (every field, ``type`` 0, zero ids, a task),
    with a real lesson and mark system, is created; the portal's own fields win."""
    lesson = Api(emulator).lesson(journal["group"], "2025-09-11", 4)["id"]
    example = {
        "id": 0, "id_str": "string", "type": 0, "workType": 0, "markType": "mark5",
        "markCount": 0, "lesson": lesson, "lesson_str": "string", "displayInJournal": True,
        "status": "string", "eduGroup": 0, "eduGroup_str": "string",
        "tasks": [{"id": 0, "person": 0, "work": 0, "status": "string",
                   "targetDate": "2019-09-15T16:35:54.384Z"}],
        "text": "string", "periodNumber": 0, "periodType": "string", "subjectId": 0,
        "isImportant": True, "targetDate": "2025-09-11T16:35:54.384Z",
        "sentDate": "2019-09-15T16:35:54.384Z", "createdBy": 0, "files": [0],
        "oneDriveLinks": [0],
    }  # fmt: skip
    work = diary.create_lesson_work(json.dumps(example))
    assert work["id"] > 2**53
    assert (work["type"], work["eduGroup"], work["periodType"]) == (
        "CommonWork",
        journal["group"],
        "Quarter",
    )
    assert work["targetDate"] == "2025-09-11T00:00:00"
    assert work["isImportant"] is True
