"""Range planning behind one seam: the ``RangePlanner`` plans a full read of a large entity in
key ranges, here and in forked workers (``workers``), and hands back the plan a single process
would have made. The engine asks it once per entity and knows nothing else of ranges.

It needs more of the source and the state store than the plain ports give: ranged reads, the
key bounds, and dropping connections inherited across a fork (``bridge.ports.RangedSource``,
``RangedState``). Adapters without them, one process, or no ``fork`` on the platform: the
planner declines and the engine plans the entity in this process.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

from bridge.core import gate
from bridge.core.gate import Context
from bridge.core.mapping import CompiledMapping
from bridge.core.model import Change, Record
from bridge.core.plan import Item, Plan, diff_sorted
from bridge.core.support import Refuser
from bridge.ports import KeyRange, RangedSource, RangedState, Row, Source, StateStore
from bridge.service.engine.keys import HAS_FORK, ChangeSink, key_ranges, sort_bounds
from bridge.service.engine.reading import Watermark, to_items
from bridge.service.engine.workers import RangeWork, Workers


class RangeHost(Protocol):
    """What the planner takes from the run it plans for."""

    ctx: Context
    sink: ChangeSink | None

    def closes(self, change: Change) -> bool: ...
    def refuses(self, entity: str) -> Refuser | None: ...
    def resend(self) -> Callable[[Record], bool] | None: ...
    def is_leaf(self, mapping: CompiledMapping) -> bool: ...


class RangePlanner:
    """Plans full reads in key ranges on ``processes`` processes (this one included)."""

    def __init__(self, source: Source, state: StateStore, processes: int) -> None:
        self.ranged: tuple[RangedSource, RangedState] | None = None
        if isinstance(source, RangedSource) and isinstance(state, RangedState) and HAS_FORK:
            self.ranged = (source, state)
        self.processes = processes if self.ranged is not None else 1

    def ranges(self, mapping: CompiledMapping) -> list[KeyRange]:
        """The key ranges to plan ``mapping`` in; fewer than two when it is better planned in
        one process (one process, a small table, keys that are not whole numbers)."""
        if self.processes < 2 or self.ranged is None:
            return []
        bounds = self.ranged[0].key_bounds(mapping)
        return [] if bounds is None else key_ranges(mapping.key_columns[0], bounds, self.processes)

    def plan(
        self, host: RangeHost, mapping: CompiledMapping, ranges: list[KeyRange], plan: Plan
    ) -> str | None:
        """Plan ranges here, from the first, while forked workers plan them from the last; then
        take the workers' outcomes in key order. Returns the entity's watermark reached."""
        workers = Workers(
            mapping.entity,
            ranges,
            self._work(host, mapping),
            self._after_fork,
            self.processes - 1,
            host.sink is not None,
        )
        track = Watermark()
        try:
            workers.start()
            mine = 0
            while (at := workers.take()) is not None:
                track.see(self._plan_range(host, mapping, ranges[at], plan, host.sink))
                mine = at + 1
            for part, (best, lesson) in workers.outcomes(mine, host.sink):
                plan.absorb(part)
                gate.teach(host.ctx, lesson)
                track.see(best)
        finally:
            workers.close()
        return track.text()

    def _after_fork(self) -> None:
        if self.ranged is not None:
            self.ranged[0].after_fork()
            self.ranged[1].after_fork()

    def _work(self, host: RangeHost, mapping: CompiledMapping) -> RangeWork:
        def work(
            key_range: KeyRange, plan: Plan, sink: ChangeSink | None
        ) -> tuple[Any, gate.Learnt]:
            best = self._plan_range(host, mapping, key_range, plan, sink)
            return best, gate.learnt(host.ctx, mapping.entity)

        return work

    def _plan_range(
        self,
        host: RangeHost,
        mapping: CompiledMapping,
        key_range: KeyRange,
        plan: Plan,
        sink: ChangeSink | None,
    ) -> Any:
        """Plan one key range of an entity's full read into ``plan`` (the context learns its
        keys); returns the highest raw watermark read."""
        if self.ranged is None:
            raise RuntimeError("range planning without ranged ports")  # ranges() gave none
        source, state = self.ranged
        entity, track = mapping.entity, Watermark()
        rows: Iterator[Row] = source.read_range(mapping, key_range)
        items: Iterator[Item] = to_items(
            mapping,
            rows,
            host.ctx,
            track=track,
            indexed=not host.is_leaf(mapping),
            read=plan.records_read,
            key_range=key_range,
        )
        start, stop = sort_bounds(key_range)
        entries = state.entries_between(entity, start, stop)
        merged = diff_sorted(entity, items, entries, host.resend())
        plan.note_all(entity, merged, sink, host.closes, host.refuses(entity))
        return track.best
