"""Benchmark: a full sync to the dnevnik.ru emulator, one record per request, at several
``portal.concurrency`` settings, in interleaved rounds.

    .venv/bin/python bench/dnevnik_benchmark.py [--pupils 300] [--days 20] [--seed 1]
                                                [--concurrency 1,4,16] [--rounds 2]
                                                [--compare DIR] [--json]

Generates the school once (``var/bench/dnevnik-PUPILS-DAYS-SEED/school.sqlite``), then in each
round, for each concurrency in turn, starts the emulator afresh in a process of its own (seeded
from the school, an empty journal) and runs ``asiou-bridge sync`` (full, fresh state) against
it. Reports records/s (changes delivered ÷ the sync process's wall seconds, start-up and the
matching phase included), HTTP requests the emulator served, and the emulator's and the
bridge's CPU per record, each round and the best, and the load average (1 min) before and
after each run. ``--days 0`` takes the whole school year.

``--compare DIR`` runs another checkout of the bridge (``git worktree add DIR main``, say)
beside this one, interleaved: in each round, at each concurrency, DIR's run, then this
tree's, so both meet the same machine; the report adds this tree's rate ÷ DIR's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from bridge.demo.generate import SchoolSpec, generate

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TOKEN = "dnevnik-demo-token"
TICKS = os.sysconf("SC_CLK_TCK")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pupils", type=int, default=300)
    parser.add_argument("--days", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compare", type=Path, help="another checkout, run interleaved")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    folder = ROOT / "var" / "bench" / f"dnevnik-{args.pupils}-{args.days}-{args.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    school = folder / "school.sqlite"
    if not school.exists():
        engine = sa.create_engine(f"sqlite:///{school}")
        spec = SchoolSpec(pupils=args.pupils, seed=args.seed, days=args.days or None)
        generate(engine, spec)
        engine.dispose()
    levels = [int(c) for c in args.concurrency.split(",")]
    trees = {"this": ROOT} if args.compare is None else {"before": args.compare, "this": ROOT}
    results: dict[str, dict[int, list[dict[str, Any]]]] = {
        name: {c: [] for c in levels} for name in trees
    }
    for number in range(1, args.rounds + 1):
        for level in levels:
            for name, tree in trees.items():
                found = one_run(folder, school, level, tree)
                results[name][level].append(found)
                print(
                    f"round {number}: {name}: concurrency {level:>2}: {found['records']:,} "
                    f"records in {found['seconds']:.1f} s, {found['rate']:,.0f} records/s, "
                    f"load {found['load_before']:.2f} -> {found['load_after']:.2f}",
                    file=sys.stderr,
                    flush=True,
                )
    report(results, args)
    return 0


def one_run(folder: Path, school: Path, level: int, tree: Path) -> dict[str, Any]:
    run = folder / f"c{level}"
    run.mkdir(exist_ok=True)
    for stale in ("state.sqlite", "emu.sqlite"):
        for suffix in ("", "-wal", "-shm"):
            (run / (stale + suffix)).unlink(missing_ok=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    where = {"cwd": tree, "env": {**os.environ, "PYTHONPATH": str(tree)}}
    load_before = os.getloadavg()[0]
    emulator = subprocess.Popen(
        [PYTHON, "-m", "bridge", "dnevnik-emulator", "--port", str(port), "--data",
         str(run / "emu.sqlite"), "--seed-school", str(school)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **where,
    )  # fmt: skip
    try:
        school_id = wait_for(base)
        config = write_config(run, school, f"{base}/v2/", school_id, level)
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        sync = subprocess.run(
            [PYTHON, "-m", "bridge", "--config", str(config), "sync"],
            capture_output=True,
            text=True,
            check=False,
            **where,
        )
        seconds = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if sync.returncode != 0:
            raise RuntimeError(f"sync exited {sync.returncode}: {sync.stderr[-2000:]}")
        records = int(re.search(r"(\d+) changes delivered", sync.stdout).group(1))  # type: ignore[union-attr]
        stats = requests.get(f"{base}/_emulator/stats", timeout=30).json()
        portal_cpu = process_cpu(emulator.pid)
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    bridge_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {
        "records": records,
        "seconds": seconds,
        "rate": records / seconds,
        "requests": int(stats.get("api_requests", 0)),
        "bridge_us": 1e6 * bridge_cpu / max(records, 1),
        "portal_us": 1e6 * portal_cpu / max(records, 1),
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }


def wait_for(base: str, seconds: float = 60.0) -> str:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            return str(requests.get(f"{base}/_emulator/state", timeout=5).json()["school"])
        except (requests.RequestException, ValueError, KeyError):
            time.sleep(0.1)
    raise RuntimeError(f"the emulator did not answer at {base}")


def write_config(run: Path, school: Path, url: str, school_id: str, level: int) -> Path:
    token = run / "token"
    token.write_text(TOKEN, encoding="utf-8")
    config = run / "bridge.toml"
    config.write_text(
        f'[source]\nurl = "sqlite:///{school}"\n[state]\nurl = "sqlite:///{run}/state.sqlite"\n'
        f'[mappings]\ndir = "{ROOT / "mappings"}"\n'
        f'[portal]\nkind = "dnevnik"\nurl = "{url}"\nschool = "{school_id}"\n'
        f'secret_file = "{token}"\nbatch_size = 20\nconcurrency = {level}\n'
        "[guard]\nmin_deletes = 1000000000\n",
        encoding="utf-8",
    )
    return config


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def report(results: dict[str, dict[int, list[dict[str, Any]]]], args: argparse.Namespace) -> None:
    if args.json:
        print(json.dumps({n: {str(k): v for k, v in r.items()} for n, r in results.items()}))
        return
    print(f"school of {args.pupils} pupils, {args.days or 'all'} days (seed {args.seed}); "
          f"best of {args.rounds} rounds")  # fmt: skip
    for name, by_level in results.items():
        if len(results) > 1:
            print(f"{name}:")
        print(f"{'concurrency':>11} {'records':>9} {'seconds':>8} {'records/s':>10} "
              f"{'each round':>24} {'bridge us/rec':>14} {'emulator us/rec':>16} "
              f"{'requests/rec':>13} {'load':>11}")  # fmt: skip
        for level, runs in by_level.items():
            best = max(runs, key=lambda r: r["rate"])
            rounds = " / ".join(f"{r['rate']:,.0f}" for r in runs)
            load = f"{min(r['load_before'] for r in runs):.1f}-"
            load += f"{max(r['load_after'] for r in runs):.1f}"
            print(
                f"{level:>11} {best['records']:>9,} {best['seconds']:>8.1f} "
                f"{best['rate']:>10,.0f} {rounds:>24} {best['bridge_us']:>14.0f} "
                f"{best['portal_us']:>16.0f} {best['requests'] / best['records']:>13.3f} "
                f"{load:>11}"
            )
    if "before" in results:
        print_ratios(results["before"], results["this"])


def print_ratios(
    before: dict[int, list[dict[str, Any]]], this: dict[int, list[dict[str, Any]]]
) -> None:
    """This tree against the other, round by round (each pair ran back to back)."""
    print("this tree ÷ before, per round (records/s; CPU µs/record of bridge, emulator):")
    for level, runs in before.items():
        pairs = zip(runs, this[level], strict=True)
        cells = [
            f"{t['rate'] / b['rate']:.2f}× ({t['bridge_us'] / b['bridge_us']:.2f}, "
            f"{t['portal_us'] / b['portal_us']:.2f})"
            for b, t in pairs
        ]
        print(f"{level:>11}  " + "  ".join(cells))


if __name__ == "__main__":
    sys.exit(main())
