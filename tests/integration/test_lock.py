"""One sync at a time: the lock in the state database, on SQLite and on shared PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.adapters.state import SqlStateStore, open_state
from bridge.core.errors import LockBusy
from bridge.service.runs import SyncLock


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SqlStateStore]:
    url = (
        f"sqlite:///{tmp_path / 'state.sqlite'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    opened = open_state(url)
    yield opened
    opened.close()


def test_a_second_holder_is_refused_until_the_first_lets_go(store: SqlStateStore) -> None:
    """While one holds the lock another is refused with who holds it; after release it may."""
    first, second = SyncLock(store.engine, "sync:demo"), SyncLock(store.engine, "sync:demo")
    with first.held(wait=False):
        assert not second.try_acquire()
        with pytest.raises(LockBusy) as busy, second.held(wait=False):
            pass
        assert first.owner in busy.value.holder
    assert second.try_acquire()
    second.release()


def test_locks_of_different_schools_do_not_collide(store: SqlStateStore) -> None:
    """Instances of different schools sharing one state database run side by side."""
    one, other = SyncLock(store.engine, "sync:a"), SyncLock(store.engine, "sync:b")
    assert one.try_acquire()
    assert other.try_acquire()
    one.release()
    other.release()


def test_a_waiting_holder_says_so_once_and_gets_the_lock(store: SqlStateStore) -> None:
    """With wait, the second polls (saying so once) and gets the lock when it is released."""
    first, second = SyncLock(store.engine, "sync:demo"), SyncLock(store.engine, "sync:demo")
    assert first.try_acquire()
    said: list[str] = []
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 3:
            first.release()

    with second.held(wait=True, say=said.append, sleep=sleep):
        assert len(polls) == 3
    assert len(said) == 1
    assert "waiting for it to finish" in said[0]


def test_a_dead_holder_on_this_host_is_taken_over(tmp_path: Path) -> None:
    """A lease left by a process that no longer exists does not block the next sync."""
    store = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    dead = SyncLock(store.engine, "sync:demo")
    assert dead.try_acquire()
    if dead._beat is not None:
        dead._beat.set()
    with store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE run_lock SET pid = 2147483000")
    fresh = SyncLock(store.engine, "sync:demo")
    assert fresh.try_acquire()
    fresh.release()
    store.close()


def test_schools_sharing_postgresql_keep_separate_state(postgres_url: str) -> None:
    """Two schools' instances on one PostgreSQL database never see each other's entries,
    watermarks or approvals."""
    from bridge.core.model import Change, Op, Record
    from bridge.ports import Delivered

    seven, eight = open_state(postgres_url, school="7"), open_state(postgres_url, school="8")
    record = Record("pupil", "17", "i17", {"x": 1}, "f")
    seven.record([Delivered(Change(Op.CREATE, "pupil", "17", "i17", record))])
    seven.set_watermarks({"pupil": "2026-01-01 00:00:00"})
    seven.hold_plan("plan", "held")
    seven.approve("plan", "admin")
    assert seven.count("pupil") == 1
    assert eight.count("pupil") == 0
    assert eight.watermark("pupil") is None
    assert not eight.is_approved("plan")
    seven.close()
    eight.close()
