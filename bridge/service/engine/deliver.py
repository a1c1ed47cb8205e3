"""Delivery: changes become portal operations, sent in batches; only acknowledged ones count.

For each batch: the intent is recorded, the batch is sent, and only then, in one transaction,
the state store records what the portal acknowledged and counts what it refused. A crash at any
instant leaves the state store behind the portal, never ahead of it; the next run plans the
unrecorded changes again and sends them again, and since every write is a PUT or DELETE by
``sourcedId``, sending twice has the effect of sending once (no duplicates, nothing lost).

A record the portal refuses becomes a dead letter with the portal's reason; after
``max_attempts`` refusals (one per run) it is no longer sent until an admin retries it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import NoReturn

import structlog

from bridge.adapters.seam import no_fork_meanwhile
from bridge.core import gate
from bridge.core.errors import (
    Interrupted,
    RunDeadline,
)
from bridge.core.mapping import MappingSet
from bridge.core.model import Change, Op
from bridge.ports import (
    DeadLetter,
    Delivered,
    Operation,
    OperationResult,
    PartialDelivery,
    Portal,
    Refusal,
    StateStore,
)
from bridge.service.engine.inflight import InFlight, kind_of


def delivered(change: Change, mappings: MappingSet) -> Delivered:
    """What the state store records once the portal acknowledged ``change``."""
    version = mappings[change.entity].version if change.entity in mappings else 1
    return _delivered(change, version)


def _delivered(change: Change, version: int, portal_id: str | None = None) -> Delivered:
    record = change.record
    if record is None:
        return Delivered(change, portal_id=portal_id, mapping_version=version)
    class_key = record.payload.get("class")
    return Delivered(
        change,
        gate.owner_pupil(record),
        None if class_key is None else str(class_key),
        portal_id,
        version,
    )


Progress = Callable[[str, int], None]


log = structlog.get_logger()


def to_operation(index: int, change: Change) -> Operation:
    """The portal operation that carries ``change`` (archive is a PUT with active = false)."""
    if change.op is Op.DELETE:
        return Operation(str(index), "DELETE", change.entity, change.key)
    record = change.record
    assert record is not None, "only deletes come without a record"
    return Operation(
        str(index), "PUT", change.entity, change.key, record.fingerprint, record.payload
    )


@dataclass
class DeliveryReport:
    """What a run delivered, per entity and operation; what was refused; why it stopped."""

    delivered: dict[str, Counter[str]] = field(default_factory=dict)
    refused: Counter[str] = field(default_factory=Counter)
    skipped_dead: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    failure: str | None = None

    def count(self, change: Change) -> None:
        """Count one acknowledged change."""
        self.delivered.setdefault(change.entity, Counter())[change.op.value] += 1

    def count_all(self, changes: Iterable[Change]) -> None:
        """Count acknowledged changes (one dictionary update per entity and operation)."""
        for (entity, op), n in Counter((c.entity, c.op) for c in changes).items():
            self.delivered.setdefault(entity, Counter())[op.value] += n

    @property
    def total(self) -> int:
        """Acknowledged changes in all."""
        return sum(sum(c.values()) for c in self.delivered.values())

    @property
    def complete(self) -> bool:
        """True when every planned change was acknowledged: nothing refused, nothing left."""
        return self.failure is None and not self.refused and not self.skipped_dead


@dataclass(frozen=True)
class Deadline:
    """When a run must stop delivering: ``passed()`` turns true ``minutes`` after it began."""

    minutes: float
    passed: Callable[[], bool]


class Deliverer:
    """Buffers changes into batches and delivers them (the plan's sink)."""

    def __init__(
        self,
        portal: Portal,
        state: StateStore,
        mappings: MappingSet,
        *,
        run_id: str,
        max_attempts: int = 3,
        progress: Progress | None = None,
        stop: threading.Event | None = None,
        send_dead: bool = False,
        deadline: Deadline | None = None,
    ) -> None:
        self.portal, self.state, self.mappings = portal, state, mappings
        self.run_id, self.max_attempts, self.progress = run_id, max_attempts, progress
        self.stop, self.deadline = stop, deadline
        self.buffer: list[Change] = []
        self._sending: list[Change] = []  # the batch being sent from this thread
        self.report = DeliveryReport()
        self.dead = (
            {} if send_dead else {k: v for k, v in state.dead_letters().items() if v.is_dead}
        )
        # Pipelining: a batch's answer is recorded in this thread while the next batch is sent;
        # at most one recording waits, so the state is never more than one batch behind.
        self._recorder: ThreadPoolExecutor | None = None
        self._recording: Future[None] | None = None
        self._versions = {m.entity: m.version for m in mappings.mappings}
        # Up to portal.concurrency batches in flight (bridge.service.engine.inflight).
        limit = portal.concurrency
        self._flight = InFlight(portal.send, limit) if limit > 1 else None
        # One batch at a time: an entity that refers to itself (a parent may be in the batch
        # before), and what the portal asks to be sent so (bridge.core.support).
        self._alone = frozenset(
            {m.entity for m in mappings.mappings if m.entity in m.refs.values()}
            | {entity for entity, treated in portal.support.items() if treated.alone}
        )

    def add(self, change: Change) -> None:
        """Queue one change; a full batch is sent at once."""
        if self._is_dead(change):
            self.report.skipped_dead[change.entity] += 1
            return
        self.buffer.append(change)
        if len(self.buffer) >= self.portal.batch_size or (
            self.stop is not None and self.stop.is_set()
        ):
            self._send()

    def _is_dead(self, change: Change) -> bool:
        if not self.dead:  # the usual case: no lookup key built per record
            return False
        letter: DeadLetter | None = self.dead.get((change.entity, change.sort_key))
        return letter is not None and letter.fingerprint == (change.fingerprint or "")

    def add_all(self, changes: Sequence[Change]) -> None:
        """Queue many changes in order, then send what is left."""
        for change in changes:
            self.add(change)
        self.flush()

    def flush(self) -> None:
        """Send the queued changes as one batch, and wait until every answered batch is
        recorded; when asked to stop, stop right after (Interrupted)."""
        try:
            self._send()
        finally:
            self.drain()
        if self.stop is not None and self.stop.is_set():
            raise Interrupted

    def drain(self) -> None:
        """Wait for the answers of the batches in flight, and until every answered batch is
        recorded; then raise the first failure met (a send's, then a recording's)."""
        failure: BaseException | None = None
        try:
            while self._flight:
                try:
                    self._settle_oldest()
                except Exception as exc:  # noqa: BLE001 - raised below, once all settled
                    failure = failure or exc
            try:
                self._wait_recorded()
            except Exception as exc:  # noqa: BLE001 - raised below (the first failure wins)
                failure = failure or exc
        finally:
            if self._flight is not None:
                self._flight.close()
            if self._recorder is not None:
                self._recorder.shutdown(wait=True)
                self._recorder = None
        if failure is not None:
            raise failure

    def _send(self) -> None:
        """Send the queued changes as one batch; its answer is recorded while the next batch
        is sent. Whatever ends delivery here (a failure, a stop, the deadline) first lets every
        answered batch be recorded."""
        try:
            sent = bool(self.buffer)
            if sent:
                batch, self.buffer = self.buffer, []
                self._sending = batch
                self.report.batches += 1
                number = self.report.batches
                self.state.open_batch(self.run_id, number, len(batch))
                operations = [to_operation(i, c) for i, c in enumerate(batch)]
                if self._flight is None:
                    self._record_later(number, batch, self._answer(self.portal.send, operations))
                else:
                    self._send_overlapping(number, batch, operations)
            if self.stop is not None and self.stop.is_set():
                raise Interrupted
            if sent and self.deadline is not None and self.deadline.passed():
                raise RunDeadline(self.deadline.minutes)
        except BaseException as first:
            self._drain_after(first)
            raise

    def _drain_after(self, first: BaseException) -> None:
        """Drain after ``first`` ended delivery: what draining raises beats a stop or the
        deadline (a failure says more than a stop), but never another failure, which is
        only logged, so that a fatal failure is not taken for a retriable one."""
        try:
            self.drain()
        except Exception as later:
            if isinstance(first, Interrupted | RunDeadline):
                raise
            log.warning("delivery.also_failed", error=type(later).__name__)

    def _send_overlapping(
        self, number: int, batch: list[Change], operations: list[Operation]
    ) -> None:
        """Send one batch beside those in flight when nothing of it can depend on them;
        otherwise (and when the limit is reached) first take their answers, oldest first."""
        flight = self._flight
        assert flight is not None
        kind = kind_of(batch, self._alone)
        if not flight.may_join(kind):
            while flight:
                self._settle_oldest()
        while flight.full:
            self._settle_oldest()
        flight.send(number, batch, operations, kind)

    def _settle_oldest(self) -> None:
        """Take the answer of the batch sent first of those in flight, and record it."""
        assert self._flight is not None
        sent = self._flight.oldest()
        try:
            results = sent.answer.result()
        except PartialDelivery as partial:
            self._record_partial(sent.number, sent.batch, partial)
        self._record_later(sent.number, sent.batch, results)

    def _answer(
        self,
        send: Callable[[Sequence[Operation]], list[OperationResult]],
        operations: list[Operation],
    ) -> list[OperationResult]:
        """``send``'s results; a batch that stopped partway has its answered part recorded,
        then its cause raised (``PartialDelivery``)."""
        try:
            return send(operations)
        except PartialDelivery as partial:
            self._record_partial(self.report.batches, self._sending, partial)

    def _record_partial(
        self, number: int, batch: list[Change], partial: PartialDelivery
    ) -> NoReturn:
        """Record what a batch stopped partway answered, then raise why it stopped (a failure
        to record the batch before is only logged: the stop's cause is the one raised)."""
        answered = partial.results[: len(batch)]
        try:
            self._record_later(number, batch[: len(answered)], answered, complete=False)
        except Exception as earlier:  # noqa: BLE001 - logged; the cause below is raised
            log.warning("delivery.also_failed", error=type(earlier).__name__)
        raise partial.cause

    def _record_later(
        self,
        number: int,
        batch: list[Change],
        results: list[OperationResult],
        *,
        complete: bool = True,
    ) -> None:
        """Record an answered batch in the recorder thread (``complete`` False: the answered
        part of a batch that stopped partway, whose rest stays in doubt)."""
        try:
            self._wait_recorded()  # the batch before is recorded: one batch behind at most
        finally:  # this batch was answered: it is recorded even if the one before failed to be
            if self._recorder is None:
                self._recorder = ThreadPoolExecutor(1, thread_name_prefix="recorder")
            self._recording = self._recorder.submit(
                self._commit_guarded, number, batch, results, complete
            )

    def _commit_guarded(
        self, number: int, batch: list[Change], results: list[OperationResult], complete: bool
    ) -> None:
        with no_fork_meanwhile():  # range planning never forks while this is in the driver
            self._commit(number, batch, results, complete)

    def _wait_recorded(self) -> None:
        recording, self._recording = self._recording, None
        if recording is not None:
            recording.result()

    def _commit(
        self, number: int, batch: list[Change], results: list[OperationResult], complete: bool
    ) -> None:
        acked: list[Delivered] = []
        refused: list[Refusal] = []
        versions = self._versions
        for change, result in zip(batch, results, strict=True):
            if result.ok:
                version = versions.get(change.entity, 1)
                acked.append(_delivered(change, version, result.portal_id))
            else:
                refused.append(
                    Refusal(change, result.type, result.description or f"HTTP {result.status}")
                )
        self.state.commit_batch(
            self.run_id, number, acked, refused, self.max_attempts, complete=complete
        )
        self.report.count_all(d.change for d in acked)
        for r in refused:
            self.report.refused[r.change.entity] += 1
            log.warning(
                "record.refused",
                entity=r.change.entity,
                key=r.change.key,
                op=r.change.op.value,
                kind=r.kind,
            )
        if self.progress is not None and batch:
            self.progress(batch[-1].entity, self.report.total)
