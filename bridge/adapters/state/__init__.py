"""The state store: what the portal holds, per (entity, key), as far as the bridge knows.

One row per delivered record: fingerprint of the canonical payload, delivery status, portal id,
mapping version, owner pupil and class (for scoped resync, erase and explain), and timestamps.
SQLAlchemy, so a SQLite file (default, created mode 0600) or a shared PostgreSQL database. The
schema is versioned in ``meta.schema_version`` and migrated forward on open.

``entries()`` streams one entity in ``sort_key`` order (binary collation, the same order the
planner merges in), so a full plan never holds the state of a whole entity in memory.

One module per part, every public name re-exported here:

- ``schema``: the tables, the schema version and the migrations;
- ``opening``: ``open_state``, the engines (SQLite in WAL mode, PostgreSQL) and the retry;
- ``schools``: per-school PostgreSQL schemas, the schema lock, the school id claimed;
- ``store``: ``SqlStateStore``, made of ``records`` (reading delivered records), ``delivery``
  (recording deliveries, batches, dead letters, consent withdrawals), ``admin`` (held plans,
  approvals, re-gate marks, portal checks) and ``gatecache`` (the gate's snapshots);
- ``postgres`` (used by ``delivery`` only, nothing re-exported): the upsert of acknowledged
  records on psycopg's own connection, by COPY;
- ``helpers``: the real clock, an approval's validity, chunks of keys.
"""

from bridge.adapters.state.delivery import NO_CONSENT, withdrawal_changes
from bridge.adapters.state.helpers import is_valid, utc_now
from bridge.adapters.state.opening import open_state
from bridge.adapters.state.records import LOOKUP_CHUNK
from bridge.adapters.state.schema import (
    DELETED,
    LAST_AS_OF,
    MIGRATIONS,
    SCHEMA_VERSION,
    approval,
    consent_withdrawal,
    dead_letter,
    delivery_batch,
    erasure,
    held_plan,
    meta,
    metadata,
    portal_check,
    portal_checked,
    record_state,
    regate,
    run_history,
    run_lock,
    watermark,
)
from bridge.adapters.state.schools import (
    SCHEMA_LOCK,
    SCHEMA_PREFIX,
    SCHOOL_ID,
    legacy_schema_name,
    lock_schemas,
    schema_name,
)
from bridge.adapters.state.store import SqlStateStore

__all__ = [
    "DELETED",
    "LAST_AS_OF",
    "LOOKUP_CHUNK",
    "MIGRATIONS",
    "NO_CONSENT",
    "SCHEMA_LOCK",
    "SCHEMA_PREFIX",
    "SCHEMA_VERSION",
    "SCHOOL_ID",
    "SqlStateStore",
    "approval",
    "consent_withdrawal",
    "dead_letter",
    "delivery_batch",
    "erasure",
    "held_plan",
    "is_valid",
    "legacy_schema_name",
    "lock_schemas",
    "meta",
    "metadata",
    "open_state",
    "portal_check",
    "portal_checked",
    "record_state",
    "regate",
    "run_history",
    "run_lock",
    "schema_name",
    "utc_now",
    "watermark",
    "withdrawal_changes",
]
