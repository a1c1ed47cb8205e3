"""Opening the state store: the engine (SQLite in WAL mode, a private file; or PostgreSQL, in
the school's own schema), then creating or migrating the schema, tried again while a SQLite file
that fresh connections race on answers busy; a failure is one StateError naming the store."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import tenacity

from bridge.adapters.seam import DRIVER_ERRORS, describe
from bridge.adapters.state.helpers import utc_now
from bridge.adapters.state.schools import namespaced
from bridge.adapters.state.store import SqlStateStore
from bridge.core.errors import StateError
from bridge.ports import Clock


def open_state(
    url: str,
    clock: Clock = utc_now,
    school: str | None = None,
    *,
    pre_ping: bool = False,
    max_connections: int | None = None,
) -> SqlStateStore:
    """Open (creating or migrating) the state store at a SQLAlchemy URL. On PostgreSQL, shared
    by the instances of many schools, each ``school`` keeps its tables in a schema of its own
    (:func:`schema_name`), so no two schools ever see each other's state; the school id is
    stored in the state and checked on every open. ``pre_ping``: each pooled connection is
    tested before use and replaced if the database dropped it (a store kept open between runs
    outlives a restart of PostgreSQL). ``max_connections``: at most this many connections at
    once to a database server (PostgreSQL), waited for beyond that; None: SQLAlchemy's pool
    default (5 kept, 10 more at a peak)."""
    parsed = sa.make_url(url)
    try:
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            _create_private_file(Path(str(parsed.database)))
        engine = namespaced(_create_engine(parsed, pre_ping, max_connections, school), school)
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


def _create_engine(
    url: sa.URL,
    pre_ping: bool = False,
    max_connections: int | None = None,
    school: str | None = None,
) -> sa.Engine:
    """An engine for the state store. SQLite runs in WAL mode with a generous busy timeout, so
    a long read (a merge) never blocks the batch commits, and the daemon and a manual command
    can share the file. On PostgreSQL each connection names the bridge and its school
    (``application_name``, seen in ``pg_stat_activity``) and the pool holds at most
    ``max_connections``."""
    # hide_parameters: a failed statement's message must not carry payloads (names, marks).
    if url.get_backend_name() != "sqlite":
        options: dict[str, Any] = {"hide_parameters": True, "pool_pre_ping": pre_ping}
        if max_connections is not None:
            options.update(pool_size=max_connections, max_overflow=0, pool_timeout=300)
        if url.get_backend_name() == "postgresql":
            name = f"asiou-bridge {school}" if school else "asiou-bridge"
            options["connect_args"] = {"application_name": name[:63]}
        return sa.create_engine(url, **options)
    engine = sa.create_engine(
        url, connect_args={"timeout": 60}, hide_parameters=True, pool_pre_ping=pre_ping
    )

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
