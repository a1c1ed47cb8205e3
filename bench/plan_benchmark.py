"""Benchmark: planning a generated school from SQLite against a bare streamed SELECT.

    .venv/bin/python bench/plan_benchmark.py --pupils 1100 [--seed 1] [--dir var/bench]
                                             [--workers N] [--rounds 3]

Phases run in separate processes so each one's peak RSS is its own (VmHWM):
  generate  write the school into SQLite (skipped when the file for this size and seed exists)
  record    plan and record every change in the state store (what delivery would), once
  select    a bare streamed SELECT of exactly the rows the mappings read (the baseline)
  plan-new  a full plan against an empty state store (the first sync)
  plan-same a full plan against the recorded state (the nightly reconciliation: no changes)
select, plan-new and plan-same run in ``--rounds`` interleaved rounds, and the fastest run of
each is reported (as timeit does: the least disturbed by the rest of the machine), with every
round's ratios printed below the table.
Plans use ``--workers`` processes (default 0: one per CPU core, as the service does; 1: one
process); the bare SELECT is always one process. Each phase reports wall-clock seconds, CPU
seconds (its own and its workers'), and peak RSS (its own, and its largest worker's).
Prints a table and, with --json, one JSON object. Targets (docs/benchmarks.md): plan time at
most 2.5 x the bare SELECT; peak RSS at most 200 MB, growing less than 5 MB per million rows
(the table's last column: the plan's peak above the bare SELECT's, per million source rows).

With ``--trace``, plan-new and plan-same run once more each, in one process, under tracemalloc,
and the allocation sites holding the most memory at the traced peak are printed (sampled every
``TRACE_EVERY`` rows read: the peak of a plan is while the largest table streams).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.adapters.state import open_state
from bridge.core.guard import Thresholds
from bridge.core.mapping import MappingSet, load_mappings
from bridge.core.model import Change
from bridge.demo.generate import SchoolSpec, generate
from bridge.ports import Delivered, KeyRange, Rescan, Row
from bridge.service.engine import RunOptions, delivered, plan_run, resolve_workers

ROOT = Path(__file__).resolve().parent.parent

AS_OF = date(2026, 6, 1)
STATE, EMPTY_STATE = "state.sqlite", "empty-state.sqlite"
ROUNDS = ("select", "plan-new", "plan-same")  # repeated, interleaved; the best of each counts
RECORD_BATCH = 5000
TRACE_EVERY = 50_000  # rows read between two looks at the traced memory
TRACE_TOP = 15  # allocation sites printed
TRACE_FRAMES = 6  # frames kept per traced allocation (the innermost project frame is named)


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped children (planning workers), in seconds."""
    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def worker_peak_rss_mb() -> float:
    """The peak RSS of the largest reaped child (a planning worker), in MB; 0 without one."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def peak_rss_mb() -> float:
    """This process's peak resident set size (VmHWM), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class PeakTracer:
    """Keeps the tracemalloc snapshot taken at the highest traced memory seen so far."""

    def __init__(self) -> None:
        self.best = 0
        self.snapshot: tracemalloc.Snapshot | None = None

    def look(self) -> None:
        """Take a snapshot if the traced memory grew by a megabyte since the last one."""
        current = tracemalloc.get_traced_memory()[0]
        if current > self.best + 2**20:
            self.best, self.snapshot = current, tracemalloc.take_snapshot()

    def sites(self) -> list[dict[str, float | str]]:
        """The ``TRACE_TOP`` sites holding the most at the peak, by their innermost frame in
        the project (``bridge/``) and the line that allocated."""
        if self.snapshot is None:
            return []
        held: dict[str, list[float]] = {}
        for trace in self.snapshot.traces:
            frames = list(reversed(trace.traceback))  # innermost first
            inner = _where(frames[0])
            ours = next((f for f in frames if "/bridge/" in f.filename), None)
            site = inner if ours is None or ours is frames[0] else f"{_where(ours)} <= {inner}"
            entry = held.setdefault(site, [0.0, 0.0])
            entry[0] += trace.size / 2**20
            entry[1] += 1
        top = sorted(held.items(), key=lambda kv: -kv[1][0])[:TRACE_TOP]
        return [{"site": site, "mb": mb, "blocks": blocks} for site, (mb, blocks) in top]


