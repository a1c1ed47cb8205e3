"""Re-gating over real HTTP against the reference portal on 127.0.0.1: a withdrawal (or a
consent withdrawal) whose incremental run is cut off after any batch is finished by the next
incremental run, and a withdrawal dated ahead takes effect in the first incremental run after
its day."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.adapters.portal_client import PortalClient, PortalSettings
from bridge.adapters.source import SqlSource
from bridge.adapters.state import open_state
from bridge.core.errors import ExitCode, PortalUnavailable
from bridge.ports import Operation, OperationResult
from bridge.refportal.server import DEMO_CLIENT, ReferencePortal
from bridge.service.engine import RunOptions, SyncResult, run_sync
from tests import school
from tests.e2e import MAPPINGS, NO_GUARD, running_portal, snapshot

AS_OF = date(2025, 12, 31)


class CutClient:
    """The HTTP client, cut off (as by a kill) once ``allowed`` batches were answered."""

    def __init__(self, client: PortalClient, allowed: int | None) -> None:
        self.client, self.allowed = client, allowed
        self.batch_size, self.concurrency = client.batch_size, client.concurrency
        self.support = client.support

    def send(self, operations: Sequence[Operation]) -> list[OperationResult]:
        if self.allowed is not None:
            if self.allowed <= 0:
                raise PortalUnavailable(1, "the bridge was killed")
            self.allowed -= 1
        return self.client.send(operations)

    def fingerprints(self, entity: str) -> dict[str, str]:
        return self.client.fingerprints(entity)


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[ReferencePortal]:
    yield from running_portal(tmp_path)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    built = sa.create_engine(f"sqlite:///{tmp_path / 'asiou.sqlite'}")
    school.write_school(built)
    yield built
    built.dispose()


def run(
    engine: sa.Engine,
    folder: Path,
    url: str,
    *,
    incremental: bool,
    as_of: date = AS_OF,
    cut_after: int | None = None,
) -> SyncResult:
    client = PortalClient(
        PortalSettings(
            base_url=url,
            school="demo",
            client_id=DEMO_CLIENT[0],
            client_secret=DEMO_CLIENT[1],
            batch_size=3,
            max_attempts=2,
            backoff_initial=0.01,
            backoff_max=0.01,
        )
    )
    state = open_state(f"sqlite:///{folder / 'state.sqlite'}")
    try:
        return run_sync(
            MAPPINGS,
            SqlSource(engine),
            state,
            CutClient(client, cut_after),
            RunOptions(as_of=as_of, incremental=incremental, thresholds=NO_GUARD),
            run_id=f"r-{incremental}-{cut_after}",
        )
    finally:
        client.close()
        state.close()


@pytest.mark.parametrize("change", school.GATE_CHANGES)
@pytest.mark.parametrize("cut_after", [0, 1, 2, 3, 4, 6])
def test_a_gate_change_cut_off_after_any_batch_is_finished_by_the_next_incremental_run(
    engine: sa.Engine, tmp_path: Path, portal: ReferencePortal, cut_after: int, change: str
) -> None:
    """After the cut-off run and one more incremental run, the portal holds nothing of pupil 1
    that the withdrawal (or the consent withdrawal) forbids."""
    assert run(engine, tmp_path, portal.url, incremental=False).exit_code == ExitCode.OK
    forbidden = school.forbidden_by(change)
    assert forbidden <= set(snapshot(portal.url))
    with engine.begin() as conn:
        school.make_gate_change(conn, change)
    run(engine, tmp_path, portal.url, incremental=True, cut_after=cut_after)
    again = run(engine, tmp_path, portal.url, incremental=True)
    assert again.exit_code == ExitCode.OK
    assert forbidden & set(snapshot(portal.url)) == set()


def test_a_withdrawal_dated_ahead_archives_the_pupil_after_its_day_over_http(
    engine: sa.Engine, tmp_path: Path, portal: ReferencePortal
) -> None:
    """No row changes between the runs; the incremental run after the 10th archives pupil 1."""
    with engine.begin() as conn:
        school.withdraw_pupil_1(conn, date(2025, 12, 10), modified_at=None)
        school.move_watermarks_on(conn)
    first = run(engine, tmp_path, portal.url, incremental=False, as_of=date(2025, 12, 1))
    assert first.exit_code == ExitCode.OK
    assert snapshot(portal.url)[("pupil", "1")][1]["active"] is True
    later = run(engine, tmp_path, portal.url, incremental=True, as_of=date(2025, 12, 11))
    assert later.exit_code == ExitCode.OK
    assert snapshot(portal.url)[("pupil", "1")][1]["active"] is False
