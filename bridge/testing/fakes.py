"""In-memory fakes of the ports, for tests: :class:`MemorySource` (``bridge.testing.source``)
and :class:`MemoryStateStore`.

Each passes the same contract tests as the real adapter (``tests/contracts/``), so a test that
runs the engine on them proves something about the engine on the real ones. Both mirror the SQL
adapters' semantics, including their corners: SQL NULL never matches a filter, a tombstoned
entry keeps its row but leaves every live view, payloads travel through JSON.
"""

from __future__ import annotations

import functools
import inspect
import json
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from bridge.adapters.state import DELETED, is_valid, utc_now, withdrawal_changes
from bridge.core.errors import UnknownPlan
from bridge.core.model import EntryView, Op, StateEntry, Value
from bridge.ports import (
    Approval,
    Clock,
    DeadLetter,
    Delivered,
    HeldPlan,
    Refusal,
    Source,
    StateStore,
)
from bridge.testing.source import MemorySource, ReadCall, TableRows

__all__ = ["MemorySource", "MemoryStateStore", "ReadCall", "StoredRow", "TableRows"]

# --- state ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StoredRow:
    """Everything the store keeps of one (entity, sort key), as the SQL store's row does."""

    entity: str
    sort_key: str
    key: str
    fingerprint: str
    status: str
    payload: Mapping[str, Value] | None
    portal_id: str | None
    mapping_version: int
    pupil_key: str | None
    class_key: str | None
    first_delivered_at: datetime
    updated_at: datetime

    def entry(self) -> StateEntry:
        """The entry as ``entries`` and ``lookup`` give it (without the payload)."""
        return StateEntry(
            self.entity,
            self.key,
            self.sort_key,
            self.fingerprint,
            self.status,
            None,
            self.pupil_key,
            self.class_key,
        )

    @property
    def is_live(self) -> bool:
        """True unless the entry is a tombstone."""
        return self.status != DELETED


T = TypeVar("T")


def _synchronized(cls: type[T]) -> type[T]:
    """Every public method of ``cls`` under the instance's lock: delivery records answered
    batches in a thread of its own while planning reads (as two connections would)."""
    for name, member in list(vars(cls).items()):
        if name.startswith("_") or not inspect.isfunction(member):
            continue

        def locked(*args: Any, _method: Callable[..., Any] = member, **kwargs: Any) -> Any:
            with args[0].lock:
                return _method(*args, **kwargs)

        setattr(cls, name, functools.wraps(member)(locked))
    return cls


