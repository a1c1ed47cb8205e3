"""Benchmark: what the gate's index of lessons and works costs, and what compact forms would.

    .venv/bin/python bench/gate_index_memory.py [--dir var/bench/school-1100-1]

The one structure of a plan that grows with the journal (docs/benchmarks.md, "Memory: what
grows with the journal") is what the gate learns of lessons and works so that every mark and
absence can be gated: ``Context.keys['lesson']`` and ``['work']`` (sets of keys),
``Context.lesson`` (key → (day, class)) and ``Context.work_lesson`` (key → lesson key). This reads
the lessons and works of a generated school (bench/plan_benchmark.py writes them) through the
mappings and the gate as a plan does, measures that index with tracemalloc, and builds from the
same data the two compact forms the section proposes, measured the same way:

  shared   dicts only (the dict is the key set), one (day, class) tuple per distinct pair,
           and each work mapped to its lesson's pair rather than to the lesson's key;
  dense    whole-number keys as offsets into ``array('I')`` of pair numbers (0: unknown).

Prints MB and bytes per lesson or work for each.
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.core.gate import Context
from bridge.core.mapping import load_mappings
from bridge.service.engine.reading import to_items

ROOT = Path(__file__).resolve().parent.parent
BEFORE = ("period", "subject", "teacher", "class", "group")  # what lessons refer to

Pairs = dict[str, tuple[str, str]]


def traced_mb(build: Callable[[], Any]) -> tuple[Any, float]:
    """What ``build`` returns, and the memory it holds (MB, traced)."""
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = build()
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return kept, held / 2**20


def shared(lessons: Pairs, works: dict[str, str]) -> tuple[Pairs, Pairs]:
    canon: dict[tuple[str, str], tuple[str, str]] = {}
    by_lesson = {str(int(k)): canon.setdefault(pair, pair) for k, pair in lessons.items()}
    by_work = {str(int(k)): by_lesson[lesson] for k, lesson in works.items()}
    return by_lesson, by_work


def dense(lessons: Pairs, works: dict[str, str]) -> tuple[array[int], array[int], list[Any]]:
    numbers: dict[tuple[str, str], int] = {}
    low, high = min(map(int, lessons)), max(map(int, lessons))
    by_lesson = array("I", bytes(4 * (high - low + 1)))
    for key, pair in lessons.items():
        by_lesson[int(key) - low] = numbers.setdefault(pair, len(numbers)) + 1
    first, last = min(map(int, works)), max(map(int, works))
    by_work = array("I", bytes(4 * (last - first + 1)))
    for key, lesson in works.items():
        by_work[int(key) - first] = by_lesson[int(lesson) - low]
    return by_lesson, by_work, list(numbers)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--dir", default=str(ROOT / "var" / "bench" / "school-1100-1"))
    args = parser.parse_args()
    mappings = load_mappings(ROOT / "mappings")
    source = SqlSource(sa.create_engine(f"sqlite:///{Path(args.dir) / 'school.sqlite'}"))
    ctx = Context(as_of="2026-06-01")
    for entity in BEFORE:
        for _ in to_items(mappings[entity], source.read(mappings[entity]), ctx):
            pass

    def learn() -> None:
        for entity in ("lesson", "work"):
            for _ in to_items(mappings[entity], source.read(mappings[entity]), ctx):
                pass

    _, now = traced_mb(learn)
    lessons, works = dict(ctx.lesson), dict(ctx.work_lesson)
    count = len(lessons) + len(works)
    print(f"{len(lessons):,} lessons, {len(works):,} works")
    for name, held in (
        ("now", now),
        ("shared", traced_mb(lambda: shared(lessons, works))[1]),
        ("dense", traced_mb(lambda: dense(lessons, works))[1]),
    ):
        print(f"{name:<8}{held:>8.2f} MB{held * 2**20 / count:>6.0f} B a lesson or work")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
