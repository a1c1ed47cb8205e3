"""Benchmark: full delivery of a generated school to the reference portal over loopback.

    .venv/bin/python bench/delivery_benchmark.py --pupils 1100 [--batch 1000]

The portal runs in its own process (`asiou-bridge portal`, so it has the second core); the
bridge plans and delivers in this one with the real HTTP client. Prints records/s end to end
and the portal's request counts, then changes 1 % of the marks and runs an incremental sync,
checking that exactly the changed records are delivered. Target (docs/benchmarks.md):
at least 5,000 records/s end to end.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import requests
import sqlalchemy as sa

from bridge.adapters.portal_client import PortalClient, PortalSettings
from bridge.adapters.source import SqlSource
from bridge.adapters.state import open_state
from bridge.core.guard import Thresholds
from bridge.core.mapping import key_from_sort_key, load_mappings
from bridge.demo import schema
from bridge.demo.generate import SchoolSpec, generate
from bridge.refportal.server import DEMO_CLIENT
from bridge.service.engine import RunOptions, SyncResult, resolve_workers, run_sync

ROOT = Path(__file__).resolve().parent.parent
AS_OF = date(2026, 6, 1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_portal(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    (folder / "portal.sqlite").unlink(missing_ok=True)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "bridge",
            "portal",
            "--port",
            str(port),
            "--data",
            str(folder / "portal.sqlite"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            requests.get(f"{url}/_portal/counts", timeout=1)
            return process, url
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the reference portal did not start")


def sync(
    folder: Path, url: str, args: argparse.Namespace, incremental: bool
) -> tuple[SyncResult, float]:
    mappings = load_mappings(ROOT / "mappings")
    engine = sa.create_engine(f"sqlite:///{folder / 'school.sqlite'}")
    state = open_state(f"sqlite:///{folder / 'delivery-state.sqlite'}")
    client = PortalClient(
        PortalSettings(
            base_url=url,
            school="demo",
            client_id=DEMO_CLIENT[0],
            client_secret=DEMO_CLIENT[1],
            batch_size=args.batch,
        )
    )
    started = time.perf_counter()
    outcome = run_sync(
        mappings,
        SqlSource(engine),
        state,
        client,
        RunOptions(
            as_of=AS_OF,
            incremental=incremental,
            thresholds=Thresholds(min_deletes=10**9),
            workers=resolve_workers(args.workers),
        ),
        run_id=f"bench-{int(time.time())}",
    )
    seconds = time.perf_counter() - started
    client.close()
    state.close()
    engine.dispose()
    return outcome, seconds


def change_one_percent(folder: Path) -> int:
    """Edit every hundredth delivered mark (a new value, a new modification time)."""
    state = open_state(f"sqlite:///{folder / 'delivery-state.sqlite'}")
    ids = [int(key_from_sort_key(e[0])) for e in state.entries("mark")][::100]
    state.close()
    engine = sa.create_engine(f"sqlite:///{folder / 'school.sqlite'}")
    when = datetime(2026, 11, 1) + timedelta(seconds=1)
    mark = schema.mark
    with engine.begin() as conn:
        for start in range(0, len(ids), 500):
            conn.execute(
                mark.update()
                .where(mark.c.id.in_(ids[start : start + 500]))
                .values(
                    mark_value=sa.case((mark.c.mark_value == "5", "4"), else_="5"), modified_at=when
                )
            )
    engine.dispose()
    return len(ids)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--pupils", type=int, default=1100)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="planning processes, as sync.plan_workers (0: one per CPU core)",
    )
    parser.add_argument("--dir", default=str(ROOT / "var" / "bench"))
    args = parser.parse_args()
    folder = Path(args.dir) / f"delivery-{args.pupils}-{args.seed}"
    folder.mkdir(parents=True, exist_ok=True)
    # Generated afresh each time: the 1 % change edits the school.
    generate(
        sa.create_engine(f"sqlite:///{folder / 'school.sqlite'}"),
        SchoolSpec(pupils=args.pupils, seed=args.seed),
    )
    (folder / "delivery-state.sqlite").unlink(missing_ok=True)
    process, url = start_portal(folder)
    try:
        return run(folder, url, args)
    finally:
        process.terminate()
        process.wait(timeout=30)


def run(folder: Path, url: str, args: argparse.Namespace) -> int:
    full, seconds = sync(folder, url, args, incremental=False)
    seconds_full = seconds
    stats = requests.get(f"{url}/_portal/stats", timeout=10).json()
    counts = requests.get(f"{url}/_portal/counts", timeout=10).json()
    delivered = full.delivery.total
    print(
        f"full delivery: {delivered:,} records in {seconds:.1f} s = "
        f"{delivered / seconds:,.0f} records/s; {full.delivery.batches} batches of "
        f"{args.batch}; exit code {full.exit_code}"
    )
    print(f"portal stats: {json.dumps(stats)}")
    print(f"portal counts: {json.dumps(counts)}")
    changed = change_one_percent(folder)
    again, seconds = sync(folder, url, args, incremental=True)
    seconds_change = seconds
    updated = (again.delivery.delivered.get("mark") or {}).get("update", 0)
    print(
        f"1 % change: {changed:,} marks edited; incremental sync delivered "
        f"{again.delivery.total:,} records ({json.dumps(again.delivery.delivered)}) in "
        f"{seconds:.1f} s; exactly the changed records: "
        f"{updated == changed}"
    )
    quiet, seconds = sync(folder, url, args, incremental=True)
    seconds_quiet = seconds
    print(
        f"no-change incremental run (watermarks): {quiet.delivery.total} delivered, "
        f"{sum(quiet.plan.plan.records_read.values()):,} rows read, {seconds:.2f} s"
    )
    whole, seconds = sync(folder, url, args, incremental=False)
    print(
        f"no-change full run (no watermark used): {whole.delivery.total} delivered, "
        f"{sum(whole.plan.plan.records_read.values()):,} rows read, {seconds:.2f} s"
    )
    print(
        json.dumps(
            {
                "figures": {
                    "delivered": delivered,
                    "delivery_seconds": round(seconds_full, 2),
                    "records_per_s": round(delivered / seconds_full),
                    "requests": stats.get("requests"),
                    "one_percent_changed": changed,
                    "one_percent_delivered": again.delivery.total,
                    "one_percent_seconds": round(seconds_change, 2),
                    "no_change_incremental_seconds": round(seconds_quiet, 2),
                    "no_change_full_seconds": round(seconds, 2),
                }
            }
        )
    )
    codes = (full.exit_code, again.exit_code, quiet.exit_code, whole.exit_code)
    return 0 if codes == (0, 0, 0, 0) else 1


if __name__ == "__main__":
    raise SystemExit(main())
