"""Key ranges of a full read: how a table's first key column is cut into ranges planned
apart, how many planning processes to use, and the ranges' bounds as sort keys."""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable

from bridge.core.builder import sort_key_part
from bridge.core.model import Change
from bridge.ports import KeyRange

ChangeSink = Callable[[Change], None]


MIN_KEYS_PER_RANGE = 2_000  # narrower, a range costs more (queries, a file) than it saves


RANGES_PER_WORKER = 16  # many small ranges: the processes end close together
MAX_RANGES = 256  # a file each while an entity is planned


DEFAULT_MAX_WORKERS = 4  # plan_workers = 0: one per core, up to this many


HAS_FORK = "fork" in multiprocessing.get_all_start_methods()


def resolve_workers(setting: int) -> int:
    """The number of planning processes for a ``plan_workers`` setting: 0 means one per CPU
    core this process may run on, at most ``DEFAULT_MAX_WORKERS`` (each worker holds its own
    database connections and about as much memory as the service)."""
    return setting if setting > 0 else min(len(os.sched_getaffinity(0)), DEFAULT_MAX_WORKERS)


def key_ranges(column: str, bounds: tuple[int, int], workers: int) -> list[KeyRange]:
    """Ranges of the keys from ``bounds``, ``RANGES_PER_WORKER`` per worker (fewer for a small
    span, each at least ``MIN_KEYS_PER_RANGE`` keys wide, ``MAX_RANGES`` at most) that meet and
    cover every key: the first is open below (and holds NULL keys), the last open above."""
    low, high = bounds
    span = high - low + 1
    parts = max(1, min(workers * RANGES_PER_WORKER, MAX_RANGES, span // MIN_KEYS_PER_RANGE))
    step = -(-span // parts)
    edges: list[int | None] = [None, *(low + step * i for i in range(1, parts)), None]
    return [KeyRange(column, edges[i], edges[i + 1]) for i in range(parts)]


def sort_bounds(key_range: KeyRange) -> tuple[str | None, str | None]:
    """The range as sort keys ``[start, stop)``: the state entries that belong to it."""
    return (
        None if key_range.low is None else sort_key_part(key_range.low),
        None if key_range.high is None else sort_key_part(key_range.high),
    )


def shown_range(key_range: KeyRange) -> str:
    """The range as an admin reads it: ``id from 1000 below 2000``."""
    low = "" if key_range.low is None else f" from {key_range.low}"
    high = "" if key_range.high is None else f" below {key_range.high}"
    return f"{key_range.column}{low}{high}"
