"""End to end over real HTTP on 127.0.0.1: the bridge, the HTTP client, the reference portal."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
import sqlalchemy as sa

from bridge.adapters.state import open_state
from bridge.core.errors import ExitCode
from bridge.core.guard import Thresholds
from bridge.core.model import Op
from bridge.demo.changes import change_journal
from bridge.ports import Operation
from bridge.refportal.server import ReferencePortal
from tests.e2e import (
    Bridge,
    Snapshot,
    duplicates,
    expected_export,
    make_school,
    running_portal,
    set_faults,
    snapshot,
)
from tests.tiers import one_fast_each


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[ReferencePortal]:
    yield from running_portal(tmp_path, seed=7)


@pytest.fixture
def bridge(tmp_path: Path, portal: ReferencePortal) -> Bridge:
    return Bridge(make_school(tmp_path), tmp_path / "state.sqlite", portal.url)


def test_full_sync_makes_the_portal_equal_the_expected_export(bridge: Bridge) -> None:
    """After a full sync the portal holds the expected export record by record, data and all."""
    outcome = bridge.sync()
    assert outcome.exit_code == ExitCode.OK, outcome.delivery
    assert snapshot(bridge.url) == expected_export(bridge.school)
    assert duplicates(bridge.url) == []


def test_incremental_sync_sends_only_the_changes(bridge: Bridge) -> None:
    """After journal edits, an incremental sync sends exactly the records that differ, and the
    portal again equals the expected export."""
    bridge.sync()
    before = expected_export(bridge.school)
    engine = sa.create_engine(f"sqlite:///{bridge.school}")
    change_journal(engine, datetime(2026, 11, 1, 12, 0))
    engine.dispose()
    after = expected_export(bridge.school)
    differing = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    outcome = bridge.sync(incremental=True, run_id="second")
    assert outcome.exit_code == ExitCode.OK, outcome.delivery
    assert outcome.delivery.total == len(differing)
    assert snapshot(bridge.url) == after


FAULTS: dict[str, dict[str, Any]] = {
    "429 with Retry-After seconds": {"rates": {"429": 0.3}, "retry_after": 0},
    "429 with Retry-After as a date": {"rates": {"429-date": 0.3}},
    "500": {"rates": {"500": 0.3}},
    "502": {"rates": {"502": 0.3}},
    "503": {"rates": {"503": 0.3}},
    "an HTML error page": {"rates": {"html": 0.3}},
    "answers slower than the timeout": {"rates": {"slow": 0.2}, "slow_seconds": 1.5},
    "connection reset": {"rates": {"reset": 0.3}},
    "committed but the answer lost": {"rates": {"lost": 0.3}},
    "token expiry": {"rates": {"token-expired": 0.3}},
    "all of them mixed": {
        "rates": {
            "429": 0.05,
            "500": 0.05,
            "502": 0.03,
            "503": 0.03,
            "html": 0.03,
            "reset": 0.04,
            "lost": 0.04,
            "token-expired": 0.03,
        },
        "retry_after": 0,
    },
}


@pytest.mark.parametrize(("kind", "concurrency"), one_fast_each(list(FAULTS), [1, 4]))
def test_each_fault_kind_is_recovered_from(bridge: Bridge, kind: str, concurrency: int) -> None:
    """Under each injected fault the sync still delivers everything, exactly once, with one
    batch request at a time and with four in flight (the fast tier takes each kind once, the
    concurrencies in turn; the long tier the other half)."""
    set_faults(bridge.url, FAULTS[kind])
    bridge.read_timeout, bridge.concurrency = 1.0, concurrency
    outcome = bridge.sync()
    assert outcome.exit_code == ExitCode.OK, (kind, outcome.delivery)
    set_faults(bridge.url, {})
    assert snapshot(bridge.url) == expected_export(bridge.school)
    assert duplicates(bridge.url) == []


def test_a_portal_that_stays_down_fails_the_run_and_the_next_run_completes(bridge: Bridge) -> None:
    """When every request fails the run reports failure and records nothing unacknowledged; once
    the portal is back the next run delivers everything."""
    set_faults(bridge.url, {"rates": {"503": 1.0}})
    failed = bridge.sync()
    assert failed.exit_code == ExitCode.PARTIAL
    assert failed.delivery.total == 0
    set_faults(bridge.url, {})
    done = bridge.sync(run_id="again")
    assert done.exit_code == ExitCode.OK
    assert snapshot(bridge.url) == expected_export(bridge.school)


def _open_stays(portal_holds: Snapshot) -> list[dict[str, object]]:
    """The enrolments still open on the portal."""
    return [
        p for (e, _), (_, p) in portal_holds.items() if e == "enrollment" and p["date_to"] is None
    ]


def _fullest_class(open_stays: list[dict[str, object]]) -> str:
    """The class with the most open stays."""
    return str(
        max(
            (p["class"] for p in open_stays), key=lambda c: sum(p["class"] == c for p in open_stays)
        )
    )


def _edit_school(bridge: Bridge, sql: str, **params: object) -> None:
    """Change the school's ASIOU database with one statement."""
    engine = sa.create_engine(f"sqlite:///{bridge.school}")
    with engine.begin() as conn:
        conn.execute(sa.text(sql), params)
    engine.dispose()