@_synchronized
class MemoryStateStore:
    """The state store port in memory, with the semantics of ``SqlStateStore``."""

    def __init__(self, clock: Clock = utc_now) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.rows: dict[tuple[str, str], StoredRow] = {}
        self.watermarks: dict[str, str] = {}
        self.regating: set[str] = set()
        self.gated_as_of: str | None = None
        self.approvals: dict[str, Approval] = {}
        self.held: dict[str, HeldPlan] = {}
        self.letters: dict[tuple[str, str], DeadLetter] = {}
        self.batches: dict[tuple[str, int], str] = {}
        self.withdrawn: dict[str, datetime] = {}
        self._gate_cache: dict[str, str] = {}

    def _live(self, entity: str) -> Iterator[StoredRow]:
        return (r for r in self.rows.values() if r.entity == entity and r.is_live)

    def entries(self, entity: str) -> Iterator[EntryView]:
        """Live entries of ``entity`` in sort_key order, as (sort key, fingerprint, status)."""
        return self.entries_between(entity, None, None)

    def entries_between(
        self, entity: str, start: str | None, stop: str | None
    ) -> Iterator[EntryView]:
        """Live entries of ``entity`` in ``[start, stop)`` (None: open), in sort_key order."""
        rows = sorted(
            (
                r
                for r in self._live(entity)
                if (start is None or r.sort_key >= start) and (stop is None or r.sort_key < stop)
            ),
            key=lambda r: r.sort_key,
        )
        return iter([(r.sort_key, r.fingerprint, r.status) for r in rows])

    def lookup(self, entity: str, sort_keys: Sequence[str]) -> dict[str, StateEntry]:
        """Live entries of ``entity`` among ``sort_keys``, by sort key."""
        found = (self.rows.get((entity, k)) for k in sort_keys)
        return {r.sort_key: r.entry() for r in found if r is not None and r.is_live}

    def payloads(self, entity: str, sort_keys: Sequence[str]) -> dict[str, Mapping[str, Value]]:
        """The recorded payloads of the given live entries, by sort key."""
        found = (self.rows.get((entity, k)) for k in sort_keys)
        return {
            r.sort_key: _copy(r.payload) for r in found if r is not None and r.payload is not None
        }

    def tombstones(self, entity: str, keys: Sequence[str]) -> dict[str, str]:
        """Key → sort key of the deleted entries of ``entity`` among ``keys``."""
        wanted = set(keys)
        return {
            r.key: r.sort_key
            for r in self.rows.values()
            if r.entity == entity and not r.is_live and r.key in wanted
        }

    def portal_ids(self, entity: str, keys: Sequence[str]) -> dict[str, str]:
        """Key → the portal's id of the live entries of ``entity`` among ``keys``."""
        wanted = set(keys)
        return {
            r.key: r.portal_id
            for r in self.rows.values()
            if r.entity == entity and r.is_live and r.key in wanted and r.portal_id is not None
        }

    def holders(self, entity: str, portal_ids: Sequence[str]) -> dict[str, str]:
        """Portal id → key of the live entry of ``entity`` holding it."""
        wanted = set(portal_ids)
        return {
            r.portal_id: r.key
            for r in self.rows.values()
            if r.entity == entity and r.is_live and r.portal_id in wanted
        }

    def record(self, delivered: Sequence[Delivered]) -> None:
        """Record acknowledged changes, all or nothing: upserts first, then tombstones."""
        now = self.clock()
        live = [self._stored(d, now) for d in delivered if d.change.op != Op.DELETE]
        rows = dict(self.rows)
        for row in live:
            old = rows.get((row.entity, row.sort_key))
            kept = (
                row
                if old is None
                else replace(
                    row,
                    first_delivered_at=old.first_delivered_at,
                    portal_id=row.portal_id if row.portal_id is not None else old.portal_id,
                )
            )
            rows[(row.entity, row.sort_key)] = kept
        for d in delivered:
            at = (d.change.entity, d.change.sort_key)
            if d.change.op == Op.DELETE and at in rows:
                rows[at] = replace(
                    rows[at], status=DELETED, fingerprint="", payload=None, updated_at=now
                )
        self.rows = rows
        withdrawn, back = withdrawal_changes(delivered)
        for key in back:
            self.withdrawn.pop(key, None)
        for key in withdrawn:
            self.withdrawn.setdefault(key, now)

    def withdrawals(self) -> dict[str, datetime]:
        """Pupil key → when the pupil first left the portal for lack of consent."""
        return dict(self.withdrawn)

    @staticmethod
    def _stored(d: Delivered, now: datetime) -> StoredRow:
        change, record = d.change, d.change.record
        assert record is not None, "only deletes come without a record"
        status = "archived" if change.op == Op.ARCHIVE else "delivered"
        payload = json.loads(json.dumps(dict(record.payload), ensure_ascii=False))
        return StoredRow(
            change.entity,
            change.sort_key,
            change.key,
            record.fingerprint,
            status,
            payload,
            d.portal_id,
            d.mapping_version,
            d.pupil_key,
            d.class_key,
            now,
            now,
        )

    def count(self, entity: str) -> int:
        """How many live entries ``entity`` has."""
        return sum(1 for _ in self._live(entity))

    def count_by_class(self, entity: str) -> dict[str, int]:
        """Live entries of ``entity`` per owner class."""
        counts: dict[str, int] = {}
        for row in self._live(entity):
            if row.class_key is not None:
                counts[row.class_key] = counts.get(row.class_key, 0) + 1
        return counts

    def watermark(self, entity: str) -> str | None:
        """The watermark an incremental read of ``entity`` starts from."""
        return self.watermarks.get(entity)

    def set_watermarks(self, marks: Mapping[str, str]) -> None:
        """Advance the watermarks of the given entities."""
        self.watermarks.update(marks)

    def regate_marks(self) -> set[str]:
        """Pupils marked for re-gating."""
        return set(self.regating)

    def mark_regate(self, pupils: Collection[str]) -> None:
        """Mark pupils for re-gating."""
        self.regating.update(pupils)

    def finish_regate(self, pupils: Collection[str] | None, as_of: str) -> None:
        """Clear re-gating marks (None: all) and remember the day gated for."""
        if pupils is None:
            self.regating.clear()
        else:
            self.regating.difference_update(pupils)
        self.gated_as_of = as_of

    def gate_cache(self, entity: str) -> str | None:
        """The gate's snapshot kept for ``entity``, if any."""
        return self._gate_cache.get(entity)

    def set_gate_cache(self, entity: str, snapshot: str) -> None:
        """Keep the gate's snapshot of ``entity``."""
        self._gate_cache[entity] = snapshot

    def last_as_of(self) -> str | None:
        """The day the last complete run gated for."""
        return self.gated_as_of

    def open_batch(self, run_id: str, batch: int, operations: int) -> None:
        """Record the intent to send a batch."""
        self.batches[(run_id, batch)] = "sent"

    def commit_batch(
        self,
        run_id: str,
        batch: int,
        delivered: Sequence[Delivered],
        refused: Sequence[Refusal],
        max_attempts: int,
        *,
        complete: bool = True,
    ) -> None:
        """Record acknowledged changes, count refusals, close the intent (``partial`` when
        only a part of the batch was answered)."""
        self.record(delivered)
        for d in delivered:
            self.letters.pop((d.change.entity, d.change.sort_key), None)
        for refusal in refused:
            change = refusal.change
            before = self.letters.get((change.entity, change.sort_key))
            attempts = (before.attempts if before else 0) + 1
            self.letters[(change.entity, change.sort_key)] = DeadLetter(
                change.entity,
                change.key,
                change.sort_key,
                change.fingerprint or "",
                change.op.value,
                attempts,
                refusal.kind,
                refusal.reason[:500],
                "dead" if attempts >= max_attempts else "retrying",
            )
        self.batches[(run_id, batch)] = "acked" if complete else "partial"

    def dead_letters(self) -> dict[tuple[str, str], DeadLetter]:
        """Every dead letter by (entity, sort key)."""
        return dict(self.letters)

    def revive(self, entity: str | None = None) -> int:
        """Make dead letters eligible again; returns how many."""
        revived = [
            k
            for k, v in self.letters.items()
            if v.is_dead and (entity is None or v.entity == entity)
        ]
        for k in revived:
            self.letters[k] = replace(self.letters[k], status="retrying", attempts=0)
        return len(revived)

    def count_open_by_class(self, entity: str) -> dict[str, int]:
        """Live entries of ``entity`` per owner class with no ``date_to`` in their payload."""
        counts: dict[str, int] = {}
        for row in self._live(entity):
            if row.class_key is not None and (row.payload or {}).get("date_to") is None:
                counts[row.class_key] = counts.get(row.class_key, 0) + 1
        return counts

    def hold_plan(self, plan_id: str, summary: str) -> None:
        """Remember a held plan (the first time held is kept, the summary updated)."""
        first = self.held.get(plan_id)
        self.held[plan_id] = HeldPlan(
            plan_id, first.held_at if first else self.clock(), summary[:500]
        )

    def held_plan(self, plan_id: str) -> HeldPlan | None:
        """The held plan ``plan_id``, if a guard held it."""
        return self.held.get(plan_id)

    def approval(self, plan_id: str) -> Approval | None:
        """The approval of the held plan ``plan_id``, valid or expired."""
        return self.approvals.get(plan_id)

    def is_approved(self, plan_id: str, valid_for: timedelta | None = None) -> bool:
        """True when an admin approved the held plan ``plan_id`` (within ``valid_for``)."""
        return is_valid(self.approvals.get(plan_id), self.clock(), valid_for)

    def approve(self, plan_id: str, by: str) -> None:
        """Record (or renew) an admin's approval of a held plan; UnknownPlan for any other id."""
        if plan_id not in self.held:
            raise UnknownPlan(plan_id)
        self.approvals[plan_id] = Approval(by, self.clock())

    def close(self) -> None:
        """Nothing to release; here for parity with ``SqlStateStore``."""

    def after_fork(self) -> None:
        """Nothing to drop: the rows are in memory (a forked process reads its own copy)."""


def _copy(payload: Mapping[str, Value]) -> dict[str, Value]:
    """A payload the caller may change without changing the store."""
    return dict(json.loads(json.dumps(dict(payload), ensure_ascii=False)))


if TYPE_CHECKING:  # mypy proves the fakes satisfy the ports they stand in for
    _SOURCE: Source = MemorySource()
    _STATE: StateStore = MemoryStateStore()
