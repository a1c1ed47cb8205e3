"""An incremental run that reads only the changed lessons and works plans exactly what the run
reading them whole plans, on a generated school after random journal edits.

Each example copies a generated school (SQLite), syncs it in full, then syncs incrementally
once (the snapshots are taken), then for each drawn round of edits (new and edited marks,
withdrawals and re-admissions, consent changes, lessons re-dated, moved to another class,
broken, fixed, deleted or added with an old watermark, works moved, broken or deleted, a
teacher deleted) plans the next incremental sync twice on copies of the same state: with the
lazy path (``bridge.service.engine.lazy``) and with a source that can only read whole tables
(the path from before). Everything the plan says must be equal but the count of rows read.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, Phase, event, given, settings
from hypothesis import strategies as st

from bridge.adapters.source import SqlSource, build_select
from bridge.adapters.state import SqlStateStore, open_state
from bridge.core.guard import Thresholds
from bridge.core.mapping import MappingSet, load_mappings
from bridge.core.model import Change
from bridge.demo import schema
from bridge.demo.generate import SchoolSpec, generate
from bridge.ports import Rescan, Row, Table
from bridge.service.engine import PlanResult, RunOptions, delivered, plan_run
from bridge.service.engine.lazy import Snapshot

AS_OF = date(2025, 10, 1)
DAY0 = date(2025, 9, 1)
T0 = datetime(2025, 11, 1, 9)  # after every generated watermark
MAPPINGS: MappingSet = load_mappings(Path("mappings"))
NO_GUARD = Thresholds(max_delete_fraction=1.0, min_deletes=10**9, hold_whole_class=False)


class WholeTables:
    """A source that reads only as the ``Source`` port does (no reads by key): the engine
    reads lessons and works whole, as it did before the lazy path."""

    def __init__(self, inner: SqlSource) -> None:
        self.inner = inner

    def read(
        self, mapping: Table, since: datetime | None = None, rescan: Rescan | None = None
    ) -> Iterator[Row]:
        return self.inner.read(mapping, since, rescan)


@pytest.fixture(scope="module")
def school(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated school synced in full, then incrementally once (the snapshots taken):
    ``school.sqlite`` and ``state.sqlite`` in the folder returned."""
    folder = tmp_path_factory.mktemp("lazy")
    engine = sa.create_engine(f"sqlite:///{folder / 'school.sqlite'}")
    generate(engine, SchoolSpec(pupils=60, seed=3, days=30))
    state = open_state(f"sqlite:///{folder / 'state.sqlite'}")
    _sync(SqlSource(engine), state, incremental=False)
    _sync(SqlSource(engine), state, incremental=True)
    state.close()
    return folder


def _copy(source: Path, target: Path) -> None:
    """Copy an SQLite database (WAL included) with the backup API."""
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def _sync(
    source: Any, state: SqlStateStore, incremental: bool, keep_builds: bool = False
) -> tuple[PlanResult, list[Change]]:
    """Plan a sync and record everything it would deliver, as an acknowledged run does
    (``keep_builds``: as the daemon does, with the records built kept for the next run)."""
    sent: list[Change] = []
    options = RunOptions(
        as_of=AS_OF, incremental=incremental, thresholds=NO_GUARD, keep_builds=keep_builds
    )
    result = plan_run(MAPPINGS, source, state, options, sent.append)
    assert result.error is None
    state.record([delivered(c, MAPPINGS) for c in [*sent, *result.plan.destructive()]])
    state.set_watermarks(result.watermarks)
    state.finish_regate(result.regated if incremental else None, AS_OF.isoformat())
    return result, sent


def _change(c: Change) -> tuple[Any, ...]:
    return (c.entity, c.sort_key, c.op.value, c.fingerprint, c.reason)


def outcome(result: PlanResult, sent: list[Change]) -> dict[str, Any]:
    """Everything a plan says, but how many rows were read."""
    plan = result.plan
    rejections = Counter(
        (r.entity, r.key, r.field, r.reason, r.dangling, r.closes) for r in plan.rejections
    )
    return {
        "sent": sorted(map(_change, sent)),
        "counts": {e: dict(c) for e, c in plan.counts.items() if +c},
        "holds": {e: dict(c) for e, c in plan.holds.items()},
        "rejection_counts": dict(plan.rejection_counts),
        "rejection_groups": dict(plan.rejection_groups),
        "rejections": rejections if max(plan.rejection_groups.values(), default=0) < 50 else 0,
        "deletes": sorted(map(_change, plan.deletes)),
        "hiding": sorted(map(_change, plan.hiding)),
        "watermarks": result.watermarks,
        "regated": sorted(result.regated),
        "guard_holds": len(result.guard_holds),
    }


