"""Instances of one school starting together on an empty state database all open it."""

from __future__ import annotations

import multiprocessing
from pathlib import Path
from typing import Any

import pytest

PROCESSES = 16


def _open(url: str, school: str, barrier: Any, results: Any) -> None:
    from bridge.state import open_state

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
    workers = [context.Process(target=_open, args=(empty_url, "school-1", barrier, results))
               for _ in range(PROCESSES)]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert [o for o in outcomes if o != "ok"] == []
