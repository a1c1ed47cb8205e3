"""End to end over real HTTP: when a pupil leaves, every subgroup membership of theirs on the
reference portal closes on the day they left (issue 9, item 9), in incremental and full runs;
a readmission opens them again."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.core.errors import ExitCode
from bridge.demo import schema
from bridge.refportal.server import ReferencePortal
from tests.e2e import Bridge, Snapshot, make_school, running_portal, snapshot

LATER = datetime(2030, 1, 1, 12, 0)  # after every generated watermark
LEFT_ON = date(2026, 3, 16)  # before the runs' day (2026-06-01), after every generated admission


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[ReferencePortal]:
    yield from running_portal(tmp_path)


@pytest.fixture
def bridge(tmp_path: Path, portal: ReferencePortal) -> Bridge:
    return Bridge(make_school(tmp_path, pupils=30, days=12), tmp_path / "state.sqlite", portal.url)


def _open_memberships(found: Snapshot) -> dict[str, set[str]]:
    """Per pupil, the keys of their subgroup memberships open on the portal."""
    held: dict[str, set[str]] = {}
    for (entity, key), (_, data) in found.items():
        if entity == "group_member" and data.get("date_to") is None:
            held.setdefault(str(data["pupil"]), set()).add(key)
    return held


def _memberships_of(found: Snapshot, pupil: str) -> dict[str, object]:
    return {
        key: data.get("date_to")
        for (entity, key), (_, data) in found.items()
        if entity == "group_member" and str(data["pupil"]) == pupil
    }


def _move(bridge: Bridge, pupil: str, date_out: date | None) -> None:
    """End (or, with None, reopen) the pupil's last stay, as the school's office would."""
    engine = sa.create_engine(f"sqlite:///{bridge.school}")
    table = schema.pupil_move
    with engine.begin() as conn:
        last = conn.execute(
            sa.select(sa.func.max(table.c.id)).where(table.c.pupil_id == int(pupil))
        ).scalar_one()
        conn.execute(
            table.update().where(table.c.id == last).values(date_out=date_out, modified_at=LATER)
        )
    engine.dispose()


@pytest.mark.parametrize("incremental", [True, False], ids=["incremental", "full"])
def test_a_withdrawal_closes_every_membership_of_the_pupil_on_the_portal(
    bridge: Bridge, incremental: bool
) -> None:
    assert bridge.sync(run_id="first").exit_code == ExitCode.OK
    opened = _open_memberships(snapshot(bridge.url))
    pupil = max(opened, key=lambda p: (len(opened[p]), p))  # the pupil in most subgroups
    assert len(opened[pupil]) >= 2
    others = {p: keys for p, keys in opened.items() if p != pupil}

    _move(bridge, pupil, LEFT_ON)
    outcome = bridge.sync(incremental=incremental, run_id="left")
    assert outcome.exit_code == ExitCode.OK, outcome.delivery
    found = snapshot(bridge.url)
    closed = _memberships_of(found, pupil)
    assert opened[pupil] <= closed.keys()
    assert {closed[key] for key in opened[pupil]} == {LEFT_ON.isoformat()}
    assert found[("pupil", pupil)][1]["active"] is False
    assert {p: keys for p, keys in _open_memberships(found).items() if p != pupil} == others

    _move(bridge, pupil, None)  # readmitted: the memberships the school never closed reopen
    assert bridge.sync(incremental=incremental, run_id="back").exit_code == ExitCode.OK
    reopened = _memberships_of(snapshot(bridge.url), pupil)
    assert {reopened[key] for key in opened[pupil]} == {None}
