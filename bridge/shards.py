"""Planning the largest entities in key ranges, on every core of the machine.

A full read of a leaf entity (one no other entity refers to: marks, absences, period marks) can
be cut by its first key column into ranges planned independently. Each range reads its own rows
and its own state entries, and its gate needs only what the earlier entities taught the
context, which a forked process inherits as it is. The engine plans the first range itself
while a forked process plans each other one; their outcomes come back in key order, so the plan
is the one a single process would make: counts, samples, deletes and the plan id alike.

A forked process writes its outcome to an unnamed temporary file (gone when closed): changes in
chunks as it finds them (only when a sink wants them), then its plan and highest watermark, or
the error that stopped it. It logs nothing, never touches the portal, and is killed when the run
stops early. Where ``fork`` is not available the engine plans in one process.
"""

from __future__ import annotations

import copyreg
import multiprocessing
import os
import pickle
import signal
import tempfile
from collections.abc import Callable, Iterable, Iterator
from types import MappingProxyType
from typing import IO, Any

from bridge.errors import FatalError, SourceError, SourceOrderError
from bridge.mapping import CompiledMapping, sort_key_part
from bridge.model import Change, Hold
from bridge.plan import Item, Plan
from bridge.source import KeyRange

ChangeSink = Callable[[Change], None]
RangeWork = Callable[[KeyRange, Plan, ChangeSink | None], Any]
"""Plans one key range: notes outcomes in the plan, feeds the sink, returns the highest raw
watermark it read (None without one)."""

MIN_KEYS_PER_RANGE = 20_000  # below this a process costs more than it saves
CHUNK = 5_000  # changes per pickled chunk
HAS_FORK = "fork" in multiprocessing.get_all_start_methods()


def _proxy(items: dict[Any, Any]) -> MappingProxyType[Any, Any]:
    return MappingProxyType(items)


def _reduce_proxy(proxy: MappingProxyType[Any, Any]) -> tuple[Any, tuple[dict[Any, Any]]]:
    return _proxy, (dict(proxy),)


copyreg.pickle(MappingProxyType, _reduce_proxy)  # records share a read-only empty attrs


def resolve_workers(setting: int) -> int:
    """The number of planning processes for a ``plan_workers`` setting: 0 means one per CPU
    core this process may run on."""
    return setting if setting > 0 else len(os.sched_getaffinity(0))


def key_ranges(column: str, bounds: tuple[int, int], parts: int) -> list[KeyRange]:
    """``parts`` ranges (fewer for a small span of keys) that meet and cover every key: the
    first is open below (and holds NULL keys), the last open above."""
    low, high = bounds
    span = high - low + 1
    parts = max(1, min(parts, span // MIN_KEYS_PER_RANGE))
    step = -(-span // parts)
    edges: list[int | None] = [None, *(low + step * i for i in range(1, parts)), None]
    return [KeyRange(column, edges[i], edges[i + 1]) for i in range(parts)]


def sort_bounds(key_range: KeyRange) -> tuple[str | None, str | None]:
    """The range as sort keys ``[start, stop)``: the state entries that belong to it."""
    return (None if key_range.low is None else sort_key_part(key_range.low),
            None if key_range.high is None else sort_key_part(key_range.high))


def within(items: Iterable[Item], mapping: CompiledMapping, key_range: KeyRange
           ) -> Iterator[Item]:
    """``items`` unchanged, proving each sort key lies in the range: a key outside it (a
    database that compares keys unlike the sort keys) would pair with the wrong state entries,
    so it stops the run as rows out of order do."""
    start, stop = sort_bounds(key_range)
    for item in items:
        key = item.record.sort_key if item.__class__ is Hold else item.sort_key  # type: ignore[union-attr]
        if key and ((start is not None and key < start) or (stop is not None and key >= stop)):
            shown = item.record.key if isinstance(item, Hold) else item.key
            raise SourceOrderError(mapping.entity, mapping.location, shown,
                                   f"the end of the key range {_shown(key_range)}")
        yield item


def _shown(key_range: KeyRange) -> str:
    low = "" if key_range.low is None else str(key_range.low)
    high = "" if key_range.high is None else str(key_range.high)
    return f"{key_range.column} in [{low}, {high})"


class Shard:
    """One key range planned in a forked process."""

    def __init__(self, entity: str, key_range: KeyRange, work: RangeWork,
                 wants_changes: bool) -> None:
        self.entity, self.key_range, self.work = entity, key_range, work
        self.wants_changes = wants_changes
        self.file: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 - closed in close()
        context = multiprocessing.get_context("fork")
        self.process = context.Process(target=self._child, name=f"plan-{entity}", daemon=True)

    def start(self) -> None:
        """Fork the process; it starts planning at once."""
        self.process.start()

    def _child(self) -> None:
        """In the forked process: plan the range, write the outcome, exit."""
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handlers are not ours
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        writer = _ChangeWriter(self.file) if self.wants_changes else None
        try:
            plan = Plan()
            best = self.work(self.key_range, plan, None if writer is None else writer.add)
            _flush(writer)
            _dump(("done", plan, best), self.file)
        except SourceOrderError as exc:
            _dump(("order", exc.entity, exc.table, exc.key, exc.previous), self.file)
        except SourceError as exc:
            _dump(("source", exc.operation, exc.detail), self.file)
        except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it
            _dump(("crash", f"{type(exc).__name__}: {exc}"), self.file)
        self.file.flush()

    def outcome(self, sink: ChangeSink | None) -> tuple[Plan, Any]:
        """Wait for the process; give its changes to ``sink`` in key order, then return its
        plan and highest watermark. Raises the error that stopped it."""
        self.process.join()
        self.file.seek(0)
        while True:
            try:
                kind, *rest = pickle.load(self.file)  # noqa: S301 - our own child wrote it
            except (EOFError, pickle.UnpicklingError):
                raise FatalError(f"planning {self.entity} ({_shown(self.key_range)}) in a "
                                 f"worker process: it exited with code {self.process.exitcode} "
                                 "and no answer") from None
            if kind == "changes":
                for change in rest[0]:
                    if sink is not None:
                        sink(change)
                continue
            return _result(self.entity, self.key_range, kind, rest)

    def close(self) -> None:
        """Kill the process if it still runs (the run stopped early), reap it, drop the file."""
        if self.process.pid is not None:
            if self.process.is_alive():
                self.process.kill()
            self.process.join()
            self.process.close()
        self.file.close()


def _result(entity: str, key_range: KeyRange, kind: str, rest: list[Any]) -> tuple[Plan, Any]:
    if kind == "done":
        return rest[0], rest[1]
    if kind == "order":
        raise SourceOrderError(*rest)
    if kind == "source":
        raise SourceError(*rest)
    raise FatalError(f"planning {entity} ({_shown(key_range)}) in a worker process failed: "
                     f"{rest[0]}")


class _ChangeWriter:
    """Changes pickled in chunks to the shard's file as the child finds them."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file, self.chunk = file, list[Change]()

    def add(self, change: Change) -> None:
        self.chunk.append(change)
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
