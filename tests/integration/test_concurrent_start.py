"""Instances of one school starting together on an empty state database all open it."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

PROCESSES = 16


def _open(url: str, school: str, barrier: Any, results: Any) -> None:
    from bridge.adapters.state import open_state

    barrier.wait()
    try:
        open_state(url, school=school).close()
        results.put("ok")
    except Exception as exc:  # noqa: BLE001 - the parent asserts on what failed
        results.put(f"{type(exc).__name__}: {exc}")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state.sqlite'}"
    return str(request.getfixturevalue("postgres_url"))


def test_instances_released_together_all_open_the_state(empty_url: str) -> None:
    """16 processes released by one barrier against a fresh state database all open it."""
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(PROCESSES), context.Queue()
    workers = [
        context.Process(target=_open, args=(empty_url, "school-1", barrier, results))
        for _ in range(PROCESSES)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [o for o in outcomes if o != "ok"] == []


def _busy_for(times: int, message: str) -> Any:
    """A schema lock that SQLite refuses ``times`` times at once with ``message``, then takes."""
    import sqlite3

    import sqlalchemy as sa

    from bridge.adapters import state

    refused: list[int] = []

    def lock(conn: sa.Connection) -> None:
        if len(refused) < times:
            refused.append(1)
            raise sa.exc.OperationalError("BEGIN IMMEDIATE", {}, sqlite3.OperationalError(message))
        state_lock(conn)

    state_lock = state.lock_schemas
    return lock, refused


def test_an_immediate_busy_answer_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's "database is locked" at once (fresh connections racing) is tried again."""
    from bridge.adapters import state

    lock, refused = _busy_for(3, "database is locked")
    monkeypatch.setattr(state.schools, "lock_schemas", lock)
    store = state.open_state(f"sqlite:///{tmp_path / 'state.sqlite'}", school="school-1")
    try:
        assert len(refused) == 3
        assert store.schema_version() == state.SCHEMA_VERSION
    finally:
        store.close()


def test_other_state_errors_are_not_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bridge.adapters import state
    from bridge.core.errors import FatalError

    lock, refused = _busy_for(100, "disk I/O error")
    monkeypatch.setattr(state.schools, "lock_schemas", lock)
    with pytest.raises(FatalError, match="disk I/O error"):
        state.open_state(f"sqlite:///{tmp_path / 'state.sqlite'}", school="school-1")
    assert len(refused) == 1
