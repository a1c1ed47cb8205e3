"""Planning key ranges in forked worker processes (range planning, behind ``ranges``).

A full read of an entity can be cut by its first key column into ranges planned independently.
Each range reads its own rows and its own state entries, and its gate needs only what the
earlier entities taught the context, which a forked process inherits as it is; what the range
teaches the context (lesson days, say, for the marks after them) comes back with its outcome.
The engine plans ranges from the first on while forked workers plan them from the last on, each
claiming one range at a time, until they meet: whoever is faster plans more. The workers'
outcomes come back in key order, so the plan is the one a single process would make: counts,
samples, deletes, the plan id and the order of the changes sent alike.

A worker writes each range's outcome to an unnamed temporary file of its own (gone when
closed): changes in chunks as it finds them (only when a sink wants them), then the range's
plan and what the range taught, or the error that stopped it (the worker then stops). Workers
log nothing, never touch the portal, and are killed when the run stops early. Where ``fork`` is
not available the engine plans in one process.
"""

from __future__ import annotations

import copyreg
import ctypes
import multiprocessing
import os
import pickle
import signal
import tempfile
from collections.abc import Callable, Iterator
from types import MappingProxyType
from typing import IO, Any

from bridge.core.builder import NO_ATTRS
from bridge.core.errors import (
    FatalError,
    SourceError,
    SourceOrderError,
)
from bridge.core.model import Change, Op, Record
from bridge.core.plan import (
    Plan,
)
from bridge.ports import KeyRange
from bridge.service.engine.keys import ChangeSink, shown_range

RangeWork = Callable[[KeyRange, Plan, ChangeSink | None], Any]


"""Plans one key range: notes outcomes in the plan, feeds the sink, returns what the parent
needs besides (picklable: the highest raw watermark, what the context learnt)."""


CHUNK = 5_000  # changes per pickled chunk


PR_SET_PDEATHSIG = 1


