"""The reference portal's SQLite file (:class:`PortalFile`): the schema and its migration, and
the write-through of records and token digests the HTTP server does after each change.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from bridge.core.errors import FatalError
from bridge.refportal.records import StoredRecord, tombstone
from bridge.refportal.wire import compact_json

SCHEMA_VERSION = 2
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS record (school TEXT NOT NULL, entity TEXT NOT NULL,"
    " sourced_id TEXT NOT NULL, fingerprint TEXT NOT NULL, data TEXT NOT NULL,"
    " live INTEGER NOT NULL, deleted_at TEXT, PRIMARY KEY (school, entity, sourced_id))"
    " WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS token (digest TEXT PRIMARY KEY, client_id TEXT NOT NULL,"
    " expires_at REAL NOT NULL)",
)
PURGE_V1_TOMBSTONES = (
    "ALTER TABLE record ADD COLUMN deleted_at TEXT",
    "UPDATE record SET fingerprint = '', data = '{}' WHERE live = 0",
)
"""Version 1 kept the data of deleted records; version 2 purges them (the deletion time of
those old tombstones is unknown and stays NULL)."""
UPSERT = (
    "INSERT OR REPLACE INTO record"
    " (school, entity, sourced_id, fingerprint, data, live, deleted_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)


class PortalFile:
    """The portal's SQLite file (mode 0600): every live record, the key and deletion time of
    deleted ones, and the digests of issued tokens. ``None`` keeps everything in memory. One
    writer: the caller serialises.

    Deleted content leaves the file too: ``secure_delete`` overwrites freed cells with zeros,
    and a write that deleted anything is checkpointed with the WAL truncated, so no old page
    image of a purged record stays in ``-wal``."""

    def __init__(self, path: str | Path | None) -> None:
        self.path = str(path) if path is not None else ":memory:"
        if path is not None and not os.path.exists(path):
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA secure_delete=ON")
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._migrate()

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, SCHEMA_VERSION):
            self._db.close()
            raise FatalError(
                f"{self.path}: portal data has schema version {version}; "
                f"this portal reads version {SCHEMA_VERSION}"
            )
        if version == 1:
            self._transaction(lambda: [self._db.execute(s) for s in PURGE_V1_TOMBSTONES])
            self._db.execute("VACUUM")
            self._truncate_wal()
        for statement in SCHEMA:
            self._db.execute(statement)
        self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def records(self) -> Iterator[tuple[str, StoredRecord]]:
        """(school, record) for every record in the file."""
        rows = self._db.execute(
            "SELECT school, entity, sourced_id, fingerprint, data, live, deleted_at FROM record"
        )
        for school, entity, key, fingerprint, data, live, deleted_at in rows:
            if live:
                yield school, StoredRecord(entity, key, fingerprint, json.loads(data))
            else:
                yield school, tombstone(entity, key, deleted_at)

    def save(self, school: str, records: Iterable[StoredRecord]) -> None:
        """Write records (new, replaced or purged to a tombstone) in one transaction."""
        encode, purged = compact_json, False
        rows = []
        for r in records:
            rows.append(
                (school, r.entity, r.sourced_id, r.fingerprint, encode(r.data), int(r.live),
                 r.deleted_at)
            )  # fmt: skip
            purged = purged or not r.live
        if rows:
            self._transaction(lambda: self._db.executemany(UPSERT, rows))
        if purged:
            self._truncate_wal()

    def _truncate_wal(self) -> None:
        """Copy the WAL into the file and empty it (old page images of purged records go)."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def tokens(self) -> Iterator[tuple[str, str, float]]:
        """(token digest, client id, expiry as epoch seconds) of every issued token."""
        yield from self._db.execute("SELECT digest, client_id, expires_at FROM token")

    def save_token(self, digest: str, client_id: str, expires_at: float) -> None:
        """Remember an issued token by its digest (the token itself is never stored)."""
        self._db.execute(
            "INSERT OR REPLACE INTO token VALUES (?, ?, ?)", (digest, client_id, expires_at)
        )

    def clear(self) -> None:
        """Delete every record (tokens stay valid)."""
        self._transaction(lambda: self._db.execute("DELETE FROM record"))
        self._truncate_wal()

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
