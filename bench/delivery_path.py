"""Benchmark: the Python work of delivery per record, without HTTP or a database.

    .venv/bin/python bench/delivery_path.py [--records 50000] [--batch 500] [--rounds 7]

Times what the bridge's own code does for every delivered record, batch by batch, on
synthetic new marks (the commonest record): the change becomes a portal operation, the batch
is encoded as the request body, a portal answer of all-OK results is decoded and parsed, each
acknowledged change becomes what the state store records, the report counts it, and its
record_state row values are built. Prints µs per record, the best of ``--rounds``.

To compare two versions of the code, run it once per source tree, in turns:

    git archive COMMIT bridge mappings | tar -x -C /tmp/old
    PYTHONPATH=/tmp/old .venv/bin/python bench/delivery_path.py     # the old code
    .venv/bin/python bench/delivery_path.py                          # this tree
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bridge
from bridge.adapters.portal_client.wire import encode_batch, parse_results
from bridge.adapters.state.delivery import _values
from bridge.core.mapping import load_mappings
from bridge.core.model import Change, Op, Record
from bridge.service.engine import deliver

MAPPINGS = Path(bridge.__file__).resolve().parent.parent / "mappings"


def marks(count: int) -> list[Change]:
    out = []
    for n in range(count):
        key = str(n)
        payload = {"work": str(n // 14), "pupil": str(n % 300), "value": "4"}
        record = Record("mark", key, f"{n:012d}", payload, f"{n:012x}")
        out.append(Change(Op.CREATE, "mark", key, record.sort_key, record))
    return out


def acknowledger(mappings: Any) -> Callable[[Change], Any]:
    """What becomes of an acknowledged change, in this tree's own terms."""
    versions = {m.entity: m.version for m in mappings.mappings}
    made = getattr(deliver, "_delivered", None)
    if made is not None:
        return lambda change: made(change, versions.get(change.entity, 1))
    return lambda change: deliver.delivered(change, mappings)


def one_pass(changes: list[Change], batch: int, acknowledge: Callable[[Change], Any]) -> None:
    report = deliver.DeliveryReport()
    answers: dict[int, bytes] = {}  # the portal's all-OK answer, per batch size
    for start in range(0, len(changes), batch):
        chunk = changes[start : start + batch]
        if len(chunk) not in answers:
            ok = [{"id": str(i), "status": 201, "type": None, "description": None}
                  for i in range(len(chunk))]  # fmt: skip
            answers[len(chunk)] = json.dumps({"results": ok}).encode()
        answer = answers[len(chunk)]
        operations = [deliver.to_operation(i, c) for i, c in enumerate(chunk)]
        encode_batch(operations)
        results = parse_results(json.loads(answer), operations)
        acked = [acknowledge(c) for c, r in zip(chunk, results, strict=True) if r.ok]
        if hasattr(report, "count_all"):
            report.count_all(d.change for d in acked)
        else:
            for d in acked:
                report.count(d.change)
        [_values(d, "2026-12-03 12:00:00.000000") for d in acked]


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--records", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    changes = marks(args.records)
    acknowledge = acknowledger(load_mappings(MAPPINGS))
    best = float("inf")
    for _ in range(args.rounds):
        started = time.perf_counter()
        one_pass(changes, args.batch, acknowledge)
        best = min(best, time.perf_counter() - started)
    where = Path(bridge.__file__).resolve().parent.parent
    print(f"{where}: {best / args.records * 1e6:.2f} µs per record (best of {args.rounds})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
