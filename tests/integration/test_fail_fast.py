"""Settings no restart can fix stop the daemon before it tells systemd it is ready, with exit 3
(``RestartPreventExitStatus=2 3`` in the units) and a message naming the key; ``check`` says the
same; a missing SQLite source is reported, never created.

The daemon runs as systemd starts it: a subprocess with ``$NOTIFY_SOCKET`` naming a datagram
socket the test holds, so the test sees whether READY=1 was ever sent.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from bridge.core.errors import ExitCode
from bridge.refportal.server import DEMO_CLIENT
from tests.e2e import write_config

STARTS_WITHIN = 30.0
"""Seconds a daemon gets to exit or report ready."""


def _daemon(config: Path, tmp_path: Path) -> tuple[int | None, str, list[str]]:
    """``run`` under a fake systemd until it exits or reports ready (then it is stopped): its
    exit code (None: it got ready), its stderr and every notification it sent."""
    with closing(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)) as systemd:
        systemd.bind(str(tmp_path / "notify"))
        systemd.settimeout(0.1)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASIOU_BRIDGE_")}
        env.pop("CREDENTIALS_DIRECTORY", None)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "bridge", "--config", str(config), "run"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**env, "NOTIFY_SOCKET": str(tmp_path / "notify")},
        )
        told: list[str] = []
        deadline = time.monotonic() + STARTS_WITHIN
        while daemon.poll() is None and "READY=1" not in told and time.monotonic() < deadline:
            try:
                told.append(systemd.recv(4096).decode())
            except TimeoutError:
                continue
        code = daemon.poll()
        if code is None:
            daemon.terminate()
        _, err = daemon.communicate(timeout=60)
    return code, err, told


def _check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bridge", "--config", str(config), "check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _config(tmp_path: Path, extra: str = "") -> Path:
    """A config whose portal nobody listens on: the daemon must fail before it looks."""
    return write_config(tmp_path, tmp_path / "school.sqlite", "http://127.0.0.1:9", extra=extra)


def _refused_at_start(code: int | None, err: str, told: list[str], key: str) -> None:
    assert code == ExitCode.CONFIG, err[-3000:]
    assert "READY=1" not in told
    assert key in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("schedule", "key"),
    [
        ('incremental_every = "15m"\nhours = "19-7"', "schedule.hours"),
        ('incremental_every = "15m"\ndays = "sun-mon"', "schedule.days"),
        ('reconcile_at = "fri-mon 03:00"', "schedule.reconcile_at"),
    ],
)
def test_a_schedule_the_scheduler_cannot_run_stops_the_daemon_and_fails_check(
    tmp_path: Path, schedule: str, key: str
) -> None:
    """A range written high to low passes the patterns but not APScheduler: `check` names the
    key, and `run` exits 3 before READY=1 instead of dying with a traceback (exit 1)."""
    config = _config(tmp_path, f"[schedule]\n{schedule}\n")
    checked = _check(config)
    assert checked.returncode == ExitCode.CONFIG
    assert key in checked.stderr + checked.stdout
    _refused_at_start(*_daemon(config, tmp_path), key)


def test_a_busy_metrics_port_stops_the_daemon_before_it_is_ready(tmp_path: Path) -> None:
    """metrics.listen on a port another program holds: exit 3 before READY=1, naming the key."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = _config(tmp_path, f'[metrics]\nlisten = "127.0.0.1:{port}"\n')
        _refused_at_start(*_daemon(config, tmp_path), "metrics.listen")


def test_a_metrics_textfile_that_cannot_be_written_stops_the_daemon(tmp_path: Path) -> None:
    """metrics.textfile in a folder that is not there: exit 3 before READY=1, naming the key
    (and no traceback from writing "up 0" on the way out)."""
    textfile = tmp_path / "no-such-folder" / "asiou_bridge.prom"
    config = _config(tmp_path, f'[metrics]\ntextfile = "{textfile}"\n')
    _refused_at_start(*_daemon(config, tmp_path), "metrics.textfile")


def test_a_missing_portal_secret_stops_the_daemon_before_it_is_ready(tmp_path: Path) -> None:
    """No portal secret anywhere: exit 3 before READY=1 (it used to report ready, then fail
    every run)."""
    config = _config(tmp_path)
    text = config.read_text(encoding="utf-8")
    config.write_text(
        "\n".join(line for line in text.splitlines() if not line.startswith("secret_file")),
        encoding="utf-8",
    )
    _refused_at_start(*_daemon(config, tmp_path), "portal.secret_file")


