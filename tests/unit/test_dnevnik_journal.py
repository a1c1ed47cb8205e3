"""The dnevnik.ru journal's lookups of lessons (a fake API, no sockets): the lessons of a group
on a day are listed once a batch, a lost answer is settled by a fresh list (never the kept
one), and a lesson just created is not searched for its homework."""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from bridge.adapters.dnevnik.http import OutcomeUnknown
from bridge.adapters.dnevnik.ids import IdBook
from bridge.adapters.dnevnik.journal import Journal
from bridge.adapters.dnevnik.settings import DnevnikSettings
from bridge.core.errors import PortalFatalError
from bridge.core.matching import Match, Matches, MatchStatus
from bridge.ports import Operation

DAY = "2025-09-01"


class FakeApi:
    """Lessons and works in memory; ``lose`` POSTs take effect and lose their answer."""

    def __init__(self, lose: int = 0) -> None:
        self.lessons: list[dict[str, Any]] = []
        self.works: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str]] = []
        self.lose = lose

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        self.calls.append(("GET", path))
        if path.startswith("edu-groups/"):
            return [dict(x) for x in self.lessons]
        if path == "works":
            return [w for w in self.works if w["lesson"] == (params or {})["lesson"]]
        return [{"id": 7, "abbr": "ДЗ"}]  # work-types/{school}

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        self.calls.append(("POST", path))
        kept = {**body, "id": 100 + len(self.lessons) + len(self.works)}
        if path == "lessons":
            self.lessons.append({**kept, "subject": {"id": body["subject"]}})
        else:
            self.works.append(kept)
        if self.lose:
            self.lose -= 1
            raise OutcomeUnknown("answer lost")
        return kept


def journal(api: FakeApi) -> Journal:
    settings = DnevnikSettings(base_url="http://x.test/v2/", school="1", token="t")
    ids = IdBook(lambda _e, _k: {}, lambda _e, _p: {})
    matches = Matches()
    matches.add([Match("class", "c1", MatchStatus.MATCHED, "11")])
    matches.add([Match("subject", f"s{n}", MatchStatus.MATCHED, f"2{n}") for n in range(4)])
    ids.use_matches(matches)
    return Journal(api, settings, ids, careful=False)  # type: ignore[arg-type]


def lessons(numbers: Sequence[int], homework: str = "") -> list[Operation]:
    data = {"class": "c1", "date": DAY, "topic": "t", "homework": homework}
    return [
        Operation(f"o{n}", "PUT", "lesson", f"l{n}", data={**data, "subject": f"s{n}", "number": n})
        for n in numbers
    ]


def test_the_lessons_of_a_day_are_listed_once_a_batch_and_each_is_created_once() -> None:
    """Four lessons of one class on one day: one list of the day, four creates."""
    api = FakeApi()
    batch = journal(api).for_batch()
    results = [batch.apply(op) for op in lessons(range(4))]
    assert all(r.ok for r in results)
    assert [c[0] for c in api.calls] == ["GET", "POST", "POST", "POST", "POST"]
    assert len({r.portal_id for r in results}) == 4


def test_the_next_batch_lists_the_day_again_and_finds_what_is_there() -> None:
    """A batch keeps its list to itself: the next one reads the portal again (and so finds a
    lesson created meanwhile instead of creating it twice)."""
    api = FakeApi()
    first = journal(api)
    created = first.for_batch().apply(lessons([0])[0])
    again = first.for_batch().apply(lessons([0])[0])
    assert again.portal_id == created.portal_id
    assert [c[0] for c in api.calls] == ["GET", "POST", "GET"]
    assert len(api.lessons) == 1


def test_a_lost_answer_is_settled_by_a_fresh_list_not_the_kept_one() -> None:
    """The create took effect but its answer was lost: the day is listed again, the lesson
    found there, and nothing is posted twice."""
    api = FakeApi(lose=1)
    result = journal(api).for_batch().apply(lessons([2])[0])
    assert result.ok
    assert result.portal_id == str(api.lessons[0]["id"])
    assert [c[0] for c in api.calls] == ["GET", "POST", "GET"]
    assert len(api.lessons) == 1


@pytest.mark.parametrize("there", [False, True])
def test_homework_is_looked_for_unless_the_lesson_was_just_created(there: bool) -> None:
    """A lesson this operation created has no works: its homework is posted at once; a lesson
    found on the portal is searched first, and its homework not posted again."""
    api = FakeApi()
    if there:
        api.lessons.append({"id": 5, "subject": {"id": "20"}, "number": 0, "date": DAY})
        api.works.append({"id": 6, "lesson": "5", "type": "Homework", "text": "p. 12"})
    journal(api).for_batch().apply(lessons([0], homework="p. 12")[0])
    work_lookups = [c for c in api.calls if c == ("GET", "works")]
    assert len(work_lookups) == (1 if there else 0)
    assert len(api.works) == 1


class NoIdApi(FakeApi):
    """A portal that takes a create and answers it with ``answer`` instead of the record; with
    ``hidden`` its lists never show what it created."""

    def __init__(self, answer: object, *, hidden: bool = False) -> None:
        super().__init__()
        self.answer, self.hidden = answer, hidden

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return [] if self.hidden and path.startswith("edu-groups/") else super().get(path, params)

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        super().post(path, body)
        return self.answer


def one_lesson_journal(api: FakeApi) -> tuple[Journal, IdBook]:
    """A journal of one class and subject, and its id book."""
    book = IdBook(lambda _e, _k: {}, lambda _e, _p: {})
    matches = Matches()
    matches.add([Match("class", "c1", MatchStatus.MATCHED, "11")])
    matches.add([Match("subject", "s0", MatchStatus.MATCHED, "20")])
    book.use_matches(matches)
    settings = DnevnikSettings(base_url="http://x.test/v2/", school="1", token="t")
    return Journal(api, settings, book, careful=False), book  # type: ignore[arg-type]


