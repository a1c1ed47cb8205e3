"""All benchmarks in one command, one table: schools of 100, 1,100 and 5,000 pupils.

    .venv/bin/python bench/run_all.py [--sizes 100,1100,5000]

For each size it runs bench/plan_benchmark.py (plan time against a bare SELECT of the same rows,
peak RSS) and bench/delivery_benchmark.py (full delivery to the reference portal over loopback,
a 1 % change, no-change runs with and without watermarks), each in its own processes, and prints
one Markdown table. Targets (docs/benchmarks.md): plan ≤ 2.5 × bare SELECT; peak RSS ≤ 300 MB;
full delivery ≥ 5,000 records/s; a no-change watermark run on the 1M-mark school ≤ 2 s.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def last_json(command: list[str]) -> dict[str, Any]:
    """Run a benchmark script and return the last JSON object it printed."""
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    line = next(line for line in reversed(out.splitlines()) if line.startswith("{"))
    found: dict[str, Any] = json.loads(line)
    return found


def measure(pupils: int) -> dict[str, Any]:
    """Both benchmarks for one school size."""
    plan = last_json(
        [sys.executable, str(HERE / "plan_benchmark.py"), "--pupils", str(pupils), "--json"]
    )["phases"]
    delivery = last_json(
        [sys.executable, str(HERE / "delivery_benchmark.py"), "--pupils", str(pupils)]
    )["figures"]
    # the planning process and its largest worker together (shared pages counted twice)
    peak = max(p["peak_rss_mb"] + p.get("worker_peak_rss_mb", 0) for p in plan.values())
    return {
        "pupils": pupils,
        "rows": plan["select"]["rows"],
        "select_s": plan["select"]["seconds"],
        "plan_new_s": plan["plan-new"]["seconds"],
        "plan_new_x": plan["plan-new"]["ratio_to_select"],
        "plan_same_s": plan["plan-same"]["seconds"],
        "plan_same_x": plan["plan-same"]["ratio_to_select"],
        "peak_rss_mb": peak,
        **delivery,
    }


COLUMNS = [
    ("pupils", "pupils", "{:,}"),
    ("rows", "source rows", "{:,}"),
    ("select_s", "bare SELECT s", "{:.2f}"),
    ("plan_new_s", "plan (new) s", "{:.2f}"),
    ("plan_new_x", "× SELECT", "{:.1f}"),
    ("plan_same_s", "plan (same) s", "{:.2f}"),
    ("plan_same_x", "× SELECT", "{:.2f}"),
    ("peak_rss_mb", "peak RSS MB (with worker)", "{:.0f}"),
    ("records_per_s", "delivery rec/s", "{:,}"),
    ("requests", "HTTP requests", "{:,}"),
    ("one_percent_delivered", "1 % change sent", "{:,}"),
    ("no_change_incremental_seconds", "no-change, watermark s", "{:.2f}"),
    ("no_change_full_seconds", "no-change, full s", "{:.2f}"),
]


def table(results: list[dict[str, Any]]) -> str:
    """The figures as one Markdown table."""
    lines = [
        "| " + " | ".join(title for _, title, _ in COLUMNS) + " |",
        "|" + "---:|" * len(COLUMNS),
    ]
    for row in results:
        lines.append("| " + " | ".join(fmt.format(row[key]) for key, _, fmt in COLUMNS) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--sizes", default="100,1100,5000")
    args = parser.parse_args()
    results = []
    for size in (int(s) for s in args.sizes.split(",")):
        results.append(measure(size))
        print(table(results[-1:]), file=sys.stderr, flush=True)
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
