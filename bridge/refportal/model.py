"""The reference portal's in-memory model: :class:`PortalModel` holds every school's records
and applies operations one by one with every check a real diary makes (``docs/portal-api.md``,
"Validation"); :class:`Applied` is what one write did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.ports import Operation, OperationResult
from bridge.refportal.checks import CHECKS, Verdict, shape_of
from bridge.refportal.duplicates import find_duplicates
from bridge.refportal.records import Data, SchoolData, StoredRecord, tombstone, utc_stamp

CREATED, REPLACED, REMOVED = Verdict(201), Verdict(200), Verdict(204)


@dataclass
class Applied:
    """What a batch did: one verdict per operation (with the operations' ids), and the records
    it changed (to persist)."""

    ids: list[str] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    changed: dict[tuple[str, str], StoredRecord] = field(default_factory=dict)

    @property
    def results(self) -> list[OperationResult]:
        """One result per operation, in order."""
        return [v.result(i) for i, v in zip(self.ids, self.verdicts, strict=True)]

    @property
    def rejected(self) -> int:
        """Operations that did not take effect."""
        return sum(1 for v in self.verdicts if v.status >= 300)


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
            applied.ids.append(op.op_id)
            self._apply_one(data, applied, op.method, op.entity, op.sourced_id, op.fingerprint,
                            op.data)  # fmt: skip
        return applied

    def apply_items(self, school: str, items: Sequence[Mapping[str, Any]]) -> Applied:
        """:meth:`apply` on a batch's operations as they came off the wire (each a JSON object
        with a string ``id``; see ``wire.batch_items``): a field of the wrong type reads as
        absent, as ``wire.parse_batch`` reads it."""
        data, applied = self.school(school), Applied()
        ids, apply_one = applied.ids, self._apply_one
        for item in items:
            ids.append(item["id"])
            method, entity, key = item.get("method"), item.get("entity"), item.get("sourcedId")
            fingerprint = item.get("fingerprint")
            apply_one(
                data,
                applied,
                method if type(method) is str else _text(method),
                entity if type(entity) is str else _text(entity),
                key if type(key) is str else _text(key),
                fingerprint if isinstance(fingerprint, str) else None,
                item.get("data"),
            )
        return applied

    def _apply_one(  # noqa: PLR0917 - the operation's parts, once per operation
        self,
        data: SchoolData,
        applied: Applied,
        method: str,
        entity: str,
        key: str,
        fingerprint: str | None,
        payload: Mapping[str, Any] | None,
    ) -> None:
        verdict = shape_of(method, entity, key, fingerprint, payload)
        if verdict is not None:
            applied.verdicts.append(verdict)
            return
        if method == "PUT":
            verdict, record = self._put(data, entity, key, str(fingerprint), payload or {})
        else:
            verdict, record = self._delete(data, entity, key, utc_stamp(self.clock()))
        applied.verdicts.append(verdict)
        if record is not None:
            applied.changed[(entity, key)] = record

    @staticmethod
    def _put(
        school: SchoolData, entity: str, key: str, fingerprint: str, data: Mapping[str, Any]
    ) -> tuple[Verdict, StoredRecord | None]:
        payload = dict(data)
        for check in CHECKS[entity]:
            verdict = check(school, payload)
            if verdict is not None:
                return verdict, None
        table = school.records[entity]
        old = table.get(key)
        if old is not None and old.live:
            if old.fingerprint == fingerprint and old.data == payload:
                return REPLACED, None  # the same write again: nothing to do, nothing to save
            school.unlink(old)
        record = StoredRecord(entity, key, fingerprint, payload)
        table[key] = record
        school.link(record)
        return (REPLACED if old is not None and old.live else CREATED), record

    @staticmethod
    def _delete(
        school: SchoolData, entity: str, key: str, now: str
    ) -> tuple[Verdict, StoredRecord | None]:
        old = school.live(entity, key)
        if old is None:
            return REMOVED, None  # absent or already deleted: deleting again is a no-op
        dependents = school.dependents(entity, key)
        if dependents:
            listed = ", ".join(f"{n} {e}" for e, n in dependents.items())
            return Verdict(
                409,
                "hasDependents",
                f"{entity} {key} is still referred to by live records: {listed}",
            ), None
        school.unlink(old)
        tomb = tombstone(old.entity, old.sourced_id, now)
        school.records[entity][key] = tomb
        return REMOVED, tomb

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
        return find_duplicates(self.schools)

    def clear(self) -> None:
        """Forget every record of every school."""
        self.schools.clear()


def _text(value: object) -> str:
    """A wire field that must be text: itself when it is, "" otherwise."""
    return value if isinstance(value, str) else ""