def _proxy(items: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(items)


def _reduce_proxy(proxy: MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return _proxy, (dict(proxy),)


class Chunks:
    """Key ranges claimed one at a time: by this process from the front, by forked workers from
    the back, until they meet. Whoever is faster plans more; this process's ranges all come
    before the workers', which it then takes in key order."""

    def __init__(self, count: int) -> None:
        context = multiprocessing.get_context("fork")
        self.lock = context.Lock()
        self.front, self.back = context.RawValue("q", 0), context.RawValue("q", count - 1)

    def take_front(self) -> int | None:
        """The lowest unclaimed range (None: all claimed)."""
        with self.lock:
            taken = self.front.value
            if taken > self.back.value:
                return None
            self.front.value = taken + 1
            return int(taken)

    def take_back(self) -> int | None:
        """The highest unclaimed range (None: all claimed)."""
        with self.lock:
            taken = self.back.value
            if taken < self.front.value:
                return None
            self.back.value = taken - 1
            return int(taken)


class Workers:
    """Forked processes planning key ranges of one entity, each range's outcome in a file."""

    def __init__(  # noqa: PLR0917
        self,
        entity: str,
        ranges: list[KeyRange],
        work: RangeWork,
        prepare: Callable[[], None],
        processes: int,
        wants_changes: bool,
    ) -> None:
        self.entity, self.ranges, self.work, self.prepare = entity, ranges, work, prepare
        self.wants_changes = wants_changes
        self.chunks = Chunks(len(ranges))
        self.files: list[IO[bytes]] = []
        context = multiprocessing.get_context("fork")
        self.processes = [
            context.Process(target=self._child, name=f"plan-{entity}", daemon=True)
            for _ in range(processes)
        ]

    def start(self) -> None:
        """Fork the processes; they start planning at once."""
        # Records share a read-only empty attrs mapping: taught to pickle here, when range
        # planning is first used, not when the engine is imported.
        copyreg.pickle(MappingProxyType, _reduce_proxy)
        self.files = [tempfile.TemporaryFile() for _ in self.ranges]  # noqa: SIM115 - closed in close()
        for process in self.processes:
            process.start()

    def take(self) -> int | None:
        """The next range for this process to plan (None: the rest is the workers')."""
        return self.chunks.take_front()

    def _child(self) -> None:
        """In a forked process: plan ranges from the back until none is left, or one fails."""
        # A stop (systemd's SIGTERM goes to every process of the service, Ctrl-C to the whole
        # terminal group) is the engine's to handle: it kills its workers when the run ends.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        _die_with_parent()
        code = 0
        try:
            self.prepare()  # e.g. drop the parent's database connections, unclosed
            while (at := self.chunks.take_back()) is not None:
                if not self._plan_one(at):
                    break
        except BaseException:  # noqa: BLE001 - the range it was on has no answer: the parent says so
            code = 1
        # Straight out: no interpreter clean-up, no flush of the parent's stdio buffers (a
        # thread of the parent may have held their locks at the fork), no finalizers.
        os._exit(code)

    def _plan_one(self, at: int) -> bool:
        """Plan range ``at`` into its file; False when it failed (the worker stops)."""
        file = self.files[at]
        writer = _ChangeWriter(file) if self.wants_changes else None
        outcome: tuple[Any, ...]
        try:
            plan = Plan()
            returned = self.work(self.ranges[at], plan, None if writer is None else writer.add)
            _flush(writer)
            outcome = ("done", plan, returned)
        except SourceOrderError as exc:
            outcome = ("order", exc.entity, exc.table, exc.key, exc.previous)
        except SourceError as exc:
            outcome = ("source", exc.operation, exc.detail)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
            outcome = ("crash", type(exc).__name__)  # its text may quote a row: never logged
        try:
            _dump(outcome, file)
        except Exception as exc:  # noqa: BLE001 - e.g. a value that cannot be pickled
            _dump(("crash", type(exc).__name__), file)
        file.flush()
        return outcome[0] == "done"

    def outcomes(self, first: int, sink: ChangeSink | None) -> Iterator[tuple[Plan, Any]]:
        """Wait for the workers; then, range by range from ``first`` on, give the changes to
        ``sink`` and yield the plan and what the work returned. Raises a range's error."""
        for process in self.processes:
            process.join()
        for at in range(first, len(self.ranges)):
            yield self._outcome(at, sink)

    def _outcome(self, at: int, sink: ChangeSink | None) -> tuple[Plan, Any]:
        file = self.files[at]
        file.seek(0)
        while True:
            try:
                kind, *rest = pickle.load(file)  # noqa: S301 - our own worker wrote it
            except (EOFError, pickle.UnpicklingError):
                codes = ", ".join(str(p.exitcode) for p in self.processes)
                raise FatalError(
                    f"planning {self.entity} ({shown_range(self.ranges[at])}) in a "
                    f"worker process: no answer (exit codes {codes})"
                ) from None
            if kind != "changes":
                return _result(self.entity, self.ranges[at], kind, rest)
            if sink is not None:
                for packed in rest[0]:
                    sink(_unpack(packed))

    def close(self) -> None:
        """Kill the workers that still run (the run stopped early), reap them, drop the files."""
        for process in self.processes:
            if process.pid is not None:
                if process.is_alive():
                    process.kill()
                process.join()
                process.close()
        for file in self.files:
            file.close()


def _die_with_parent() -> None:
    """Ask Linux to kill this worker if the process that forked it dies (SIGKILL, OOM): a
    worker outliving its run would only hold a connection and memory."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: the worker ends with its ranges anyway
        return


def _result(entity: str, key_range: KeyRange, kind: str, rest: list[Any]) -> tuple[Plan, Any]:
    if kind == "done":
        return rest[0], rest[1]
    if kind == "order":
        raise SourceOrderError(*rest)
    if kind == "source":
        raise SourceError(*rest)
    raise FatalError(
        f"planning {entity} ({shown_range(key_range)}) in a worker process failed: {rest[0]}"
    )


Packed = tuple[str, str, str, str, Any, str | None, Any, Any, str | None, str | None]


OPS = {op.value: op for op in Op}


def _pack(change: Change) -> Packed:
    """A change as a tuple of plain values, which pickle writes and reads in C alone (the
    objects would cost Python calls each; a first sync sends a million changes this way)."""
    record = change.record
    if record is None:
        return (
            change.op.value,
            change.entity,
            change.key,
            change.sort_key,
            None,
            None,
            None,
            None,
            change.reason,
            change.class_key,
        )
    attrs = dict(record.attrs) if record.attrs else None
    return (
        change.op.value,
        change.entity,
        change.key,
        change.sort_key,
        record.payload,
        record.fingerprint,
        attrs,
        record.watermark,
        change.reason,
        change.class_key,
    )


def _unpack(packed: Packed) -> Change:
    op, entity, key, sort_key, payload, fingerprint, attrs, mark, reason, class_key = packed
    record = (
        None
        if fingerprint is None
        else Record(
            entity, key, sort_key, payload, fingerprint, NO_ATTRS if attrs is None else attrs, mark
        )
    )
    return Change(OPS[op], entity, key, sort_key, record, reason=reason, class_key=class_key)


class _ChangeWriter:
    """Changes pickled in chunks to a range's file as the worker finds them."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file, self.chunk = file, list[Packed]()

    def add(self, change: Change) -> None:
        self.chunk.append(_pack(change))
        if len(self.chunk) >= CHUNK:
            self.flush()

    def flush(self) -> None:
        if self.chunk:
            _dump(("changes", self.chunk), self.file)
            self.chunk = []


def _dump(outcome: tuple[Any, ...], file: IO[bytes]) -> None:
    """One whole pickle or nothing: a value that fails to pickle leaves no partial frame."""
    file.write(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))


def _flush(writer: _ChangeWriter | None) -> None:
    if writer is not None:
        writer.flush()
