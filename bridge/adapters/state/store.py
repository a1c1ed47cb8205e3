"""``SqlStateStore``: the state store on any SQLAlchemy database (SQLite, PostgreSQL), made of
its parts (reading records, recording deliveries, the admin tables, the gate's snapshots) with,
here, what concerns the store as a whole: creating and migrating its schema, its version,
closing, and forking."""

from __future__ import annotations

import sqlalchemy as sa

from bridge.adapters.seam import state_errors
from bridge.adapters.state import schools
from bridge.adapters.state.admin import AdminTables
from bridge.adapters.state.delivery import Deliveries
from bridge.adapters.state.gatecache import GateCaches
from bridge.adapters.state.helpers import utc_now
from bridge.adapters.state.matches import MatchTables
from bridge.adapters.state.records import RecordReads
from bridge.adapters.state.schema import MIGRATIONS, SCHEMA_VERSION, meta, metadata
from bridge.core.errors import FatalError
from bridge.ports import Clock


@state_errors
class SqlStateStore(RecordReads, Deliveries, AdminTables, GateCaches, MatchTables):
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
            schools.lock_schemas(conn)
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
                schools.claim(conn, school)

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

    def close(self) -> None:
        """Release the connection pool."""
        self.engine.dispose()

    def after_fork(self) -> None:
        """In a forked process: drop the parent's connections unclosed (SQLite and PostgreSQL
        connections must not cross a fork), so this process opens its own. The parent's pool
        stays referenced: collected here, it would close the parent's connections."""
        self.inherited = self.engine.pool
        self.engine.dispose(close=False)
