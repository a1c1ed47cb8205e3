"""A region's schools on one PostgreSQL state store and one portal (issue #13, defect 11):
eight instances started together each deliver their school exactly, each within its connection
budget (``state.max_connections``), and their nightly runs fall on different minutes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from tests.e2e import expected_export, make_school, running_portal, snapshot

SCHOOLS = [f"school-{n}" for n in range(1, 9)]
BUDGET = 2  # state.max_connections of each instance; no planning workers


def _config(folder: Path, school: str, source: Path, state_url: str, portal_url: str) -> Path:
    folder.mkdir()
    secret = folder / "secret"
    secret.write_text(f"secret-{school}", encoding="utf-8")
    secret.chmod(0o600)
    path = folder / "bridge.toml"
    path.write_text(
        f'[source]\nurl = "sqlite:///{source}"\n'
        f'[state]\nurl = "{state_url}"\nmax_connections = {BUDGET}\n'
        f'[mappings]\ndir = "{Path("mappings").resolve()}"\n'
        f'[portal]\nurl = "{portal_url}"\nschool = "{school}"\nclient_id = "client-{school}"\n'
        f'secret_file = "{secret}"\nbatch_size = 40\nconcurrency = 2\n'
        "[sync]\nplan_workers = 1\n",
        encoding="utf-8",
    )
    return path


class Connections:
    """The bridge's connections to PostgreSQL, sampled every 20 ms: the most each school
    held at once (``application_name`` names the school)."""

    def __init__(self, admin: sa.Engine) -> None:
        self.admin, self.peak = admin, dict.fromkeys(SCHOOLS, 0)
        self.peak_total, self.samples = 0, 0
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()

    def _sample(self) -> None:
        query = sa.text(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE application_name LIKE 'asiou-bridge %' GROUP BY application_name"
        )
        # Autocommit: inside one transaction pg_stat_activity would show its first snapshot.
        with self.admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            while not self.done.is_set():
                counts = {name.removeprefix("asiou-bridge "): n for name, n in conn.execute(query)}
                for school, n in counts.items():
                    self.peak[school] = max(self.peak.get(school, 0), n)
                self.peak_total = max(self.peak_total, sum(counts.values()))
                self.samples += 1
                time.sleep(0.02)

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


def test_eight_schools_started_together_stay_exact_and_within_their_budget(
    tmp_path: Path, postgres_url: str
) -> None:
    source = make_school(tmp_path, pupils=20, days=10)
    clients = {s: (f"client-{s}", f"secret-{s}") for s in SCHOOLS}
    admin = sa.create_engine(postgres_url, poolclass=sa.NullPool)
    for portal in running_portal(tmp_path, clients=clients):
        configs = [_config(tmp_path / s, s, source, postgres_url, portal.url) for s in SCHOOLS]
        watch = Connections(admin)
        try:
            runs = [
                subprocess.Popen(
                    [sys.executable, "-m", "bridge", "--config", str(c), "sync"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                )
                for c in configs
            ]
            ended = [run.communicate(timeout=300) for run in runs]
        finally:
            watch.stop()
        for school, run, (_, err) in zip(SCHOOLS, runs, ended, strict=True):
            assert run.returncode == 0, (school, err[-2000:])
        expected = expected_export(source)
        for school in SCHOOLS:
            assert snapshot(portal.url, school=school) == expected, school
        nightly = set()
        for config in configs:
            status = subprocess.run(
                [sys.executable, "-m", "bridge", "--config", str(config), "status", "--json"],
                capture_output=True,
                text=True,
                timeout=120,
                check=True,
            )
            nightly.add(json.loads(status.stdout)["next_runs"]["full"])
    admin.dispose()
    assert watch.samples > 10
    assert all(0 < n <= BUDGET for n in watch.peak.values()), watch.peak
    assert watch.peak_total <= BUDGET * len(SCHOOLS)
    assert len(nightly) >= 6, nightly  # eight schools, 61 minutes: hardly any share one
