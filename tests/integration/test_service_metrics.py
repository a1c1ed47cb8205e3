"""The daemon's metrics tell failed runs and survive a restart (issue #13, defect 2): a run that
raises counts in ``runs_total``, and a new service seeds its last-success time from the run
history before its first run. Real SQLite source and state, the reference portal over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from bridge.core.errors import PortalAuthError
from bridge.core.mapping import load_mappings
from bridge.refportal.server import ReferencePortal
from bridge.service.config import load_config
from bridge.service.metrics import MetricsSink
from bridge.service.runner import Request, Service
from tests.e2e import make_school, running_portal, write_config


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