def _where(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    for cut in ("site-packages/", f"{ROOT}/"):
        name = name.split(cut)[-1]
    return f"{name}:{frame.lineno}"


class TracedSource(SqlSource):
    """The SQL source, looking at the traced memory every ``TRACE_EVERY`` rows it gives."""

    tracer = PeakTracer()

    def read(
        self, mapping: object, since: object = None, rescan: Rescan | None = None
    ) -> Iterator[Row]:
        return self._looked(super().read(mapping, since, rescan))  # type: ignore[arg-type]

    def read_range(self, mapping: object, key_range: KeyRange) -> Iterator[Row]:
        return self._looked(super().read_range(mapping, key_range))  # type: ignore[arg-type]

    def _looked(self, rows: Iterator[Row]) -> Iterator[Row]:
        for count, row in enumerate(rows, 1):
            if count % TRACE_EVERY == 0:
                self.tracer.look()
            yield row


def _open(folder: Path, traced: bool = False) -> tuple[MappingSet, SqlSource]:
    engine = sa.create_engine(f"sqlite:///{folder / 'school.sqlite'}")
    return load_mappings(ROOT / "mappings"), (TracedSource if traced else SqlSource)(engine)


def phase_generate(folder: Path, pupils: int, seed: int) -> dict[str, float]:
    engine = sa.create_engine(f"sqlite:///{folder / 'school.sqlite'}")
    started = time.perf_counter()
    counts = generate(engine, SchoolSpec(pupils=pupils, seed=seed))
    return {
        "seconds": time.perf_counter() - started,
        "rows": sum(counts.values()),
        "marks": counts["mark"],
    }


def phase_select(folder: Path) -> dict[str, float]:
    mappings, source = _open(folder)
    started, cpu, rows = time.perf_counter(), cpu_seconds(), 0
    for mapping in mappings.mappings:
        for _ in source.read(mapping):
            rows += 1
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": cpu_seconds() - cpu,
        "rows": rows,
    }


