"""Writing what was delivered: records upserted or tombstoned, consent withdrawals noted,
watermarks, delivery batches opened and committed, and the dead letters of refused changes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from bridge.adapters import jsontext
from bridge.adapters.state import postgres
from bridge.adapters.state.helpers import aware
from bridge.adapters.state.schema import (
    DELETED,
    consent_withdrawal,
    dead_letter,
    delivery_batch,
    record_state,
    run_history,
    watermark,
)
from bridge.core.model import Change, HoldReason, Op
from bridge.ports import Clock, DeadLetter, Delivered, Refusal

NO_CONSENT = HoldReason.NO_CONSENT.value
IN_DOUBT = ("sent", "lost", "partial")
"""Delivery batch statuses whose outcome is not wholly known."""


class Deliveries:
    """What the store records of deliveries (a part of SqlStateStore)."""

    engine: sa.Engine
    clock: Clock
    portable_writes = False
    """True: acknowledged records upserted by SQLAlchemy's executemany on every database, not
    on the driver's own cursor (the way before; ``bench/state_writes.py`` measures both)."""

    def record(self, delivered: Sequence[Delivered]) -> None:
        with self.engine.begin() as conn:
            self._record(conn, delivered, self.clock())

    def _record(self, conn: sa.Connection, delivered: Sequence[Delivered], now: datetime) -> None:
        live = [d for d in delivered if d.change.op != Op.DELETE]
        gone = [d.change for d in delivered if d.change.op == Op.DELETE]
        if live:
            self._upsert_live(conn, live, now)
        if gone:
            self._tombstone(conn, gone, now)
        self._note_withdrawals(conn, delivered, now)

    def _upsert_live(self, conn: sa.Connection, live: Sequence[Delivered], now: datetime) -> None:
        """Upsert acknowledged records on the driver's fast path where there is one."""
        if self.portable_writes:
            conn.execute(self._upsert(), [_row(d, now) for d in live])
        elif conn.dialect.name == "sqlite":
            _sqlite_upsert(conn, live, now)
        elif conn.dialect.driver == "psycopg":
            at = postgres.batch_time(now)
            new = all(d.change.op is Op.CREATE for d in live)
            postgres.upsert(conn, [_values(d, at) for d in live], new=new)
        else:
            conn.execute(self._upsert(), [_row(d, now) for d in live])

    @staticmethod
    def _note_withdrawals(
        conn: sa.Connection, delivered: Sequence[Delivered], now: datetime
    ) -> None:
        """Remember when a pupil first left the portal for lack of consent; forget it when
        the pupil is delivered again."""
        withdrawn, back = withdrawal_changes(delivered)
        if back:
            conn.execute(
                consent_withdrawal.delete().where(consent_withdrawal.c.pupil_key.in_(back))
            )
        if withdrawn:
            known = set(
                conn.execute(
                    sa.select(consent_withdrawal.c.pupil_key).where(
                        consent_withdrawal.c.pupil_key.in_(withdrawn)
                    )
                ).scalars()
            )
            fresh = [{"pupil_key": k, "removed_at": now} for k in withdrawn if k not in known]
            if fresh:
                conn.execute(consent_withdrawal.insert(), fresh)

    def withdrawals(self) -> dict[str, datetime]:
        with self.engine.connect() as conn:
            return {
                str(k): aware(at)
                for k, at in conn.execute(
                    sa.select(consent_withdrawal.c.pupil_key, consent_withdrawal.c.removed_at)
                )
            }

    def _upsert(self) -> sa.Insert:
        """INSERT ... ON CONFLICT DO UPDATE, keeping the first delivery time, and the portal's
        id when the acknowledgement gives none (an update of a record the portal numbered)."""
        kept = {"entity", "sort_key", "first_delivered_at"}
        stmt = (
            postgresql.insert(record_state)
            if self.engine.dialect.name == "postgresql"
            else sqlite.insert(record_state)
        )
        updated: dict[str, Any] = {
            c.name: stmt.excluded[c.name] for c in record_state.c if c.name not in kept
        }
        updated["portal_id"] = sa.func.coalesce(stmt.excluded.portal_id, record_state.c.portal_id)
        return stmt.on_conflict_do_update(index_elements=["entity", "sort_key"], set_=updated)

    def _tombstone(self, conn: sa.Connection, gone: list[Change], now: datetime) -> None:
        stmt = (
            record_state.update()
            .where(
                record_state.c.entity == sa.bindparam("e"),
                record_state.c.sort_key == sa.bindparam("s"),
            )
            .values(status=DELETED, fingerprint="", payload=None, updated_at=now)
        )
        conn.execute(stmt, [{"e": c.entity, "s": c.sort_key} for c in gone])

    def set_watermarks(self, marks: Mapping[str, str]) -> None:
        now = self.clock()
        with self.engine.begin() as conn:
            for entity, value in marks.items():
                conn.execute(watermark.delete().where(watermark.c.entity == entity))
                conn.execute(watermark.insert().values(entity=entity, value=value, updated_at=now))

    def batches_in_doubt(self) -> int:
        """Batches sent and never answered since the last run that ended OK (a run killed or
        cut off: still "sent", or "lost" once the next run closed it; or "partial", stopped
        partway by a failure after some of it was answered): their outcome is
        unknown, so a portal that only creates looks its records up before creating again."""
        last_ok = (
            sa.select(sa.func.max(run_history.c.started_at))
            .where(run_history.c.outcome == "ok")
            .scalar_subquery()
        )
        query = (
            sa.select(sa.func.count())
            .select_from(delivery_batch)
            .where(
                delivery_batch.c.status.in_(IN_DOUBT),
                sa.or_(last_ok.is_(None), delivery_batch.c.opened_at > last_ok),
            )
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def open_batch(self, run_id: str, batch: int, operations: int) -> None:
        row = {
            "run_id": run_id,
            "batch": batch,
            "operations": operations,
            "status": "sent",
            "opened_at": self.clock(),
        }
        with self.engine.begin() as conn:
            conn.execute(OPEN_BATCH, row)  # one statement, compiled once, for every batch

    def commit_batch(
        self,
        run_id: str,
        batch: int,
        delivered: Sequence[Delivered],
        refused: Sequence[Refusal],
        max_attempts: int,
        *,
        complete: bool = True,
    ) -> None:
        now = self.clock()
        with self.engine.begin() as conn:
            self._record(conn, delivered, now)
            if delivered:
                _forget_dead_letters(conn, delivered)
            for refusal in refused:
                self._refused(conn, refusal, max_attempts, now)
            conn.execute(
                delivery_batch.update()
                .where(delivery_batch.c.run_id == run_id, delivery_batch.c.batch == batch)
                .values(status="acked" if complete else "partial", closed_at=now)
            )

    def _refused(
        self, conn: sa.Connection, refusal: Refusal, max_attempts: int, now: datetime
    ) -> None:
        change = refusal.change
        where = (dead_letter.c.entity == change.entity, dead_letter.c.sort_key == change.sort_key)
        before = conn.execute(sa.select(dead_letter.c.attempts).where(*where)).scalar()
        attempts = (before or 0) + 1
        values = {
            "key": change.key,
            "fingerprint": change.fingerprint or "",
            "op": change.op.value,
            "attempts": attempts,
            "kind": refusal.kind,
            "reason": refusal.reason[:500],
            "status": "dead" if attempts >= max_attempts else "retrying",
            "last_at": now,
        }
        if before is None:
            conn.execute(
                dead_letter.insert().values(
                    entity=change.entity, sort_key=change.sort_key, first_at=now, **values
                )
            )
        else:
            conn.execute(dead_letter.update().where(*where).values(**values))

    def dead_letters(self) -> dict[tuple[str, str], DeadLetter]:
        columns = (
            dead_letter.c.entity,
            dead_letter.c.key,
            dead_letter.c.sort_key,
            dead_letter.c.fingerprint,
            dead_letter.c.op,
            dead_letter.c.attempts,
            dead_letter.c.kind,
            dead_letter.c.reason,
            dead_letter.c.status,
        )
        with self.engine.connect() as conn:
            return {(r[0], r[2]): DeadLetter(*r) for r in conn.execute(sa.select(*columns))}

    def revive(self, entity: str | None = None) -> int:
        query = dead_letter.update().where(dead_letter.c.status == "dead")
        if entity is not None:
            query = query.where(dead_letter.c.entity == entity)
        with self.engine.begin() as conn:
            return int(conn.execute(query.values(status="retrying", attempts=0)).rowcount)


OPEN_BATCH = delivery_batch.insert()
"""A delivery batch's intent, its values bound per batch."""


ROW_COLUMNS = (
    "entity",
    "sort_key",
    "key",
    "fingerprint",
    "status",
    "payload",
    "portal_id",
    "mapping_version",
    "pupil_key",
    "class_key",
    "first_delivered_at",
    "updated_at",
)
"""The columns of a record_state row, in the order ``_values`` gives them."""


def _values(d: Delivered, at: object) -> tuple[object, ...]:
    """One acknowledged change as the values of its record_state row (``at``: the time, as the
    driver takes it)."""
    change = d.change
    record = change.record
    if record is None:
        raise ValueError("only deletes come without a record")
    status = "archived" if change.op is Op.ARCHIVE else "delivered"
    data = record.payload if type(record.payload) is dict else dict(record.payload)
    payload = jsontext.dumps(data).decode("utf-8")
    return (
        change.entity,
        change.sort_key,
        change.key,
        record.fingerprint,
        status,
        payload,
        d.portal_id,
        d.mapping_version,
        d.pupil_key,
        d.class_key,
        at,
        at,
    )


def _row(d: Delivered, now: datetime) -> dict[str, object]:
    return dict(zip(ROW_COLUMNS, _values(d, now), strict=True))


# The upsert on SQLite's own cursor: one executemany a batch, with the time formatted once, as
# SQLAlchemy's DATETIME stores it (text, microseconds). SQLAlchemy's executemany costs twice
# the driver's per row here (bind processing and parameter building per row).
SQLITE_UPSERT = (
    "INSERT INTO record_state (entity, sort_key, key, fingerprint, status, payload, portal_id, "
    "mapping_version, pupil_key, class_key, first_delivered_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (entity, sort_key) DO UPDATE SET key = excluded.key, "
    "fingerprint = excluded.fingerprint, status = excluded.status, payload = excluded.payload, "
    "portal_id = COALESCE(excluded.portal_id, record_state.portal_id), "
    "mapping_version = excluded.mapping_version, "
    "pupil_key = excluded.pupil_key, class_key = excluded.class_key, "
    "updated_at = excluded.updated_at"
)
SQLITE_TIME = "%Y-%m-%d %H:%M:%S.%f"


def _sqlite_upsert(conn: sa.Connection, live: Sequence[Delivered], now: datetime) -> None:
    """Upsert acknowledged records in the connection's transaction, on the driver's cursor."""
    at = now.strftime(SQLITE_TIME)
    rows = [_values(d, at) for d in live]
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.executemany(SQLITE_UPSERT, rows)
    finally:
        cursor.close()


def _forget_dead_letters(conn: sa.Connection, delivered: Sequence[Delivered]) -> None:
    """Delete the dead letters of acknowledged changes: only those that have one (the table is
    usually empty, and a DELETE per record costs as much as the record itself)."""
    entities = sorted({d.change.entity for d in delivered})
    found = conn.execute(_DEAD_LETTER_KEYS, {"entities": entities})
    held = {(str(entity), str(sort_key)) for entity, sort_key in found}
    if not held:
        return
    done = [
        {"e": d.change.entity, "s": d.change.sort_key}
        for d in delivered
        if (d.change.entity, d.change.sort_key) in held
    ]
    if done:
        conn.execute(_FORGET_DEAD_LETTER, done)


_DEAD_LETTER_KEYS = sa.select(dead_letter.c.entity, dead_letter.c.sort_key).where(
    dead_letter.c.entity.in_(sa.bindparam("entities", expanding=True))
)
"""The dead letters of some entities (built once: a batch asks it each time)."""
_FORGET_DEAD_LETTER = dead_letter.delete().where(
    dead_letter.c.entity == sa.bindparam("e"), dead_letter.c.sort_key == sa.bindparam("s")
)


def withdrawal_changes(delivered: Sequence[Delivered]) -> tuple[list[str], list[str]]:
    """(pupils deleted for lack of consent, pupils delivered again) among acknowledged
    changes."""
    pupils = [d.change for d in delivered if d.change.entity == "pupil"]
    withdrawn = [c.key for c in pupils if c.op == Op.DELETE and c.reason == NO_CONSENT]
    back = [c.key for c in pupils if c.op != Op.DELETE]
    return withdrawn, back
