"""Planning in key ranges on forked workers gives the plan of one process, and stops cleanly.

A generated school in SQLite, synced once, then edited (marks changed and deleted, a lesson
deleted, a pupil's consent withdrawn, bad rows added) so that the next full plan has creates,
updates, deletes, holds and rejections; the small hand-made school in memory with ranges of a
few keys, so that every entity with whole-number keys is split, the referenced ones included.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.adapters.state import SqlStateStore, open_state
from bridge.core.errors import FatalError, Interrupted, SourceError, SourceOrderError
from bridge.core.guard import Thresholds
from bridge.core.mapping import CompiledMapping, MappingSet
from bridge.core.model import Change
from bridge.demo import schema
from bridge.demo.generate import SchoolSpec, generate
from bridge.ports import KeyRange, RangedSource, Rescan, Row, Source, StateStore
from bridge.service.engine import PlanResult, RunOptions, delivered, plan_run
from bridge.service.engine import keys as shards
from bridge.testing.fakes import MemorySource, MemoryStateStore
from tests.contracts.test_source_contract import school_tables

AS_OF = date(2026, 5, 20)
NO_HOLD = Thresholds(min_deletes=10**9)


def run(
    mappings: MappingSet,
    source: Source,
    state: StateStore,
    workers: int,
    sink: list[Change] | None = None,
) -> PlanResult:
    """A full plan with ``workers`` processes; changes go to ``sink`` when given."""
    options = RunOptions(as_of=AS_OF, thresholds=NO_HOLD, workers=workers)
    return plan_run(mappings, source, state, options, None if sink is None else sink.append)


def digest(result: PlanResult, sent: list[Change]) -> tuple[object, ...]:
    """Everything a run's outcome is: the plan (counts, holds, rejections and their samples,
    sampled updates, deletes and changes that hide a pupil in order, the plan id), watermarks
    and the changes sent, in order."""
    plan = result.plan
    return (
        plan.counts,
        plan.holds,
        plan.rejection_counts,
        plan.rejection_groups,
        plan.rejections,
        [(c.entity, c.key, c.op) for c in plan.updates],
        [(c.entity, c.key, c.reason) for c in plan.deletes],
        [(c.entity, c.key, c.op) for c in plan.hiding],
        plan.plan_id,
        plan.records_read,
        result.watermarks,
        [
            (c.entity, c.key, c.op, c.fingerprint, c.record.payload if c.record else None)
            for c in sent
        ],
    )


class Wrapped:
    """A source around another one: bounds and forks pass through."""

    def __init__(self, inner: RangedSource) -> None:
        self.inner = inner

    def key_bounds(self, mapping: CompiledMapping) -> tuple[int, int] | None:
        return self.inner.key_bounds(mapping)

    def after_fork(self) -> None:
        self.inner.after_fork()

    def read(
        self,
        mapping: CompiledMapping,
        since: datetime | None = None,
        rescan: Rescan | None = None,
        key_range: KeyRange | None = None,
    ) -> Iterator[Row]:
        return self.pass_on(mapping, since, rescan, key_range)

    def read_range(self, mapping: CompiledMapping, key_range: KeyRange) -> Iterator[Row]:
        return self.read(mapping, key_range=key_range)

    def pass_on(
        self,
        mapping: CompiledMapping,
        since: datetime | None,
        rescan: Rescan | None,
        key_range: KeyRange | None,
    ) -> Iterator[Row]:
        if key_range is None:
            return self.inner.read(mapping, since, rescan)
        return self.inner.read_range(mapping, key_range)


class PidLog(Wrapped):
    """A source that notes, in a file, which process read each key range."""

    def __init__(self, inner: RangedSource, log: Path) -> None:
        super().__init__(inner)
        self.log = log

    def read(
        self,
        mapping: CompiledMapping,
        since: datetime | None = None,
        rescan: Rescan | None = None,
        key_range: KeyRange | None = None,
    ) -> Iterator[Row]:
        if key_range is not None:
            with self.log.open("a") as out:
                out.write(f"{mapping.entity} {os.getpid()}\n")
        return self.pass_on(mapping, since, rescan, key_range)

    def pids(self, entity: str) -> set[str]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return {pid for line in lines for name, pid in [line.split()] if name == entity}


@pytest.fixture(scope="module")
def edited_school(
    tmp_path_factory: pytest.TempPathFactory, mappings: MappingSet
) -> tuple[sa.Engine, Path]:
    """A generated school synced once into a state file, then edited."""
    folder = tmp_path_factory.mktemp("workers")
    engine = sa.create_engine(f"sqlite:///{folder / 'asiou.sqlite'}")
    generate(engine, SchoolSpec(pupils=60, seed=3))
    state = open_state(f"sqlite:///{folder / 'state.sqlite'}")
    sent: list[Change] = []
    first = run(mappings, SqlSource(engine), state, 1, sent)
    state.record([delivered(c, mappings) for c in sent + first.plan.destructive()])
    state.close()
    _edit(engine)
    return engine, folder / "state.sqlite"


def _edit(engine: sa.Engine) -> None:
    mark, lesson, pupil = (schema.metadata.tables[n] for n in ("mark", "lesson", "pupil"))
    with engine.begin() as conn:
        ids = [r[0] for r in conn.execute(sa.select(mark.c.id).order_by(mark.c.id))]
        conn.execute(mark.update().where(mark.c.id.in_(ids[::97])).values(mark_value="3"))
        conn.execute(mark.delete().where(mark.c.id.in_(ids[5::211])))
        conn.execute(mark.update().where(mark.c.id.in_(ids[7::501])).values(mark_value="11"))
        copies = [
            dict(r._mapping)
            for r in conn.execute(sa.select(mark).where(mark.c.id.in_(ids[3::1013])))
        ]
        conn.execute(mark.insert(), [{**r, "id": ids[-1] + n + 1} for n, r in enumerate(copies)])
        lesson_id = conn.execute(sa.select(sa.func.max(lesson.c.id))).scalar_one()
        conn.execute(lesson.delete().where(lesson.c.id == lesson_id))
        pupil_id = conn.execute(sa.select(sa.func.min(pupil.c.id))).scalar_one()
        conn.execute(pupil.update().where(pupil.c.id == pupil_id).values(pd_consent=0))


@pytest.fixture
def school_state(
    edited_school: tuple[sa.Engine, Path],
) -> Iterator[tuple[SqlSource, SqlStateStore]]:
    engine, state_file = edited_school
    state = open_state(f"sqlite:///{state_file}")
    yield SqlSource(engine), state
    state.close()
    assert multiprocessing.active_children() == [], "a planning worker outlived its run"


@pytest.mark.parametrize("narrow", [False, True], ids=["default-ranges", "narrow-ranges"])
def test_plan_in_ranges_equals_the_plan_of_one_process(
    school_state: tuple[SqlSource, SqlStateStore],
    mappings: MappingSet,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    narrow: bool,
) -> None:
    """With 2 or 3 processes the plan and the changes sent are exactly those of one process,
    and the marks (with narrow ranges, the lessons too) really were planned in several."""
    source, state = school_state
    if narrow:
        monkeypatch.setattr(shards, "MIN_KEYS_PER_RANGE", 100)
    alone: list[Change] = []
    expected = digest(run(mappings, source, state, 1, alone), alone)
    assert {c.op for c in alone} >= {"create", "update"}
    for workers in (2, 3):
        logged = PidLog(source, tmp_path / f"pids-{workers}")
        sent: list[Change] = []
        result = run(mappings, logged, state, workers, sent)
        assert digest(result, sent) == expected
        assert len(logged.pids("mark")) == workers
        assert len(logged.pids("lesson")) == (workers if narrow else 0)
    plan = run(mappings, source, state, 2).plan
    assert plan.deletes
    assert plan.rejections
    assert plan.holds


def test_every_entity_split_in_tiny_ranges_plans_the_same(
    mappings: MappingSet, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The small school in memory, every entity whose keys span a few numbers cut into ranges
    of two keys (pupils, lessons and works among them, whose ranges teach the context): the
    same plan as one process."""
    monkeypatch.setattr(shards, "MIN_KEYS_PER_RANGE", 2)
    source = MemorySource(school_tables())
    state = MemoryStateStore()
    first: list[Change] = []
    run(mappings, source, state, 1, first)
    state.record([delivered(c, mappings) for c in first[::2]])  # half delivered: updates too
    alone: list[Change] = []
    expected = digest(run(mappings, source, state, 1, alone), alone)
    sent: list[Change] = []
    logged = PidLog(source, tmp_path / "pids")
    assert digest(run(mappings, logged, state, 2, sent), sent) == expected
    reads = logged.log.read_text().split()
    for entity in ("pupil", "lesson", "work", "mark"):
        assert reads.count(entity) >= 2, f"{entity} was not read in ranges"
    assert multiprocessing.active_children() == []


