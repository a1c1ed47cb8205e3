"""The ports: what the engine needs of the ASIOU source, the state store, the portal and the
clock, as Protocols, with the data that crosses them. This module imports only the model.

Adapters: ``bridge.adapters.source.SqlSource``, ``bridge.adapters.state.SqlStateStore``,
``bridge.adapters.portal_client.PortalClient`` (HTTP); fakes in ``bridge.testing``. Each kind
passes its contract suite in ``tests/contracts/``.

The portal's wire format is the reference diary import API (``docs/portal-api.md``,
``docs/portal-api.yaml``): resources per school keyed by the bridge's ``sourcedId``; ``PUT``
creates or replaces (idempotent), ``DELETE`` tombstones (idempotent), a batch endpoint answers
per operation.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol, runtime_checkable

from bridge.core.matching import Contingent, Match, Matches, Settled
from bridge.core.model import Change, EntryView, StateEntry, Value
from bridge.core.support import PortalSupport

# --- the source --------------------------------------------------------------------------------


class Table(Protocol):
    """What a source needs to know of a mapping to read its table (``CompiledMapping`` is one)."""

    @property
    def entity(self) -> str: ...
    @property
    def table(self) -> str: ...
    @property
    def schema(self) -> str | None: ...
    @property
    def location(self) -> str: ...
    @property
    def columns(self) -> tuple[str, ...]: ...
    @property
    def key_columns(self) -> tuple[str, ...]: ...
    @property
    def key_collation(self) -> str | None: ...
    @property
    def watermark(self) -> str | None: ...
    @property
    def filters(self) -> Sequence[Any]: ...


Row = Sequence[Any]


@dataclass(frozen=True)
class Rescan:
    """Rows to read in full during an incremental read: those whose ``column`` is in ``keys``."""

    column: str
    keys: Sequence[str]


@dataclass(frozen=True)
class KeyRange:
    """Rows whose first key column (whole numbers) is in ``[low, high)``; None leaves that end
    open. The range open at its low end also holds the rows whose key is NULL (they become
    rejections there), so ranges that meet cover every row exactly once."""

    column: str
    low: int | None
    high: int | None


class Source(Protocol):
    """The port: every adapter passes ``tests/contracts/test_source_contract.py``."""

    def read(
        self, mapping: Table, since: datetime | None = None, rescan: Rescan | None = None
    ) -> Iterator[Row]:
        """Rows of the mapping's table in key order; with ``since``, only rows whose watermark
        column is at or after it, plus the rows ``rescan`` names. Raises SourceError if the
        read fails."""
        ...


@runtime_checkable
class RangedSource(Source, Protocol):
    """A source that range planning can use (``bridge.service.engine.ranges``): it reads key
    ranges and can be used again after a fork. Both SQL and in-memory sources are."""

    def read_range(self, mapping: Table, key_range: KeyRange) -> Iterator[Row]:
        """Rows of the mapping's table in ``key_range``, in key order."""
        ...

    def key_bounds(self, mapping: Table) -> tuple[int, int] | None:
        """The lowest and highest value of the mapping's first key column when both are whole
        numbers (None otherwise: the table cannot be read in key ranges)."""
        ...

    def after_fork(self) -> None:
        """Called in a forked process before it reads: drop connections inherited from the
        parent, unclosed (they are the parent's), so the child opens its own."""
        ...


@runtime_checkable
class KeyedSource(Source, Protocol):
    """A source an incremental run can read by key (``bridge.service.engine.lazy``): the rows of
    given keys, the rows without a key, and the count and sum of the whole-number keys. Both
    SQL and in-memory sources are; with any other the engine reads every row, as before."""

    def read_keys(self, mapping: Table, keys: Sequence[str]) -> Iterator[Row]:
        """Rows of the mapping's table whose first key column is among ``keys`` (key text;
        whole numbers bound as numbers), in key order."""
        ...

    def read_keyless(self, mapping: Table) -> Iterator[Row]:
        """Rows of the mapping's table whose first key column is NULL."""
        ...

    def key_totals(self, mapping: Table) -> tuple[int, int, int]:
        """(how many rows have a key, the sum of the keys, how many rows have no watermark) of
        the mapping's table, filters applied: a row gone or added unseen changes the first two;
        rows without a watermark cannot be read as changed."""
        ...


@runtime_checkable
class ContingentPortal(Protocol):
    """A portal that owns the school's contingent (``Capability.MATCH``): the bridge reads it
    and matches the school's records with it before a run plans anything."""

    @property
    def names(self) -> Mapping[str, Mapping[str, str]]:
        """Entity → the school's name → the portal's (names spelled otherwise there)."""
        ...

    def contingent(self) -> Contingent:
        """The school's contingent as the portal holds it."""
        ...

    def use_matches(self, matches: Matches) -> None:
        """The run's matches, from which the portal's ids of matched records come."""
        ...


# --- the state store ---------------------------------------------------------------------------

Clock = Callable[[], datetime]


