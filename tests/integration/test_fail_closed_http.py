"""End to end over real HTTP: the gate fails closed. A consent value that is not a clear yes,
or a rejected row of a pupil, enrolment or guardian link, removes everything of the pupil from
the reference portal, in full and incremental runs, links before guardians (no 409)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.core.errors import ExitCode
from bridge.demo import schema
from bridge.refportal.server import ReferencePortal
from tests.e2e import Bridge, Snapshot, make_school, running_portal, snapshot

LATER = datetime(2030, 1, 1, 12, 0)  # after every generated watermark
BAD_CONSENT: list[Any] = [2, -1, "отозвано", "withdrawn", "нет.", 1.5, b"\x00\xffBLOB"]


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[ReferencePortal]:
    yield from running_portal(tmp_path, seed=7)


@pytest.fixture
def bridge(tmp_path: Path, portal: ReferencePortal) -> Bridge:
    return Bridge(make_school(tmp_path, pupils=30, days=12), tmp_path / "state.sqlite", portal.url)


def _busiest_pupil(found: Snapshot) -> str:
    """The delivered pupil with the most records on the portal (and at least one guardian)."""
    linked = {str(d["pupil"]) for (e, _), (_, d) in found.items() if e == "guardian_link"}
    owned = Counter(str(d["pupil"]) for (_, _), (_, d) in found.items() if "pupil" in d)
    return next(p for p, _ in owned.most_common() if p in linked)


def _of_pupil(found: Snapshot, pupil: str) -> set[tuple[str, str]]:
    """The live records of one pupil on the portal: the pupil and everything naming it."""
    return {
        k for k, (_, d) in found.items() if k == ("pupil", pupil) or str(d.get("pupil")) == pupil
    }


def _sole_guardians(found: Snapshot, pupil: str) -> set[tuple[str, str]]:
    """Guardians on the portal that represent only this pupil."""
    links = [
        (str(d["pupil"]), str(d["guardian"]))
        for (e, _), (_, d) in found.items()
        if e == "guardian_link"
    ]
    theirs = {g for p, g in links if p == pupil}
    others = {g for p, g in links if p != pupil}
    return {("guardian", g) for g in theirs - others}


def _update(bridge: Bridge, table: sa.Table, row_id: str, **values: Any) -> None:
    engine = sa.create_engine(f"sqlite:///{bridge.school}")
    with engine.begin() as conn:
        conn.execute(
            table.update().where(table.c.id == int(row_id)).values(modified_at=LATER, **values)
        )
    engine.dispose()


def _assert_gone(
    bridge: Bridge, pupil: str, guardians: set[tuple[str, str]], incremental: bool
) -> None:
    """Sync (incremental or full): the run succeeds, nothing is refused, and nothing of the
    pupil nor their sole guardians is live on the portal; a second run (the other kind) too."""
    for n, mode in enumerate((incremental, not incremental)):
        outcome = bridge.sync(incremental=mode, run_id=f"after-{n}")
        assert outcome.exit_code == ExitCode.OK, outcome.delivery
        assert not outcome.delivery.refused, outcome.delivery.refused
        found = snapshot(bridge.url)
        assert _of_pupil(found, pupil) == set()
        assert guardians & found.keys() == set()


@pytest.mark.parametrize("incremental", [False, True], ids=["full", "incremental"])
@pytest.mark.parametrize("value", BAD_CONSENT, ids=repr)
def test_a_consent_value_not_a_clear_yes_removes_the_pupil(
    bridge: Bridge, value: Any, incremental: bool
) -> None:
    """A delivered pupil whose consent becomes anything but a documented yes is removed from
    the portal with all their records and sole guardians, held as consent_unclear."""
    assert bridge.sync().exit_code == ExitCode.OK
    found = snapshot(bridge.url)
    pupil = _busiest_pupil(found)
    guardians = _sole_guardians(found, pupil)
    assert len(_of_pupil(found, pupil)) > 10
    assert guardians
    _update(bridge, schema.pupil, pupil, pd_consent=value)
    plan = bridge.sync(incremental=incremental, run_id="check").plan.plan
    assert plan.holds["pupil"]["consent_unclear"] == 1
    _assert_gone(bridge, pupil, guardians, incremental)


@pytest.mark.parametrize("incremental", [False, True], ids=["full", "incremental"])
@pytest.mark.parametrize("case", ["pupil", "enrollment", "guardian_link"])
def test_a_rejected_row_the_gate_reads_removes_its_pupil(
    bridge: Bridge, case: str, incremental: bool
) -> None:
    """A rejected pupil row (a control character), enrolment (ends before it begins) or
    guardian link (a control character) removes every record of its pupil from the portal,
    links before guardians."""
    assert bridge.sync().exit_code == ExitCode.OK
    found = snapshot(bridge.url)
    pupil = _busiest_pupil(found)
    guardians = _sole_guardians(found, pupil)
    if case == "pupil":
        _update(bridge, schema.pupil, pupil, last_name="Иванов\x07")
    else:
        entity = "enrollment" if case == "enrollment" else "guardian_link"
        key = next(
            k for (e, k), (_, d) in found.items() if e == entity and str(d["pupil"]) == pupil
        )
        if case == "enrollment":
            _update(
                bridge, schema.pupil_move, key, date_in=date(2025, 9, 1), date_out=date(2025, 8, 1)
            )
        else:
            _update(bridge, schema.pupil_guardian, key, relation="мать\x0b")
    _assert_gone(bridge, pupil, guardians, incremental)
