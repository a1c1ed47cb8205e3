"""A naive exporter: the baseline a school's IT person might write in an afternoon.

    .venv/bin/python bench/naive_exporter.py --source var/bench/limits-300-1/school.sqlite \
        --url http://127.0.0.1:8400 [--hashes hashes.sqlite] [--batch 500]

Reads the school through the project's mappings (the same SELECTs and row → record functions
the bridge uses), hashes each payload, and sends the new or changed records in batches of
``--batch`` PUTs with ``requests``, parents before children. The hashes of acknowledged records
are kept in a SQLite file (one ``executemany`` per batch), so a second run sends only what
changed. Nothing else: no gate, no guard, no deletes, no retries, no dead letters, no run
history. Prints one JSON line: records sent, acknowledged, refused, seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.core.mapping import RowRejected, load_mappings

ROOT = Path(__file__).resolve().parent.parent


def records(source_url: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(entity, key, payload) of every row that maps to a record, parents first."""
    mappings = load_mappings(ROOT / "mappings")
    source = SqlSource(sa.create_engine(source_url))
    for mapping in mappings.mappings:
        for row in source.read(mapping):
            try:
                record = mapping.build(row)
            except RowRejected:
                continue
            yield mapping.entity, record.key, dict(record.payload)


def fingerprint(payload: dict[str, Any]) -> str:
    """A digest of the payload (key order does not matter)."""
    text = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--source", required=True, help="the school's SQLite file")
    parser.add_argument("--url", required=True, help="the portal's base URL")
    parser.add_argument("--hashes", default="naive-hashes.sqlite")
    parser.add_argument("--school", default="demo")
    parser.add_argument("--client-id", default="asiou-bridge")
    parser.add_argument("--secret", default="demo-secret")
    parser.add_argument("--batch", type=int, default=500)
    args = parser.parse_args()
    started = time.perf_counter()
    db = sqlite3.connect(args.hashes)
    db.execute("CREATE TABLE IF NOT EXISTS sent (entity, key, hash, PRIMARY KEY (entity, key))")
    known = {(e, k): h for e, k, h in db.execute("SELECT entity, key, hash FROM sent")}
    http = requests.Session()
    token = http.post(
        f"{args.url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": args.client_id,
            "client_secret": args.secret,
        },
        timeout=30,
    ).json()["access_token"]
    http.headers.update({"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    batch_url = f"{args.url}/api/v1/schools/{args.school}/batch"
    totals = {"sent": 0, "acknowledged": 0, "refused": 0}
    pending: list[tuple[str, str, str, dict[str, Any]]] = []

    def flush() -> None:
        operations = [
            {"id": str(i), "method": "PUT", "entity": e, "sourcedId": k, "fingerprint": h,
             "data": p}
            for i, (e, k, h, p) in enumerate(pending)
        ]  # fmt: skip
        body = json.dumps({"operations": operations}, default=str, ensure_ascii=False)
        reply = http.post(batch_url, data=body.encode(), timeout=60)
        reply.raise_for_status()
        results = reply.json()["results"]
        done = [
            (e, k, h) for (e, k, h, _), r in zip(pending, results, strict=True) if r["status"] < 300
        ]
        with db:
            db.executemany("INSERT OR REPLACE INTO sent VALUES (?, ?, ?)", done)
        totals["sent"] += len(pending)
        totals["acknowledged"] += len(done)
        totals["refused"] += len(pending) - len(done)
        pending.clear()

    for entity, key, payload in records(f"sqlite:///{args.source}"):
        digest = fingerprint(payload)
        if known.get((entity, key)) != digest:
            pending.append((entity, key, digest, payload))
            if len(pending) >= args.batch:
                flush()
    if pending:
        flush()
    db.close()
    print(json.dumps({**totals, "seconds": round(time.perf_counter() - started, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
