"""The state store: what the portal holds, per (entity, key), as far as the bridge knows.

One row per delivered record: fingerprint of the canonical payload, delivery status, portal id,
mapping version, owner pupil and class (for scoped resync, erase and explain), and timestamps.
SQLAlchemy, so a SQLite file (default, created mode 0600) or a shared PostgreSQL database. The
schema is versioned in ``meta.schema_version`` and migrated forward on open.

``entries()`` streams one entity in ``sort_key`` order (binary collation, the same order the
planner merges in), so a full plan never holds the state of a whole entity in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sqlite3
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import tenacity
from sqlalchemy.dialects import postgresql, sqlite

from bridge.adapters.seam import DRIVER_ERRORS, describe, state_errors
from bridge.core.errors import FatalError, StateError, UnknownPlan
from bridge.core.model import Change, EntryView, HoldReason, Op, StateEntry, Value
from bridge.ports import Approval, Clock, DeadLetter, Delivered, HeldPlan, Refusal

SCHEMA_VERSION = 3
LOOKUP_CHUNK = 500
DELETED = "deleted"
NO_CONSENT = HoldReason.NO_CONSENT.value


def is_valid(approval: Approval | None, now: datetime, valid_for: timedelta | None) -> bool:
    """True when ``approval`` exists and, with ``valid_for`` given, has not expired by ``now``."""
    if approval is None:
        return False
    return valid_for is None or now < _aware(approval.at) + valid_for


def _aware(moment: datetime) -> datetime:
    """SQLite gives back naive date-times: they were written in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def utc_now() -> datetime:
    """The real clock; only adapters built by the CLI use it."""
    return datetime.now(UTC)