class InWorker(Wrapped):
    """A source that calls ``act`` before a worker (never the engine's own process) reads a
    key range."""

    def __init__(self, inner: RangedSource, act: Callable[[KeyRange], None]) -> None:
        super().__init__(inner)
        self.act, self.parent = act, os.getpid()

    def read(
        self,
        mapping: CompiledMapping,
        since: datetime | None = None,
        rescan: Rescan | None = None,
        key_range: KeyRange | None = None,
    ) -> Iterator[Row]:
        if key_range is not None and os.getpid() != self.parent:
            self.act(key_range)
        return self.pass_on(mapping, since, rescan, key_range)


def failing(source: Source, error: Exception) -> InWorker:
    """A source whose reads of the last key range fail, in a worker only."""

    def act(key_range: KeyRange) -> None:
        if key_range.high is None and key_range.low is not None:
            raise error

    return InWorker(source, act)


def test_a_read_failing_in_a_worker_fails_the_run_without_deletes(
    school_state: tuple[SqlSource, SqlStateStore], mappings: MappingSet
) -> None:
    """A worker's read that fails is the run's SourceError: a partial plan with no delete."""
    source, state = school_state
    broken = failing(source, SourceError("reading mark from table mark", "connection lost"))
    result = run(mappings, broken, state, 2)
    assert isinstance(result.error, SourceError)
    assert "connection lost" in str(result.error)
    assert result.plan.deletes == []


