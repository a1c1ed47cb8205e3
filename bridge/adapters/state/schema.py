"""The state store's tables and their schema versions.

One row per delivered record in ``record_state`` (fingerprint of the canonical payload, delivery
status, portal id, mapping version, owner pupil and class, timestamps), beside the watermarks,
dead letters, delivery batches, run history and lock, erasures, consent withdrawals, held plans
and approvals, re-gate marks and what reconciliation found. The schema is versioned in
``meta.schema_version``; ``MIGRATIONS`` bring an older store forward on open. New tables that
need no version step are added by ``create_all``.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

SCHEMA_VERSION = 4
DELETED = "deleted"  # the status of a record deleted from the portal (a tombstone)

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
    # Which record holds a portal's id (version 4): partial, so a portal that gives no ids
    # (the reference import API) writes nothing to it.
    sa.Index(
        "ix_record_state_portal_id",
        "entity",
        "portal_id",
        sqlite_where=sa.text("portal_id IS NOT NULL"),
        postgresql_where=sa.text("portal_id IS NOT NULL"),
    ),
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
    # "sent" until answered, then "acked" ("partial": stopped partway, the rest in doubt)
    sa.Column("status", sa.String(10), nullable=False),
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

gate_cache = sa.Table(  # a new table: create_all adds it to an existing store (no version step)
    "gate_cache",
    metadata,
    sa.Column("entity", sa.String(40), primary_key=True),
    sa.Column("snapshot", sa.Text, nullable=False),
)

portal_match = sa.Table(  # a new table: create_all adds it to an existing store
    "portal_match",
    metadata,  # the last matching of the school's records with the portal's contingent
    sa.Column("entity", sa.String(40), primary_key=True),
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),  # bridge.core.matching.MatchStatus
    sa.Column("portal_id", sa.String(100)),
    sa.Column("candidates", sa.Text, nullable=False),  # portal ids, space-separated
    sa.Column("rule", sa.String(100), nullable=False),
    sa.Column("matched_at", sa.DateTime(timezone=True), nullable=False),
)
match_settlement = sa.Table(  # a new table: create_all adds it to an existing store
    "match_settlement",
    metadata,  # the admin's decisions (``asiou-bridge match confirm | reject``): final
    sa.Column("entity", sa.String(40), primary_key=True),
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("status", sa.String(20), nullable=False),  # "confirmed" | "rejected"
    sa.Column("portal_id", sa.String(100)),
    sa.Column("settled_by", sa.String(100), nullable=False),
    sa.Column("settled_at", sa.DateTime(timezone=True), nullable=False),
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


def _index_portal_ids(conn: sa.Connection) -> None:
    """Version 4: an index of the portal's ids (portals that assign them)."""
    for index in record_state.indexes:
        if index.name == "ix_record_state_portal_id":
            index.create(conn, checkfirst=True)


MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {
    2: _add_held_plans,
    3: _add_portal_checks,
    4: _index_portal_ids,
}
"""Schema version → the step that brings the version before it up to it."""