def test_a_held_plan_archives_closes_and_deletes_nothing_until_approved(bridge: Bridge) -> None:
    """Deleting one class's enrolment rows holds the run (exit 5) with no pupil archived and no
    enrolment closed or deleted on the portal; once the plan is approved, everything goes."""
    guard = Thresholds()
    assert bridge.sync(thresholds=guard).exit_code == ExitCode.OK
    before = snapshot(bridge.url)
    _edit_school(
        bridge,
        "DELETE FROM pupil_move WHERE class_id = :c",
        c=int(_fullest_class(_open_stays(before))),
    )
    held = bridge.sync(run_id="held", thresholds=guard)
    assert held.exit_code == ExitCode.PLAN_HELD
    assert any(c.op is Op.ARCHIVE and c.entity == "pupil" for c in held.plan.plan.hiding)
    assert snapshot(bridge.url) == before  # no archive, no closure, no delete reached it
    state = open_state(f"sqlite:///{bridge.state_path}")
    try:
        state.approve(held.plan.plan.plan_id, "admin")
    finally:
        state.close()
    approved = bridge.sync(run_id="approved", thresholds=guard)
    assert approved.exit_code == ExitCode.OK, approved.delivery
    after = snapshot(bridge.url)
    assert after == expected_export(bridge.school)
    archived = [
        k
        for (e, k), (_, p) in after.items()
        if e == "pupil" and not p["active"] and before[(e, k)][1]["active"]
    ]
    assert archived


def test_an_incremental_run_holds_closing_a_whole_class_and_keeps_its_watermarks(
    bridge: Bridge,
) -> None:
    """Withdrawing every pupil of a class at once holds an incremental run (exit 5): no stay is
    closed, no pupil archived, no mark deleted on the portal, the watermarks stay and the next
    run plans the same plan again; approved, it all goes through."""
    guard = Thresholds()
    assert bridge.sync(thresholds=guard).exit_code == ExitCode.OK
    before = snapshot(bridge.url)
    open_stays = _open_stays(before)
    victim = _fullest_class(open_stays)
    _edit_school(
        bridge,
        "UPDATE pupil_move SET date_out = '2026-05-29', modified_at = "
        "'2026-11-01 12:00:00' WHERE class_id = :c AND date_out IS NULL",
        c=int(victim),
    )
    marks = _watermarks(bridge)
    held = bridge.sync(incremental=True, run_id="held", thresholds=guard)
    assert held.exit_code == ExitCode.PLAN_HELD
    closed = [c for c in held.plan.plan.hiding if c.entity == "enrollment"]
    assert len(closed) == sum(p["class"] == victim for p in open_stays)
    assert any(h.class_key == victim and h.closures for h in held.plan.guard_holds)
    assert snapshot(bridge.url) == before
    assert _watermarks(bridge) == marks
    again = bridge.sync(incremental=True, run_id="again", thresholds=guard)
    assert again.plan.plan.plan_id == held.plan.plan.plan_id
    assert snapshot(bridge.url) == before
    state = open_state(f"sqlite:///{bridge.state_path}")
    try:
        state.approve(held.plan.plan.plan_id, "admin")
    finally:
        state.close()
    approved = bridge.sync(incremental=True, run_id="approved", thresholds=guard)
    assert approved.exit_code == ExitCode.OK, approved.delivery
    assert snapshot(bridge.url) == expected_export(bridge.school)
    assert _watermarks(bridge) != marks


