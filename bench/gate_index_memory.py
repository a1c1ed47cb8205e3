"""Benchmark: what the gate's index of lessons and works costs, against the dicts it replaced.

    .venv/bin/python bench/gate_index_memory.py [--dir var/bench/school-1100-1]

The one structure of a plan that grows with the journal (docs/benchmarks.md, "Memory: what
grows with the journal") is what the gate learns of lessons and works so that every mark and
absence can be gated: ``Context.lesson`` (lesson → (day, class)) and ``Context.work_lesson``
(work → its lesson's (day, class)), two ``DenseIndex`` (``bridge/core/dense.py``) that also
stand for the keys of lessons and works. This reads the lessons and works of a generated school
(bench/plan_benchmark.py writes them) through the mappings and the gate as a plan does, and
measures what the context holds afterwards with tracemalloc ("now"); then builds from the same
records, measured the same way, the dicts the gate kept before ("dicts": a key set per entity,
lesson → a shared (day, class) tuple, work → its lesson's key).

Prints MB and bytes per lesson or work for each.
"""

from __future__ import annotations

import argparse
import gc
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.core.gate import Context
from bridge.core.mapping import MappingSet, load_mappings
from bridge.core.model import Record
from bridge.service.engine.reading import to_items

ROOT = Path(__file__).resolve().parent.parent
BEFORE = ("period", "subject", "teacher", "class", "group")  # what lessons refer to

Rows = list[tuple[str, str, str]]


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


def dicts(lessons: Rows, works: Rows) -> tuple[Any, ...]:
    """The gate's index before the ``DenseIndex``: key sets, and dicts with shared pairs."""
    canon: dict[tuple[str, str], tuple[str, str]] = {}
    by_lesson = {}
    for key, day, class_key in lessons:
        pair = (fresh(day), fresh(class_key))
        by_lesson[fresh(key)] = canon.setdefault(pair, pair)
    by_work = {fresh(key): fresh(lesson) for key, lesson, _ in works}
    return set(by_lesson), set(by_work), by_lesson, by_work


def fresh(text: str) -> str:
    """A copy of ``text`` of its own, as each record's fields are."""
    return (text + " ")[:-1]


def records(mappings: MappingSet, source: SqlSource, entity: str, ctx: Context) -> Rows:
    """(key, day, class) of each lesson, or (key, lesson key, "") of each work, read as the
    texts a fresh read gives (strings of their own)."""
    rows: Rows = []
    for item in to_items(mappings[entity], source.read(mappings[entity]), ctx, gated=False):
        if isinstance(item, Record):
            p = item.payload
            fields = (p["date"], p["class"]) if entity == "lesson" else (p["lesson"], "")
            rows.append((item.key, str(fields[0]), str(fields[1])))
    return rows


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
    count = len(ctx.lesson) + len(ctx.work_lesson)
    print(f"{len(ctx.lesson):,} lessons, {len(ctx.work_lesson):,} works")
    lessons, works = (records(mappings, source, e, Context()) for e in ("lesson", "work"))
    for name, held in (("now", now), ("dicts", traced_mb(lambda: dicts(lessons, works))[1])):
        print(f"{name:<8}{held:>8.2f} MB{held * 2**20 / count:>6.0f} B a lesson or work")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