metadata = sa.MetaData()
_KEY = sa.String(400).with_variant(sa.String(400, collation="C"), "postgresql")
meta = sa.Table(
    "meta",
    metadata,
    sa.Column("name", sa.String(50), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)
regate = sa.Table(  # a new table: create_all adds it to an existing store (no version step)
    "regate",
    metadata,
    sa.Column("pupil_key", sa.String(400), primary_key=True),
    sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
)
LAST_AS_OF = "last_as_of"
record_state = sa.Table(
    "record_state",
    metadata,
    sa.Column("entity", sa.String(40), primary_key=True),
    sa.Column("sort_key", _KEY, primary_key=True),
    sa.Column("key", sa.String(400), nullable=False),
    sa.Column("fingerprint", sa.String(32), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("payload", sa.Text),
    sa.Column("portal_id", sa.String(100)),
    sa.Column("mapping_version", sa.Integer, nullable=False),
    sa.Column("pupil_key", sa.String(400)),
    sa.Column("class_key", sa.String(400)),
    sa.Column("first_delivered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_record_state_key", "entity", "key"),
    sa.Index("ix_record_state_pupil", "pupil_key"),
    sqlite_with_rowid=False,
)
watermark = sa.Table(
    "watermark",
    metadata,
    sa.Column("entity", sa.String(40), primary_key=True),
    sa.Column("value", sa.String(40), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)
dead_letter = sa.Table(
    "dead_letter",
    metadata,
    sa.Column("entity", sa.String(40), primary_key=True),
    sa.Column("sort_key", _KEY, primary_key=True),
    sa.Column("key", sa.String(400), nullable=False),
    sa.Column("fingerprint", sa.String(32), nullable=False),
    sa.Column("op", sa.String(10), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(60)),
    sa.Column("reason", sa.String(500), nullable=False),
    sa.Column("status", sa.String(10), nullable=False),
    sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("last_at", sa.DateTime(timezone=True), nullable=False),
)
delivery_batch = sa.Table(
    "delivery_batch",
    metadata,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("batch", sa.Integer, primary_key=True),
    sa.Column("operations", sa.Integer, nullable=False),
    sa.Column("status", sa.String(10), nullable=False),  # "sent" until answered, then "acked"
    sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("closed_at", sa.DateTime(timezone=True)),
)
run_history = sa.Table(
    "run_history",
    metadata,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("trigger", sa.String(20), nullable=False),  # "schedule" | "manual"
    sa.Column("user", sa.String(100)),  # the OS user of a manual run
    sa.Column("command", sa.String(40), nullable=False),
    sa.Column("mode", sa.String(20), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("ended_at", sa.DateTime(timezone=True)),
    sa.Column("outcome", sa.String(30)),
    sa.Column("exit_code", sa.Integer),
    sa.Column("summary", sa.Text),  # JSON: counts per entity and op, held back, rejected, error
)
run_lock = sa.Table(
    "run_lock",
    metadata,
    sa.Column("name", sa.String(100), primary_key=True),
    sa.Column("owner", sa.String(200), nullable=False),
    sa.Column("host", sa.String(200), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=False),
)
erasure = sa.Table(
    "erasure",
    metadata,
    sa.Column("pupil_key", sa.String(400), primary_key=True),
    sa.Column("erased_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("erased_by", sa.String(100), nullable=False),
    sa.Column("counts", sa.Text, nullable=False),  # JSON: records deleted per entity
)
consent_withdrawal = sa.Table(
    "consent_withdrawal",
    metadata,
    sa.Column("pupil_key", sa.String(400), primary_key=True),
    # When the portal acknowledged the first delete of the delivered pupil for lack of consent:
    # the 30 days of 152-ФЗ (ст. 21 ч. 5) to erase run from here. A new table, so it needs no
    # version step: create_all adds it to an existing store.
    sa.Column("removed_at", sa.DateTime(timezone=True), nullable=False),
)
approval = sa.Table(
    "approval",
    metadata,
    sa.Column("plan_id", sa.String(40), primary_key=True),
    sa.Column("approved_by", sa.String(100), nullable=False),
    sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
)
held_plan = sa.Table(
    "held_plan",
    metadata,  # schema version 2
    sa.Column("plan_id", sa.String(40), primary_key=True),
    sa.Column("held_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("summary", sa.String(500), nullable=False),
)

portal_check = sa.Table(  # schema version 3: what the last reconciliation found per record
    "portal_check",
    metadata,
    sa.Column("entity", sa.String(40), primary_key=True),
    sa.Column("sort_key", _KEY, primary_key=True),
    sa.Column("key", sa.String(400), nullable=False),
    sa.Column("finding", sa.String(20), nullable=False),  # "missing" | "changed" | "unexpected"
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_portal_check_key", "entity", "key"),
)
portal_checked = sa.Table(  # schema version 3: when each entity was last read back
    "portal_checked",
    metadata,
    sa.Column("entity", sa.String(40), primary_key=True),
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
)


def _add_held_plans(conn: sa.Connection) -> None:
    """Version 2: held plans are remembered, and only they can be approved. An approval of
    version 1 named any id: those are dropped (an admin approves the held plan again)."""
    held_plan.create(conn, checkfirst=True)
    conn.execute(approval.delete())


def _add_portal_checks(conn: sa.Connection) -> None:
    """Version 3: what the last reconciliation found on the portal (``explain``)."""
    portal_check.create(conn, checkfirst=True)
    portal_checked.create(conn, checkfirst=True)


MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {2: _add_held_plans, 3: _add_portal_checks}
"""Schema version → the step that brings the version before it up to it."""

_ENTRY_COLUMNS = (
    record_state.c.entity,
    record_state.c.key,
    record_state.c.sort_key,
    record_state.c.fingerprint,
    record_state.c.status,
    record_state.c.pupil_key,
    record_state.c.class_key,
)


def _entry(row: Sequence[Any]) -> StateEntry:
    return StateEntry(row[0], row[1], row[2], row[3], row[4], None, row[5], row[6])


def open_state(url: str, clock: Clock = utc_now, school: str | None = None) -> SqlStateStore:
    """Open (creating or migrating) the state store at a SQLAlchemy URL. On PostgreSQL, shared
    by the instances of many schools, each ``school`` keeps its tables in a schema of its own
    (:func:`schema_name`), so no two schools ever see each other's state; the school id is
    stored in the state and checked on every open."""
    parsed = sa.make_url(url)
    try:
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            _create_private_file(Path(str(parsed.database)))
        engine = _namespaced(_create_engine(parsed), school)
        store = SqlStateStore(engine, clock)
        try:
            _opening_retry(store.migrate)(school)
        except BaseException:
            engine.dispose()
            raise
    except (StateError, *DRIVER_ERRORS, OSError) as exc:
        cause = exc.__cause__ if isinstance(exc, StateError) else exc
        where = f"opening the state store {parsed.render_as_string(hide_password=True)}"
        raise StateError(where, describe(cause or exc)) from exc
    return store


def _sqlite_busy(exc: BaseException) -> bool:
    """SQLite answers "database is locked" at once, without waiting out the busy timeout, in a
    few races of connections opening a fresh file together (the switch to WAL, WAL recovery)."""
    cause = exc.__cause__ if isinstance(exc, StateError) else exc
    return isinstance(cause, sa.exc.OperationalError) and "database is locked" in str(cause.orig)


def _opening_retry(step: Callable[[str | None], None]) -> Callable[[str | None], None]:
    """``step`` tried again, a few times over about half a minute, while SQLite says busy."""
    return tenacity.retry(
        retry=tenacity.retry_if_exception(_sqlite_busy),
        wait=tenacity.wait_random_exponential(multiplier=0.05, max=5),
        stop=tenacity.stop_after_attempt(12),
        reraise=True,
    )(step)


SCHEMA_LOCK = 0x6173696F75  # "asiou": serializes creating and migrating schemas (PostgreSQL)
SCHEMA_PREFIX = "asiou_bridge_"
SCHOOL_ID = "school_id"


def schema_name(school: str) -> str:
    """The PostgreSQL schema of one school's state: a readable slug of the id and a hash of the
    exact id, so ids that differ only in case, punctuation or letters outside a–z (Cyrillic ids)
    never share one; at most 63 bytes, PostgreSQL's limit."""
    slug = re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", school.lower())).strip("_")[:30]
    digest = hashlib.blake2b(school.encode("utf-8"), digest_size=5).hexdigest()
    return f"{SCHEMA_PREFIX}{slug}_{digest}" if slug else f"{SCHEMA_PREFIX}{digest}"


def legacy_schema_name(school: str) -> str:
    """The schema name of versions before the hash (unsafe: ids could share it)."""
    return (SCHEMA_PREFIX + re.sub(r"[^a-z0-9_]", "_", school.lower()))[:63]


def lock_schemas(conn: sa.Connection) -> None:
    """Hold, to the end of ``conn``'s transaction, the lock under which schemas are created and
    migrated (an advisory lock on PostgreSQL, the write lock on SQLite): instances that start
    together take turns instead of racing on the catalogue."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK})
    elif conn.dialect.name == "sqlite":  # the write lock at once, not at the first write
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _namespaced(engine: sa.Engine, school: str | None) -> sa.Engine:
    if school is None or engine.dialect.name != "postgresql":
        return engine
    name, legacy = schema_name(school), legacy_schema_name(school)
    with engine.begin() as conn:
        lock_schemas(conn)
        present = set(
            conn.execute(
                sa.text("SELECT nspname FROM pg_namespace WHERE nspname IN (:a, :b)"),
                {"a": name, "b": legacy},
            ).scalars()
        )
        if name not in present and legacy in present and _legacy_is(conn, legacy, school):
            conn.execute(sa.text(f'ALTER SCHEMA "{legacy}" RENAME TO "{name}"'))
        elif name not in present:
            conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    return engine.execution_options(schema_translate_map={None: name})


def _claim(conn: sa.Connection, school: str) -> None:
    """Record that the state belongs to ``school``, or refuse one kept for another school (a
    state store is never shared: its deliveries would be taken for the other's)."""
    owner = conn.execute(sa.select(meta.c.value).where(meta.c.name == SCHOOL_ID)).scalar()
    if owner is None:
        conn.execute(meta.insert().values(name=SCHOOL_ID, value=school))
    elif owner != school:
        raise FatalError(
            f"the state store belongs to school {owner!r}, not {school!r} (portal.school): "
            "each school needs its own state (state.url), or, on a shared PostgreSQL, its own "
            "school id"
        )


def _legacy_is(conn: sa.Connection, legacy: str, school: str) -> bool:
    """True when an old-named schema may be adopted by ``school``: it records no school id
    (written before ids were kept) or this one."""
    found = conn.execute(
        sa.text("SELECT 1 FROM pg_tables WHERE schemaname = :s AND tablename = 'meta'"),
        {"s": legacy},
    )
    if found.scalar() is None:
        return True
    owner = conn.execute(
        sa.text(f'SELECT value FROM "{legacy}".meta WHERE name = :n'),  # noqa: S608 - [a-z0-9_] only
        {"n": SCHOOL_ID},
    ).scalar()
    return owner is None or owner == school


def _create_engine(url: sa.URL) -> sa.Engine:
    """An engine for the state store. SQLite runs in WAL mode with a generous busy timeout, so
    a long read (a merge) never blocks the batch commits, and the daemon and a manual command
    can share the file."""
    # hide_parameters: a failed statement's message must not carry payloads (names, marks).
    if url.get_backend_name() != "sqlite":
        return sa.create_engine(url, hide_parameters=True)
    engine = sa.create_engine(url, connect_args={"timeout": 60}, hide_parameters=True)

    @sa.event.listens_for(engine, "connect")
    def _wal(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    return engine


def _create_private_file(path: Path) -> None:
    """Create the SQLite file readable by its owner only (it holds personal data)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))


@state_errors
class SqlStateStore:
    """The state store on any SQLAlchemy database (SQLite, PostgreSQL)."""

    def __init__(self, engine: sa.Engine, clock: Clock = utc_now) -> None:
        self.engine = engine
        self.clock = clock
        self.inherited: sa.Pool | None = None  # a parent's pool, kept after a fork

    def migrate(self, school: str | None = None) -> None:
        """Create the schema, or bring an older one up to SCHEMA_VERSION, and claim it for
        ``school`` if one is given: in one transaction under the schema lock, so instances that
        start together take turns."""
        with self.engine.begin() as conn:
            lock_schemas(conn)
            metadata.create_all(conn)
            found = conn.execute(
                sa.select(meta.c.value).where(meta.c.name == "schema_version")
            ).scalar()
            if found is None:
                conn.execute(meta.insert().values(name="schema_version", value=str(SCHEMA_VERSION)))
            elif int(found) > SCHEMA_VERSION:
                raise FatalError(
                    f"state store schema version {found} is newer than this "
                    f"asiou-bridge understands ({SCHEMA_VERSION}); upgrade it"
                )
            elif int(found) < SCHEMA_VERSION:
                self._migrate_from(conn, int(found))
            if school is not None:
                _claim(conn, school)

    @staticmethod
    def _migrate_from(conn: sa.Connection, found: int) -> None:
        for version in range(found + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version](conn)
        conn.execute(
            meta.update().where(meta.c.name == "schema_version").values(value=str(SCHEMA_VERSION))
        )

    def schema_version(self) -> int:
        """The schema version recorded in the store."""
        with self.engine.connect() as conn:
            return int(
                conn.execute(
                    sa.select(meta.c.value).where(meta.c.name == "schema_version")
                ).scalar_one()
            )

    def entries(self, entity: str) -> Iterator[EntryView]:
        yield from self._entries(entity, None, None)

    def entries_between(
        self, entity: str, start: str | None, stop: str | None
    ) -> Iterator[EntryView]:
        yield from self._entries(entity, start, stop)

    def _entries(self, entity: str, start: str | None, stop: str | None) -> Iterator[EntryView]:
        query = (
            sa.select(record_state.c.sort_key, record_state.c.fingerprint, record_state.c.status)
            .where(record_state.c.entity == entity, record_state.c.status != DELETED)
            .order_by(record_state.c.sort_key)
        )
        if start is not None:
            query = query.where(record_state.c.sort_key >= start)
        if stop is not None:
            query = query.where(record_state.c.sort_key < stop)
        if self.engine.dialect.name == "sqlite":
            return self._sqlite_entries(query)
        return self._streamed_entries(query)

    def _streamed_entries(self, query: sa.Select[Any]) -> Iterator[EntryView]:
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=5000).execute(query)
            try:
                for partition in result.partitions():
                    yield from partition  # rows are (sort_key, fingerprint, status)
            finally:
                result.close()  # a merge may stop early: free the server-side cursor now

    def _sqlite_entries(self, query: sa.Select[Any]) -> Iterator[EntryView]:
        """The same query on SQLite's own cursor, which steps as it is read: its plain tuples
        cost half of what result rows do, over the million entries of a full run's merge."""
        with self.engine.connect() as conn:
            compiled = query.compile(dialect=conn.dialect)
            params = [compiled.params[name] for name in compiled.positiontup or ()]
            cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
            try:
                cursor.execute(str(compiled), params)
                while rows := cursor.fetchmany(5000):
                    yield from rows
            except sqlite3.Error as exc:  # what SQLAlchemy would have wrapped
                raise StateError("reading the state store", describe(exc)) from exc
            finally:
                cursor.close()

    def lookup(self, entity: str, sort_keys: Sequence[str]) -> dict[str, StateEntry]:
        found: dict[str, StateEntry] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sort_keys, LOOKUP_CHUNK):
                query = sa.select(*_ENTRY_COLUMNS).where(
                    record_state.c.entity == entity,
                    record_state.c.sort_key.in_(chunk),
                    record_state.c.status != DELETED,
                )
                found.update((row[2], _entry(row)) for row in conn.execute(query))
        return found

    def payloads(self, entity: str, sort_keys: Sequence[str]) -> dict[str, Mapping[str, Value]]:
        found: dict[str, Mapping[str, Value]] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(sort_keys, LOOKUP_CHUNK):
                query = sa.select(record_state.c.sort_key, record_state.c.payload).where(
                    record_state.c.entity == entity, record_state.c.sort_key.in_(chunk)
                )
                found.update((k, json.loads(p)) for k, p in conn.execute(query) if p)
        return found

    def tombstones(self, entity: str, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        with self.engine.connect() as conn:
            for chunk in _chunks(keys, LOOKUP_CHUNK):
                query = sa.select(record_state.c.key, record_state.c.sort_key).where(
                    record_state.c.entity == entity,
                    record_state.c.key.in_(chunk),
                    record_state.c.status == DELETED,
                )
                found.update((str(k), str(s)) for k, s in conn.execute(query))
        return found

    def record_check(
        self, entity: str, findings: Iterable[tuple[str, str, str]], now: datetime
    ) -> None:
        """Replace what the last read-back of ``entity`` found: (sort key, key, finding) of
        every record that did not match, at ``now``; the others matched."""
        rows = [
            {"entity": entity, "sort_key": s, "key": k, "finding": f, "checked_at": now}
            for s, k, f in findings
        ]
        with self.engine.begin() as conn:
            conn.execute(portal_check.delete().where(portal_check.c.entity == entity))
            conn.execute(portal_checked.delete().where(portal_checked.c.entity == entity))
            conn.execute(portal_checked.insert().values(entity=entity, checked_at=now))
            if rows:
                conn.execute(portal_check.insert(), rows)

    def portal_finding(self, entity: str, key: str) -> tuple[str, datetime] | None:
        """What the last read-back of ``entity`` found for ``key`` ("matches" when it did not
        differ), and when; None when the entity was never read back."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(portal_check.c.finding, portal_check.c.checked_at).where(
                    portal_check.c.entity == entity, portal_check.c.key == key
                )
            ).first()
            if row is not None:
                return str(row[0]), row[1]
            at = conn.execute(
                sa.select(portal_checked.c.checked_at).where(portal_checked.c.entity == entity)
            ).scalar()
        return None if at is None else ("matches", at)

    def record(self, delivered: Sequence[Delivered]) -> None:
        with self.engine.begin() as conn:
            self._record(conn, delivered, self.clock())

    def _record(self, conn: sa.Connection, delivered: Sequence[Delivered], now: datetime) -> None:
        live = [_row(d, now) for d in delivered if d.change.op != Op.DELETE]
        gone = [d.change for d in delivered if d.change.op == Op.DELETE]
        if live:
            conn.execute(self._upsert(), live)
        if gone:
            self._tombstone(conn, gone, now)
        self._note_withdrawals(conn, delivered, now)

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
                str(k): _aware(at)
                for k, at in conn.execute(
                    sa.select(consent_withdrawal.c.pupil_key, consent_withdrawal.c.removed_at)
                )
            }

    def _upsert(self) -> sa.Insert:
        """INSERT ... ON CONFLICT DO UPDATE, keeping the first delivery time."""
        kept = {"entity", "sort_key", "first_delivered_at"}
        if self.engine.dialect.name == "postgresql":
            pg = postgresql.insert(record_state)
            return pg.on_conflict_do_update(
                index_elements=["entity", "sort_key"],
                set_={c.name: pg.excluded[c.name] for c in record_state.c if c.name not in kept},
            )
        lite = sqlite.insert(record_state)
        return lite.on_conflict_do_update(
            index_elements=["entity", "sort_key"],
            set_={c.name: lite.excluded[c.name] for c in record_state.c if c.name not in kept},
        )

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

    def count(self, entity: str) -> int:
        query = (
            sa.select(sa.func.count())
            .select_from(record_state)
            .where(record_state.c.entity == entity, record_state.c.status != DELETED)
        )
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def count_by_class(self, entity: str) -> dict[str, int]:
        query = (
            sa.select(record_state.c.class_key, sa.func.count())
            .where(
                record_state.c.entity == entity,
                record_state.c.status != DELETED,
                record_state.c.class_key.is_not(None),
            )
            .group_by(record_state.c.class_key)
        )
        with self.engine.connect() as conn:
            return {str(k): int(n) for k, n in conn.execute(query)}

    def watermark(self, entity: str) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(
                sa.select(watermark.c.value).where(watermark.c.entity == entity)
            ).scalar()
        return None if value is None else str(value)

    def regate_marks(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(regate.c.pupil_key)).scalars())

    def mark_regate(self, pupils: Collection[str]) -> None:
        if not pupils:
            return
        now = self.clock()
        with self.engine.begin() as conn:
            known = set(conn.execute(sa.select(regate.c.pupil_key)).scalars())
            fresh = [{"pupil_key": p, "marked_at": now} for p in sorted(set(pupils) - known)]
            if fresh:
                conn.execute(regate.insert(), fresh)

    def finish_regate(self, pupils: Collection[str] | None, as_of: str) -> None:
        with self.engine.begin() as conn:
            if pupils is None:
                conn.execute(regate.delete())
            else:
                for chunk in _chunks(sorted(pupils), 500):
                    conn.execute(regate.delete().where(regate.c.pupil_key.in_(chunk)))
            conn.execute(meta.delete().where(meta.c.name == LAST_AS_OF))
            conn.execute(meta.insert().values(name=LAST_AS_OF, value=as_of))

    def last_as_of(self) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(meta.c.value).where(meta.c.name == LAST_AS_OF)).scalar()
        return None if value is None else str(value)

    def set_watermarks(self, marks: Mapping[str, str]) -> None:
        now = self.clock()
        with self.engine.begin() as conn:
            for entity, value in marks.items():
                conn.execute(watermark.delete().where(watermark.c.entity == entity))
                conn.execute(watermark.insert().values(entity=entity, value=value, updated_at=now))

    def open_batch(self, run_id: str, batch: int, operations: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                delivery_batch.insert().values(
                    run_id=run_id,
                    batch=batch,
                    operations=operations,
                    status="sent",
                    opened_at=self.clock(),
                )
            )

    def commit_batch(
        self,
        run_id: str,
        batch: int,
        delivered: Sequence[Delivered],
        refused: Sequence[Refusal],
        max_attempts: int,
    ) -> None:
        now = self.clock()
        with self.engine.begin() as conn:
            self._record(conn, delivered, now)
            if delivered:
                conn.execute(
                    dead_letter.delete().where(
                        dead_letter.c.entity == sa.bindparam("e"),
                        dead_letter.c.sort_key == sa.bindparam("s"),
                    ),
                    [{"e": d.change.entity, "s": d.change.sort_key} for d in delivered],
                )
            for refusal in refused:
                self._refused(conn, refusal, max_attempts, now)
            conn.execute(
                delivery_batch.update()
                .where(delivery_batch.c.run_id == run_id, delivery_batch.c.batch == batch)
                .values(status="acked", closed_at=now)
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

    def count_open_by_class(self, entity: str) -> dict[str, int]:
        query = sa.select(record_state.c.class_key, record_state.c.payload).where(
            record_state.c.entity == entity,
            record_state.c.status != DELETED,
            record_state.c.class_key.is_not(None),
        )
        counts: dict[str, int] = {}
        with self.engine.connect() as conn:
            for class_key, payload in conn.execute(query):
                if json.loads(payload or "{}").get("date_to") is None:
                    counts[str(class_key)] = counts.get(str(class_key), 0) + 1
        return counts

    def hold_plan(self, plan_id: str, summary: str) -> None:
        with self.engine.begin() as conn:
            where = held_plan.c.plan_id == plan_id
            if conn.execute(sa.select(held_plan.c.plan_id).where(where)).first() is None:
                conn.execute(
                    held_plan.insert().values(
                        plan_id=plan_id, held_at=self.clock(), summary=summary[:500]
                    )
                )
            else:
                conn.execute(held_plan.update().where(where).values(summary=summary[:500]))

    def held_plan(self, plan_id: str) -> HeldPlan | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(held_plan.c.held_at, held_plan.c.summary).where(
                    held_plan.c.plan_id == plan_id
                )
            ).first()
        return None if row is None else HeldPlan(plan_id, _aware(row[0]), row[1])

    def approval(self, plan_id: str) -> Approval | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(approval.c.approved_by, approval.c.approved_at).where(
                    approval.c.plan_id == plan_id
                )
            ).first()
        return None if row is None else Approval(row[0], _aware(row[1]))

    def is_approved(self, plan_id: str, valid_for: timedelta | None = None) -> bool:
        return is_valid(self.approval(plan_id), self.clock(), valid_for)

    def approve(self, plan_id: str, by: str) -> None:
        with self.engine.begin() as conn:
            if (
                conn.execute(
                    sa.select(held_plan.c.plan_id).where(held_plan.c.plan_id == plan_id)
                ).first()
                is None
            ):
                raise UnknownPlan(plan_id)
            conn.execute(approval.delete().where(approval.c.plan_id == plan_id))
            conn.execute(
                approval.insert().values(plan_id=plan_id, approved_by=by, approved_at=self.clock())
            )

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def after_fork(self) -> None:
        """In a forked process: drop the parent's connections unclosed (SQLite and PostgreSQL
        connections must not cross a fork), so this process opens its own. The parent's pool
        stays referenced: collected here, it would close the parent's connections."""
        self.inherited = self.engine.pool
        self.engine.dispose(close=False)


def _row(d: Delivered, now: datetime) -> dict[str, object]:
    change = d.change
    record = change.record
    assert record is not None, "only deletes come without a record"
    status = "archived" if change.op == Op.ARCHIVE else "delivered"
    return {
        "entity": change.entity,
        "sort_key": change.sort_key,
        "key": change.key,
        "fingerprint": record.fingerprint,
        "status": status,
        "payload": json.dumps(dict(record.payload), ensure_ascii=False),
        "portal_id": d.portal_id,
        "mapping_version": d.mapping_version,
        "pupil_key": d.pupil_key,
        "class_key": d.class_key,
        "first_delivered_at": now,
        "updated_at": now,
    }


def withdrawal_changes(delivered: Sequence[Delivered]) -> tuple[list[str], list[str]]:
    """(pupils deleted for lack of consent, pupils delivered again) among acknowledged
    changes."""
    pupils = [d.change for d in delivered if d.change.entity == "pupil"]
    withdrawn = [c.key for c in pupils if c.op == Op.DELETE and c.reason == NO_CONSENT]
    back = [c.key for c in pupils if c.op != Op.DELETE]
    return withdrawn, back


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