class Delivered(NamedTuple):
    """One acknowledged change to record: the change and the owners of its record. (The three
    values made per delivered record are named tuples: immutable like a frozen dataclass, at
    half its construction cost.)"""

    change: Change
    pupil_key: str | None = None
    class_key: str | None = None
    portal_id: str | None = None
    mapping_version: int = 1


@dataclass(frozen=True, slots=True)
class Refusal:
    """A change the portal refused, with the portal's machine type and reason."""

    change: Change
    kind: str | None
    reason: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record the portal refused: how often, why; ``dead`` once attempts ran out."""

    entity: str
    key: str
    sort_key: str
    fingerprint: str
    op: str
    attempts: int
    kind: str | None
    reason: str
    status: str  # "retrying" | "dead"

    @property
    def is_dead(self) -> bool:
        """True when the bridge stopped sending it until an admin retries it."""
        return self.status == "dead"


@dataclass(frozen=True, slots=True)
class HeldPlan:
    """A plan a guard held: its id (a digest of its destructive changes), when it was first
    held, and a short summary (counts only)."""

    plan_id: str
    held_at: datetime
    summary: str


@dataclass(frozen=True, slots=True)
class Approval:
    """An admin's approval of a held plan."""

    by: str
    at: datetime


class StateStore(Protocol):
    """The port: every adapter passes ``tests/contracts/test_state_contract.py``."""

    def entries(self, entity: str) -> Iterator[EntryView]:
        """Live entries of ``entity`` in sort_key order (sort key, fingerprint, status)."""
        ...

    def lookup(self, entity: str, sort_keys: Sequence[str]) -> dict[str, StateEntry]:
        """Live entries of ``entity`` among ``sort_keys``, by sort key."""
        ...

    def payloads(self, entity: str, sort_keys: Sequence[str]) -> dict[str, Mapping[str, Value]]:
        """The recorded payloads of the given live entries, by sort key."""
        ...

    def tombstones(self, entity: str, keys: Sequence[str]) -> dict[str, str]:
        """Key → sort key of the entries of ``entity`` among ``keys`` (keys, not sort keys)
        that the bridge deleted (reconciliation: a deleted record back on the portal)."""
        ...

    def record(self, delivered: Sequence[Delivered]) -> None:
        """Record acknowledged changes, all or nothing."""
        ...

    def portal_ids(self, entity: str, keys: Sequence[str]) -> dict[str, str]:
        """Key → the id the portal gave the record, for the live entries of ``entity`` among
        ``keys`` (keys, not sort keys) that have one (portals that assign ids)."""
        ...

    def holders(self, entity: str, portal_ids: Sequence[str]) -> dict[str, str]:
        """Portal id → the key of the live entry of ``entity`` that holds it, among
        ``portal_ids`` (a record found on the portal is another record's when it is held)."""
        ...

    def count(self, entity: str) -> int:
        """How many live entries ``entity`` has."""
        ...

    def count_by_class(self, entity: str) -> dict[str, int]:
        """Live entries of ``entity`` per owner class."""
        ...

    def watermark(self, entity: str) -> str | None:
        """The watermark an incremental read of ``entity`` starts from."""
        ...

    def open_batch(self, run_id: str, batch: int, operations: int) -> None:
        """Record the intent to send a batch (before it is sent)."""
        ...

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
        """After the portal answered a batch: record what it acknowledged (clearing their dead
        letters), count the refusals as dead-letter attempts, close the intent. One transaction.
        ``complete`` False: only a part of the batch was answered (it stopped partway); the
        intent stays in doubt (``partial``), so the next run looks before it creates."""
        ...

    def dead_letters(self) -> dict[tuple[str, str], DeadLetter]:
        """Every dead letter by (entity, sort key)."""
        ...

    def revive(self, entity: str | None = None) -> int:
        """Make dead letters eligible again (``asiou-bridge retry``); returns how many."""
        ...

    def set_watermarks(self, marks: Mapping[str, str]) -> None:
        """Advance the watermarks of the given entities."""
        ...

    def regate_marks(self) -> set[str]:
        """Pupils a gate-relevant change (withdrawal, consent, a rejected row) marked for
        re-gating that no complete run has cleared yet: an incremental run re-reads all of
        their rows, so a crash between the change and what follows from it loses nothing."""
        ...

    def mark_regate(self, pupils: Collection[str]) -> None:
        """Mark ``pupils`` for re-gating (before anything that follows from the change is
        delivered)."""
        ...

    def finish_regate(self, pupils: Collection[str] | None, as_of: str) -> None:
        """A run delivered everything: clear the marks of ``pupils`` (None: every mark, after
        a full run) and remember ``as_of``, the day the run gated for."""
        ...

    def last_as_of(self) -> str | None:
        """The day the last complete run gated for (ISO), if any."""
        ...

    def count_open_by_class(self, entity: str) -> dict[str, int]:
        """Live entries of ``entity`` per owner class whose recorded payload has no
        ``date_to`` (memberships still open on the portal)."""
        ...

    def hold_plan(self, plan_id: str, summary: str) -> None:
        """Remember a plan a guard held (its first time held is kept, the summary updated)."""
        ...

    def held_plan(self, plan_id: str) -> HeldPlan | None:
        """The held plan ``plan_id``, if a guard held it."""
        ...

    def approval(self, plan_id: str) -> Approval | None:
        """The approval of the held plan ``plan_id``, valid or expired."""
        ...

    def is_approved(self, plan_id: str, valid_for: timedelta | None = None) -> bool:
        """True when an admin approved the held plan ``plan_id`` (within ``valid_for`` by the
        store's clock, where given)."""
        ...

    def withdrawals(self) -> dict[str, datetime]:
        """Pupil key → when the portal acknowledged the delete of the delivered pupil for lack
        of consent (the first time; cleared once the pupil is delivered again)."""
        ...

    def approve(self, plan_id: str, by: str) -> None:
        """Record an admin's approval of the held plan ``plan_id`` (approving again renews
        it); raises UnknownPlan, storing nothing, when no guard held such a plan."""
        ...


