"""Benchmark: the no-change incremental run beside its own SQL replayed bare.

    .venv/bin/python bench/incremental_benchmark.py --pupils 1100 [--seed 1] [--dir var/bench]
                                                    [--rounds 5] [--json] [--phases a,b,...]
                                                    [--before TREE]

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
  daemon      what the daemon does every few minutes: in one interpreter, ``sync`` run
              ``DAEMON_RUNS`` times (4, or ``$BENCH_DAEMON_RUNS``), the source and the state
              store opened as the daemon opens them (kept open between runs,
              ``bridge.service.wiring.KeptEngines``; on a tree without it, opened and closed
              for every run, as the daemon did before); the seconds are the mean of the runs
              after the first
  bare-daemon the SQL of the daemon's last run, replayed twice on the same open connections;
              the seconds are the second replay's (a long-running bare client's)

With ``--before TREE`` (``git archive REV bridge | tar -x -C TREE``) every round runs the
phases on that tree's package too (``PYTHONPATH``), before this tree's, and prints after ÷
before per phase and round: the same round, the same load on a shared machine.

Each phase's seconds exclude the interpreter's start and the mappings' loading (both the same
for every phase) and include opening the adapters. Prints each round's seconds and ratios
(plan ÷ bare-plan, sync ÷ bare-sync, whole-plan ÷ plan, daemon ÷ bare-daemon) and the fastest
of each phase.
Target (#11): the no-change run ≤ 1 s and ≤ 1.5 × its own SQL replayed bare.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from types import SimpleNamespace
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
PHASES = ("plan", "bare-plan", "sync", "bare-sync", "whole-plan", "daemon", "bare-daemon")
DAEMON_RUNS = int(os.environ.get("BENCH_DAEMON_RUNS", "4"))
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


class _School:
    """What ``KeptEngines`` reads of a configuration: the two URLs, no school name."""

    def __init__(self, folder: Path) -> None:
        self.url = f"sqlite:///{folder / 'school.sqlite'}"
        self.state = SimpleNamespace(url=f"sqlite:///{folder / STATE}")
        self.portal = SimpleNamespace(school=None)

    def source_url_with_password(self) -> sa.URL:
        return sa.make_url(self.url)


def _daemon(folder: Path, sql_file: Path) -> dict[str, float]:
    """``DAEMON_RUNS`` no-change syncs in this interpreter, the adapters opened as the
    daemon opens them; the SQL of the last written to ``sql_file``."""
    mappings = load_mappings(ROOT / "mappings")
    captured: list[tuple[str, str, Any]] = []
    _capture(captured)
    try:
        from bridge.service.wiring import KeptEngines  # noqa: PLC0415 - absent before
    except ImportError:
        kept = None
    else:
        kept = KeptEngines(_School(folder))  # type: ignore[arg-type]
    seconds, result = [], None
    for _ in range(DAEMON_RUNS):
        captured.clear()
        started = time.perf_counter()
        if kept is not None:
            source, state = kept.source(), kept.state()
        else:
            source = SqlSource(sa.create_engine(f"sqlite:///{folder / 'school.sqlite'}"))
            state = open_state(f"sqlite:///{folder / STATE}")
        result = _sync_once(mappings, source, state)
        if kept is None:
            state.close()
            source.engine.dispose()
        seconds.append(time.perf_counter() - started)
    if kept is not None:
        kept.close()
    sql_file.write_bytes(pickle.dumps(captured))
    assert result is not None
    later = seconds[1:]
    return {
        "seconds": sum(later) / len(later),
        "first": seconds[0],
        "rows": sum(result.plan.records_read.values()),
        "changes": sum(sum(c.values()) for c in result.plan.counts.values()),
        "statements": len(captured),
    }


def _sync_once(mappings: Any, source: Any, state: Any) -> Any:
    """One incremental sync with a sink, its outcome recorded as a delivering run does (with
    the daemon's options: its builds kept for the next run, on a tree that keeps them)."""
    sent: list[Change] = []
    options = RunOptions(as_of=AS_OF, incremental=True, thresholds=NO_GUARD)
    if "keep_builds" in {f.name for f in dataclasses.fields(RunOptions)}:
        options = dataclasses.replace(options, keep_builds=True)  # type: ignore[call-arg]
    result = plan_run(mappings, source, state, options, sent.append)
    state.record([delivered(c, mappings) for c in [*sent, *result.plan.destructive()]])
    state.set_watermarks(result.watermarks)
    state.finish_regate(result.regated, AS_OF.isoformat())
    return result


def _bare_warm(folder: Path, sql_file: Path) -> dict[str, float]:
    """The captured statements replayed twice on the same connections; the second timed."""
    captured: list[tuple[str, str, Any]] = pickle.loads(sql_file.read_bytes())
    engines = {
        "source": sa.create_engine(f"sqlite:///{folder / 'school.sqlite'}"),
        "state": sa.create_engine(f"sqlite:///{folder / STATE}"),
    }
    with engines["source"].connect() as source, engines["state"].connect() as state:
        conns = {"source": source, "state": state}
        for _ in range(2):
            started, rows = time.perf_counter(), 0
            for name, statement, params in captured:
                result = conns[name].exec_driver_sql(statement, params)
                if result.returns_rows:
                    rows += len(result.fetchall())
            state.commit()
            seconds = time.perf_counter() - started
    return {"seconds": seconds, "rows": rows}


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


def run_phase(
    folder: Path, phase: str, sql_file: Path, tree: str | None = None
) -> dict[str, float]:
    """Run one phase in a fresh interpreter (on the package in ``tree`` if given: its
    ``bridge`` first on the path) and return its figures."""
    env = dict(os.environ) if tree is None else {**os.environ, "PYTHONPATH": tree}
    out = subprocess.run(
        [sys.executable, __file__, "--phase", phase, "--dir", str(folder), "--sql", str(sql_file)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    figures: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--pupils", type=int, default=1100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", default=str(ROOT / "var" / "bench"))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--phases", default=",".join(PHASES), help="comma-separated subset")
    parser.add_argument(
        "--before",
        metavar="TREE",
        help="a folder holding an earlier tree's bridge package (git archive REV bridge | tar "
        "-x -C TREE): each phase is run on it too, interleaved, and the two compared",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--sql", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        return _one_phase(args.phase, Path(args.dir), Path(args.sql))
    folder = Path(args.dir) / f"school-{args.pupils}-{args.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    _prepare(folder, args.pupils, args.seed)
    phases = [p for p in PHASES if p in args.phases.split(",")]
    trees = {"after": None} if args.before is None else {"before": args.before, "after": None}
    rounds: dict[str, list[dict[str, dict[str, float]]]] = {t: [] for t in trees}
    for _ in range(args.rounds):
        for label, tree in trees.items():
            figures = {}
            for phase in phases:
                sql = folder / f"{label}-{phase.removeprefix('bare-')}.sql.pickle"
                figures[phase] = run_phase(folder, phase, sql, tree)
            rounds[label].append(figures)
    if args.json:
        print(json.dumps({"pupils": args.pupils, "seed": args.seed, "rounds": rounds}))
    else:
        print("\n\n".join(table(args.pupils, r, label) for label, r in rounds.items()))
        if args.before is not None:
            print("\n" + compared(rounds["before"], rounds["after"]))
    shutil.rmtree(folder / "__pycache__", ignore_errors=True)
    return 0


def _one_phase(phase: str, folder: Path, sql: Path) -> int:
    """Run one phase here and print its figures as JSON."""
    if phase == "bare-daemon":
        figures = _bare_warm(folder, sql)
    elif phase.startswith("bare-"):
        figures = _bare(folder, sql)
    elif phase == "daemon":
        figures = _daemon(folder, sql)
    else:
        figures = _run(folder, phase, sql if phase != "whole-plan" else None)
    print(json.dumps(figures))
    return 0


RATIOS = (
    ("plan/bare", "plan", "bare-plan"),
    ("sync/bare", "sync", "bare-sync"),
    ("whole/plan", "whole-plan", "plan"),
    ("daemon/bare", "daemon", "bare-daemon"),
)


def table(pupils: int, rounds: list[dict[str, dict[str, float]]], label: str = "") -> str:
    """Each round's seconds and ratios, then the fastest of each phase."""
    phases = [p for p in PHASES if p in rounds[0]]
    ratios = [(n, a, b) for n, a, b in RATIOS if a in rounds[0] and b in rounds[0]]
    head = "".join(f"{p:>12}" for p in phases) + "".join(f"{n:>12}" for n, _, _ in ratios)
    lines = [
        f"{label + ': ' if label else ''}no-change incremental run, school of {pupils} pupils, "
        f"{len(rounds)} interleaved rounds",
        f"{'round':<7}{head}",
    ]
    best = {p: {"seconds": min(r[p]["seconds"] for r in rounds)} for p in phases}
    for name, r in [*((str(n), r) for n, r in enumerate(rounds, 1)), ("best", best)]:
        s = {p: r[p]["seconds"] for p in phases}
        lines.append(
            f"{name:<7}"
            + "".join(f"{s[p]:>12.3f}" for p in phases)
            + "".join(f"{s[a] / s[b]:>12.2f}" for _, a, b in ratios)
        )
    last = rounds[-1]
    lines.append(
        "rows read: "
        + ", ".join(
            f"{p} {last[p]['rows']:,.0f}" for p in ("plan", "sync", "whole-plan") if p in last
        )
        + "; statements: "
        + ", ".join(
            f"{p} {last[p]['statements']:.0f}" for p in ("plan", "sync", "daemon") if p in last
        )
        + (f"; daemon's first run {last['daemon']['first']:.3f} s" if "daemon" in last else "")
    )
    return "\n".join(lines)


def compared(
    before: list[dict[str, dict[str, float]]], after: list[dict[str, dict[str, float]]]
) -> str:
    """After ÷ before, per phase and round (same round: the same load on the machine)."""
    phases = [p for p in PHASES if p in after[0] and not p.startswith("bare-")]
    lines = [
        "after / before, seconds of the same round",
        f"{'round':<7}" + "".join(f"{p:>12}" for p in phases),
    ]
    for number, (b, a) in enumerate(zip(before, after, strict=True), 1):
        lines.append(
            f"{number:<7}" + "".join(f"{a[p]['seconds'] / b[p]['seconds']:>12.2f}" for p in phases)
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
