"""One school's state on a shared PostgreSQL: its schema (named from the school id, a legacy
name adopted), the lock under which schemas are created and migrated, and the school id claimed
in the state and checked on every open."""

from __future__ import annotations

import hashlib
import re

import sqlalchemy as sa

from bridge.adapters.state.schema import meta
from bridge.core.errors import FatalError

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


def namespaced(engine: sa.Engine, school: str | None) -> sa.Engine:
    """``engine``, on PostgreSQL with a ``school``, in that school's schema: created, or an
    old-named one of the school renamed, under the schema lock."""
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


def claim(conn: sa.Connection, school: str) -> None:
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