@runtime_checkable
class RangedState(StateStore, Protocol):
    """A state store that range planning can use: it streams a range of sort keys and can be
    used again after a fork."""

    def entries_between(
        self, entity: str, start: str | None, stop: str | None
    ) -> Iterator[EntryView]:
        """Live entries of ``entity`` with ``start <= sort key < stop`` (None: open), in
        sort_key order."""
        ...

    def after_fork(self) -> None:
        """Called in a forked process before it reads: drop inherited connections, unclosed."""
        ...


@runtime_checkable
class MatchState(StateStore, Protocol):
    """A state store that keeps the matching of the school's contingent with the portal's."""

    def record_matches(self, entity: str, found: Sequence[Match]) -> None:
        """Replace the last matching of ``entity``."""
        ...

    def matches(self, entity: str | None = None) -> list[Match]:
        """The last matching, of one entity or all, by entity and key."""
        ...

    def settlements(self, entity: str) -> dict[str, Settled]:
        """Key → the admin's decision (confirmed or rejected), final."""
        ...

    def settle(self, decision: Settled, by: str) -> None:
        """Remember the admin's decision on one record."""
        ...


@runtime_checkable
class GateCacheState(StateStore, Protocol):
    """A state store that keeps the gate's snapshot of an entity between runs
    (``bridge.service.engine.lazy``): opaque text, one per entity."""

    def gate_cache(self, entity: str) -> str | None:
        """The snapshot last kept for ``entity``, if any."""
        ...

    def set_gate_cache(self, entity: str, snapshot: str) -> None:
        """Keep ``snapshot`` for ``entity`` (replacing the one before)."""
        ...


# --- the portal ------------------------------------------------------------------------------

ENTITIES = (
    "period",
    "subject",
    "teacher",
    "class",
    "group",
    "pupil",
    "enrollment",
    "group_member",
    "guardian",
    "guardian_link",
    "lesson",
    "work",
    "mark",
    "absence",
    "period_mark",
)
"""Canonical entities the API has a resource for; the resource path is the entity name."""


class Operation(NamedTuple):
    """One write: PUT (create or replace) with data, or DELETE (tombstone)."""

    op_id: str
    method: str  # "PUT" | "DELETE"
    entity: str
    sourced_id: str
    fingerprint: str | None = None
    data: Mapping[str, Any] | None = None


class OperationResult(NamedTuple):
    """The portal's answer to one operation: ``ok``, or a rejection with type and reason.
    ``portal_id`` is the id the portal gave the record (portals that assign ids), which the
    state store keeps beside the source key."""

    op_id: str
    ok: bool
    status: int
    type: str | None = None
    description: str | None = None
    portal_id: str | None = None


class PartialDelivery(Exception):  # noqa: N818 - an outcome: what was done, and why no more
    """A batch of single writes stopped partway (retries ran out, a fatal answer, a stop):
    ``results`` answer the first operations, in order, each done or refused for good; the
    rest were not sent, or their outcome is unknown. The engine records ``results`` and then
    raises ``cause``. A portal that writes one record per request raises this, never
    ``cause`` alone, once any operation of the batch took effect: else what it wrote would be
    left unrecorded and written again."""

    def __init__(self, results: list[OperationResult], cause: Exception) -> None:
        super().__init__(f"{len(results)} operations answered, then: {cause}")
        self.results, self.cause = results, cause


class Portal(Protocol):
    """The port every portal adapter implements."""

    batch_size: int
    concurrency: int
    """How many ``send`` calls may run at once, each in a thread of its own (1: one at a
    time, from one thread); above 1, ``send`` must be safe to call from several threads."""
    support: PortalSupport
    """Per canonical entity: written (which operations), matched, or not supported
    (``bridge.core.support``); the plan holds back what the portal does not take."""

    def send(self, operations: Sequence[Operation]) -> list[OperationResult]:
        """Apply one batch in order; one result per operation, in the same order. Raises
        PortalUnavailable (retries ran out), PortalAuthError or PortalFatalError."""
        ...

    def fingerprints(self, entity: str) -> dict[str, str]:
        """sourcedId → fingerprint of every live record of ``entity`` (reconciliation)."""
        ...
