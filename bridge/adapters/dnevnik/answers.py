"""Reading the partner API's answers: the ids it gives, strictly.

Every id the adapter keeps or sends on (a created record's, a listed record's, a person's,
a group's) is a positive int64, read from its exact ``*_str`` twin where the answer has one,
else from the number (or its digits as text). Anything else (missing, ``null``, a boolean, a
float, a number beyond int64, text that is not digits, twins that disagree) is not guessed
at: it stops the run as a portal error naming the answer and the field (``badAnswer``). So a
portal answering a create without a usable id never leaves ``"None"`` in the state store as a
portal id, and a listed record the adapter cannot identify never counts as "not there"
(which would create it again)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from bridge.core.errors import PortalFatalError

MAX_ID = 2**63 - 1
_DIGITS = re.compile(r"[0-9]{1,19}")


def portal_id(obj: object, name: str = "id", *, what: str) -> str:
    """The id ``name`` of one answer object, as text (no leading zeros). ``what`` names the
    answer in the error: the request it answered, say ``"POST works"``."""
    if not isinstance(obj, dict):
        raise bad_answer(what, f"an object with {name!r} was expected")
    text, number = obj.get(f"{name}_str"), obj.get(name)
    from_text = _from_text(text)
    from_number = _from_number(number)
    if text is not None and from_text is None:
        raise bad_answer(what, f"{name}_str is not a positive 64-bit id")
    if number is not None and from_number is None and not _rounded(number, from_text):
        raise bad_answer(what, f"{name} is not a positive 64-bit id")
    if from_text is not None and from_number is not None and from_text != from_number:
        raise bad_answer(what, f"{name} and {name}_str disagree")
    found = from_text if from_text is not None else from_number
    if found is None:
        raise bad_answer(what, f"no {name}")
    return found


def same_id(obj: Mapping[str, Any], name: str, expected: str, *, what: str) -> bool:
    """True unless the answer object names, in ``name``, another id than ``expected`` (a
    listed record that says whose it is must say so rightly; one that does not say is taken
    on the request's word)."""
    if obj.get(name) is None and obj.get(f"{name}_str") is None:
        return True
    return portal_id(obj, name, what=what) == expected


def listed(answer: object, *, what: str) -> list[Mapping[str, Any]]:
    """The objects of a list answer: a list of objects, or an object wrapping exactly one
    list. Anything else (an object without a list, text, ``null``, an item that is not an
    object) is a bad answer: never read as "nothing there", which would create it again."""
    if isinstance(answer, dict):
        lists = [value for value in answer.values() if isinstance(value, list)]
        if len(lists) != 1:
            raise bad_answer(what, "a list was expected")
        answer = lists[0]
    if not isinstance(answer, list):
        raise bad_answer(what, "a list was expected")
    if not all(isinstance(item, dict) for item in answer):
        raise bad_answer(what, "an item of the list is not an object")
    return answer


def bad_answer(what: str, problem: str) -> PortalFatalError:
    """The error of an answer the adapter cannot use (no personal data: fields and ids only)."""
    return PortalFatalError(0, "badAnswer", f"the portal's answer to {what}: {problem}")


def _from_text(value: object) -> str | None:
    if not isinstance(value, str) or not _DIGITS.fullmatch(value):
        return None
    number = int(value)
    return str(number) if 0 < number <= MAX_ID else None


def _rounded(number: object, exact: str | None) -> bool:
    """True when ``number`` is the double an exact id ``exact`` becomes (an int64 sent as a
    JSON number and read as a float): the twin then says the id, and they agree."""
    return exact is not None and number.__class__ is float and number == float(int(exact))


def _from_number(value: object) -> str | None:
    """A number (not a bool, not a float: an id beyond int64 is read inexactly as one), or
    the same as text."""
    if isinstance(value, str):
        return _from_text(value)
    if value.__class__ is not int:
        return None
    assert isinstance(value, int)
    return str(value) if 0 < value <= MAX_ID else None
