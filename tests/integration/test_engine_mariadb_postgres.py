"""The field set-up: ASIOU on MariaDB read through pyodbc, state shared in PostgreSQL."""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa

from bridge.demo import schema
from bridge.engine import RunOptions, delivered, plan_run
from bridge.mapping import MappingSet
from bridge.model import Change, Op
from bridge.source import SqlSource
from bridge.state import open_state
from tests import school


def test_plan_record_replan_over_odbc_and_postgres(
        mariadb_url: str, postgres_url: str, mappings: MappingSet) -> None:
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
        conn.execute(schema.mark.update().where(schema.mark.c.id == 1001).values(
            mark_value="3", modified_at=school.T0 + timedelta(days=100)))
    for incremental in (False, True):
        again: list[Change] = []
        plan_run(mappings, source, state, RunOptions(as_of=date(2025, 12, 1),
                                                     incremental=incremental), again.append)
        assert [(c.op, c.entity, c.key) for c in again] == [(Op.UPDATE, "mark", "1001")]
    state.close()
    engine.dispose()
