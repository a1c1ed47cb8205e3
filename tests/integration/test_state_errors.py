"""Driver errors of the state store and the run history are translated at their seam: above
the adapters only the project's own StateError is seen (issue 10, item 4), and the CLI says what
failed and what to do, with no traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.adapters.state import SqlStateStore, open_state
from bridge.core.errors import ExitCode, FatalError, StateError
from bridge.service.runs import RunLog, SyncLock
from tests.e2e import make_school, write_config


def _broken(tmp_path: Path, table: str) -> SqlStateStore:
    """An open state store whose ``table`` is dropped behind its back (a damaged file)."""
    store = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    with store.engine.begin() as conn:
        conn.exec_driver_sql(f"DROP TABLE {table}")
    return store


def test_a_failing_state_store_raises_state_error(tmp_path: Path) -> None:
    store = _broken(tmp_path, "record_state")
    try:
        with pytest.raises(StateError, match=r"count.*OperationalError: no such table") as raised:
            store.count("mark")
        assert isinstance(raised.value, FatalError)
        assert isinstance(raised.value.__cause__, sa.exc.OperationalError)
    finally:
        store.close()


def test_a_stream_that_fails_raises_state_error(tmp_path: Path) -> None:
    """A generator method (entries) fails while it is iterated: translated too."""
    store = _broken(tmp_path, "record_state")
    try:
        with pytest.raises(StateError, match="no such table"):
            list(store.entries("mark"))
    finally:
        store.close()


def test_run_history_and_lock_failures_raise_state_error(tmp_path: Path) -> None:
    store = _broken(tmp_path, "run_history")
    try:
        with pytest.raises(StateError, match=r"RunLog\.start"):
            RunLog(store.engine).start("r1", "cli", None, "sync", "full")
        with store.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE run_lock")
        with pytest.raises(StateError, match=r"SyncLock\.try_acquire"):
            SyncLock(store.engine, "school-1").try_acquire()
    finally:
        store.close()


def test_the_cli_reports_a_damaged_state_store_without_a_traceback(tmp_path: Path) -> None:
    school = make_school(tmp_path, pupils=4, days=2)
    config = write_config(tmp_path, school, "http://127.0.0.1:9")
    (tmp_path / "state.sqlite").write_bytes(b"this is not a database" * 100)
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "--config", str(config), "plan"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == ExitCode.FAILURE
    assert "The state store failed while opening the state store sqlite:///" in done.stderr
    assert "DatabaseError: file is not a database" in done.stderr
    assert "Traceback" not in done.stderr