# --- journal edits ------------------------------------------------------------------------


def _ids(conn: sa.Connection, table: sa.Table) -> list[int]:
    return [int(i) for i in conn.execute(sa.select(table.c.id).order_by(table.c.id)).scalars()]


def _pick(conn: sa.Connection, table: sa.Table, n: int) -> int | None:
    ids = _ids(conn, table)
    return ids[n % len(ids)] if ids else None


def _set(conn: sa.Connection, table: sa.Table, n: int, **values: Any) -> None:
    key = _pick(conn, table, n)
    if key is not None:
        conn.execute(table.update().where(table.c.id == key).values(**values))


def _delete(conn: sa.Connection, table: sa.Table, n: int) -> None:
    key = _pick(conn, table, n)
    if key is not None:
        conn.execute(table.delete().where(table.c.id == key))


def _new_lesson(conn: sa.Connection, n: int, when: datetime) -> None:
    """A lesson like another (stamped ``when``) with a work and a mark on it."""
    key = _pick(conn, schema.lesson, n)
    if key is None:
        return
    row = dict(
        conn.execute(sa.select(schema.lesson).where(schema.lesson.c.id == key)).one()._mapping
    )
    lesson_id = max(_ids(conn, schema.lesson)) + 1
    conn.execute(schema.lesson.insert().values({**row, "id": lesson_id, "modified_at": when}))
    work_id = max(_ids(conn, schema.lesson_work)) + 1
    conn.execute(
        schema.lesson_work.insert().values(
            id=work_id, lesson_id=lesson_id, work_kind="УО", weight=1, modified_at=when
        )
    )
    _new_mark(conn, work_id, n, when)


def _new_mark(conn: sa.Connection, work_id: int | None, n: int, when: datetime) -> None:
    pupil = _pick(conn, schema.pupil, n)
    if work_id is None or pupil is None:
        return
    conn.execute(
        schema.mark.insert().values(
            id=max(_ids(conn, schema.mark)) + 1,
            work_id=work_id,
            pupil_id=pupil,
            mark_value="5",
            modified_at=when,
        )
    )


Edit = Callable[[sa.Connection, int, int, datetime], None]
EDITS: dict[str, Edit] = {
    "new_mark": lambda c, a, b, w: _new_mark(c, _pick(c, schema.lesson_work, a), b, w),
    "edit_mark": lambda c, a, b, w: _set(c, schema.mark, a, mark_value="34"[b % 2], modified_at=w),
    "withdraw": lambda c, a, b, w: _set(
        c,
        schema.pupil_move,
        a,
        date_out=DAY0 + timedelta(days=b % 30),
        order_out="№9",
        modified_at=w,
    ),
    "readmit": lambda c, a, b, w: _set(
        c, schema.pupil_move, a, date_out=None, order_out=None, modified_at=w
    ),
    "consent": lambda c, a, b, w: _set(c, schema.pupil, a, pd_consent=b % 3, modified_at=w),
    "redate_lesson": lambda c, a, b, w: _set(
        c, schema.lesson, a, lesson_date=DAY0 + timedelta(days=b % 40), modified_at=w
    ),
    "move_lesson": lambda c, a, b, w: _set(c, schema.lesson, a, class_id=1 + b % 2, modified_at=w),
    "break_lesson": lambda c, a, b, w: _set(c, schema.lesson, a, lesson_num=99, modified_at=w),
    "fix_lesson": lambda c, a, b, w: _set(c, schema.lesson, a, lesson_num=1, modified_at=w),
    "delete_lesson": lambda c, a, b, w: _delete(c, schema.lesson, a),
    "new_lesson": lambda c, a, b, w: _new_lesson(c, a, w),
    "old_lesson": lambda c, a, b, w: _new_lesson(c, a, datetime(2025, 9, 2, 8)),
    "move_work": lambda c, a, b, w: _set(
        c, schema.lesson_work, a, lesson_id=_pick(c, schema.lesson, b), modified_at=w
    ),
    "ghost_work": lambda c, a, b, w: _set(
        c, schema.lesson_work, a, lesson_id=10**6 + b, modified_at=w
    ),
    "break_work": lambda c, a, b, w: _set(c, schema.lesson_work, a, work_kind="??", modified_at=w),
    "delete_work": lambda c, a, b, w: _delete(c, schema.lesson_work, a),
    "delete_teacher": lambda c, a, b, w: _delete(c, schema.teacher, a),
}

edits = st.lists(
    st.tuples(st.sampled_from(sorted(EDITS)), st.integers(0, 10**6), st.integers(0, 10**6)),
    max_size=6,
)


