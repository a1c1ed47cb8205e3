"""Benchmark: recording acknowledged batches in the state store (what delivery does after every
answer of the portal), against the bare stdlib ``sqlite3`` executemany of the same rows.

    .venv/bin/python bench/state_writes.py [--records 100000] [--batch 500] [--rounds 3]
                                           [--postgres URL]

Each round records ``--records`` new marks in batches of ``--batch`` (``commit_batch``, one
transaction a batch, as delivery does) into a fresh SQLite state file, then the same rows with
a bare ``sqlite3`` executemany into the same schema (the floor); rounds interleave and the best
of each counts. Prints µs per record and the ratio to the floor measured in the same round.
With ``--postgres`` the store is also timed on PostgreSQL (a fresh schema, dropped after).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from bridge.adapters.state import open_state, schema_name
from bridge.core.model import Change, Op, Record
from bridge.ports import Delivered


def _changes(count: int) -> list[Delivered]:
    out = []
    for n in range(count):
        key = str(n + 1)
        payload = {"pupil": str(n % 300), "work": str(n // 7), "value": "5", "date": "2025-10-01"}
        record = Record("mark", key, f"i{n + 1:012d}", payload, f"{n:016x}")
        change = Change(Op.CREATE, "mark", key, record.sort_key, record)
        out.append(Delivered(change, pupil_key=payload["pupil"], class_key="c1"))
    return out


def _store_round(url: str, changes: list[Delivered], batch: int, school: str = "bench") -> float:
    """Seconds to record ``changes`` batch by batch, as delivery does."""
    store = open_state(url, school=school)
    try:
        started = time.perf_counter()
        for number, at in enumerate(range(0, len(changes), batch)):
            part = changes[at : at + batch]
            store.open_batch("bench", number, len(part))
            store.commit_batch("bench", number, part, [], 3)
        return time.perf_counter() - started
    finally:
        store.close()


def _floor_round(path: Path, changes: list[Delivered], batch: int) -> float:
    """The same rows through the stdlib driver alone: one executemany a batch."""
    open_state(f"sqlite:///{path}").close()  # the same schema
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    sql = (
        "INSERT INTO record_state (entity, sort_key, key, fingerprint, status, payload, "
        "portal_id, mapping_version, pupil_key, class_key, first_delivered_at, updated_at) "
        "VALUES (?,?,?,?,?,?,?,?,?,?,?,?)"
    )
    try:
        started = time.perf_counter()
        for at in range(0, len(changes), batch):
            now = time.strftime("%Y-%m-%d %H:%M:%S.000000")
            rows = [
                (
                    d.change.entity,
                    d.change.sort_key,
                    d.change.key,
                    d.change.record.fingerprint if d.change.record else "",
                    "delivered",
                    json.dumps(dict(d.change.record.payload) if d.change.record else {}),
                    None,
                    1,
                    d.pupil_key,
                    d.class_key,
                    now,
                    now,
                )
                for d in changes[at : at + batch]
            ]
            db.execute("BEGIN")
            db.executemany(sql, rows)
            db.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default="")
    args = parser.parse_args()
    changes = _changes(args.records)
    best: dict[str, float] = {}
    for round_ in range(1, args.rounds + 1):
        with tempfile.TemporaryDirectory() as folder:
            store = _store_round(f"sqlite:///{folder}/state.sqlite", changes, args.batch)
            floor = _floor_round(Path(folder) / "floor.sqlite", changes, args.batch)
            times = {"state store (SQLite)": store, "bare sqlite3 executemany": floor}
            if args.postgres:
                times["state store (PostgreSQL)"] = _pg_round(args.postgres, changes, args.batch)
        for name, seconds in times.items():
            best[name] = min(best.get(name, seconds), seconds)
        ratio = store / floor
        print(f"round {round_}: store {store:.2f} s, floor {floor:.2f} s, × floor {ratio:.2f}")
    floor = best["bare sqlite3 executemany"]
    print(f"\n{args.records:,} records in batches of {args.batch}, best of {args.rounds}:")
    print("| writer | µs per record | × bare sqlite3 |\n| --- | ---: | ---: |")
    for name, seconds in best.items():
        per = 1e6 * seconds / args.records
        print(f"| {name} | {per:.1f} | {seconds / floor:.2f} |")


def _pg_round(url: str, changes: list[Delivered], batch: int) -> float:
    """The state store on PostgreSQL, in a school schema of its own, dropped afterwards."""
    school = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        return _store_round(url, changes, batch, school)
    finally:
        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema_name(school)}" CASCADE')
        engine.dispose()


if __name__ == "__main__":
    main()
