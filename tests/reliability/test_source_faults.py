"""Source-fault trials: the ASIOU database fails or lies, and the portal must lose nothing.

A MariaDB connection killed by the server in the middle of a full read must plan no deletes,
send none and advance no watermark; the next complete run repairs everything. A source that
suddenly looks empty, or has lost a whole class, must be held by the guards until an admin
approves that exact plan.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.adapters.portal_client import PortalClient, PortalSettings
from bridge.adapters.source import SqlSource
from bridge.adapters.state import open_state
from bridge.core.errors import ExitCode, SourceError
from bridge.core.guard import GuardHold, Thresholds
from bridge.core.mapping import CompiledMapping
from bridge.core.model import Change
from bridge.demo.generate import SchoolSpec, generate
from bridge.ports import Rescan, Row, Source
from bridge.refportal.server import DEMO_CLIENT, ReferencePortal
from bridge.service.engine import RunOptions, SyncResult, plan_run, run_sync
from tests.e2e import (
    AS_OF,
    MAPPINGS,
    NO_GUARD,
    Snapshot,
    expected_export,
    expected_export_of,
    make_school,
    running_portal,
    snapshot,
)

TOUCHED = datetime(2026, 5, 20, 10, 0)
WHOLE_CLASS_ONLY = Thresholds(max_delete_fraction=1.0, min_deletes=10**9, hold_whole_class=True)
JOURNAL = ("period_mark", "absence", "mark", "lesson_work", "lesson")


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[ReferencePortal]:
    folder = tmp_path / "portal"
    folder.mkdir()
    yield from running_portal(folder)


def _client(url: str) -> PortalClient:
    return PortalClient(
        PortalSettings(
            base_url=url,
            school="demo",
            client_id=DEMO_CLIENT[0],
            client_secret=DEMO_CLIENT[1],
            batch_size=50,
            max_attempts=30,
            backoff_initial=0.01,
            backoff_max=0.05,
            max_retry_after=1.0,
            read_timeout=10.0,
        )
    )


def _sync(
    engine: sa.Engine,
    state_path: Path,
    url: str,
    thresholds: Thresholds,
    *,
    wrap: Callable[[SqlSource], Source] | None = None,
    run_id: str = "run",
) -> SyncResult:
    """One full sync of the source on ``engine`` into the portal at ``url``."""
    source: Source = SqlSource(engine) if wrap is None else wrap(SqlSource(engine))
    state = open_state(f"sqlite:///{state_path}")
    client = _client(url)
    try:
        return run_sync(
            MAPPINGS,
            source,
            state,
            client,
            RunOptions(as_of=AS_OF, thresholds=thresholds),
            run_id=run_id,
        )
    finally:
        client.close()
        state.close()


def _sync_url(
    source_url: str, state_path: Path, url: str, thresholds: Thresholds, **options: Any
) -> SyncResult:
    engine = sa.create_engine(source_url)
    try:
        return _sync(engine, state_path, url, thresholds, **options)
    finally:
        engine.dispose()


def _export(source_url: str) -> Snapshot:
    """What the portal must hold after a complete sync of any source URL (MariaDB included)."""
    return expected_export_of(source_url)


def _watermarks(state_path: Path) -> dict[str, str | None]:
    state = open_state(f"sqlite:///{state_path}")
    try:
        return {e: state.watermark(e) for e in MAPPINGS.entities}
    finally:
        state.close()


def _dry_plan(source_url: str, state_path: Path) -> list[Change]:
    """The deletes a complete read would plan now (plan_run without a sink writes nothing)."""
    engine = sa.create_engine(source_url)
    state = open_state(f"sqlite:///{state_path}")
    try:
        return plan_run(
            MAPPINGS, SqlSource(engine), state, RunOptions(as_of=AS_OF, thresholds=NO_GUARD)
        ).plan.deletes
    finally:
        state.close()
        engine.dispose()


def _approve(state_path: Path, plan_id: str) -> None:
    state = open_state(f"sqlite:///{state_path}")
    try:
        state.approve(plan_id, "test-admin")
    finally:
        state.close()


# --- 1. MariaDB: the bridge's connection killed by the server mid-read -----------------------


class KillMidRead:
    """A source that, after ``after`` rows of ``entity``, has the server kill the bridge's own
    connections (``KILL CONNECTION`` from a separate admin session): a real server-side fault.

    MariaDB Connector/ODBC receives a result set whole before the first fetch, so the rows of
    the read under way still arrive; the dead session shows at its next round trip (the
    rollback as the read's connection closes), which must fail the run like a broken fetch."""

    def __init__(
        self,
        inner: SqlSource,
        admin: sa.Engine,
        ids: list[int],
        entity: str = "mark",
        after: int = 1000,
    ) -> None:
        self.inner, self.admin, self.ids = inner, admin, ids
        self.entity, self.after = entity, after
        self.killed: list[int] = []

    def read(
        self, mapping: CompiledMapping, since: datetime | None = None, rescan: Rescan | None = None
    ) -> Iterator[Row]:
        for count, row in enumerate(self.inner.read(mapping, since, rescan), start=1):
            yield row
            if mapping.entity == self.entity and count == self.after and not self.killed:
                with self.admin.connect() as conn:
                    for conn_id in self.ids:
                        conn.execute(sa.text(f"KILL CONNECTION {int(conn_id)}"))
                        self.killed.append(conn_id)


def _remember_connection_ids(engine: sa.Engine, ids: list[int]) -> None:
    def connected(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        try:
            ids.append(int(cursor.execute("SELECT CONNECTION_ID()").fetchone()[0]))
        finally:
            cursor.close()

    sa.event.listen(engine, "connect", connected)


def _alive(admin: sa.Engine, ids: list[int]) -> list[int]:
    with admin.connect() as conn:
        live = {
            int(r[0])
            for r in conn.execute(sa.text("SELECT ID FROM information_schema.PROCESSLIST"))
        }
    return [i for i in ids if i in live]


def test_mariadb_connection_killed_mid_read_plans_no_deletes_then_recovers(
    tmp_path: Path, mariadb_url: str, portal: ReferencePortal
) -> None:
    """A server-side KILL of the bridge's MariaDB connection during a full read sends no delete,
    advances no watermark and exits SOURCE_UNAVAILABLE; the next full sync repairs the portal."""
    state_path = tmp_path / "state.sqlite"
    writer = sa.create_engine(mariadb_url)
    admin = sa.create_engine(mariadb_url, poolclass=sa.NullPool)
    try:
        generate(writer, SchoolSpec(pupils=60, days=40, seed=17))
        first = _sync_url(mariadb_url, state_path, portal.url, NO_GUARD, run_id="first")
        assert first.exit_code == ExitCode.OK, first.delivery.failure
        before = snapshot(portal.url)
        assert before == _export(mariadb_url)
        marks_before = _watermarks(state_path)

        # ASIOU loses marks on both sides of the kill point, and one subject row is touched
        # (same content, later modified_at) so a complete run would advance its watermark.
        marks = sorted(int(k) for e, k in before if e == "mark")
        gone = marks[10:200:19] + marks[-150::15]
        with writer.begin() as conn:
            conn.execute(
                sa.text("DELETE FROM mark WHERE id IN :ids").bindparams(
                    sa.bindparam("ids", expanding=True)
                ),
                {"ids": gone},
            )
            conn.execute(
                sa.text(
                    "UPDATE subject SET modified_at = :t WHERE id = "
                    "(SELECT MIN(id) FROM (SELECT id FROM subject) AS s)"
                ),
                {"t": TOUCHED},
            )
        writer.dispose()
        would_delete = {(c.entity, c.key) for c in _dry_plan(mariadb_url, state_path)}
        assert {("mark", str(i)) for i in gone} <= would_delete

        ids: list[int] = []
        engine = sa.create_engine(mariadb_url)
        _remember_connection_ids(engine, ids)
        killer: list[KillMidRead] = []

        def wrap(inner: SqlSource) -> Source:
            killer.append(KillMidRead(inner, admin, ids))
            return killer[0]

        try:
            broken = _sync(engine, state_path, portal.url, NO_GUARD, wrap=wrap, run_id="killed")
        finally:
            engine.dispose()
        assert len(ids) == 1  # one pooled connection served every read of the run
        assert killer[0].killed == ids
        assert _alive(admin, ids) == []  # the server really dropped the bridge's session
        assert isinstance(broken.plan.error, SourceError)
        assert "mark" in str(broken.plan.error)
        assert broken.exit_code == ExitCode.SOURCE_UNAVAILABLE
        assert broken.plan.plan.deletes == []
        assert snapshot(portal.url) == before  # nothing deleted (nor otherwise changed)
        assert _watermarks(state_path) == marks_before

        healed = _sync_url(mariadb_url, state_path, portal.url, NO_GUARD, run_id="healed")
        assert healed.exit_code == ExitCode.OK, healed.delivery.failure
        after = snapshot(portal.url)
        assert after == _export(mariadb_url)
        assert not {("mark", str(i)) for i in gone} & after.keys()
        subject_mark = _watermarks(state_path)["subject"]
        assert subject_mark is not None
        assert subject_mark.startswith("2026-05-20 10:00")
    finally:
        writer.dispose()
        admin.dispose()


# --- 2 and 3. SQLite: a source that suddenly looks empty, or has lost one class --------------


@pytest.fixture
def school(tmp_path: Path) -> Path:
    return make_school(tmp_path, pupils=40, days=20, seed=23)


def _first_sync(school: Path, state_path: Path, url: str) -> Snapshot:
    result = _sync_url(f"sqlite:///{school}", state_path, url, Thresholds(), run_id="first")
    assert result.exit_code == ExitCode.OK, result.delivery.failure
    before = snapshot(url)
    assert before == expected_export(school)
    return before


def _held_then_approved(
    school: Path, state_path: Path, url: str, before: Snapshot, guard: Thresholds
) -> SyncResult:
    """Run the suspicious sync (held, portal unchanged), approve its plan, run again."""
    held = _sync_url(f"sqlite:///{school}", state_path, url, guard, run_id="held")
    assert held.plan.held
    assert held.plan.plan.deletes
    assert held.exit_code == ExitCode.PLAN_HELD
    assert snapshot(url).keys() == before.keys()  # not one DELETE reached the portal
    again = _sync_url(f"sqlite:///{school}", state_path, url, guard, run_id="again")
    assert again.exit_code == ExitCode.PLAN_HELD  # still held: nobody approved it
    assert again.plan.plan.plan_id == held.plan.plan.plan_id
    _approve(state_path, held.plan.plan.plan_id)
    approved = _sync_url(f"sqlite:///{school}", state_path, url, guard, run_id="ok")
    assert approved.plan.approved
    assert not approved.plan.held
    assert approved.exit_code == ExitCode.OK, approved.delivery.failure
    assert snapshot(url) == expected_export(school)
    return held


@pytest.mark.parametrize("emptied", [("mark",), JOURNAL], ids=["marks", "journal"])
def test_suddenly_empty_source_is_held_until_approved(
    tmp_path: Path, school: Path, portal: ReferencePortal, emptied: tuple[str, ...]
) -> None:
    """A source whose journal tables are suddenly empty is held (PLAN_HELD, nothing deleted)
    until the plan id is approved, and then goes through."""
    state_path = tmp_path / "state.sqlite"
    before = _first_sync(school, state_path, portal.url)
    engine = sa.create_engine(f"sqlite:///{school}")
    with engine.begin() as conn:
        for table in emptied:
            conn.execute(sa.text(f"DELETE FROM {table}"))
    engine.dispose()
    held = _held_then_approved(school, state_path, portal.url, before, Thresholds())
    assert {h.entity for h in held.plan.guard_holds} >= {"mark"}
    assert not any(e == "mark" for e, _ in snapshot(portal.url))


def test_source_missing_one_class_is_held_by_the_whole_class_guard(
    tmp_path: Path, school: Path, portal: ReferencePortal
) -> None:
    """A source that lost every row of one class is held by the whole-class guard, and nothing
    of that class is deleted on the portal until the plan is approved."""
    state_path = tmp_path / "state.sqlite"
    before = _first_sync(school, state_path, portal.url)
    enrolled = [(k, p["class"]) for (e, k), (_, p) in before.items() if e == "enrollment"]
    victim = str(max(c for _, c in enrolled))
    gone = [k for k, c in enrolled if str(c) == victim]
    engine = sa.create_engine(f"sqlite:///{school}")
    lessons = "SELECT id FROM lesson WHERE class_id = :c"
    with engine.begin() as conn:
        for statement in (
            f"DELETE FROM mark WHERE work_id IN (SELECT id FROM lesson_work WHERE "
            f"lesson_id IN ({lessons}))",
            f"DELETE FROM absence WHERE lesson_id IN ({lessons})",
            f"DELETE FROM lesson_work WHERE lesson_id IN ({lessons})",
            "DELETE FROM lesson WHERE class_id = :c",
            "DELETE FROM group_pupil WHERE group_id IN "
            "(SELECT id FROM class_group WHERE class_id = :c)",
            "DELETE FROM class_group WHERE class_id = :c",
            "DELETE FROM pupil_move WHERE class_id = :c",
        ):
            conn.execute(sa.text(statement), {"c": int(victim)})
    engine.dispose()
    # Only the whole-class guard may hold: the share guard is off, so it alone is tested.
    held = _held_then_approved(school, state_path, portal.url, before, WHOLE_CLASS_ONLY)
    assert held.plan.guard_holds == [GuardHold("enrollment", len(gone), len(gone), victim)]
    assert not any(
        e == "enrollment" and p["class"] == victim
        for (e, _), (_, p) in snapshot(portal.url).items()
    )
