"""What IT staff see of runs (issue #13, defects 2 and 6): a run that raises counts in
``runs_total``; a new service seeds its last-success time from the run history before its first
run; a run short of ok logs its summary as a warning, with its exit code. Real SQLite source and
state, the reference portal over HTTP."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from bridge.core.errors import ExitCode, PortalAuthError
from bridge.core.mapping import load_mappings
from bridge.refportal.server import ReferencePortal
from bridge.service.config import load_config
from bridge.service.metrics import MetricsSink
from bridge.service.runner import Request, Service
from tests.e2e import make_school, running_portal, set_faults, write_config


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[ReferencePortal]:
    yield from running_portal(tmp_path)


def _samples(path: Path) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(path.read_text(encoding="utf-8"))
        for s in family.samples
    }


def _service(config_path: Path, textfile: Path) -> Service:
    config = load_config(config_path)
    sink = MetricsSink(textfile=textfile)
    sink.start()
    return Service(config, load_mappings(config.mappings_dir), metrics=sink)


def test_a_run_refused_by_the_portal_counts_and_a_restart_seeds_the_last_success(
    tmp_path: Path, portal: ReferencePortal
) -> None:
    school = make_school(tmp_path, pupils=10, days=5)
    config = write_config(tmp_path, school, portal.url)
    textfile = tmp_path / "bridge.prom"
    secret = tmp_path / "portal-secret"
    good = secret.read_text(encoding="utf-8")
    secret.write_text("Wr0ng-S3cret-x9", encoding="utf-8")
    with pytest.raises(PortalAuthError):
        _service(config, textfile).sync(Request(command="sync", trigger="schedule"))
    runs = "asiou_bridge_runs_total"
    refused = frozenset({"trigger": "schedule", "mode": "full", "outcome": "auth_failed"}.items())
    assert _samples(textfile)[(runs, refused)] == 1.0
    success = ("asiou_bridge_last_success_timestamp_seconds", frozenset({"mode": "full"}.items()))
    assert success not in _samples(textfile)
    secret.write_text(good, encoding="utf-8")
    ok = _service(config, textfile).sync(Request(command="sync", trigger="schedule"))
    assert ok.outcome == "ok"
    # A fresh daemon's metrics, before its first run: the last success comes from history.
    restarted = _service(config, textfile)
    assert success not in _samples(textfile)
    restarted.seed_metrics()
    seeded = _samples(textfile)
    last = ("asiou_bridge_last_run_timestamp_seconds", frozenset({"mode": "full"}.items()))
    assert seeded[success] == pytest.approx(seeded[last])  # the good run was the last
    assert seeded[success] > 1_700_000_000  # a real UNIX time, not 0
    assert not any(name == runs for name, _ in seeded)  # counters start again at a restart


def test_a_partial_run_logs_its_summary_as_a_warning_with_its_exit_code(tmp_path: Path) -> None:
    """A portal answering 503 to everything: the run is partial, and its summary line is a
    warning (so ``journalctl -p warning`` finds it) carrying exit code 6; the good run after
    it logs its summary at info."""
    school = make_school(tmp_path, pupils=10, days=5)
    for down in running_portal(tmp_path, faults={"rates": {"503": 1.0}}):
        config = write_config(tmp_path, school, down.url, extra="retries = 2\n")
        service = _service(config, tmp_path / "bridge.prom")
        with capture_logs() as captured:
            partial = service.sync(Request(command="sync", trigger="manual"))
        assert partial.outcome == "partial"
        (line,) = [e for e in captured if e["event"] == "run.summary"]
        assert line["log_level"] == "warning"
        assert line["exit_code"] == ExitCode.PARTIAL
        set_faults(down.url, {})
        with capture_logs() as captured:
            assert service.sync(Request(command="sync", trigger="manual")).outcome == "ok"
        (line,) = [e for e in captured if e["event"] == "run.summary"]
        assert line["log_level"] == "info"
        assert line["exit_code"] == ExitCode.OK


def test_sigterm_during_a_long_retry_wait_stops_the_daemon_at_once(
    tmp_path: Path, portal: ReferencePortal
) -> None:
    """Every request answered 429 with Retry-After 30 s (honoured up to 60): SIGTERM while the
    daemon's first run waits stops it within seconds, exit 0, the run noted as interrupted
    (issue #13, defect 4: it took 42.8 s, the wait ran out first)."""
    school = make_school(tmp_path, pupils=10, days=5)
    config = write_config(
        tmp_path,
        school,
        portal.url,
        extra='max_retry_after = 60\n[schedule]\nincremental_every = "1h"\n',
    )
    set_faults(portal.url, {"rates": {"429": 1.0}, "retry_after": 30})
    daemon = subprocess.Popen(
        [sys.executable, "-m", "bridge", "--config", str(config), "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert daemon.stdout is not None
        for line in daemon.stdout:  # until the first retry wait begins
            if "portal_retry" in line:
                break
        asked = time.monotonic()
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=60)
        took = time.monotonic() - asked
    finally:
        if daemon.poll() is None:
            daemon.kill()
    assert daemon.returncode == 0
    print(f"stopping took {took:.1f} s")
    assert took < 15, f"stopping took {took:.1f} s"
    with closing(sqlite3.connect(tmp_path / "state.sqlite")) as conn:
        outcomes = [r[0] for r in conn.execute("SELECT outcome FROM run_history")]
    assert outcomes == ["interrupted"]


def test_status_shows_why_a_run_failed_and_every_time_in_one_zone(
    tmp_path: Path, portal: ReferencePortal
) -> None:
    """Under TZ=Europe/Moscow `status` shows past and next runs in Moscow time, each with its
    offset (+03:00; the history keeps UTC), and a failed run's reason; `status --json` gives
    the same instants as ISO 8601 with the offset (issue #13, defect 7)."""
    school = make_school(tmp_path, pupils=10, days=5)
    config = write_config(tmp_path, school, portal.url)
    (tmp_path / "portal-secret").write_text("Wr0ng-S3cret-x9", encoding="utf-8")
    env = {**os.environ, "TZ": "Europe/Moscow"}

    def bridge(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "bridge", "--config", str(config), *args]
        return subprocess.run(
            command, check=False, capture_output=True, text=True, env=env, timeout=120
        )

    assert bridge("sync").returncode == ExitCode.PORTAL_AUTH
    shown = bridge("status")
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "times in MSK, UTC+03:00" in text
    run_line = next(line for line in text.splitlines() if "auth_failed" in line)
    assert run_line.count("+03:00") == 2  # started and ended
    assert "why: PortalAuthError" in text
    next_full = next(line for line in text.splitlines() if line.strip().startswith("full "))
    assert next_full.endswith("+03:00")
    as_json = json.loads(bridge("status", "--json").stdout)
    assert as_json["runs"][0]["started_at"].endswith("+03:00")
    assert as_json["next_runs"]["full"].endswith("+03:00")
    started = datetime.fromisoformat(as_json["runs"][0]["started_at"])
    assert abs((datetime.now(UTC) - started).total_seconds()) < 600  # the same instant, not UTC
