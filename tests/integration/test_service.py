"""The service as an admin drives it: subprocesses, real config files, the reference portal."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.adapters.portal_client import PortalClient, PortalSettings
from bridge.core.errors import ExitCode
from bridge.demo import schema
from bridge.ports import Operation
from bridge.refportal.server import DEMO_CLIENT, ReferencePortal
from tests.e2e import expected_export, make_school, running_portal, snapshot, write_config

SECRET_DB = "Db-Pa55-never-logged"


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[ReferencePortal]:
    yield from running_portal(tmp_path)


@pytest.fixture
def unhurried_portal(tmp_path: Path) -> Iterator[ReferencePortal]:
    """A portal that takes 20 ms more over every request: a sync of the school lasts seconds
    however fast the machine is that minute, so another command can meet it running."""
    yield from running_portal(tmp_path, faults={"rates": {"slow": 1.0}, "slow_seconds": 0.02})


def bridge(config: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run one asiou-bridge command to its end."""
    return subprocess.run(
        [sys.executable, "-m", "bridge", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, "ASIOU_BRIDGE_DB_PASSWORD": SECRET_DB},
    )


def start(config: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    """Start one asiou-bridge command in the background."""
    return subprocess.Popen(
        [sys.executable, "-m", "bridge", "--config", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "ASIOU_BRIDGE_DB_PASSWORD": SECRET_DB, **env},
    )


def runs(folder: Path) -> list[dict[str, object]]:
    """The run history, oldest first."""
    path = folder / "state.sqlite"
    if not path.exists():
        return []
    with closing(sqlite3.connect(path, timeout=10)) as conn:
        conn.row_factory = sqlite3.Row
        try:
            rows = conn.execute("SELECT * FROM run_history ORDER BY started_at").fetchall()
        except sqlite3.OperationalError:
            return []
    return [dict(r) for r in rows]


def wait_for(predicate: object, timeout: float = 60) -> None:
    """Poll until ``predicate()`` is true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def _datagrams(sock: socket.socket) -> list[str]:
    """Everything sent to the fake systemd notify socket."""
    found = []
    while True:
        try:
            found.append(sock.recv(4096).decode())
        except TimeoutError:
            return found


def acked_batches(folder: Path) -> int:
    with closing(sqlite3.connect(folder / "state.sqlite", timeout=10)) as conn:
        try:
            return int(
                conn.execute(
                    "SELECT count(*) FROM delivery_batch WHERE status = 'acked'"
                ).fetchone()[0]
            )
        except sqlite3.OperationalError:
            return 0


def test_daemon_runs_on_schedule_and_stops_cleanly_on_sigterm(
    tmp_path: Path, portal: ReferencePortal
) -> None:
    """The daemon syncs on its schedule; SIGTERM mid-run ends it with exit 0 after the batch in
    flight, the state holding only what the portal acknowledged; the next sync completes."""
    school = make_school(tmp_path, pupils=60, days=45, seed=5)
    config = write_config(
        tmp_path, school, portal.url, extra='[schedule]\nincremental_every = "1s"\n'
    )
    with closing(socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)) as systemd:
        systemd.bind(str(tmp_path / "notify"))
        systemd.settimeout(0.2)
        daemon = start(
            config, "run", NOTIFY_SOCKET=str(tmp_path / "notify"), WATCHDOG_USEC="2000000"
        )
        wait_for(lambda: (tmp_path / "state.sqlite").exists() and acked_batches(tmp_path) >= 3)
        daemon.send_signal(signal.SIGTERM)
        out, err = daemon.communicate(timeout=60)
        told = _datagrams(systemd)
    assert daemon.returncode == 0, err[-3000:]
    assert "READY=1" in told
    assert "WATCHDOG=1" in told
    assert "STOPPING=1" in told
    assert any(t.startswith("STATUS=running a incremental sync") for t in told)
    lines = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert any(line["event"] == "daemon.stopped" for line in lines)
    history = runs(tmp_path)
    assert history[0]["trigger"] == "schedule"
    assert history[-1]["outcome"] in ("interrupted", "ok")
    held = snapshot(portal.url)
    with closing(sqlite3.connect(tmp_path / "state.sqlite")) as conn:
        recorded = conn.execute(
            "SELECT entity, key, fingerprint FROM record_state WHERE status != 'deleted'"
        ).fetchall()
    assert all(held[(e, k)][0] == f for e, k, f in recorded)  # nothing recorded unacknowledged
    done = bridge(config, "sync")
    assert done.returncode == ExitCode.OK, done.stderr[-3000:]
    assert snapshot(portal.url) == expected_export(school)


def test_a_manual_sync_never_runs_alongside_a_scheduled_one(
    tmp_path: Path, unhurried_portal: ReferencePortal
) -> None:
    """During a scheduled run, `sync --no-wait` refuses with a clear message, and a manual
    `resync --full` waits for the scheduled run to end before it starts."""
    school = make_school(tmp_path, pupils=60, days=45, seed=6)
    # one request at a time: the scheduled run must still be delivering when resync starts
    extra = 'concurrency = 1\n[schedule]\nincremental_every = "1h"\n'
    config = write_config(tmp_path, school, unhurried_portal.url, extra=extra)
    daemon = start(config, "run")
    try:
        wait_for(lambda: (tmp_path / "state.sqlite").exists() and acked_batches(tmp_path) >= 1)
        refused = bridge(config, "sync", "--no-wait")
        assert refused.returncode == ExitCode.FAILURE
        assert "Another sync is running" in refused.stderr
        waited = bridge(config, "resync", "--full")
        assert waited.returncode == ExitCode.OK, waited.stderr[-3000:]
        assert "waiting for it to finish" in waited.stderr
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.communicate(timeout=60)
    history = runs(tmp_path)
    scheduled = [r for r in history if r["trigger"] == "schedule"]
    manual = [r for r in history if r["trigger"] == "manual"]
    assert scheduled
    assert manual
    assert str(manual[-1]["started_at"]) >= str(scheduled[0]["ended_at"])
    assert manual[-1]["user"]


def test_logs_never_carry_names_birth_dates_or_secrets(
    tmp_path: Path, portal: ReferencePortal
) -> None:
    """A whole sync of a generated school logs not one pupil's or guardian's name or birth date,
    nor the database password or the portal secret."""
    school = make_school(tmp_path, pupils=40, days=20, seed=8)
    config = write_config(tmp_path, school, portal.url)
    result = bridge(config, "sync")
    assert result.returncode == ExitCode.OK, result.stderr[-3000:]
    logged = result.stderr
    assert "run.summary" in logged
    engine = sa.create_engine(f"sqlite:///{school}")
    with engine.connect() as conn:
        people = [
            *conn.execute(
                sa.select(
                    schema.pupil.c.last_name,
                    schema.pupil.c.first_name,
                    schema.pupil.c.middle_name,
                    schema.pupil.c.birth_date,
                )
            ),
            *conn.execute(
                sa.select(
                    schema.guardian.c.last_name,
                    schema.guardian.c.first_name,
                    schema.guardian.c.middle_name,
                    schema.guardian.c.phone,
                )
            ),
        ]
    engine.dispose()
    words = {str(v) for row in people for v in row if v} | {SECRET_DB, DEMO_CLIENT[1]}
    dates = {f"{d:%d.%m.%Y}" for *_, d in people[:40] if hasattr(d, "year")}
    assert len(words) > 100
    leaked = sorted(w for w in words | dates if w in logged)
    assert leaked == []


@pytest.fixture
def small(tmp_path: Path, portal: ReferencePortal) -> tuple[Path, Path]:
    """The hand-made small school, synced once through the CLI."""
    from tests import school as small_school

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'asiou.sqlite'}")
    small_school.write_school(engine)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(
                sa.table(
                    "mark",
                    sa.column("id"),
                    sa.column("work_id"),
                    sa.column("pupil_id"),
                    sa.column("mark_value"),
                    sa.column("modified_at"),
                )
            ).values(
                id=9999, work_id=100, pupil_id=1, mark_value="7", modified_at="2025-09-01 08:00:00"
            )
        )
    engine.dispose()
    config = write_config(tmp_path, tmp_path / "asiou.sqlite", portal.url)
    first = bridge(config, "sync", "--as-of", "2025-12-01")
    assert first.returncode == ExitCode.OK, first.stderr[-3000:]
    return config, tmp_path


def test_explain_gives_the_right_answer_for_each_kind_of_record(small: tuple[Path, Path]) -> None:
    """`explain` says delivered for a delivered mark, held after withdrawal for a withdrawn
    pupil's later mark, no consent for such a pupil, and rejected with its reason for a bad row."""
    config, _ = small
    delivered = bridge(config, "explain", "mark", "1001").stdout
    assert "gate: allowed to leave" in delivered
    assert "delivered: first" in delivered
    assert "portal answered: accepted" in delivered
    late = bridge(config, "explain", "mark", "1103").stdout  # pupil 3 left on 2025-10-15
    assert "HELD BACK: after_withdrawal" in late
    assert "delivered: never" in late
    hidden = bridge(config, "explain", "pupil", "2").stdout
    assert "HELD BACK: no_consent" in hidden
    bad = bridge(config, "explain", "mark", "9999").stdout
    assert "REJECTED, field value: value not in the value map" in bad
    data = json.loads(bridge(config, "explain", "mark", "1001", "--json").stdout)
    assert data["delivered"]["status"] == "delivered"


def test_status_retry_resync_and_erase(small: tuple[Path, Path], portal: ReferencePortal) -> None:
    """`status` lists the run; `resync --pupil` sends that pupil's records again; `erase pupil`
    removes all of them from the portal and keeps the act; `retry` runs a full sync."""
    config, _ = small
    status = json.loads(bridge(config, "status", "--json").stdout)
    assert status["runs"][0]["command"] == "sync"
    assert set(status["next_runs"]) == {"incremental", "full", "dead_letters", "reconcile"}
    resync = json.loads(bridge(config, "resync", "--pupil", "1", "--json").stdout)
    sent = resync["delivery"]["delivered"]
    assert sent["mark"]["update"] == 12
    assert sent["pupil"]["update"] == 1
    assert "lesson" not in sent
    erased = bridge(config, "erase", "pupil", "1")
    assert erased.returncode == ExitCode.OK, erased.stderr[-2000:]
    held = snapshot(portal.url)
    assert not any(data.get("pupil") == "1" for _, data in held.values())
    assert ("pupil", "1") not in held
    again = json.loads(bridge(config, "sync", "--json").stdout)
    assert "pupil" not in again["delivery"]["delivered"]
    assert "erased from the portal" in bridge(config, "explain", "pupil", "1").stdout
    assert bridge(config, "retry").returncode in (ExitCode.OK, ExitCode.PARTIAL)


def test_check_gives_a_verdict_for_each_part_and_bad_credentials_exit_7(
    tmp_path: Path, portal: ReferencePortal
) -> None:
    """`check` says ok for configuration, mappings, source and portal; with a wrong portal
    secret `check` says the portal FAILED and `sync` exits with the authentication code."""
    school = make_school(tmp_path, pupils=20, days=5, seed=9)
    config = write_config(tmp_path, school, portal.url)
    good = bridge(config, "check")
    assert good.returncode == ExitCode.OK, good.stdout + good.stderr
    for part in ("configuration: ok", "mappings: ok", "source: ok", "portal: ok"):
        assert part in good.stdout
    (tmp_path / "portal-secret").write_text("Wr0ng-S3cret-x9", encoding="utf-8")
    bad = bridge(config, "check")
    assert bad.returncode == ExitCode.PORTAL_AUTH
    assert "source: ok" in bad.stdout
    assert "portal: FAILED" in bad.stdout
    assert "Wr0ng-S3cret-x9" not in bad.stdout + bad.stderr
    refused = bridge(config, "sync")
    assert refused.returncode == ExitCode.PORTAL_AUTH
    assert "The portal refused our credentials" in refused.stderr


def test_the_next_run_closes_a_killed_run_as_interrupted(
    tmp_path: Path, portal: ReferencePortal
) -> None:
    """After kill -9 of a sync, the next sync closes the killed run as interrupted and its
    unanswered batches as lost, so `status` shows nothing still running or in doubt."""
    school = make_school(tmp_path, pupils=60, days=45, seed=5)
    config = write_config(tmp_path, school, portal.url)
    victim = start(config, "sync")
    wait_for(lambda: (tmp_path / "state.sqlite").exists() and acked_batches(tmp_path) >= 2)
    victim.kill()
    victim.communicate(timeout=60)
    killed = runs(tmp_path)
    assert [r["ended_at"] for r in killed] == [None]

    again = bridge(config, "sync")

    assert again.returncode == ExitCode.OK, again.stderr[-2000:]
    assert '"event": "runs.closed_interrupted"' in again.stderr
    history = runs(tmp_path)
    assert history[0]["run_id"] == killed[0]["run_id"]
    assert history[0]["outcome"] == "interrupted"
    assert all(r["ended_at"] is not None for r in history)
    status = json.loads(bridge(config, "status", "--json").stdout)
    assert status["in_doubt_batches"] == 0
    assert all(r["ended_at"] is not None for r in status["runs"])
    assert "still running" not in bridge(config, "status").stdout
    assert snapshot(portal.url) == expected_export(school)


def test_a_resync_of_one_pupil_says_what_it_could_not_do(
    small: tuple[Path, Path], portal: ReferencePortal
) -> None:
    """`resync --pupil` of an unknown key is a usage error naming it; of a pupil without
    consent it says the reason; of a pupil with consent it also sends their guardian and link."""
    config, _ = small
    unknown = bridge(config, "resync", "--pupil", "9999")
    assert unknown.returncode == ExitCode.USAGE
    assert "no pupil with key 9999" in unknown.stderr
    assert bridge(config, "resync", "--class", "777").returncode == ExitCode.USAGE

    held = bridge(config, "resync", "--pupil", "2")
    assert held.returncode == ExitCode.OK, held.stderr[-2000:]
    assert "pupil 2 was not sent: held back (no_consent)" in held.stderr
    data = json.loads(bridge(config, "resync", "--pupil", "2", "--json").stdout)
    assert data["scope"] == {"entity": "pupil", "key": "2", "not_sent": "held back (no_consent)"}

    sent = json.loads(bridge(config, "resync", "--pupil", "1", "--json").stdout)
    assert sent["scope"]["not_sent"] is None
    delivered = sent["delivery"]["delivered"]
    assert delivered["guardian"]["update"] == 1
    assert delivered["guardian_link"]["update"] == 1


def test_reconcile_repairs_a_mark_deleted_on_the_portal_and_explain_says_so(
    small: tuple[Path, Path], portal: ReferencePortal
) -> None:
    """A mark deleted directly on the portal is planned again by `plan --reconcile` with its
    reason, re-created by `sync --reconcile`, and `explain` tells what the portal had."""
    config, _ = small
    client = PortalClient(
        PortalSettings(
            base_url=portal.url,
            school="demo",
            client_id=DEMO_CLIENT[0],
            client_secret=DEMO_CLIENT[1],
        )
    )
    try:
        assert client.send([Operation("0", "DELETE", "mark", "1001")])[0].ok
    finally:
        client.close()
    assert ("mark", "1001") not in snapshot(portal.url)
    usage = bridge(config, "sync", "--reconcile", "--incremental")
    assert usage.returncode == ExitCode.USAGE
    preview = bridge(config, "plan", "--reconcile", "--detail", "--as-of", "2025-12-01")
    assert preview.returncode == ExitCode.OK, preview.stderr[-3000:]
    assert "mark: create: missing on the portal — 1" in preview.stdout
    assert "mark 1001: create (missing on the portal)" in preview.stdout
    done = bridge(config, "sync", "--reconcile", "--json", "--as-of", "2025-12-01")
    assert done.returncode == ExitCode.OK, done.stderr[-3000:]
    data = json.loads(done.stdout)
    assert data["reconcile"]["entities"]["mark"]["planned"] == {"create: missing on the portal": 1}
    assert data["delivery"]["delivered"]["mark"] == {"create": 1}
    assert ("mark", "1001") in snapshot(portal.url)
    repaired = bridge(config, "explain", "mark", "1001").stdout
    assert "MISSING on the portal; sent again since" in repaired
    kept = json.loads(bridge(config, "explain", "mark", "1002", "--json").stdout)
    assert kept["portal_check"]["finding"] == "matches"
