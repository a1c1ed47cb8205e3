"""The reference portal's in-memory model: :class:`PortalModel` holds every school's records
and applies operations one by one with every check a real diary makes (``docs/portal-api.md``,
"Validation"); :class:`Applied` is what one write did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bridge.ports import Operation, OperationResult
from bridge.refportal.checks import CHECKS, Verdict, check_shape
from bridge.refportal.duplicates import find_duplicates
from bridge.refportal.records import Data, SchoolData, StoredRecord, tombstone, utc_stamp


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
        return find_duplicates(self.schools)

    def clear(self) -> None:
        """Forget every record of every school."""
        self.schools.clear()
