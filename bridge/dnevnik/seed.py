"""The emulator's contingent, read from a demo school's ASIOU SQLite file (the reference
schema, ``docs/asiou-schema.md``: edu_year, study_period, subject, teacher, class_unit,
class_group, pupil, pupil_move, group_pupil, and lesson when present), with the mismatches real
schools have between their journal and the diary injected deterministically:

- ``missing_person``: a pupil who has no person on the portal;
- ``name_spelling``: a pupil whose surname or first name is spelled differently (ё → е, else
  one vowel changed);
- ``same_name_twins``: a second portal person with the same surname, first name, patronymic and
  birthday as a pupil, in the same class (no ASIOU pupil stands for it);
- ``class_name``: a class named differently (``5А`` → ``5 А``).

:func:`seed` returns the objects (with the ids the portal assigns) and a :class:`Seeded` record:
the mismatches and, for the tests, which portal id stands for which ASIOU row. Nothing is logged.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bridge.core.errors import ConfigError, Problem
from bridge.dnevnik.journal import Journal, Obj

PERIOD_TYPES = {"quarter": "Quarter", "half": "HalfYear", "year": "Year"}
"""ASIOU period kind → the portal's reporting period type (guessed names)."""
WORK_TYPES = (
    ("УО", "Устный ответ", "CommonWork", 1),
    ("ДЗ", "Домашняя работа", "Homework", 1),
    ("СР", "Самостоятельная работа", "IndependentWork", 2),
    ("ПР", "Практическая работа", "PracticalWork", 2),
    ("КР", "Контрольная работа", "TestWork", 3),
    ("ДИК", "Диктант", "Dictation", 3),
    ("ЛР", "Лабораторная работа", "LaboratoryWork", 2),
    ("СОЧ", "Сочинение", "Composition", 3),
)
"""The school's work types: (abbr, title, kind, weight)."""
USER_ID_OFFSET = 2**61
"""A person's user id is its person id plus this (distinct from every object id)."""
Rows = dict[str, list[dict[str, Any]]]
"""Table name → its rows as dicts."""
SPELLING = {"ё": "е", "о": "а", "а": "о", "е": "и", "и": "е", "у": "ю", "ы": "и"}


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One injected mismatch: its kind, the ASIOU table and id it concerns, the portal ids
    involved, and which field differs (for ``name_spelling``)."""

    kind: str
    table: str
    asiou_id: int
    portal_ids: tuple[int, ...] = ()
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        """As ``GET /_emulator/mismatches`` shows it."""
        return {**asdict(self), "portal_ids": list(self.portal_ids)}


@dataclass
class Seeded:
    """What seeding made: the mismatches and ASIOU (table, id) → portal id."""

    mismatches: list[Mismatch] = field(default_factory=list)
    portal_ids: dict[str, dict[int, int]] = field(default_factory=lambda: defaultdict(dict))

    def as_json(self) -> dict[str, Any]:
        """The record as kept in the data file's meta table."""
        return {
            "mismatches": [m.as_json() for m in self.mismatches],
            "portal_ids": {t: {str(k): v for k, v in ids.items()} for t, ids in
                           self.portal_ids.items()},
        }  # fmt: skip

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Seeded:
        """Read back :meth:`as_json`."""
        seeded = cls()
        for m in raw.get("mismatches", []):
            seeded.mismatches.append(Mismatch(**{**m, "portal_ids": tuple(m["portal_ids"])}))
        for table, ids in raw.get("portal_ids", {}).items():
            seeded.portal_ids[table] = {int(k): v for k, v in ids.items()}
        return seeded


def read_school(path: str | Path) -> Rows:
    """The contingent tables of an ASIOU SQLite file; ConfigError when unreadable."""
    if not Path(path).is_file():
        raise ConfigError([Problem(str(path), "", "no such ASIOU SQLite file to seed from")])
    tables = ("edu_year", "study_period", "subject", "teacher", "class_unit", "class_group",
              "pupil", "pupil_move", "group_pupil")  # fmt: skip
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        rows = {t: _all(db, f"SELECT * FROM {t} ORDER BY 1") for t in tables}  # noqa: S608 - fixed names
        has_lessons = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'lesson'"
        ).fetchone()
        rows["lesson"] = (
            _all(db, "SELECT DISTINCT class_id, subject_id FROM lesson") if has_lessons else []
        )
    except sqlite3.Error as exc:
        raise ConfigError([Problem(str(path), "", f"not an ASIOU demo school: {exc}")]) from exc
    finally:
        db.close()
    return rows


