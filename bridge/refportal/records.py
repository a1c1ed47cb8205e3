"""The records the reference portal keeps: :class:`StoredRecord` (a live record or the
tombstone of a deleted one) and :class:`SchoolData`, one school's records with the indexes the
validation needs (live references per record, enrolments per pupil).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.ports import ENTITIES
from bridge.refportal.rules import REFERRERS, REFS

ACTIVE, TOMBSTONED = "active", "tobedeleted"

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