def test_a_named_secret_file_that_is_not_there_stops_the_daemon(tmp_path: Path) -> None:
    """portal.secret_file naming no file: exit 3 before READY=1, naming the file."""
    config = _config(tmp_path)
    (tmp_path / "portal-secret").unlink()
    _refused_at_start(*_daemon(config, tmp_path), str(tmp_path / "portal-secret"))


def test_a_named_database_password_file_that_is_not_there_stops_the_daemon(
    tmp_path: Path,
) -> None:
    """source.password_file naming no file: exit 3 before READY=1 (it used to be passed over,
    and the first run connected without a password)."""
    text = _config(tmp_path).read_text(encoding="utf-8")
    config = tmp_path / "bridge.toml"
    config.write_text(
        text.replace("[state]", 'password_file = "db-password"\n[state]', 1), encoding="utf-8"
    )
    _refused_at_start(*_daemon(config, tmp_path), str(tmp_path / "db-password"))


def test_an_hourly_run_within_hours_is_scheduled_on_the_hour(tmp_path: Path) -> None:
    """``incremental_every = "1h"`` with ``hours = "7-19"`` (it used to pass `check`, then kill
    the daemon): the daemon starts and reports ready, and the runs fall on the hour."""
    from datetime import datetime

    from bridge.service.config import load_config
    from bridge.service.schedule import build_triggers

    config = _config(tmp_path, '[schedule]\nincremental_every = "1h"\nhours = "7-19"\n')
    trigger = build_triggers(load_config(config).schedule, str(config)).incremental
    after = datetime(2026, 12, 7, 6, 10).astimezone()
    fire = trigger.get_next_fire_time(None, after)
    assert (fire.hour, fire.minute) == (7, 0)
    fire = trigger.get_next_fire_time(None, datetime(2026, 12, 7, 19, 1).astimezone())
    assert (fire.day, fire.hour, fire.minute) == (8, 7, 0)
    code, err, told = _daemon(config, tmp_path)
    assert code is None, err[-3000:]
    assert "READY=1" in told


def test_a_missing_sqlite_source_is_reported_and_not_created(tmp_path: Path) -> None:
    """`check` against a SQLite source file that is not there says so (exit 4) and leaves no
    empty file behind (it used to create one and report "no such table")."""
    school = tmp_path / "nowhere" / "school.sqlite"
    school.parent.mkdir()
    config = write_config(tmp_path, school, "http://127.0.0.1:9", extra="retries = 1\n")
    checked = _check(config)
    assert checked.returncode == ExitCode.SOURCE_UNAVAILABLE, checked.stdout + checked.stderr
    assert f"source file not found: {school}" in checked.stdout
    assert not school.exists()


def test_a_relative_secret_file_is_read_beside_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``secret_file = "portal-secret"`` means the file beside the config file, whatever the
    working directory (the example config says "relative to this file")."""
    from bridge.service.config import load_config

    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "portal-secret").write_text(DEMO_CLIENT[1] + "\n", encoding="utf-8")
    config = folder / "bridge.toml"
    config.write_text(
        '[source]\nurl = "sqlite:///school.sqlite"\n[portal]\nsecret_file = "portal-secret"\n',
        encoding="utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_config(config)
    assert loaded.portal.secret_file == str(folder / "portal-secret")
    assert loaded.portal_secret({}) == DEMO_CLIENT[1]


def test_a_sqlite_source_is_opened_read_only(tmp_path: Path) -> None:
    """The source's connections to a SQLite file cannot write to it."""
    import sqlalchemy as sa

    from bridge.adapters.source import open_source

    school = tmp_path / "school.sqlite"
    with closing(sqlite3.connect(school)) as conn:
        conn.execute("CREATE TABLE pupil (id INTEGER)")
    source = open_source(f"sqlite:///{school}")
    try:
        with source.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM pupil")).scalar_one() == 0
            with pytest.raises(sa.exc.OperationalError, match="readonly"):
                conn.execute(sa.text("INSERT INTO pupil VALUES (1)"))
    finally:
        source.engine.dispose()