def _all(db: sqlite3.Connection, query: str) -> list[dict[str, Any]]:
    return [dict(row) for row in db.execute(query)]


def seed(journal: Journal, rows: Rows) -> Seeded:
    """Fill an empty journal with the school's contingent and the mismatches."""
    seeded = Seeded()
    year = rows["edu_year"][0]
    school: Obj = {
        "id": journal.new_id(), "name": "Демонстрационная школа",
        "year": {"name": year["name"], "start": year["date_begin"], "finish": year["date_end"],
                 "studyyear": int(str(year["date_begin"])[:4])},
    }  # fmt: skip
    journal.restore("school", school)
    _subjects(journal, rows, seeded)
    _periods(journal, rows)
    for abbr, title, kind, weight in WORK_TYPES:
        wid = journal.new_id()
        journal.restore("worktype", {"id": wid, "abbr": abbr, "title": title, "kind": kind,
                                     "kindId": wid, "weight": weight})  # fmt: skip
    for row in rows["teacher"]:
        seeded.portal_ids["teacher"][row["id"]] = _person(journal, row, "teacher")
    _groups(journal, rows, seeded, school["year"]["studyyear"])
    _pupils(journal, rows, seeded)
    return seeded


def _subjects(journal: Journal, rows: Rows, seeded: Seeded) -> None:
    for row in rows["subject"]:
        sid = journal.new_id()
        journal.restore("subject", {"id": sid, "name": row["name"], "knowledgeArea": None})
        seeded.portal_ids["subject"][row["id"]] = sid


def _periods(journal: Journal, rows: Rows) -> None:
    for row in rows["study_period"]:
        journal.restore("period", {
            "id": journal.new_id(), "kind": row["kind"], "type": PERIOD_TYPES[row["kind"]],
            "number": row["num"], "name": row["name"], "start": row["date_begin"],
            "finish": row["date_end"], "year": int(str(row["date_begin"])[:4]),
        })  # fmt: skip


def _person(journal: Journal, row: dict[str, Any], role: str) -> int:
    pid = journal.new_id()
    journal.restore("person", {
        "id": pid, "userId": pid + USER_ID_OFFSET, "role": role, "lastName": row["last_name"],
        "firstName": row["first_name"], "middleName": row["middle_name"],
        "sex": {"м": "Male", "ж": "Female"}.get(row.get("gender") or ""),
        "birthday": row["birth_date"],
    })  # fmt: skip
    return pid


def _groups(journal: Journal, rows: Rows, seeded: Seeded, studyyear: int) -> None:
    subject_ids = seeded.portal_ids["subject"]
    taught: dict[int, set[int]] = defaultdict(set)
    for row in rows["lesson"]:
        taught[row["class_id"]].add(subject_ids[row["subject_id"]])
    classes = rows["class_unit"]
    renamed = _renamed(classes, _pupils_class(rows))
    for row in classes:
        name = f"{row['grade']}{row['letter']}"
        if row["id"] == renamed:
            name = f"{row['grade']} {row['letter']}"
        subjects = sorted(taught.get(row["id"]) or subject_ids.values())
        gid = _group(journal, name, row["grade"], year=studyyear, parents=[], subjects=subjects)
        seeded.portal_ids["class_unit"][row["id"]] = gid
        if row["id"] == renamed:
            seeded.mismatches.append(Mismatch("class_name", "class_unit", row["id"], (gid,)))
    grades = {row["id"]: row["grade"] for row in classes}
    for row in rows["class_group"]:
        parent = seeded.portal_ids["class_unit"][row["class_id"]]
        gid = _group(
            journal, row["name"], grades[row["class_id"]], year=studyyear, parents=[parent],
            subjects=[subject_ids[row["subject_id"]]],
        )  # fmt: skip
        seeded.portal_ids["class_group"][row["id"]] = gid


def _pupils_class(rows: Rows) -> int | None:
    """The class of the pupils chosen for mismatches (see :func:`_chosen`)."""
    chosen = _chosen(rows)
    moves = [m for m in rows["pupil_move"] if m["pupil_id"] == chosen[0]]
    return moves[0]["class_id"] if moves else None


