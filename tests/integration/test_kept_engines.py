"""The daemon keeps the source and the state store open between its runs
(``bridge.service.wiring.KeptEngines``): a later run opens no connection and compiles no
statement anew, still works after the databases dropped every connection (restarted), and the
daemon closes every connection it opened when it stops."""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.core.mapping import MappingSet
from bridge.refportal.server import ReferencePortal
from bridge.service.config import load_config
from bridge.service.daemon import Daemon
from bridge.service.notify import Notifier
from bridge.service.runner import Request, Service
from tests import school
from tests.e2e import make_school, running_portal, write_config

PREVIEW = Request(command="plan", incremental=True)


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[ReferencePortal]:
    yield from running_portal(tmp_path)


class Connections:
    """DBAPI connections SQLite engines open and close, by database file (pool events)."""

    def __init__(self) -> None:
        self.opened: Counter[str] = Counter()
        self.closed: Counter[str] = Counter()
        self._files: dict[int, str] = {}

    def connect(self, dbapi: Any, _record: Any) -> None:
        if isinstance(dbapi, sqlite3.Connection):
            name = Path(dbapi.execute("PRAGMA database_list").fetchone()[2]).name
            self._files[id(dbapi)] = name
            self.opened[name] += 1

    def close(self, dbapi: Any, _record: Any) -> None:
        name = self._files.pop(id(dbapi), None)
        if name is not None:
            self.closed[name] += 1


@pytest.fixture
def connections() -> Iterator[Connections]:
    seen = Connections()
    sa.event.listen(sa.pool.Pool, "connect", seen.connect)
    sa.event.listen(sa.pool.Pool, "close", seen.close)
    yield seen
    sa.event.remove(sa.pool.Pool, "connect", seen.connect)
    sa.event.remove(sa.pool.Pool, "close", seen.close)


def _cache_misses() -> tuple[list[str], Any]:
    """Statements executed from now on that SQLAlchemy compiled afresh (a cache miss)."""
    missed: list[str] = []

    def note(conn: Any, cursor: Any, statement: str, params: Any, context: Any, *_: Any) -> None:
        if context is not None and context.cache_hit == context.dialect.CACHE_MISS:
            missed.append(statement)

    sa.event.listen(sa.engine.Engine, "after_cursor_execute", note)
    return missed, note


def test_a_daemon_reuses_its_connections_and_closes_them_when_it_stops(
    tmp_path: Path, portal: ReferencePortal, mappings: MappingSet, connections: Connections
) -> None:
    """A daemon's runs after the first open no connection to the source or the state store;
    once stopped, every connection it opened is closed."""
    asiou = make_school(tmp_path, pupils=20, days=10)
    path = write_config(tmp_path, asiou, portal.url, extra='[schedule]\nincremental_every = "1s"\n')
    config = load_config(path)
    service = Service(config, mappings)
    finished: list[Counter[str]] = []
    run = service.sync

    def counted(request: Request, *args: Any, **kwargs: Any) -> Any:
        try:
            return run(request, *args, **kwargs)
        finally:
            finished.append(connections.opened.copy())

    service.sync = counted  # type: ignore[method-assign]
    stop = threading.Event()
    daemon = threading.Thread(
        target=Daemon(config, mappings, Notifier.from_env({}), service).serve, args=(stop,)
    )
    daemon.start()
    try:
        deadline = threading.Event()
        while len(finished) < 3 and not deadline.wait(0.05):
            assert daemon.is_alive()
    finally:
        stop.set()
        daemon.join(timeout=60)
    assert not daemon.is_alive()
    assert service.last is not None
    assert service.last.exit_code == 0
    assert finished[0][asiou.name] >= 1
    assert finished[0]["state.sqlite"] >= 1
    assert finished[2] == finished[0]  # the second and third runs opened nothing
    assert connections.closed == connections.opened
    assert service.kept is None


def test_kept_engines_compile_nothing_again(
    tmp_path: Path, portal: ReferencePortal, mappings: MappingSet
) -> None:
    """With the engines kept, the second run's statements all come from SQLAlchemy's cache
    of compiled statements, and it plans what the first planned; only runs within
    ``kept_open`` keep their builds for the next run."""
    asiou = make_school(tmp_path, pupils=20, days=10)
    service = Service(load_config(write_config(tmp_path, asiou, portal.url)), mappings)
    service.sync(Request())
    with service.kept_open():
        first = service.preview(PREVIEW)
        missed, note = _cache_misses()
        try:
            second = service.preview(PREVIEW)
        finally:
            sa.event.remove(sa.engine.Engine, "after_cursor_execute", note)
    assert missed == []
    assert second.plan.counts == first.plan.counts
    with service.adapters() as io:
        assert not service._options(io, PREVIEW).keep_builds  # a one-shot run keeps nothing
    with service.kept_open(), service.adapters() as io:
        assert service._options(io, PREVIEW).keep_builds  # the daemon's runs keep their builds
    assert second.plan.records_read == first.plan.records_read


def _drop_connections(mariadb_url: str, postgres_url: str) -> int:
    """Kill every connection to the test's MariaDB and PostgreSQL databases (as a restart of
    both servers would); returns how many were killed."""
    killed = 0
    maria = sa.create_engine(mariadb_url)
    database = sa.make_url(mariadb_url).database
    with maria.connect() as conn:
        mine = conn.execute(sa.text("SELECT CONNECTION_ID()")).scalar()
        found = conn.execute(
            sa.text("SELECT id FROM information_schema.processlist WHERE db = :db AND id <> :me"),
            {"db": database, "me": mine},
        ).scalars()
        for pid in list(found):
            conn.execute(sa.text(f"KILL {int(pid)}"))
            killed += 1
    maria.dispose()
    pg = sa.create_engine(postgres_url)
    with pg.connect() as conn:
        killed += len(
            conn.execute(
                sa.text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            ).all()
        )
    pg.dispose()
    return killed


def test_kept_engines_work_after_the_databases_dropped_their_connections(
    tmp_path: Path, mariadb_url: str, postgres_url: str, mappings: MappingSet
) -> None:
    """A kept source on MariaDB over ODBC and a kept state store on PostgreSQL whose every
    connection was killed between two runs: the next run replaces them and plans the same."""
    school.write_school(sa.create_engine(mariadb_url))
    secret = tmp_path / "portal-secret"
    secret.write_text("unused", encoding="utf-8")
    secret.chmod(0o600)
    path = tmp_path / "bridge.toml"
    path.write_text(
        f'[source]\nurl = "{mariadb_url}"\n[state]\nurl = "{postgres_url}"\n'
        f'[mappings]\ndir = "{Path("mappings").resolve()}"\n'
        f'[portal]\nurl = "http://127.0.0.1:9"\nclient_id = "x"\nsecret_file = "{secret}"\n',
        encoding="utf-8",
    )
    service = Service(load_config(path), mappings)
    with service.kept_open():
        first = service.preview(PREVIEW)
        assert _drop_connections(mariadb_url, postgres_url) >= 2
        second = service.preview(PREVIEW)
    assert second.plan.counts == first.plan.counts
