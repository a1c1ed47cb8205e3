"""Benchmark: recording acknowledged batches in the state store (what delivery does after every
answer of the portal), against the bare driver writing the same rows.

    .venv/bin/python bench/state_writes.py [--records 100000] [--batch 500] [--rounds 3]
                                           [--postgres URL]

Each round records ``--records`` new marks in batches of ``--batch`` (``open_batch`` +
``commit_batch``, one transaction a batch, as delivery does) into a fresh SQLite state file,
then the same marks again as updates (keys the state holds), then the new marks with a bare
``sqlite3`` executemany into the same schema (the floor). With ``--postgres`` the round goes
on, on PostgreSQL (each writer in a fresh schema, dropped after): the store with SQLAlchemy's
executemany (``portable_writes``, the way before), the store with psycopg's COPY (the way now:
new marks straight into ``record_state``, updates into a temporary table and one ``INSERT …
SELECT … ON CONFLICT``), and the new marks COPYed by a bare psycopg connection straight into
``record_state``, one transaction a batch (the floor). Writers interleave within each round;
the best of each counts. Prints µs per record, each writer's ratio to its database's floor
(updates too: the floor is that of writing the rows at all) and this process's CPU, per round
and for the best times.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
import sqlalchemy as sa

from bridge.adapters.state import SqlStateStore, open_state, schema_name
from bridge.adapters.state.delivery import ROW_COLUMNS
from bridge.core.model import Change, Op, Record
from bridge.ports import Delivered

Timing = tuple[float, float]
"""Seconds of one writer's round: wall clock, and this process's CPU (the server's excluded)."""


def _now() -> Timing:
    return time.perf_counter(), time.process_time()


def _since(started: Timing) -> Timing:
    wall, cpu = _now()
    return wall - started[0], cpu - started[1]


def _changes(count: int) -> list[Delivered]:
    out = []
    for n in range(count):
        key = str(n + 1)
        payload = {"pupil": str(n % 300), "work": str(n // 7), "value": "5", "date": "2025-10-01"}
        record = Record("mark", key, f"i{n + 1:012d}", payload, f"{n:016x}")
        change = Change(Op.CREATE, "mark", key, record.sort_key, record)
        out.append(Delivered(change, pupil_key=payload["pupil"], class_key="c1"))
    return out


def _updated(changes: list[Delivered]) -> list[Delivered]:
    """The same marks again with another value: updates of keys the state holds."""
    out = []
    for d in changes:
        old = d.change.record
        assert old is not None
        record = Record(
            "mark", old.key, old.sort_key, {**old.payload, "value": "4"}, "u" + old.fingerprint[1:]
        )
        change = Change(Op.UPDATE, "mark", old.key, old.sort_key, record)
        out.append(Delivered(change, pupil_key=d.pupil_key, class_key=d.class_key))
    return out


def _store_round(
    url: str,
    changes: list[Delivered],
    batch: int,
    school: str = "bench",
    *,
    portable: bool = False,
) -> dict[str, Timing]:
    """Seconds (wall, this process's CPU) to record ``changes`` batch by batch, as delivery
    does ("new marks"), then the same marks as updates ("updates")."""
    store = open_state(url, school=school)
    store.portable_writes = portable
    try:
        return {
            "new marks": _record_all(store, changes, batch, "new"),
            "updates": _record_all(store, _updated(changes), batch, "updated"),
        }
    finally:
        store.close()


def _record_all(store: SqlStateStore, changes: list[Delivered], batch: int, run: str) -> Timing:
    started = _now()
    for number, at in enumerate(range(0, len(changes), batch)):
        part = changes[at : at + batch]
        store.open_batch(run, number, len(part))
        store.commit_batch(run, number, part, [], 3)
    return _since(started)


def _floor_round(path: Path, changes: list[Delivered], batch: int) -> Timing:
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
        started = _now()
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
        return _since(started)
    finally:
        db.close()


SQLITE_FLOOR = "bare sqlite3 executemany"
PG_FLOOR = "bare psycopg COPY (PostgreSQL)"
PG_OLD = "state store (PostgreSQL), SQLAlchemy executemany"
PG_NEW = "state store (PostgreSQL), psycopg COPY"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--postgres", default="")
    args = parser.parse_args()
    changes = _changes(args.records)
    best: dict[str, Timing] = {}
    for round_ in range(1, args.rounds + 1):
        times = _round(args.postgres, changes, args.batch)
        for name, timing in times.items():
            best[name] = min(best.get(name, timing), timing)
        print(f"round {round_}:")
        for line in _lines(times, args.records):
            print(f"  {line}")
    print(f"\n{args.records:,} records in batches of {args.batch}, best of {args.rounds}:")
    print(
        "| writer | µs per record | × its database's bare floor | client CPU µs per record |\n"
        "| --- | ---: | ---: | ---: |"
    )
    for name, (wall, cpu) in best.items():
        per, floor = 1e6 * wall / args.records, best[_floor_of(name)][0]
        print(f"| {name} | {per:.1f} | {wall / floor:.2f} | {1e6 * cpu / args.records:.1f} |")


def _round(postgres: str, changes: list[Delivered], batch: int) -> dict[str, Timing]:
    """One round: every writer once, one after the other."""
    with tempfile.TemporaryDirectory() as folder:
        lite = _store_round(f"sqlite:///{folder}/state.sqlite", changes, batch)
        times = _named("state store (SQLite)", lite)
        times[SQLITE_FLOOR] = _floor_round(Path(folder) / "floor.sqlite", changes, batch)
    if postgres:
        times |= _named(PG_OLD, _pg_round(postgres, changes, batch, portable=True))
        times |= _named(PG_NEW, _pg_round(postgres, changes, batch, portable=False))
        times[PG_FLOOR] = _pg_floor_round(postgres, changes, batch)
    return times


def _named(writer: str, phases: dict[str, Timing]) -> dict[str, Timing]:
    return {f"{writer}: {phase}": timing for phase, timing in phases.items()}


def _floor_of(name: str) -> str:
    return PG_FLOOR if "PostgreSQL" in name else SQLITE_FLOOR


def _lines(times: dict[str, Timing], records: int) -> list[str]:
    """Each writer's µs per record, ratio to the floor of the same round, and client CPU."""
    return [
        f"{name}: {1e6 * wall / records:.1f} µs a record, × {wall / times[_floor_of(name)][0]:.2f}"
        f" the floor, client CPU {1e6 * cpu / records:.1f} µs"
        for name, (wall, cpu) in times.items()
    ]


def _pg_round(
    url: str, changes: list[Delivered], batch: int, *, portable: bool
) -> dict[str, Timing]:
    """The state store on PostgreSQL, in a school schema of its own, dropped afterwards."""
    school = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        return _store_round(url, changes, batch, school, portable=portable)
    finally:
        _drop_schema(url, schema_name(school))


def _pg_floor_round(url: str, changes: list[Delivered], batch: int) -> Timing:
    """The same rows COPYed by psycopg alone into the store's schema: one transaction a batch."""
    school = f"bench-{uuid.uuid4().hex[:8]}"
    open_state(url, school=school).close()  # the same schema
    target = f'"{schema_name(school)}".record_state'
    copy_sql = f"COPY {target} ({', '.join(ROW_COLUMNS)}) FROM STDIN"
    db = psycopg.connect(sa.make_url(url).set(drivername="postgresql").render_as_string(False))
    try:
        started = _now()
        for at in range(0, len(changes), batch):
            now = time.strftime("%Y-%m-%d %H:%M:%S+00")
            with db.transaction(), db.cursor() as cursor, cursor.copy(copy_sql) as copy:
                for d in changes[at : at + batch]:
                    copy.write_row(_bare_row(d, now))
        return _since(started)
    finally:
        db.close()
        _drop_schema(url, schema_name(school))


def _bare_row(d: Delivered, now: str) -> tuple[object, ...]:
    record = d.change.record
    return (
        d.change.entity,
        d.change.sort_key,
        d.change.key,
        record.fingerprint if record else "",
        "delivered",
        json.dumps(dict(record.payload) if record else {}, ensure_ascii=False),
        None,
        1,
        d.pupil_key,
        d.class_key,
        now,
        now,
    )


def _drop_schema(url: str, schema: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    engine.dispose()


if __name__ == "__main__":
    main()