def _apply(engine: sa.Engine, drawn: list[tuple[str, int, int]], when: datetime) -> None:
    with engine.begin() as conn:
        for name, a, b in drawn:
            EDITS[name](conn, a, b, when)


@settings(
    max_examples=int(os.environ.get("LAZY_EXAMPLES", "25")),
    deadline=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rounds=st.lists(edits, min_size=1, max_size=3))
def test_lazy_incremental_plans_what_the_whole_read_plans(
    school: Path, rounds: list[list[tuple[str, int, int]]]
) -> None:
    """After any journal edits, the incremental plan that reads lessons and works by key and
    by snapshot equals the plan that reads them whole."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in ("school.sqlite", "state.sqlite"):
            _copy(school / name, folder / name)
        engine = sa.create_engine(f"sqlite:///{folder / 'school.sqlite'}")
        source = SqlSource(engine)
        state = open_state(f"sqlite:///{folder / 'state.sqlite'}")
        for number, drawn in enumerate(rounds):
            _apply(engine, drawn, T0 + timedelta(hours=number))
            _copy(folder / "state.sqlite", folder / f"whole-{number}.sqlite")
            whole_state = open_state(f"sqlite:///{folder / f'whole-{number}.sqlite'}")
            # The lazy path as the daemon runs it (builds kept across runs and examples), the
            # whole read as a one-shot command: the memo must change nothing either.
            lazy = _sync(source, state, incremental=True, keep_builds=True)
            whole = _sync(WholeTables(source), whole_state, incremental=True)
            whole_state.close()
            read, tables = lazy[0].plan.records_read, whole[0].plan.records_read
            event(f"works read by key and snapshot: {read['work'] < tables['work']}")
            assert outcome(*lazy) == outcome(*whole)
        state.close()
        engine.dispose()


def test_a_no_change_run_reads_only_the_changed_rows(school: Path, tmp_path: Path) -> None:
    """With nothing changed, an incremental run reads a handful of lessons and works (the
    rejected ones), not the tables, and plans what the whole read plans."""
    for name in ("school.sqlite", "state.sqlite"):
        _copy(school / name, tmp_path / name)
    _copy(tmp_path / "state.sqlite", tmp_path / "whole.sqlite")
    source = SqlSource(sa.create_engine(f"sqlite:///{tmp_path / 'school.sqlite'}"))
    lazy = _sync(source, open_state(f"sqlite:///{tmp_path / 'state.sqlite'}"), True)
    whole = _sync(WholeTables(source), open_state(f"sqlite:///{tmp_path / 'whole.sqlite'}"), True)
    read, tables = lazy[0].plan.records_read, whole[0].plan.records_read
    assert read["lesson"] < tables["lesson"] / 10
    assert read["work"] < tables["work"] / 10
    assert outcome(*lazy) == outcome(*whole)


def _statements(engine: sa.Engine) -> list[str]:
    """Every statement ``engine`` sends from now on (appended as they go)."""
    sent: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        sent.append(statement)

    sa.event.listen(engine, "before_cursor_execute", note)
    return sent


@pytest.mark.parametrize("incremental", [True, False])
def test_enrolments_and_guardian_links_are_read_whole_once(
    school: Path, tmp_path: Path, incremental: bool
) -> None:
    """A run reads enrolments and guardian links whole once, for both the scan for rejected
    rows and the pre-pass that learns stays and links (a full run reads them once more, for
    their own plan)."""
    for name in ("school.sqlite", "state.sqlite"):
        _copy(school / name, tmp_path / name)
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'school.sqlite'}")
    sent = _statements(engine)
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    _sync(SqlSource(engine), state, incremental)
    for entity in ("enrollment", "guardian_link"):
        whole = str(build_select(MAPPINGS[entity]).compile(engine))
        assert sent.count(whole) == (1 if incremental else 2), entity
    state.close()
    engine.dispose()


def test_a_snapshot_read_again_is_decoded_once() -> None:
    """The same snapshot text decodes to the same, immutable snapshot (the daemon's runs
    share it); a changed text is decoded afresh."""
    snapshot = Snapshot("d", "2025-11-01 09:00:00", frozenset({1, 2, 5}), frozenset({5}))
    text = snapshot.encode()
    first, again = Snapshot.decode(text), Snapshot.decode(str(text))
    assert first == snapshot
    assert again is first
    with pytest.raises(AttributeError):
        first.keys = frozenset()  # type: ignore[misc]
    other = Snapshot.decode(text.replace('"d"', '"e"'))
    assert other is not None
    assert other.digest == "e"
    assert other.keys == snapshot.keys
