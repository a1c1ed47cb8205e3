"""The watchdog means it (issue #13, defect 3): while a sync is stuck on a MariaDB query that
waits on a lock, the daemon stops its WATCHDOG=1 pings (so systemd would kill and restart it);
the source's query timeout then fails the run, and the idle daemon pings again.

Real parts: MariaDB over pyodbc (the MariaDB ODBC driver) holding ``LOCK TABLES mark WRITE`` on
another connection, `asiou-bridge run` as a subprocess, a fake systemd notify socket."""

from __future__ import annotations

import itertools
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from contextlib import closing
from pathlib import Path

import sqlalchemy as sa

from bridge.refportal.server import ReferencePortal
from tests.e2e import running_portal, write_config
from tests.school import write_school

STALL = 2.0  # WATCHDOG_USEC 2 s: a ping every second, none after 2 s without progress
TIMEOUT = 8  # source.query_timeout


class Pings:
    """WATCHDOG=1 datagrams sent to a fake notify socket, with when they came."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.2)
        self.times: list[float] = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._listen, daemon=True)
        self.thread.start()

    def _listen(self) -> None:
        while not self.done.is_set():
            try:
                data = self.sock.recv(4096).decode()
            except TimeoutError:
                continue
            if "WATCHDOG=1" in data.splitlines():
                self.times.append(time.monotonic())

    def close(self) -> None:
        self.done.set()
        self.thread.join()
        self.sock.close()


def _config(tmp_path: Path, source_url: str, portal: ReferencePortal) -> Path:
    return write_config(
        tmp_path,
        "",
        portal.url,
        extra='[schedule]\nincremental_every = "1h"\n',
        source=f'url = "{source_url}"\nquery_timeout = {TIMEOUT}',
    )


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_a_query_blocked_on_a_lock_stops_the_pings_until_its_timeout(
    tmp_path: Path, mariadb_url: str
) -> None:
    engine = sa.create_engine(mariadb_url)
    write_school(engine)
    engine.dispose()
    locker = sa.create_engine(mariadb_url, poolclass=sa.NullPool).connect()
    pings = Pings(tmp_path / "notify")
    try:
        for portal in running_portal(tmp_path):
            config = _config(tmp_path, mariadb_url, portal)
            locker.exec_driver_sql("LOCK TABLES mark WRITE")
            daemon = subprocess.Popen(
                [sys.executable, "-m", "bridge", "--config", str(config), "run"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env={
                    **os.environ,
                    "NOTIFY_SOCKET": str(tmp_path / "notify"),
                    "WATCHDOG_USEC": str(int(STALL * 1_000_000)),
                },
            )
            try:
                time.sleep(TIMEOUT + 6)  # blocked, timed out, then idle for a few seconds
            finally:
                daemon.send_signal(signal.SIGTERM)
                out, _ = daemon.communicate(timeout=60)
    finally:
        locker.close()
        pings.close()
    assert daemon.returncode == 0, out[-3000:]
    assert "watchdog.stalled" in out
    gaps = _gaps(pings.times)
    stalled = max(gaps)
    assert stalled >= TIMEOUT - 2 * STALL, gaps  # no ping while the query waited on the lock
    after = pings.times[gaps.index(stalled) + 1 :]
    assert len(after) >= 3, gaps  # the run failed on the timeout; the idle daemon pings again
    with closing(sqlite3.connect(tmp_path / "state.sqlite")) as conn:
        (outcome,) = conn.execute("SELECT outcome FROM run_history").fetchone()
    assert outcome == "source_unavailable"
