"""Run history, the one-sync-at-a-time lock, and the erasure register, in the state database.

The lock lives in the state store's database so that it also holds across several bridge
instances sharing PostgreSQL: there it is a session advisory lock (released by the database if
the holder dies); in a SQLite file it is a leased row with a heartbeat (a holder whose process is
gone, or whose heartbeat is older than the lease, is taken over).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog

from bridge.adapters.seam import no_fork_meanwhile, state_errors
from bridge.adapters.state import delivery_batch, erasure, run_history, run_lock, utc_now
from bridge.core.errors import LockBusy
from bridge.i18n import _
from bridge.ports import Clock

LEASE = timedelta(seconds=90)
log = structlog.get_logger()

HEARTBEAT_SECONDS = 15.0
INTERRUPTED = "interrupted"
CLOSED_REASON = "the run ended without finishing (its process was killed or crashed)"


@dataclass(frozen=True)
class RunRecord:
    """One line of run history."""

    run_id: str
    trigger: str
    user: str | None
    command: str
    mode: str
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    exit_code: int | None
    summary: Mapping[str, Any]


@state_errors
class RunLog:
    """Start and finish runs; read the last ones."""

    def __init__(self, engine: sa.Engine, clock: Clock = utc_now) -> None:
        self.engine, self.clock = engine, clock

    def start(self, run_id: str, trigger: str, user: str | None, command: str, mode: str) -> None:
        """Note a run that begins now."""
        with self.engine.begin() as conn:
            conn.execute(
                run_history.insert().values(
                    run_id=run_id,
                    trigger=trigger,
                    user=user,
                    command=command,
                    mode=mode,
                    started_at=self.clock(),
                )
            )

    def finish(self, run_id: str, outcome: str, exit_code: int, summary: Mapping[str, Any]) -> None:
        """Note how a run ended, with its counts."""
        with self.engine.begin() as conn:
            conn.execute(
                run_history.update()
                .where(run_history.c.run_id == run_id)
                .values(
                    ended_at=self.clock(),
                    outcome=outcome,
                    exit_code=exit_code,
                    summary=json.dumps(summary, ensure_ascii=False, default=str),
                )
            )

    def close_interrupted(self, run_id: str) -> int:
        """Close every run but ``run_id`` that never finished (its process was killed or
        crashed) as interrupted, and its batches sent but never answered as lost: the next run
        sends what the state did not record again. Call it holding the sync lock, so no run
        that is really alive is closed. Returns how many runs were closed."""
        now = self.clock()
        with self.engine.begin() as conn:
            dead = [
                r[0]
                for r in conn.execute(
                    sa.select(run_history.c.run_id).where(
                        run_history.c.ended_at.is_(None), run_history.c.run_id != run_id
                    )
                )
            ]
            if not dead:
                return 0
            conn.execute(
                run_history.update()
                .where(run_history.c.run_id.in_(dead))
                .values(
                    ended_at=now,
                    outcome=INTERRUPTED,
                    exit_code=None,
                    summary=json.dumps({"closed_by": run_id, "reason": CLOSED_REASON}),
                )
            )
            conn.execute(
                delivery_batch.update()
                .where(delivery_batch.c.run_id.in_(dead), delivery_batch.c.status == "sent")
                .values(status="lost", closed_at=now)
            )
        log.warning("runs.closed_interrupted", runs=len(dead), run_ids=dead)
        return len(dead)

    def last_ended(self, mode: str, outcome: str | None = None) -> datetime | None:
        """When the last run of ``mode`` ended (with ``outcome``, if given); None if none did."""
        c = run_history.c
        query = sa.select(sa.func.max(c.ended_at)).where(c.mode == mode, c.ended_at.is_not(None))
        if outcome is not None:
            query = query.where(c.outcome == outcome)
        with self.engine.connect() as conn:
            value: datetime | None = conn.execute(query).scalar()
        return value

    def last(self, count: int = 10) -> list[RunRecord]:
        """The most recent runs, newest first."""
        query = sa.select(run_history).order_by(run_history.c.started_at.desc()).limit(count)
        with self.engine.connect() as conn:
            return [_run_record(dict(row._mapping)) for row in conn.execute(query)]


def _run_record(row: Mapping[str, Any]) -> RunRecord:
    summary = json.loads(row["summary"]) if row["summary"] else {}
    return RunRecord(
        row["run_id"],
        row["trigger"],
        row["user"],
        row["command"],
        row["mode"],
        row["started_at"],
        row["ended_at"],
        row["outcome"],
        row["exit_code"],
        summary,
    )


@state_errors
class SyncLock:
    """One sync at a time per school, across processes and hosts."""

    def __init__(self, engine: sa.Engine, name: str, clock: Clock = utc_now) -> None:
        self.engine, self.name, self.clock = engine, name, clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._conn: sa.Connection | None = None
        self._beat: threading.Event | None = None

    @contextmanager
    def held(
        self,
        wait: bool,
        say: Callable[[str], None] | None = None,
        poll: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Iterator[None]:
        """Hold the lock for the block; with ``wait`` poll until it is free (saying so once),
        else raise LockBusy at once."""
        told = False
        while not self.try_acquire():
            holder = self.holder() or "unknown"
            if not wait:
                raise LockBusy(self.name, holder)
            if say is not None and not told:
                say(
                    _("Another sync is running ({holder}); waiting for it to finish ...").format(
                        holder=holder
                    )
                )
                told = True
            sleep(poll)
        try:
            yield
        finally:
            self.release()

    def try_acquire(self) -> bool:
        """Take the lock if it is free (or stale); True when taken."""
        if self.engine.dialect.name == "postgresql":
            return self._advisory()
        taken = self._lease()
        if taken:
            self._start_heartbeat()
        return taken

    @property
    def _key(self) -> int:
        return zlib.crc32(self.name.encode()) - 2**31

    def _advisory(self) -> bool:
        conn = self.engine.connect()
        if conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self._key}).scalar():
            conn.commit()
            self._conn = conn
            self._note_holder()
            return True
        conn.close()
        return False

    def _lease(self) -> bool:
        """Insert the lease row (the primary key admits one holder); a stale row is removed
        only if it is still exactly the row seen (compare-and-delete), so two contenders can
        never both win."""
        if self._insert():
            return True
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(run_lock).where(run_lock.c.name == self.name)).first()
            if row is None:
                return self._insert()
            seen = dict(row._mapping)
            if not self._is_stale(seen, self.clock()):
                return False
            gone = conn.execute(
                run_lock.delete().where(
                    run_lock.c.name == self.name,
                    run_lock.c.owner == seen["owner"],
                    run_lock.c.heartbeat_at == seen["heartbeat_at"],
                )
            ).rowcount
        return bool(gone) and self._insert()

    def _insert(self) -> bool:
        now = self.clock()
        try:
            with self.engine.begin() as conn:
                conn.execute(
                    run_lock.insert().values(
                        name=self.name,
                        owner=self.owner,
                        host=socket.gethostname(),
                        pid=os.getpid(),
                        acquired_at=now,
                        heartbeat_at=now,
                    )
                )
        except sa.exc.IntegrityError:
            return False
        return True

    def _is_stale(self, row: Mapping[str, Any], now: datetime) -> bool:
        beat = row["heartbeat_at"]
        if beat.tzinfo is None:
            beat = beat.replace(tzinfo=now.tzinfo)
        if now - beat > LEASE:
            return True
        return row["host"] == socket.gethostname() and not _alive(int(row["pid"]))

    def _note_holder(self) -> None:
        now = self.clock()
        with self.engine.begin() as conn:
            conn.execute(run_lock.delete().where(run_lock.c.name == self.name))
            conn.execute(
                run_lock.insert().values(
                    name=self.name,
                    owner=self.owner,
                    host=socket.gethostname(),
                    pid=os.getpid(),
                    acquired_at=now,
                    heartbeat_at=now,
                )
            )

    def _start_heartbeat(self) -> None:
        stop = threading.Event()
        self._beat = stop

        def beat() -> None:
            while not stop.wait(HEARTBEAT_SECONDS):
                try:
                    with no_fork_meanwhile(), self.engine.begin() as conn:
                        kept = conn.execute(
                            run_lock.update()
                            .where(run_lock.c.name == self.name, run_lock.c.owner == self.owner)
                            .values(heartbeat_at=self.clock())
                        ).rowcount
                except sa.exc.SQLAlchemyError as exc:
                    log.warning("lock.heartbeat_failed", lock=self.name, error=type(exc).__name__)
                    continue  # try again at the next beat; the lease lasts six beats
                if not kept:
                    log.error("lock.lost", lock=self.name)
                    return

        threading.Thread(target=beat, name="lock-heartbeat", daemon=True).start()

    def holder(self) -> str | None:
        """Who holds the lock, as host:pid (None when nobody is recorded)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(run_lock.c.owner, run_lock.c.acquired_at).where(
                    run_lock.c.name == self.name
                )
            ).first()
        return None if row is None else f"{row[0]} since {row[1]:%Y-%m-%d %H:%M:%S}"

    def release(self) -> None:
        """Let the lock go."""
        if self._beat is not None:
            self._beat.set()
            self._beat = None
        with self.engine.begin() as conn:
            conn.execute(
                run_lock.delete().where(
                    run_lock.c.name == self.name, run_lock.c.owner == self.owner
                )
            )
        if self._conn is not None:
            # The pool keeps the session open, so unlock explicitly (a session that dies, with
            # its process, releases the lock by itself).
            self._conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": self._key})
            self._conn.commit()
            self._conn.close()
            self._conn = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


