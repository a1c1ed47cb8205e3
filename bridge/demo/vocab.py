"""The generator's literal data, read once at import from the TOML files in ``bridge/demo/data``.

- ``calendar.toml``: the 2025/2026 academic year, its breaks, public holidays and study periods;
- ``subjects.toml``: the subjects with their short names and the weekly hours of each grade;
- ``topics.toml``: the specific lesson topics of each subject;
- ``homework.toml``: how often each subject sets homework and the homework text templates;
- ``people.toml``: surnames, first names and patronymics, e-mail domains, the transliteration
  of e-mail logins and the reasons given for a withdrawal.

The few fixed rules about subjects (which are split into groups, which primary-school subjects
have specialist teachers) live here too, next to the subjects they name.
"""

from __future__ import annotations

import datetime as dt
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from types import MappingProxyType
from typing import Any, Final, TypeVar

_T = TypeVar("_T")


def _load(name: str) -> dict[str, Any]:
    """The parsed data file ``name`` of this package."""
    text = (resources.files("bridge.demo") / "data" / name).read_text(encoding="utf-8")
    return tomllib.loads(text)


def _as(kind: type[_T], value: object) -> _T:
    """``value`` if it is a ``kind``; a data file with another type there is broken."""
    if not isinstance(value, kind):
        raise TypeError(f"demo data: expected {kind.__name__}, got {value!r}")
    return value


def _strings(value: object) -> tuple[str, ...]:
    """A TOML array of strings as a tuple."""
    return tuple(_as(str, item) for item in _as(list, value))


def _table(value: object) -> dict[str, Any]:
    """A TOML table, keys in file order."""
    return _as(dict, value)


# Calendar of the 2025/2026 academic year -----------------------------------------------------

_CALENDAR: Final = _load("calendar.toml")
_YEAR: Final = _table(_CALENDAR["year"])
YEAR_NAME: Final = _as(str, _YEAR["name"])
YEAR_BEGIN: Final = _as(dt.date, _YEAR["begin"])
YEAR_END: Final = _as(dt.date, _YEAR["end"])
BASE_TIME: Final = dt.datetime.combine(YEAR_BEGIN, dt.time(8, 0))
BREAKS: Final = tuple(  # school holidays, inclusive
    (_as(dt.date, begin), _as(dt.date, end)) for begin, end in _as(list, _YEAR["breaks"])
)
PUBLIC_HOLIDAYS: Final = frozenset(_as(dt.date, d) for d in _as(list, _YEAR["public_holidays"]))


@dataclass(frozen=True)
class Period:
    """A study period (quarter, half-year or year) of the academic year."""

    id: int
    kind: str
    num: int
    name: str
    begin: dt.date
    end: dt.date
    quarters: tuple[int, ...]  # indexes of the quarters the period spans


PERIODS: Final = tuple(
    Period(
        _as(int, p["id"]),
        _as(str, p["kind"]),
        _as(int, p["num"]),
        _as(str, p["name"]),
        _as(dt.date, p["begin"]),
        _as(dt.date, p["end"]),
        tuple(_as(int, q) for q in _as(list, p["quarters"])),
    )
    for p in _as(list, _CALENDAR["period"])
)

# Subjects and curricula (weekly hours for a five-day week) -----------------------------------

_SUBJECTS_FILE: Final = _load("subjects.toml")
SUBJECTS: Final = tuple(  # (name, short name); the subject id is the position from 1
    (name, _as(str, short)) for name, short in _table(_SUBJECTS_FILE["subjects"]).items()
)
SUBJECT_ID: Final = MappingProxyType({name: i for i, (name, _) in enumerate(SUBJECTS, 1)})
SHORT_NAME: Final = MappingProxyType({i: short for i, (_, short) in enumerate(SUBJECTS, 1)})
SPLIT: Final = frozenset({SUBJECT_ID["Английский язык"], SUBJECT_ID["Информатика"]})
SPLIT_FROM_GRADE: Final = 5
PRIMARY_SPECIALISTS: Final = frozenset({"Английский язык", "Музыка", "Физическая культура"})
CURRICULUM: Final[Mapping[int, tuple[tuple[str, int], ...]]] = MappingProxyType(
    {
        int(grade): tuple((name, _as(int, hours)) for name, hours in _table(plan).items())
        for grade, plan in _table(_SUBJECTS_FILE["curriculum"]).items()
    }
)

# Names (male surname forms; the female form is derived) -------------------------------------

_PEOPLE: Final = _load("people.toml")
SURNAMES: Final = _strings(_PEOPLE["surnames"])
ADULT_MALE: Final = tuple(  # first name, patronymic of a son, patronymic of a daughter
    (first, son, daughter)
    for first, son, daughter in (_strings(names) for names in _as(list, _PEOPLE["adult_male"]))
)
ADULT_FEMALE: Final = _strings(_PEOPLE["adult_female"])
CHILD_MALE: Final = _strings(_PEOPLE["child_male"])
CHILD_FEMALE: Final = _strings(_PEOPLE["child_female"])
TRANSLIT: Final = MappingProxyType(
    {letter: _as(str, latin) for letter, latin in _table(_PEOPLE["translit"]).items()}
)
MAIL_DOMAINS: Final = _strings(_PEOPLE["mail_domains"])
WITHDRAWAL_REASONS: Final = _strings(_PEOPLE["withdrawal_reasons"])

# Lesson topics (§3.2.4.7 asks for specific topics) and homework ------------------------------

TOPICS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {name: _strings(topics) for name, topics in _load("topics.toml").items()}
)

_HOMEWORK_FILE: Final = _load("homework.toml")
HOMEWORK: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {name: _strings(t) for name, t in _table(_HOMEWORK_FILE["templates"]).items()}
)
HOMEWORK_DEFAULT: Final = _strings(_HOMEWORK_FILE["default"])
HOMEWORK_RATE: Final = MappingProxyType(
    {name: _as(float, rate) for name, rate in _table(_HOMEWORK_FILE["rate"]).items()}
)
HOMEWORK_RATE_DEFAULT: Final = _as(float, _HOMEWORK_FILE["default_rate"])