def test_a_worker_that_crashes_fails_the_run_with_what_happened(
    school_state: tuple[SqlSource, SqlStateStore], mappings: MappingSet
) -> None:
    """An unexpected error in a worker stops the run with a FatalError naming its kind and the
    range, never its text (it may quote a row)."""
    source, state = school_state
    with pytest.raises(
        FatalError,
        match=r"id from \d+\) in a worker process failed: "
        r"RuntimeError$",
    ) as caught:
        run(mappings, failing(source, RuntimeError("boom Иванов")), state, 2)
    assert "Иванов" not in str(caught.value)


def test_a_stop_during_planning_kills_the_workers(
    school_state: tuple[SqlSource, SqlStateStore], mappings: MappingSet, tmp_path: Path
) -> None:
    """A sink that stops the run (SIGTERM's Interrupted) while a worker is busy with marks:
    the run ends with that error and no delete, and the busy worker is gone at once (it would
    hang a minute on its own)."""
    source, state = school_state
    pids = tmp_path / "pids"
    marks: list[Change] = []

    def sink(change: Change) -> None:
        if change.entity == "mark":
            marks.append(change)
            if pids.exists() and len(marks) > 100:  # a worker is reading its range
                raise Interrupted

    def hang(_: KeyRange) -> None:
        with pids.open("a") as out:
            out.write(f"{os.getpid()}\n")
        time.sleep(60)  # a worker busy with its range

    result = plan_run(
        mappings,
        InWorker(source, hang),
        state,
        RunOptions(as_of=AS_OF, thresholds=NO_HOLD, workers=2),
        sink,
    )
    assert isinstance(result.error, Interrupted)
    assert result.plan.deletes == []
    worker = int(pids.read_text().split()[0])
    assert not Path(f"/proc/{worker}").exists()
    assert multiprocessing.active_children() == []


class Unbounded(Wrapped):
    """A source that ignores key ranges (as a database comparing keys otherwise might)."""

    def read(
        self,
        mapping: CompiledMapping,
        since: datetime | None = None,
        rescan: Rescan | None = None,
        key_range: KeyRange | None = None,
    ) -> Iterator[Row]:
        return self.inner.read(mapping, since, rescan)


def test_a_row_outside_its_key_range_stops_the_run(
    school_state: tuple[SqlSource, SqlStateStore], mappings: MappingSet
) -> None:
    """A row outside the range being read would pair with the wrong state entries: the run
    stops, naming the range, before anything of that entity is noted."""
    source, state = school_state
    with pytest.raises(SourceOrderError, match=r"reading id below \d+"):
        run(mappings, Unbounded(source), state, 2)