DEFAULT_GROUND = "отзыв согласия на обработку персональных данных"
"""The ground of an erasure act unless the admin names another (``erase --ground``)."""


@state_errors
class Erasures:
    """The register of pupils erased from the portal (152-ФЗ): one act per pupil, its counts
    encoded once as JSON (``{"ground", "run_id", "planned", "acknowledged", "refused",
    "earlier", "completed_at"}``); acts of earlier versions (a flat, possibly double-encoded
    ``{entity: n}``) are read as they were meant."""

    def __init__(self, engine: sa.Engine, clock: Clock = utc_now) -> None:
        self.engine, self.clock = engine, clock

    def begin(
        self, pupil_key: str, by: str, ground: str, run_id: str, earlier: Mapping[str, int]
    ) -> None:
        """Open (or reopen, to finish it) the act before anything is deleted: from now on the
        pupil is never exported again, even if the portal fails midway."""
        act = self.get(pupil_key)
        # A rerun keeps what was gone before the first run: what that run deleted is already
        # counted as acknowledged.
        gone_before = dict(earlier) if act is None else act["earlier"]
        facts = {
            **(act or {}),
            "ground": ground,
            "run_id": run_id,
            "earlier": gone_before,
            "refused": {},
            "completed_at": None,
        }
        with self.engine.begin() as conn:
            if act is None:
                conn.execute(
                    erasure.insert().values(
                        pupil_key=pupil_key,
                        erased_at=self.clock(),
                        erased_by=by,
                        counts=_encode(facts),
                    )
                )
            else:
                conn.execute(
                    erasure.update()
                    .where(erasure.c.pupil_key == pupil_key)
                    .values(counts=_encode(facts))
                )

    def complete(
        self,
        pupil_key: str,
        planned: Mapping[str, int],
        acknowledged: Mapping[str, int],
        refused: Mapping[str, int],
    ) -> None:
        """Note what this run planned to delete, what the portal acknowledged and refused
        (added to what an earlier, unfinished run of the act did); complete when nothing was
        refused."""
        act = self.get(pupil_key)
        assert act is not None, "begin() opens the act"
        before = act["acknowledged"]
        facts = {k: act[k] for k in _FACTS if k in act}
        facts.update(
            planned=_add(before, planned),
            acknowledged=_add(before, acknowledged),
            refused=dict(refused),
            completed_at=None if any(refused.values()) else self.clock().isoformat(),
        )
        with self.engine.begin() as conn:
            conn.execute(
                erasure.update()
                .where(erasure.c.pupil_key == pupil_key)
                .values(counts=_encode(facts))
            )

    def keys(self) -> frozenset[str]:
        """Every erased pupil: never exported again, whatever ASIOU says."""
        with self.engine.connect() as conn:
            return frozenset(str(k) for k in conn.execute(sa.select(erasure.c.pupil_key)).scalars())

    def completed(self) -> frozenset[str]:
        """Pupils whose erasure finished (every delete acknowledged; acts of earlier versions
        count as finished)."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(erasure.c.pupil_key, erasure.c.counts)).all()
        return frozenset(str(k) for k, counts in rows if _is_complete(decode_act(counts)))

    def get(self, pupil_key: str) -> dict[str, Any] | None:
        """The erasure act of one pupil, decoded: pupil_key, erased_at, erased_by and the
        facts (ground, run_id, planned, acknowledged, refused, earlier, completed_at)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(erasure).where(erasure.c.pupil_key == pupil_key)).first()
        if row is None:
            return None
        found = dict(row._mapping)
        return {
            "pupil_key": found["pupil_key"],
            "erased_at": found["erased_at"],
            "erased_by": found["erased_by"],
            **decode_act(found["counts"]),
        }


