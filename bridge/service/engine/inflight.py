"""Batches in flight: up to the portal's ``concurrency`` sent at once, in an order its
references allow.

Changes come in dependency order (parents before children; deletes children first), and a
portal may refuse a child whose parent it has not yet stored. So batches overlap only when
they cannot depend on each other: every batch in flight and the one joining them carry
changes of one entity, all writes or all deletes, the same for all. A batch that mixes
entities (the last subjects and the first teachers, say) or starts a new entity waits until
every batch before it was answered. Records of one entity do not refer to each other, so its
batches may be applied in any order; an entity whose mapping refers to itself (a group within
a group, say) is sent one batch at a time.

Answers are taken in the order the batches were sent; the state records a batch only once
the portal answered it, as with one request at a time.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

from bridge.core.model import Change, Op
from bridge.ports import Operation, OperationResult

Kind = tuple[str, bool]
"""What a batch carries when it carries one kind of change: (entity, deletes)."""


def kind_of(batch: Sequence[Change], alone: Collection[str] = ()) -> Kind | None:
    """(entity, True for deletes) when every change of ``batch`` shares them; None when the
    batch mixes entities or writes with deletes, is empty, or is of an entity in ``alone``
    (one whose records refer to each other)."""
    if not batch or batch[0].entity in alone:
        return None
    entity, deletes = batch[0].entity, batch[0].op is Op.DELETE
    for change in batch:
        if change.entity != entity or (change.op is Op.DELETE) != deletes:
            return None
    return entity, deletes


@dataclass(frozen=True)
class Sent:
    """A batch on its way: its number in the run, its changes, the portal's answer to come."""

    number: int
    batch: list[Change]
    answer: Future[list[OperationResult]]


class InFlight:
    """Up to ``limit`` batches sent at once by ``send`` in threads of their own."""

    def __init__(
        self, send: Callable[[Sequence[Operation]], list[OperationResult]], limit: int
    ) -> None:
        if limit < 2:
            raise ValueError("batches in flight: the limit must be at least 2")
        self._send, self.limit = send, limit
        self._sent: deque[Sent] = deque()
        self._kind: Kind | None = None
        self._pool: ThreadPoolExecutor | None = None

    def __bool__(self) -> bool:
        return bool(self._sent)

    @property
    def full(self) -> bool:
        """True when ``limit`` batches are in flight."""
        return len(self._sent) >= self.limit

    def may_join(self, kind: Kind | None) -> bool:
        """True when a batch of ``kind`` may be sent before those in flight are answered."""
        return not self._sent or (kind is not None and kind == self._kind)

    def send(
        self, number: int, batch: list[Change], operations: Sequence[Operation], kind: Kind | None
    ) -> None:
        """Send one batch in a thread (the caller checked ``may_join`` and ``full``)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.limit, thread_name_prefix="sender")
        answer = self._pool.submit(self._send, operations)
        self._sent.append(Sent(number, batch, answer))
        self._kind = kind

    def oldest(self) -> Sent:
        """The batch sent first of those in flight, no longer counted as in flight."""
        return self._sent.popleft()

    def close(self) -> None:
        """Stop the sending threads (after the batches in flight were answered)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