BAD_ANSWERS = [
    {},
    {"id": None},
    {"id": True},
    {"id": 1.5e29},
    {"id": -4},
    {"id_str": "12x"},
    [],
    "ok",
]


@pytest.mark.parametrize("answer", BAD_ANSWERS)
def test_a_create_answered_without_a_usable_id_is_looked_up_not_posted_again(
    answer: object,
) -> None:
    """The create took effect but its answer names no usable id: the day is listed again and
    the lesson's id taken from there; nothing is posted twice."""
    api = NoIdApi(answer)
    batch, _book = one_lesson_journal(api)
    result = batch.for_batch().apply(lessons([0])[0])
    assert result.ok
    assert result.portal_id == str(api.lessons[0]["id"])
    assert [c for c in api.calls if c[0] == "POST"] == [("POST", "lessons")]


@pytest.mark.parametrize("answer", BAD_ANSWERS)
def test_a_create_without_a_usable_id_nor_a_record_to_find_stops_and_keeps_no_id(
    answer: object,
) -> None:
    """The lookup does not find it either: a portal error naming the request; no id kept for
    the record (never "None"), nothing posted again."""
    api = NoIdApi(answer, hidden=True)
    batch, book = one_lesson_journal(api)
    with pytest.raises(PortalFatalError) as caught:
        batch.for_batch().apply(lessons([0])[0])
    assert caught.value.kind == "badAnswer"
    assert "POST lessons" in str(caught.value)
    assert book.get("lesson", "l0") is None
    assert [c for c in api.calls if c[0] == "POST"] == [("POST", "lessons")]


class CannedApi:
    """GET answers by path, POSTs counted and answered with new ids."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers, self.posts = answers, list[str]()

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        return copy.deepcopy(self.answers.get(path, [{"id": 7, "abbr": "ДЗ"}]))

    def post(self, path: str, body: Mapping[str, Any]) -> Any:
        self.posts.append(path)
        return {"id": 900 + len(self.posts), "id_str": str(900 + len(self.posts))}


def careful_journal(api: CannedApi) -> Journal:
    """A journal after an unclean end (every create looked up first): pupil p1 is person 31,
    work w1 is portal work 601, class c1 is group 11, subject s0 is 20."""
    written = {("work", "w1"): "601"}
    book = IdBook(
        lambda e, keys: {k: written[(e, k)] for k in keys if (e, k) in written},
        lambda _e, _p: {},
    )
    matches = Matches()
    matches.add([Match("class", "c1", MatchStatus.MATCHED, "11")])
    matches.add([Match("subject", "s0", MatchStatus.MATCHED, "20")])
    matches.add([Match("pupil", "p1", MatchStatus.MATCHED, "31")])
    book.use_matches(matches)
    settings = DnevnikSettings(base_url="http://x.test/v2/", school="1", token="t")
    return Journal(api, settings, book, careful=True)  # type: ignore[arg-type]


def mark_op() -> Operation:
    return Operation("o1", "PUT", "mark", "m1", data={"pupil": "p1", "work": "w1", "value": "5"})


def test_a_listed_mark_of_another_person_or_work_is_never_taken_for_the_pupil_s() -> None:
    """The lookup before a create takes only a mark that is this person's on this work: a
    listing that also shows another pupil's mark (a portal ignoring the filter) is not read
    as this pupil's mark being there."""
    marks = "persons/31/works/601/marks"
    api = CannedApi({marks: [{"id": 5, "person": 32, "work": 601}, {"id": 6, "work": 602}]})
    result = careful_journal(api).for_batch().apply(mark_op())
    assert api.posts == ["persons/31/works/601/mark"]
    assert result.portal_id == "901"
    api = CannedApi({marks: [{"id": 5, "person": 32}, {"id": 8, "person": 31, "work": 601}]})
    assert careful_journal(api).for_batch().apply(mark_op()).portal_id == "8"
    assert api.posts == []


def test_a_listed_lesson_of_another_group_or_day_is_never_taken() -> None:
    day = f"edu-groups/11/lessons/{DAY}/{DAY}"
    other = [
        {"id": 5, "subject": {"id": 20}, "number": 0, "group": 12, "date": DAY},
        {"id": 6, "subject": {"id": 20}, "number": 0, "group": 11, "date": "2025-09-02"},
        {"id": 7, "subject": {"id": 20}, "number": False, "group": 11, "date": DAY},
    ]
    api = CannedApi({day: other})
    result = careful_journal(api).for_batch().apply(lessons([0])[0])
    assert api.posts == ["lessons"]
    assert result.portal_id == "901"
    api = CannedApi({day: [*other, {"id": 8, "subject": {"id": 20}, "number": 0, "group": 11}]})
    assert careful_journal(api).for_batch().apply(lessons([0])[0]).portal_id == "8"
    assert api.posts == []


def test_a_lookup_answered_with_something_other_than_a_list_stops_the_batch() -> None:
    """An answer that is not a list (an error envelope with a 200, an object, text) is never
    read as "nothing there", which would create the record again."""
    day = f"edu-groups/11/lessons/{DAY}/{DAY}"
    for answer in ({"type": "apiServerError", "description": "x"}, "ok", None, [1]):
        api = CannedApi({day: answer})
        with pytest.raises(PortalFatalError, match="badAnswer"):
            careful_journal(api).for_batch().apply(lessons([0])[0])
        assert api.posts == []