_FACTS = ("ground", "run_id", "planned", "acknowledged", "refused", "earlier", "completed_at")


def _is_complete(facts: Mapping[str, Any]) -> bool:
    return facts["completed_at"] is not None or facts["run_id"] is None


def _encode(facts: Mapping[str, Any]) -> str:
    return json.dumps({k: facts.get(k) for k in _FACTS}, ensure_ascii=False)


def _add(a: Mapping[str, int], b: Mapping[str, int]) -> dict[str, int]:
    return {e: int(a.get(e, 0)) + int(b.get(e, 0)) for e in sorted(set(a) | set(b))}


def decode_act(text: object) -> dict[str, Any]:
    """The facts of a stored act. Tolerant of old rows: JSON encoded twice, or a flat
    ``{entity: deleted}`` (read as planned and acknowledged, ground unknown)."""
    value = text
    while isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = {}
    facts = value if isinstance(value, dict) else {}
    if "acknowledged" not in facts:
        counts = {str(e): int(n) for e, n in facts.items() if isinstance(n, int)}
        facts = {
            "ground": None,
            "run_id": None,
            "planned": counts,
            "acknowledged": counts,
            "refused": {},
            "earlier": {},
            "completed_at": None,
        }
    return {
        k: facts.get(k) if k in ("ground", "run_id", "completed_at") else dict(facts.get(k) or {})
        for k in _FACTS
    }