def _plan(
    folder: Path, record: bool, workers: int, state_file: str, traced: bool = False
) -> dict[str, Any]:
    mappings, source = _open(folder, traced)
    state = open_state(f"sqlite:///{folder / state_file}")
    batch: list[Delivered] = []

    def sink(change: Change) -> None:
        batch.append(delivered(change, mappings))
        if len(batch) >= RECORD_BATCH:
            state.record(batch)
            batch.clear()

    started, cpu = time.perf_counter(), cpu_seconds()
    result = plan_run(
        mappings,
        source,
        state,
        RunOptions(
            as_of=AS_OF, thresholds=Thresholds(min_deletes=10**9), workers=resolve_workers(workers)
        ),
        sink if record else None,
    )
    if record:
        state.record(batch + [delivered(c, mappings) for c in result.plan.destructive()])
        state.set_watermarks(result.watermarks)
    seconds = time.perf_counter() - started
    plan = result.plan
    figures: dict[str, Any] = {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds() - cpu,
        "rows": sum(plan.records_read.values()),
        "changes": sum(sum(c.values()) for c in plan.counts.values()),
    }
    if traced:
        TracedSource.tracer.look()
        figures["traced_peak_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        figures["sites"] = TracedSource.tracer.sites()
        tracemalloc.stop()
    return figures


def _traced(state_file: str) -> Callable[..., dict[str, Any]]:
    """A plan phase in one process under tracemalloc (started before the mappings load)."""

    def phase(folder: Path, _workers: int) -> dict[str, Any]:
        tracemalloc.start(TRACE_FRAMES)
        return _plan(folder, False, 1, state_file, traced=True)

    return phase


PHASES: dict[str, Callable[..., dict[str, Any]]] = {
    "generate": phase_generate,
    "select": phase_select,
    "plan-new": lambda folder, workers: _plan(folder, False, workers, EMPTY_STATE),
    "record": lambda folder, workers: _plan(folder, True, workers, STATE),
    "plan-same": lambda folder, workers: _plan(folder, False, workers, STATE),
    "trace-new": _traced(EMPTY_STATE),
    "trace-same": _traced(STATE),
}


def run_phase(name: str, folder: Path, *extra: str) -> dict[str, Any]:
    """Run one phase in a fresh interpreter and return its figures."""
    out = subprocess.run(
        [sys.executable, __file__, "--phase", name, "--dir", str(folder), *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    figures: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--pupils", type=int, default=1100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", default=str(ROOT / "var" / "bench"))
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="planning processes (0: one per CPU core; 1: one process)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="rounds of select, plan-new, plan-same (the best of each counts)",
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--trace",
        action="store_true",
        help="also trace plan-new and plan-same (one process) and print the top sites at peak",
    )
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = Path(args.dir)
    if args.phase:
        extra = (
            (args.pupils, args.seed)
            if args.phase == "generate"
            else ()
            if args.phase == "select"
            else (args.workers,)
        )
        figures = PHASES[args.phase](folder, *extra)
        print(
            json.dumps(
                {
                    **figures,
                    "peak_rss_mb": peak_rss_mb(),
                    "worker_peak_rss_mb": worker_peak_rss_mb(),
                }
            )
        )
        return 0
    return report(folder / f"school-{args.pupils}-{args.seed}", args)


def report(folder: Path, args: argparse.Namespace) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    if not (folder / "school.sqlite").exists():
        results["generate"] = run_phase(
            "generate", folder, "--pupils", str(args.pupils), "--seed", str(args.seed)
        )
    for name in (STATE, EMPTY_STATE):
        (folder / name).unlink(missing_ok=True)
    workers = ("--workers", str(args.workers))
    results["record"] = run_phase("record", folder, *workers)
    rounds: list[dict[str, dict[str, Any]]] = []
    for _ in range(args.rounds):
        rounds.append(
            {name: run_phase(name, folder, *() if name == "select" else workers) for name in ROUNDS}
        )
    for name in ROUNDS:  # the best (least disturbed) of the rounds, as timeit does
        results[name] = min((r[name] for r in rounds), key=lambda f: f["seconds"])
    if args.trace:
        results["trace-new"] = run_phase("trace-new", folder, *workers)
        results["trace-same"] = run_phase("trace-same", folder, *workers)
    base, floor = results["select"]["seconds"], results["select"]["peak_rss_mb"]
    for name, figures in results.items():
        figures["ratio_to_select"] = figures["seconds"] / base
        figures["rows_per_s"] = figures.get("rows", 0) / figures["seconds"]
        rows = 0 if name.startswith("trace") else figures.get("rows", 0)  # tracing takes room
        figures["mb_per_m_rows"] = (figures["peak_rss_mb"] - floor) * 1e6 / rows if rows else 0
    per_round = [
        {name: r[name]["seconds"] / r["select"]["seconds"] for name in ROUNDS[1:]} for r in rounds
    ]
    if args.json:
        print(
            json.dumps(
                {
                    "pupils": args.pupils,
                    "seed": args.seed,
                    "workers": resolve_workers(args.workers),
                    "phases": results,
                    "ratios_per_round": per_round,
                }
            )
        )
    else:
        print(table(args.pupils, resolve_workers(args.workers), results, per_round))
    return 0


def table(
    pupils: int,
    workers: int,
    results: dict[str, dict[str, Any]],
    per_round: list[dict[str, float]],
) -> str:
    lines = [
        f"school of {pupils} pupils ({results['select']['rows']:,.0f} source rows), "
        f"plans with {workers} planning process(es); best of {len(per_round)} rounds",
        f"{'phase':<10}{'seconds':>9}{'x SELECT':>10}{'CPU s':>8}{'rows/s':>12}"
        f"{'changes':>11}{'peak RSS MB':>13}{'worker MB':>11}{'MB/M rows':>11}",
    ]
    for name, f in results.items():
        lines.append(
            f"{name:<10}{f['seconds']:>9.2f}{f['ratio_to_select']:>10.2f}"
            f"{f.get('cpu_seconds', 0):>8.2f}{f['rows_per_s']:>12,.0f}"
            f"{f.get('changes', 0):>11,.0f}{f['peak_rss_mb']:>13.0f}"
            f"{f['worker_peak_rss_mb']:>11.0f}{f['mb_per_m_rows']:>11.1f}"
        )
    for number, ratios in enumerate(per_round, 1):
        lines.append(
            f"round {number}: "
            + ", ".join(f"{name} {ratio:.2f} x SELECT" for name, ratio in ratios.items())
        )
    lines.append(
        "MB/M rows: the phase's peak RSS above the bare SELECT's, per million source rows "
        "(a fixed part included: the growth is the difference between two sizes)"
    )
    for name in ("trace-new", "trace-same"):
        if name in results:
            lines += _sites(name, results[name])
    return "\n".join(lines)


def _sites(name: str, figures: dict[str, Any]) -> list[str]:
    """The traced phase's top allocation sites at its peak, as table lines."""
    lines = [f"{name}: traced peak {figures['traced_peak_mb']:.1f} MB (one process); top sites"]
    for site in figures["sites"]:
        lines.append(f"{site['mb']:>8.2f} MB {site['blocks']:>9,.0f} blocks  {site['site']}")
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
