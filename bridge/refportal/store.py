"""The reference portal's records and rules, without HTTP.

:class:`PortalModel` holds every school's records in memory, with the indexes the validation
needs (live references per record, enrolments per pupil), and applies operations one by one with
every check a real diary makes (``docs/portal-api.md``, "Validation"). :class:`MemoryPortal`
is the in-memory adapter of the :class:`bridge.ports.Portal` port on top of it, for the bridge's
tests; :class:`PortalFile` is the SQLite file the HTTP server writes through to.

Descriptions of rejections name entities, keys, fields and limits, never a value a record carries
(a mark, a name), so a client may log them as they are.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from bridge.core.errors import FatalError
from bridge.ports import ENTITIES, Operation, OperationResult

MAX_BATCH = 1000
"""The most operations one batch may carry (413 beyond)."""

ACTIVE, TOMBSTONED = "active", "tobedeleted"
METHODS = ("PUT", "DELETE")

Data = dict[str, Any]


@dataclass(slots=True)
class StoredRecord:
    """One record as the portal keeps it. A deleted record is purged: its tombstone keeps the
    key and the deletion time only (no data, no fingerprint of the content)."""

    entity: str
    sourced_id: str
    fingerprint: str
    data: Data
    live: bool = True
    deleted_at: str | None = None

    @property
    def status(self) -> str:
        """``active`` while live, ``tobedeleted`` once deleted (OneRoster's word)."""
        return ACTIVE if self.live else TOMBSTONED

    def as_json(self) -> Data:
        """The record as the API shows it; a tombstone shows its key and deletion time only."""
        if not self.live:
            return {
                "sourcedId": self.sourced_id,
                "status": self.status,
                "deletedAt": self.deleted_at,
            }
        return {
            "sourcedId": self.sourced_id,
            "fingerprint": self.fingerprint,
            "data": self.data,
            "status": self.status,
        }


def tombstone(entity: str, sourced_id: str, deleted_at: str | None) -> StoredRecord:
    """What the portal keeps of a deleted record: key and deletion time, nothing else."""
    return StoredRecord(entity, sourced_id, "", {}, live=False, deleted_at=deleted_at)


def utc_stamp(epoch: float) -> str:
    """An epoch time as ISO 8601 UTC to the second (``2026-06-01T10:00:00Z``)."""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of one operation: an HTTP status and, for a rejection, type and reason."""

    status: int
    type: str | None = None
    description: str | None = None

    @property
    def ok(self) -> bool:
        """True when the operation took effect (or had nothing to do)."""
        return self.status < 300

    def result(self, op_id: str) -> OperationResult:
        """This verdict as the port's per-operation result."""
        return OperationResult(op_id, self.ok, self.status, self.type, self.description)


def invalid(description: str) -> Verdict:
    """A 422 validationFailed: the data has the wrong shape (missing field, wrong type)."""
    return Verdict(422, "validationFailed", description)


# --- the rules, as data --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ref:
    """A reference field: ``entity.field`` holds the key of a live ``target`` record."""

    field: str
    target: str
    required: bool = True


REFS: dict[str, tuple[Ref, ...]] = {
    "class": (Ref("form_teacher", "teacher", required=False),),
    "group": (Ref("class", "class"), Ref("subject", "subject")),
    "enrollment": (Ref("pupil", "pupil"), Ref("class", "class")),
    "group_member": (Ref("pupil", "pupil"), Ref("group", "group")),
    "guardian_link": (Ref("pupil", "pupil"), Ref("guardian", "guardian")),
    "lesson": (
        Ref("class", "class"),
        Ref("group", "group", required=False),
        Ref("subject", "subject"),
        Ref("teacher", "teacher"),
    ),
    "work": (Ref("lesson", "lesson"),),
    "mark": (Ref("work", "work"), Ref("pupil", "pupil")),
    "absence": (Ref("lesson", "lesson"), Ref("pupil", "pupil")),
    "period_mark": (Ref("pupil", "pupil"), Ref("subject", "subject"), Ref("period", "period")),
}
"""Every reference the portal resolves; a live record keeps its targets from being deleted."""

REFERRERS: dict[str, tuple[str, ...]] = {
    target: tuple(e for e in ENTITIES if any(r.target == target for r in REFS.get(e, ())))
    for target in ENTITIES
}
"""For each entity, the entities whose records may refer to it."""

DIGITS = ("5", "4", "3", "2", "1")
MARK_VALUES = frozenset(DIGITS) | {d + s for d in DIGITS for s in "+-"}
PERIOD_MARK_VALUES = frozenset(DIGITS) | {"not_attested", "pass", "fail", "exempt"}
ABSENCE_CODES = frozenset({"absent", "ill", "excused", "late"})

VALUES: dict[str, tuple[str, frozenset[str], str]] = {
    "mark": ("value", MARK_VALUES, "5, 4, 3, 2 or 1, optionally followed by + or -"),
    "period_mark": (
        "value",
        PERIOD_MARK_VALUES,
        "5, 4, 3, 2, 1, not_attested, pass, fail or exempt",
    ),
    "absence": ("code", ABSENCE_CODES, "absent, ill, excused or late"),
}
"""entity → (field, allowed values, the allowed values in words)."""

NAMES = {"last_name": 60, "first_name": 60, "middle_name": 60}
TEXT_LIMITS: dict[str, dict[str, int]] = {
    "lesson": {"topic": 500, "homework": 2000},
    "pupil": NAMES,
    "teacher": NAMES,
    "guardian": NAMES,
    "class": {"name": 60},
    "group": {"name": 60},
    "period": {"name": 60},
    "subject": {"name": 200},
}
"""entity → field → most characters (textTooLong beyond)."""

DATES: dict[str, dict[str, bool]] = {
    "lesson": {"date": True},
    "enrollment": {"date_from": True, "date_to": False},
    "group_member": {"date_from": False, "date_to": False},
    "period": {"date_from": False, "date_to": True},
}
"""entity → date field → required; dates are ISO ``YYYY-MM-DD`` strings."""

NATURAL_IDENTITY: dict[str, tuple[str, ...]] = {
    "mark": ("work", "pupil"),
    "absence": ("lesson", "pupil"),
    "enrollment": ("pupil", "class", "date_from"),
    "period_mark": ("pupil", "subject", "period"),
}
"""Fields that identify a fact regardless of its key: two live records sharing them are
duplicates (the portal accepts them; ``duplicates()`` reports them)."""

ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
SCALARS = (str, int, float, bool, type(None))


# --- one school's records and indexes ------------------------------------------------------


class SchoolData:
    """One school's records (tombstones included) and the indexes kept over live ones."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, StoredRecord]] = {e: {} for e in ENTITIES}
        self.references: dict[tuple[str, str, str], int] = {}
        """(target entity, target key, referrer entity) → live referrers."""
        self.stays: dict[str, set[str]] = {}
        """pupil key → keys of the pupil's live enrolments."""

    def live(self, entity: str, key: object) -> StoredRecord | None:
        """The live record of ``entity`` with ``key``, or None."""
        record = self.records[entity].get(key) if isinstance(key, str) else None
        return record if record is not None and record.live else None

    def link(self, record: StoredRecord) -> None:
        """Index a record that just became live."""
        self._count(record, 1)
        if record.entity == "enrollment":
            self.stays.setdefault(str(record.data.get("pupil")), set()).add(record.sourced_id)

    def unlink(self, record: StoredRecord) -> None:
        """Drop a record that is about to stop being live (or be replaced) from the indexes."""
        self._count(record, -1)
        if record.entity == "enrollment":
            self.stays.get(str(record.data.get("pupil")), set()).discard(record.sourced_id)

    def _count(self, record: StoredRecord, step: int) -> None:
        for ref in REFS.get(record.entity, ()):
            target = record.data.get(ref.field)
            if isinstance(target, str):
                slot = (ref.target, target, record.entity)
                self.references[slot] = self.references.get(slot, 0) + step

    def dependents(self, entity: str, key: str) -> dict[str, int]:
        """Referrer entity → number of live records that refer to ``entity`` ``key``."""
        counts = {e: self.references.get((entity, key, e), 0) for e in REFERRERS[entity]}
        return {e: n for e, n in counts.items() if n > 0}

    def enrollments(self, pupil: str) -> list[StoredRecord]:
        """The pupil's live enrolments."""
        table = self.records["enrollment"]
        return [table[k] for k in self.stays.get(pupil, ())]


# --- checks: small functions, compiled once per entity ---------------------------------------

Check = Callable[[SchoolData, Mapping[str, Any]], Verdict | None]


def _ref_check(entity: str, ref: Ref) -> Check:
    where = f"{entity}.{ref.field}"

    def check(school: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
        key = data.get(ref.field)
        if key is None:
            return invalid(f"{where} is required") if ref.required else None
        if not isinstance(key, str):
            return invalid(f"{where} must be a key string")
        if school.live(ref.target, key) is not None:
            return None
        gone = "is deleted" if key in school.records[ref.target] else "does not exist"
        return Verdict(
            422, "referenceMissing", f"{where} refers to {ref.target} {key}, which {gone}"
        )

    return check


def _value_check(entity: str, name: str, allowed: frozenset[str], words: str) -> Check:
    where = f"{entity}.{name}"

    def check(_: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
        value = data.get(name)
        if value is None:
            return invalid(f"{where} is required")
        if value in allowed:
            return None
        return Verdict(422, "valueInvalid", f"{where} is not one of {words}")

    return check


def _text_check(entity: str, name: str, limit: int) -> Check:
    where = f"{entity}.{name}"

    def check(_: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
        text = data.get(name)
        if text is None or (isinstance(text, str) and len(text) <= limit):
            return None
        if not isinstance(text, str):
            return invalid(f"{where} must be text")
        return Verdict(
            422, "textTooLong", f"{where} has {len(text)} characters, more than the {limit} allowed"
        )

    return check


def _date_check(entity: str, name: str, required: bool) -> Check:
    where = f"{entity}.{name}"

    def check(_: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
        value = data.get(name)
        if value is None:
            return invalid(f"{where} is required") if required else None
        if is_iso_date(value):
            return None
        return invalid(f"{where} must be an ISO date (YYYY-MM-DD)")

    return check


def is_iso_date(value: object) -> bool:
    """True for an ISO ``YYYY-MM-DD`` string naming a real day."""
    if not isinstance(value, str) or not ISO_DATE.fullmatch(value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def _scalars(entity: str) -> Check:
    def check(_: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
        for name, value in data.items():
            if not isinstance(value, SCALARS):
                return invalid(f"{entity}.{name} must be a string, number, boolean or null")
        return None

    return check


def _grade(_: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
    grade = data.get("grade")
    if grade is None or (isinstance(grade, int) and not isinstance(grade, bool)):
        return None
    return invalid("class.grade must be an integer")


def _lesson_of_work(school: SchoolData, work_key: object) -> StoredRecord | None:
    work = school.live("work", work_key)
    return school.live("lesson", work.data.get("lesson")) if work is not None else None


def _is_grade_one(school: SchoolData, class_key: object) -> bool:
    klass = school.live("class", class_key)
    return klass is not None and klass.data.get("grade") == 1


def _grade_one_mark(school: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
    lesson = _lesson_of_work(school, data.get("work"))
    if lesson is None or not _is_grade_one(school, lesson.data.get("class")):
        return None
    return Verdict(
        422,
        "grade1Mark",
        f"work {data.get('work')} is on lesson "
        f"{lesson.sourced_id} of class {lesson.data.get('class')}, which is grade 1",
    )


def _grade_one_period_mark(school: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
    period = school.live("period", data.get("period"))
    day = period.data.get("date_to") if period is not None else None
    if not isinstance(day, str):
        return None
    for stay in school.enrollments(str(data.get("pupil"))):
        if _covers(stay, day) and _is_grade_one(school, stay.data.get("class")):
            return Verdict(
                422,
                "grade1Mark",
                f"pupil {data.get('pupil')} is in class "
                f"{stay.data.get('class')} (grade 1) at the end of period "
                f"{data.get('period')}",
            )
    return None


def _covers(stay: StoredRecord, day: str) -> bool:
    start, end = stay.data.get("date_from"), stay.data.get("date_to")
    return isinstance(start, str) and start <= day and (end is None or end >= day)


def _membership(school: SchoolData, pupil: object, lesson: StoredRecord | None) -> Verdict | None:
    """membershipClosed when the pupil has stays in the lesson's class and every one of them
    ended before the lesson's day (a pupil never enrolled in the class is not refused)."""
    if lesson is None or not isinstance(pupil, str):
        return None
    day, class_key = lesson.data.get("date"), lesson.data.get("class")
    stays = [s for s in school.enrollments(pupil) if s.data.get("class") == class_key]
    if not stays or any(s.data.get("date_to") is None or s.data["date_to"] >= day for s in stays):
        return None
    return Verdict(
        422,
        "membershipClosed",
        f"pupil {pupil} left class {class_key} before lesson {lesson.sourced_id} on {day}",
    )


def _membership_mark(school: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
    return _membership(school, data.get("pupil"), _lesson_of_work(school, data.get("work")))


def _membership_absence(school: SchoolData, data: Mapping[str, Any]) -> Verdict | None:
    return _membership(school, data.get("pupil"), school.live("lesson", data.get("lesson")))


DOMAIN_CHECKS: dict[str, tuple[Check, ...]] = {
    "class": (_grade,),
    "mark": (_grade_one_mark, _membership_mark),
    "absence": (_membership_absence,),
    "period_mark": (_grade_one_period_mark,),
}
"""Checks that read other records, run after the references resolved."""


def compile_checks(entity: str) -> tuple[Check, ...]:
    """Every check of ``entity`` in the order the portal applies them: shape, values, text
    lengths, references, then the domain rules (grade 1, closed membership)."""
    checks: list[Check] = [_scalars(entity)]
    checks += [_date_check(entity, n, req) for n, req in DATES.get(entity, {}).items()]
    if entity in VALUES:
        checks.append(_value_check(entity, *VALUES[entity]))
    checks += [_text_check(entity, n, limit) for n, limit in TEXT_LIMITS.get(entity, {}).items()]
    checks += [_ref_check(entity, ref) for ref in REFS.get(entity, ())]
    checks += DOMAIN_CHECKS.get(entity, ())
    return tuple(checks)


CHECKS: dict[str, tuple[Check, ...]] = {e: compile_checks(e) for e in ENTITIES}


def check_shape(op: Operation) -> Verdict | None:
    """400 badRequest or 404 unknownResource when the operation itself is malformed."""
    if op.method not in METHODS:
        return Verdict(400, "badRequest", "method must be PUT or DELETE")
    if op.entity not in CHECKS:
        return Verdict(404, "unknownResource", "entity is not one of the API's resources")
    if not isinstance(op.sourced_id, str) or not op.sourced_id:
        return Verdict(400, "badRequest", "sourcedId must be a non-empty string")
    return _check_put_body(op) if op.method == "PUT" else None


def _check_put_body(op: Operation) -> Verdict | None:
    if not isinstance(op.fingerprint, str) or not op.fingerprint:
        return Verdict(400, "badRequest", "a PUT needs a fingerprint string")
    if not isinstance(op.data, Mapping):
        return Verdict(400, "badRequest", "a PUT needs a data object")
    return None


# --- the model -------------------------------------------------------------------------------


@dataclass
class Applied:
    """What a batch did: one result per operation, and the records it changed (to persist)."""

    results: list[OperationResult] = field(default_factory=list)
    changed: dict[tuple[str, str], StoredRecord] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        """Operations that did not take effect."""
        return sum(1 for r in self.results if not r.ok)


class PortalModel:
    """Every school's records; applies operations in order with every check. Not thread-safe:
    the server calls it under one lock."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.schools: dict[str, SchoolData] = {}
        self.clock = clock

    def school(self, name: str) -> SchoolData:
        """The school's data, created empty on first use."""
        data = self.schools.get(name)
        if data is None:
            data = self.schools[name] = SchoolData()
        return data

    def apply(self, school: str, operations: Sequence[Operation]) -> Applied:
        """Apply operations in order, each on its own: a rejected one changes nothing and does
        not stop the rest; later ones see the effects of earlier ones."""
        data, applied = self.school(school), Applied()
        for op in operations:
            verdict, record = self._apply_one(data, op)
            applied.results.append(verdict.result(op.op_id))
            if record is not None:
                applied.changed[(record.entity, record.sourced_id)] = record
        return applied

    def _apply_one(self, data: SchoolData, op: Operation) -> tuple[Verdict, StoredRecord | None]:
        verdict = check_shape(op)
        if verdict is not None:
            return verdict, None
        if op.method == "PUT":
            return self._put(data, op)
        return self._delete(data, op, utc_stamp(self.clock()))

    @staticmethod
    def _put(school: SchoolData, op: Operation) -> tuple[Verdict, StoredRecord | None]:
        payload = dict(op.data or {})
        for check in CHECKS[op.entity]:
            verdict = check(school, payload)
            if verdict is not None:
                return verdict, None
        old = school.records[op.entity].get(op.sourced_id)
        if old is not None and old.live:
            if old.fingerprint == op.fingerprint and old.data == payload:
                return Verdict(200), None  # the same write again: nothing to do, nothing to save
            school.unlink(old)
        record = StoredRecord(op.entity, op.sourced_id, str(op.fingerprint), payload)
        school.records[op.entity][op.sourced_id] = record
        school.link(record)
        return Verdict(200 if old is not None and old.live else 201), record

    @staticmethod
    def _delete(school: SchoolData, op: Operation, now: str) -> tuple[Verdict, StoredRecord | None]:
        old = school.live(op.entity, op.sourced_id)
        if old is None:
            return Verdict(204), None  # absent or already deleted: deleting again is a no-op
        dependents = school.dependents(op.entity, op.sourced_id)
        if dependents:
            listed = ", ".join(f"{n} {e}" for e, n in dependents.items())
            return Verdict(
                409,
                "hasDependents",
                f"{op.entity} {op.sourced_id} is still referred to by live records: {listed}",
            ), None
        school.unlink(old)
        tomb = tombstone(old.entity, old.sourced_id, now)
        school.records[op.entity][op.sourced_id] = tomb
        return Verdict(204), tomb

    def restore(self, school: str, record: StoredRecord) -> None:
        """Put back a record read from the portal's file, without checks (it passed them)."""
        data = self.school(school)
        data.records[record.entity][record.sourced_id] = record
        if record.live:
            data.link(record)

    def get(self, school: str, entity: str, key: str) -> StoredRecord | None:
        """The record (live or tombstone) of ``entity`` with ``key``, or None."""
        data = self.schools.get(school)
        return data.records[entity].get(key) if data is not None else None

    def records(self, school: str, entity: str) -> list[StoredRecord]:
        """Every record of ``entity``, tombstones included."""
        data = self.schools.get(school)
        return list(data.records[entity].values()) if data is not None else []

    def fingerprints(self, school: str, entity: str) -> dict[str, str]:
        """sourcedId → fingerprint of every live record of ``entity``."""
        return {r.sourced_id: r.fingerprint for r in self.records(school, entity) if r.live}

    def counts(self) -> dict[str, dict[str, int]]:
        """school → entity → live records (entities without any are left out)."""
        out: dict[str, dict[str, int]] = {}
        for name, data in sorted(self.schools.items()):
            live = {e: sum(1 for r in rs.values() if r.live) for e, rs in data.records.items()}
            out[name] = {e: n for e, n in live.items() if n}
        return out

    def duplicates(self) -> list[Data]:
        """Groups of live records sharing a natural identity (see ``NATURAL_IDENTITY``)."""
        found: list[Data] = []
        for name, data in sorted(self.schools.items()):
            for entity, fields in NATURAL_IDENTITY.items():
                found += _duplicates_of(name, entity, fields, data.records[entity].values())
        return found

    def clear(self) -> None:
        """Forget every record of every school."""
        self.schools.clear()


def _duplicates_of(
    school: str, entity: str, fields: tuple[str, ...], records: Iterable[StoredRecord]
) -> list[Data]:
    groups: dict[str, list[str]] = defaultdict(list)
    for record in records:
        if record.live:
            identity = json.dumps([record.data.get(f) for f in fields])
            groups[identity].append(record.sourced_id)
    return [
        {
            "school": school,
            "entity": entity,
            "identity": dict(zip(fields, json.loads(identity), strict=True)),
            "sourcedIds": sorted(keys),
        }
        for identity, keys in sorted(groups.items())
        if len(keys) > 1
    ]


# --- the file --------------------------------------------------------------------------------

SCHEMA_VERSION = 2
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS record (school TEXT NOT NULL, entity TEXT NOT NULL,"
    " sourced_id TEXT NOT NULL, fingerprint TEXT NOT NULL, data TEXT NOT NULL,"
    " live INTEGER NOT NULL, deleted_at TEXT, PRIMARY KEY (school, entity, sourced_id))"
    " WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS token (digest TEXT PRIMARY KEY, client_id TEXT NOT NULL,"
    " expires_at REAL NOT NULL)",
)
PURGE_V1_TOMBSTONES = (
    "ALTER TABLE record ADD COLUMN deleted_at TEXT",
    "UPDATE record SET fingerprint = '', data = '{}' WHERE live = 0",
)
"""Version 1 kept the data of deleted records; version 2 purges them (the deletion time of
those old tombstones is unknown and stays NULL)."""
UPSERT = (
    "INSERT OR REPLACE INTO record"
    " (school, entity, sourced_id, fingerprint, data, live, deleted_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class PortalFile:
    """The portal's SQLite file (mode 0600): every live record, the key and deletion time of
    deleted ones, and the digests of issued tokens. ``None`` keeps everything in memory. One
    writer: the caller serialises.

    Deleted content leaves the file too: ``secure_delete`` overwrites freed cells with zeros,
    and a write that deleted anything is checkpointed with the WAL truncated, so no old page
    image of a purged record stays in ``-wal``."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = str(path) if path is not None else ":memory:"
        if path is not None and not os.path.exists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, SCHEMA_VERSION):
            self._db.close()
            raise FatalError(
                f"{self.path}: portal data has schema version {version}; "
                f"this portal reads version {SCHEMA_VERSION}"
            )
        if version == 1:
            self._transaction(lambda: [self._db.execute(s) for s in PURGE_V1_TOMBSTONES])
            self._db.execute("VACUUM")
            self._truncate_wal()
        for statement in SCHEMA:
            self._db.execute(statement)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def records(self) -> Iterator[tuple[str, StoredRecord]]:
        """(school, record) for every record in the file."""
        rows = self._db.execute(
            "SELECT school, entity, sourced_id, fingerprint, data, live, deleted_at FROM record"
        )
        for school, entity, key, fingerprint, data, live, deleted_at in rows:
            if live:
                yield school, StoredRecord(entity, key, fingerprint, json.loads(data))
            else:
                yield school, tombstone(entity, key, deleted_at)

    def save(self, school: str, records: Iterable[StoredRecord]) -> None:
        """Write records (new, replaced or purged to a tombstone) in one transaction."""
        rows = [
            (
                school,
                r.entity,
                r.sourced_id,
                r.fingerprint,
                json.dumps(r.data, ensure_ascii=False, separators=(",", ":")),
                int(r.live),
                r.deleted_at,
            )
            for r in records
        ]
        if rows:
            self._transaction(lambda: self._db.executemany(UPSERT, rows))
        if any(not row[5] for row in rows):
            self._truncate_wal()

    def _truncate_wal(self) -> None:
        """Copy the WAL into the file and empty it (old page images of purged records go)."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def tokens(self) -> Iterator[tuple[str, str, float]]:
        """(token digest, client id, expiry as epoch seconds) of every issued token."""
        yield from self._db.execute("SELECT digest, client_id, expires_at FROM token")

    def save_token(self, digest: str, client_id: str, expires_at: float) -> None:
        """Remember an issued token by its digest (the token itself is never stored)."""
        self._db.execute(
            "INSERT OR REPLACE INTO token VALUES (?, ?, ?)", (digest, client_id, expires_at)
        )

    def clear(self) -> None:
        """Delete every record (tokens stay valid)."""
        self._transaction(lambda: self._db.execute("DELETE FROM record"))
        self._truncate_wal()

    def _transaction(self, work: Callable[[], object]) -> None:
        self._db.execute("BEGIN")
        try:
            work()
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the file."""
        self._db.close()