def _watermarks(bridge: Bridge) -> dict[str, str | None]:
    state = open_state(f"sqlite:///{bridge.state_path}")
    try:
        return {e: state.watermark(e) for e in ("enrollment", "pupil", "mark")}
    finally:
        state.close()


def _delete_on_portal(bridge: Bridge, entity: str, keys: list[str]) -> None:
    """Delete records directly on the portal, behind the bridge's back."""
    client = bridge.client()
    try:
        results = client.send([Operation(str(i), "DELETE", entity, k) for i, k in enumerate(keys)])
    finally:
        client.close()
    assert all(r.ok for r in results)


def _change_on_portal(bridge: Bridge, entity: str, key: str, data: dict[str, Any]) -> None:
    """Overwrite one record directly on the portal with other data and fingerprint."""
    client = bridge.client()
    try:
        results = client.send([Operation("0", "PUT", entity, key, "edited-on-portal", data)])
    finally:
        client.close()
    assert all(r.ok for r in results), results


def test_a_reconciling_sync_repairs_records_deleted_or_changed_on_the_portal(
    bridge: Bridge,
) -> None:
    """Records deleted or changed directly on the portal go unnoticed by a full sync, and a
    reconciling sync creates and updates them again, each with its reason, so the portal
    equals the expected export again."""
    assert bridge.sync().exit_code == ExitCode.OK
    expected = expected_export(bridge.school)
    marks = sorted(k for e, k in expected if e == "mark")
    gone = marks[:: max(1, len(marks) // 27)][:27]
    _delete_on_portal(bridge, "mark", gone)
    edited = marks[1]
    _change_on_portal(bridge, "mark", edited, {**expected[("mark", edited)][1], "value": "2"})
    assert bridge.sync(run_id="blind").delivery.total == 0  # a plain full run sees nothing
    outcome = bridge.sync(run_id="reconcile", reconcile=True)
    assert outcome.exit_code == ExitCode.OK, outcome.delivery
    assert outcome.delivery.delivered["mark"] == {"create": 27, "update": 1}
    drift = outcome.plan.drift
    assert drift is not None
    assert drift.entities["mark"].planned == {
        "create: missing on the portal": 27,
        "update: changed on the portal": 1,
    }
    assert {c.key for c in drift.samples if c.reason == "missing on the portal"} == set(gone)
    assert snapshot(bridge.url) == expected
    assert bridge.sync(run_id="after", reconcile=True).delivery.total == 0


def test_a_portal_that_lost_everything_is_held_until_approved_then_repaired(bridge: Bridge) -> None:
    """When the portal suddenly holds nothing, a reconciling sync sends nothing and exits 5
    (held); once an admin approves its id, the next one sends everything again."""
    assert bridge.sync().exit_code == ExitCode.OK
    requests.post(f"{bridge.url}/_portal/reset", timeout=10).raise_for_status()
    held = bridge.sync(run_id="held", reconcile=True)
    assert held.exit_code == ExitCode.PLAN_HELD
    assert held.delivery.total == 0
    assert snapshot(bridge.url) == {}
    state = open_state(f"sqlite:///{bridge.state_path}")
    try:
        state.approve(held.plan.held_id, "admin")
    finally:
        state.close()
    repaired = bridge.sync(run_id="repair", reconcile=True)
    assert repaired.exit_code == ExitCode.OK, repaired.delivery
    assert snapshot(bridge.url) == expected_export(bridge.school)
    assert duplicates(bridge.url) == []