def _renamed(classes: list[dict[str, Any]], pupils_class: int | None) -> int | None:
    """The class named differently: the first that is not the mismatched pupils' class."""
    others = [c["id"] for c in classes if c["id"] != pupils_class]
    return others[0] if others else (classes[0]["id"] if classes else None)


def _group(
    journal: Journal, name: str, grade: int, *, year: int, parents: list[int], subjects: list[int]
) -> int:
    gid = journal.new_id()
    kind = "half" if grade >= 10 else "quarter"
    journal.restore("group", {
        "id": gid, "type": "Subgroup" if parents else "Group", "name": name,
        "fullName": name, "parallel": grade, "studyyear": year, "parentIds": parents,
        "subjects": subjects, "periodKind": kind, "periodType": PERIOD_TYPES[kind],
    })  # fmt: skip
    return gid


def _pupils(journal: Journal, rows: Rows, seeded: Seeded) -> None:
    moves: dict[int, list[dict[str, Any]]] = defaultdict(list)
    groups: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for row in rows["pupil_move"]:
        moves[row["pupil_id"]].append(row)
    for row in rows["group_pupil"]:
        groups[row["pupil_id"]].append(row)
    missing, misspelled, twin = _chosen(rows)
    for row in rows["pupil"]:
        if row["id"] == missing:
            seeded.mismatches.append(Mismatch("missing_person", "pupil", row["id"]))
            continue
        person = dict(row)
        field_name = ""
        if row["id"] == misspelled:
            field_name = _misspell(person)
        pid = _person(journal, person, "pupil")
        seeded.portal_ids["pupil"][row["id"]] = pid
        if field_name:
            seeded.mismatches.append(
                Mismatch("name_spelling", "pupil", row["id"], (pid,), field_name)
            )
        stays = [(seeded.portal_ids["class_unit"][m["class_id"]], m) for m in moves[row["id"]]]
        stays += [(seeded.portal_ids["class_group"][g["group_id"]], g) for g in groups[row["id"]]]
        for gid, stay in stays:
            _stay(journal, pid, gid, stay)
        if row["id"] == twin:
            tid = _person(journal, person, "pupil")
            for gid, stay in stays:
                _stay(journal, tid, gid, stay)
            seeded.mismatches.append(Mismatch("same_name_twins", "pupil", row["id"], (pid, tid)))


def _chosen(rows: Rows) -> tuple[int, int, int]:
    """Three pupils of one class, each with a single open stay and a birth date: the one
    missing on the portal, the misspelled one, the one with a twin. The class is the first
    (by id) above grade 1 with three such pupils (grade 1 gets no marks), else the first."""
    grades = {c["id"]: c["grade"] for c in rows["class_unit"]}
    stays: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for move in rows["pupil_move"]:
        stays[move["pupil_id"]].append(move)
    by_class: dict[int, list[int]] = defaultdict(list)
    for row in rows["pupil"]:
        own = stays.get(row["id"], [])
        if len(own) == 1 and own[0]["date_out"] is None and row["birth_date"]:
            by_class[own[0]["class_id"]].append(row["id"])
    ready = sorted(c for c, pupils in by_class.items() if len(pupils) >= 3)
    ready.sort(key=lambda c: grades.get(c, 0) < 2)
    if not ready:
        return (-1, -1, -1)
    first, second, third = by_class[ready[0]][:3]
    return first, second, third


def _misspell(person: dict[str, Any]) -> str:
    """Change one letter of the surname (or ё → е in either name); the field changed."""
    for name in ("lastName", "firstName"):
        key = {"lastName": "last_name", "firstName": "first_name"}[name]
        if "ё" in person[key]:
            person[key] = person[key].replace("ё", "е")
            return name
    text = person["last_name"]
    for index in range(1, len(text)):
        if text[index] in SPELLING:
            person["last_name"] = text[:index] + SPELLING[text[index]] + text[index + 1 :]
            return "lastName"
    person["last_name"] = text + "ъ"
    return "lastName"


def _stay(journal: Journal, person: int, group: int, row: dict[str, Any]) -> None:
    journal.restore("membership", {
        "id": journal.new_id(), "person": person, "group": group,
        "start": row["date_in"], "finish": row["date_out"],
    })  # fmt: skip
