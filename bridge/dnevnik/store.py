"""The emulator's SQLite file (:class:`EmulatorFile`, mode 0600): every object as JSON by kind
and id, and a meta table (the next id, the seeding record). Each acknowledged write is saved in
one transaction before it is answered, so a restarted emulator holds exactly what it
acknowledged.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from bridge.core.errors import FatalError
from bridge.dnevnik.journal import Change, Obj
from bridge.refportal.wire import compact_json

SCHEMA_VERSION = 1
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS object (kind TEXT NOT NULL, id INTEGER NOT NULL,"
    " body TEXT NOT NULL, PRIMARY KEY (kind, id)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
)


class EmulatorFile:
    """The data file; ``None`` keeps it in memory. One writer: the caller serialises."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = str(path) if path is not None else ":memory:"
        self.is_new = path is None or not os.path.exists(path) or os.path.getsize(path) == 0
        if path is not None and not os.path.exists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, SCHEMA_VERSION):
            self._db.close()
            raise FatalError(f"{self.path}: emulator data has schema version {version}")
        for statement in SCHEMA:
            self._db.execute(statement)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.is_new = self.is_new or self.meta("seeded") is None

    def objects(self) -> Iterator[tuple[str, Obj]]:
        """(kind, object) for every object, in id order."""
        for kind, body in self._db.execute("SELECT kind, body FROM object ORDER BY id"):
            yield kind, json.loads(body)

    def meta(self, key: str) -> Any:
        """A meta value (decoded JSON), or None."""
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def save(self, changes: Iterable[Change], meta: dict[str, Any] | None = None) -> None:
        """Write changed objects (None removes) and meta values in one transaction."""
        upserts, deletes = [], []
        for kind, oid, obj in changes:
            if obj is None:
                deletes.append((kind, oid))
            else:
                upserts.append((kind, oid, compact_json(obj)))
        values = [(k, compact_json(v)) for k, v in (meta or {}).items()]

        def work() -> None:
            self._db.executemany("INSERT OR REPLACE INTO object VALUES (?, ?, ?)", upserts)
            self._db.executemany("DELETE FROM object WHERE kind = ? AND id = ?", deletes)
            self._db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", values)

        self._transaction(work)

    def _transaction(self, work: Callable[[], object]) -> None:
        self._db.execute("BEGIN")
        try:
            work()
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        """Close the file."""
        self._db.close()
