"""The field set-up: ASIOU on MariaDB read through pyodbc, state shared in PostgreSQL."""

from __future__ import annotations

import multiprocessing
from dataclasses import replace
from datetime import date, timedelta

import pytest
import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.adapters.state import open_state
from bridge.core.mapping import MappingSet
from bridge.core.model import Change, Op
from bridge.demo import schema
from bridge.service.engine import RunOptions, delivered, plan_run
from bridge.service.engine import keys as shards
from tests import school


def test_plan_record_replan_over_odbc_and_postgres(
    mariadb_url: str, postgres_url: str, mappings: MappingSet
) -> None:
    """A MariaDB school plans exactly as in SQLite, records into PostgreSQL, and re-plans empty;
    one edited mark then gives one update, incrementally too."""
    assert mariadb_url.startswith("mysql+pyodbc://")
    engine = sa.create_engine(mariadb_url)
    school.write_school(engine)
    source = SqlSource(engine)
    state = open_state(postgres_url)
    options = RunOptions(as_of=date(2025, 12, 1))
    sent: list[Change] = []
    first = plan_run(mappings, source, state, options, sent.append)
    assert first.error is None
    assert {c.key for c in sent if c.entity == "mark"} == school.expected_marks()
    state.record([delivered(c, mappings) for c in sent])
    state.set_watermarks(first.watermarks)
    assert plan_run(mappings, source, state, options).plan.is_empty
    with engine.begin() as conn:
        conn.execute(
            schema.mark.update()
            .where(schema.mark.c.id == 1001)
            .values(mark_value="3", modified_at=school.T0 + timedelta(days=100))
        )
    for incremental in (False, True):
        again: list[Change] = []
        plan_run(
            mappings,
            source,
            state,
            RunOptions(as_of=date(2025, 12, 1), incremental=incremental),
            again.append,
        )
        assert [(c.op, c.entity, c.key) for c in again] == [(Op.UPDATE, "mark", "1001")]
    state.close()
    engine.dispose()


def test_workers_plan_over_odbc_and_postgres_as_one_process(
    mariadb_url: str, postgres_url: str, mappings: MappingSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Forked workers open their own ODBC and PostgreSQL connections (the parent's are left
    alone): with every table cut into ranges of a few keys, two processes plan what one does,
    and the parent's connections still work afterwards."""
    monkeypatch.setattr(shards, "MIN_KEYS_PER_RANGE", 2)
    engine = sa.create_engine(mariadb_url)
    school.write_school(engine)
    source, state = SqlSource(engine), open_state(postgres_url, school="workers")
    options = RunOptions(as_of=date(2025, 12, 1))
    sent: list[Change] = []
    assert plan_run(mappings, source, state, options, sent.append).error is None
    state.record([delivered(c, mappings) for c in sent[::2]])
    plans = []
    for workers in (1, 2):
        again: list[Change] = []
        result = plan_run(mappings, source, state, replace(options, workers=workers), again.append)
        assert result.error is None
        plans.append(
            (
                result.plan.counts,
                result.plan.holds,
                result.plan.plan_id,
                [(c.entity, c.key, c.op, c.fingerprint) for c in again],
            )
        )
    assert plans[0] == plans[1]
    assert plans[0][3], "half the records were recorded: the other half are sent again"
    assert state.count("mark") > 0
    assert multiprocessing.active_children() == []
    state.close()
    engine.dispose()
