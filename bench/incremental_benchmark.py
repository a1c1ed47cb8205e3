"""Benchmark: the no-change incremental run beside its own SQL replayed bare.

    .venv/bin/python bench/incremental_benchmark.py --pupils 1100 [--seed 1] [--dir var/bench]
                                                    [--rounds 5] [--json]

Uses the school of ``bench/plan_benchmark.py`` (``var/bench/school-PUPILS-SEED/school.sqlite``,
generated if missing) and a state of its own (``incremental-state.sqlite``): a full sync
recorded, then one incremental sync (which takes the gate's snapshots of lessons and works).
Then, in ``--rounds`` interleaved rounds, each phase in a fresh interpreter:

  plan        ``plan --incremental`` with nothing changed: open the source and the state store,
              plan (a preview: nothing written)
  sync        ``sync --incremental`` with nothing changed: the same with a sink, then the
              watermarks and re-gating marks written as a delivering run does (no portal: with
              nothing changed it is never called)
  bare-plan   the SQL statements ``plan`` sent (captured in the round's ``plan`` process by
              SQLAlchemy's ``before_cursor_execute``), replayed with plain SQLAlchemy Core on
              fresh engines: ``exec_driver_sql``, every row fetched, nothing else
  bare-sync   the same for ``sync``
  whole-plan  ``plan`` with a source that can only read whole tables (no reads by key): the
              path from before, reading every lesson and work

Each phase's seconds exclude the interpreter's start and the mappings' loading (both the same
for every phase) and include opening the adapters. Prints each round's seconds and ratios
(plan ÷ bare-plan, sync ÷ bare-sync, whole-plan ÷ plan) and the fastest of each phase.
Target (#11): the no-change run ≤ 1 s and ≤ 1.5 × its own SQL replayed bare.
"""

from __future__ import annotations

import argparse
import json
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.adapters.state import open_state
from bridge.core.guard import Thresholds
from bridge.core.mapping import load_mappings
from bridge.core.model import Change
from bridge.ports import Rescan, Row, Table
from bridge.service.engine import RunOptions, delivered, plan_run

ROOT = Path(__file__).resolve().parent.parent
AS_OF = date(2026, 6, 1)
STATE = "incremental-state.sqlite"
PHASES = ("plan", "bare-plan", "sync", "bare-sync", "whole-plan")
NO_GUARD = Thresholds(min_deletes=10**9)


class WholeTables:
    """A source without reads by key: the engine reads lessons and works whole (as before)."""

    def __init__(self, inner: SqlSource) -> None:
        self.inner = inner

    def read(
        self, mapping: Table, since: datetime | None = None, rescan: Rescan | None = None
    ) -> Iterator[Row]:
        return self.inner.read(mapping, since, rescan)


def _capture(into: list[tuple[str, str, Any]]) -> None:
    """Note every statement any engine sends, with the database it goes to."""

    def noted(conn: Any, cursor: Any, statement: str, params: Any, *_: Any) -> None:
        name = "state" if str(conn.engine.url.database).endswith(STATE) else "source"
        into.append((name, statement, params))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", noted)


def _run(folder: Path, mode: str, sql_file: Path | None) -> dict[str, float]:
    """One incremental run with nothing changed; its SQL written to ``sql_file``."""
    mappings = load_mappings(ROOT / "mappings")
    captured: list[tuple[str, str, Any]] = []
    _capture(captured)
    started = time.perf_counter()
    engine = sa.create_engine(f"sqlite:///{folder / 'school.sqlite'}")
    state = open_state(f"sqlite:///{folder / STATE}")
    source: Any = SqlSource(engine) if mode != "whole-plan" else WholeTables(SqlSource(engine))
    sent: list[Change] = []
    options = RunOptions(as_of=AS_OF, incremental=True, thresholds=NO_GUARD)
    result = plan_run(mappings, source, state, options, sent.append if mode == "sync" else None)
    if mode == "sync":
        state.record([delivered(c, mappings) for c in [*sent, *result.plan.destructive()]])
        state.set_watermarks(result.watermarks)
        state.finish_regate(result.regated, AS_OF.isoformat())
    seconds = time.perf_counter() - started
    if sql_file is not None:
        sql_file.write_bytes(pickle.dumps(captured))
    plan = result.plan
    return {
        "seconds": seconds,
        "rows": sum(plan.records_read.values()),
        "changes": sum(sum(c.values()) for c in plan.counts.values()),
        "statements": len(captured),
    }


