"""The hand-made school (``tests/school.py``) planned and recorded in this process: the bench
the engine's integration tests share."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.adapters.state import SqlStateStore, open_state
from bridge.core.guard import Thresholds
from bridge.core.mapping import MappingSet, load_mappings
from bridge.core.model import Change
from bridge.service.engine import PlanResult, RunOptions, delivered, plan_run
from tests import school

AS_OF = date(2025, 12, 1)
LATER = school.T0 + timedelta(days=90)
"""When rows changed with ``Bench.update`` were edited."""


@dataclass
class Bench:
    """A school, its mappings and a state store, with helpers to plan and record runs."""

    engine: sa.Engine
    mappings: MappingSet
    state: SqlStateStore

    def plan(
        self,
        incremental: bool = False,
        thresholds: Thresholds | None = None,
        source: SqlSource | None = None,
    ) -> tuple[PlanResult, list[Change]]:
        sent: list[Change] = []
        options = RunOptions(
            as_of=AS_OF, incremental=incremental, thresholds=thresholds or Thresholds()
        )
        result = plan_run(
            self.mappings, source or SqlSource(self.engine), self.state, options, sent.append
        )
        return result, sent

    def record(self, result: PlanResult, sent: list[Change]) -> None:
        changes = sent + result.plan.hiding + result.plan.deletes
        self.state.record([delivered(c, self.mappings) for c in changes])
        self.state.set_watermarks(result.watermarks)
        # As run_sync does after a run that delivered everything.
        regated = result.regated if result.plan.mode == "incremental" else None
        self.state.finish_regate(regated, AS_OF.isoformat())

    def sync(self, **kwargs: object) -> tuple[PlanResult, list[Change]]:
        result, sent = self.plan(**kwargs)  # type: ignore[arg-type]
        self.record(result, sent)
        return result, sent

    def sql(self, statement: sa.Executable) -> None:
        with self.engine.begin() as conn:
            conn.execute(statement)

    def update(self, table: sa.Table, row_id: int, **values: object) -> None:
        """Change one row of ``table``, as edited at LATER."""
        with self.engine.begin() as conn:
            conn.execute(
                table.update().where(table.c.id == row_id).values(modified_at=LATER, **values)
            )


def make_bench(tmp_path: Path) -> Iterator[Bench]:
    """A bench on a fresh copy of the school and an empty SQLite state, closed afterwards."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'asiou.sqlite'}")
    school.write_school(engine)
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    yield Bench(engine, load_mappings(Path("mappings")), state)
    state.close()
    engine.dispose()
