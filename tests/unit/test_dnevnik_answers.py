"""The dnevnik.ru adapter reads the ids the portal gives strictly: a positive int64 from its
exact ``*_str`` twin or the number, anything else a portal error naming the answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from bridge.adapters.dnevnik.answers import MAX_ID, listed, portal_id, same_id
from bridge.adapters.dnevnik.contingent import read_contingent
from bridge.core.errors import PortalFatalError


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"id": 7}, "7"),
        ({"id": "7"}, "7"),
        ({"id_str": "1152921504606846977", "id": 1152921504606846977}, "1152921504606846977"),
        ({"id_str": "1152921504606846977", "id": 1.152921504606847e18}, "1152921504606846977"),
        ({"id_str": "0042"}, "42"),
        ({"id": MAX_ID}, str(MAX_ID)),
    ],
)
def test_a_usable_id_is_read_exactly(answer: dict[str, Any], expected: str) -> None:
    assert portal_id(answer, what="GET x") == expected


@pytest.mark.parametrize(
    ("answer", "problem"),
    [
        ({}, "no id"),
        ({"id": None}, "no id"),
        ({"id": True}, "id is not a positive 64-bit id"),
        ({"id": 1.5}, "id is not a positive 64-bit id"),
        ({"id": 0}, "id is not a positive 64-bit id"),
        ({"id": -3}, "id is not a positive 64-bit id"),
        ({"id": MAX_ID + 1}, "id is not a positive 64-bit id"),
        ({"id": {"x": 1}}, "id is not a positive 64-bit id"),
        ({"id_str": "12x", "id": 12}, "id_str is not a positive 64-bit id"),
        ({"id_str": 12}, "id_str is not a positive 64-bit id"),
        ({"id_str": "12", "id": 13}, "id and id_str disagree"),
        ({"id_str": "5", "id": -1}, "id is not a positive 64-bit id"),
        ({"id_str": "5", "id": 6.0}, "id is not a positive 64-bit id"),
        ({"id_str": "5", "id": True}, "id is not a positive 64-bit id"),
        ([{"id": 1}], "an object with 'id' was expected"),
        (None, "an object with 'id' was expected"),
    ],
)
def test_anything_else_is_a_portal_error_naming_the_answer(answer: object, problem: str) -> None:
    with pytest.raises(PortalFatalError) as caught:
        portal_id(answer, what="POST works")
    assert caught.value.kind == "badAnswer"
    assert str(caught.value).endswith(f"the portal's answer to POST works: {problem}")


def test_another_field_is_named_in_the_error() -> None:
    with pytest.raises(PortalFatalError, match="person_str is not a positive 64-bit id"):
        portal_id({"person_str": "x"}, "person", what="GET lessons/5/log-entries")
    assert portal_id({"person": 9}, "person", what="GET lessons/5/log-entries") == "9"


class Contingent:
    """A school of one class with the persons ``members`` (a fake of DnevnikHttp.get)."""

    def __init__(self, members: list[dict[str, Any]]) -> None:
        self.members = members

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        if path == "schools/1/edu-groups":
            return [{"id": 11, "id_str": "11", "name": "5А", "type": "Group"}]
        if path == "edu-groups/11/persons":
            return self.members
        return []


def test_a_person_the_portal_lists_without_a_usable_id_stops_matching() -> None:
    """Matching never runs on a contingent with a person it cannot name: that person could be
    the one a pupil matches (and another would be taken for them)."""
    good = {"id": 5, "id_str": "5", "lastName": "А", "firstName": "Б", "birthday": "2014-01-01"}
    assert [p.id for p in read_contingent(Contingent([good]), "1").persons] == ["5"]  # type: ignore[arg-type]
    broken = {**good, "id": None, "id_str": None}
    with pytest.raises(PortalFatalError, match="GET edu-groups/11/persons: no id"):
        read_contingent(Contingent([good, broken]), "1")  # type: ignore[arg-type]


def test_a_list_answer_is_a_list_of_objects_or_one_list_wrapped() -> None:
    assert listed([{"id": 1}], what="GET x") == [{"id": 1}]
    assert listed({"works": [{"id": 1}], "count": 1}, what="GET x") == [{"id": 1}]
    assert listed([], what="GET x") == []
    for answer in ({"type": "apiServerError"}, {"a": [], "b": []}, None, "[]", [{"id": 1}, 2]):
        with pytest.raises(PortalFatalError, match="badAnswer"):
            listed(answer, what="GET x")


def test_a_listed_object_that_names_its_owner_must_name_the_right_one() -> None:
    assert same_id({"person": 31}, "person", "31", what="GET x")
    assert same_id({"person_str": "31", "person": 31}, "person", "31", what="GET x")
    assert not same_id({"person": 32}, "person", "31", what="GET x")
    assert same_id({"id": 1}, "person", "31", what="GET x")  # says nothing: the request's word
    with pytest.raises(PortalFatalError, match="badAnswer"):
        same_id({"person": "Иванов"}, "person", "31", what="GET x")