def _bare(folder: Path, sql_file: Path) -> dict[str, float]:
    """The captured statements again, on fresh engines, with nothing around them."""
    captured: list[tuple[str, str, Any]] = pickle.loads(sql_file.read_bytes())
    started, rows = time.perf_counter(), 0
    engines = {
        "source": sa.create_engine(f"sqlite:///{folder / 'school.sqlite'}"),
        "state": sa.create_engine(f"sqlite:///{folder / STATE}"),
    }
    with engines["source"].connect() as source, engines["state"].connect() as state:
        conns = {"source": source, "state": state}
        for name, statement, params in captured:
            result = conns[name].exec_driver_sql(statement, params)
            if result.returns_rows:
                rows += len(result.fetchall())
        state.commit()
    return {"seconds": time.perf_counter() - started, "rows": rows}


def _prepare(folder: Path, pupils: int, seed: int) -> None:
    """The school (generated if missing) and a state: full sync, then one incremental one."""
    if not (folder / "school.sqlite").exists():
        script = str(ROOT / "bench" / "plan_benchmark.py")
        size = ("--pupils", str(pupils), "--seed", str(seed))
        subprocess.run(
            [sys.executable, script, "--phase", "generate", "--dir", str(folder), *size],
            check=True,
            capture_output=True,
        )
    (folder / STATE).unlink(missing_ok=True)
    mappings = load_mappings(ROOT / "mappings")
    source = SqlSource(sa.create_engine(f"sqlite:///{folder / 'school.sqlite'}"))
    state = open_state(f"sqlite:///{folder / STATE}")
    for incremental in (False, True):
        sent: list[Change] = []
        options = RunOptions(as_of=AS_OF, incremental=incremental, thresholds=NO_GUARD)
        result = plan_run(mappings, source, state, options, sent.append)
        state.record([delivered(c, mappings) for c in [*sent, *result.plan.destructive()]])
        state.set_watermarks(result.watermarks)
        state.finish_regate(result.regated if incremental else None, AS_OF.isoformat())
    state.close()


def run_phase(folder: Path, phase: str, sql_file: Path) -> dict[str, float]:
    """Run one phase in a fresh interpreter and return its figures."""
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--dir", str(folder), "--sql", str(sql_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--pupils", type=int, default=1100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", default=str(ROOT / "var" / "bench"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--sql", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        folder, sql = Path(args.dir), Path(args.sql)
        if args.phase.startswith("bare-"):
            figures = _bare(folder, sql)
        else:
            figures = _run(folder, args.phase, sql if args.phase != "whole-plan" else None)
        print(json.dumps(figures))
        return 0
    folder = Path(args.dir) / f"school-{args.pupils}-{args.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    _prepare(folder, args.pupils, args.seed)
    rounds = []
    for _ in range(args.rounds):
        figures = {}
        for phase in PHASES:
            sql = folder / f"{phase.removeprefix('bare-')}.sql.pickle"
            figures[phase] = run_phase(folder, phase, sql)
        rounds.append(figures)
    if args.json:
        print(json.dumps({"pupils": args.pupils, "seed": args.seed, "rounds": rounds}))
    else:
        print(table(args.pupils, rounds))
    shutil.rmtree(folder / "__pycache__", ignore_errors=True)
    return 0


def table(pupils: int, rounds: list[dict[str, dict[str, float]]]) -> str:
    """Each round's seconds and ratios, then the fastest of each phase."""
    head = "".join(f"{p:>12}" for p in PHASES)
    lines = [
        f"no-change incremental run, school of {pupils} pupils, {len(rounds)} interleaved rounds",
        f"{'round':<7}{head}{'plan/bare':>11}{'sync/bare':>11}{'whole/plan':>12}",
    ]
    for number, r in enumerate(rounds, 1):
        s = {p: r[p]["seconds"] for p in PHASES}
        lines.append(
            f"{number:<7}"
            + "".join(f"{s[p]:>12.3f}" for p in PHASES)
            + f"{s['plan'] / s['bare-plan']:>11.2f}{s['sync'] / s['bare-sync']:>11.2f}"
            + f"{s['whole-plan'] / s['plan']:>12.2f}"
        )
    best = {p: min(r[p]["seconds"] for r in rounds) for p in PHASES}
    lines.append(
        f"{'best':<7}"
        + "".join(f"{best[p]:>12.3f}" for p in PHASES)
        + f"{best['plan'] / best['bare-plan']:>11.2f}{best['sync'] / best['bare-sync']:>11.2f}"
        + f"{best['whole-plan'] / best['plan']:>12.2f}"
    )
    last = rounds[-1]
    lines.append(
        "rows read: "
        + ", ".join(f"{p} {last[p]['rows']:,.0f}" for p in ("plan", "sync", "whole-plan"))
        + f"; statements: plan {last['plan']['statements']:.0f}, "
        f"sync {last['sync']['statements']:.0f}; changes planned: {last['plan']['changes']:.0f}"
    )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
