"""The baselines of bench/limits.py do what they claim: the bridge's own HTTP client delivers to
the minimal sink (bench/sink.py), and the naive exporter (bench/naive_exporter.py) sends a
school to the reference portal, then only what the portal did not acknowledge."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest
import requests
import sqlalchemy as sa

from bridge.adapters.portal_client import PortalClient, PortalSettings
from bridge.ports import Operation
from bridge.refportal.server import DEMO_CLIENT, ReferencePortal

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def sink_url() -> Iterator[str]:
    sink = _load("sink")
    server = ThreadingHTTPServer(("127.0.0.1", 0), sink.SinkHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_bridge_client_delivers_to_the_sink(sink_url: str) -> None:
    settings = PortalSettings(
        base_url=sink_url, school="demo", client_id=DEMO_CLIENT[0], client_secret=DEMO_CLIENT[1]
    )
    operations = [
        Operation("op-1", "PUT", "mark", "1", "fp", {"work": "7", "pupil": "3", "value": "5"}),
        Operation("op-2", "DELETE", "absence", "9-45"),
    ]
    with PortalClient(settings) as client:
        results = client.send(operations)
        assert client.fingerprints("mark") == {}
    assert [(r.op_id, r.ok) for r in results] == [("op-1", True), ("op-2", True)]
    stats = requests.get(f"{sink_url}/_portal/stats", timeout=5).json()
    assert (stats["batches"], stats["operations"]) == (1, 2)


def _naive(school: Path, url: str, hashes: Path) -> dict[str, int]:
    command = [sys.executable, str(BENCH / "naive_exporter.py"), "--source", str(school)]
    done = subprocess.run(
        [*command, "--url", url, "--hashes", str(hashes)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    figures: dict[str, int] = json.loads(done.stdout.strip().splitlines()[-1])
    return figures


def test_the_naive_exporter_sends_new_records_then_only_the_unacknowledged(
    sqlite_school: sa.Engine, tmp_path: Path
) -> None:
    school = Path(str(sqlite_school.url.database))
    with ReferencePortal("127.0.0.1", 0, None) as portal:
        first = _naive(school, portal.url, tmp_path / "hashes.sqlite")
        live = requests.get(f"{portal.url}/_portal/counts", timeout=5).json()["demo"]
        again = _naive(school, portal.url, tmp_path / "hashes.sqlite")
    assert first["sent"] == first["acknowledged"] + first["refused"] > 0
    assert sum(live.values()) == first["acknowledged"]
    assert again["sent"] == first["refused"]  # acknowledged records are not sent again


def test_the_delivery_path_benchmark_runs_the_code_it_times() -> None:
    """bench/delivery_path.py goes through every step for every record: the pass counts them
    all as delivered, and the command prints a figure per record."""
    module = _load("delivery_path")
    changes = module.marks(1_200)
    seen: list[object] = []
    made = module.acknowledger(module.load_mappings(module.MAPPINGS))

    def acknowledge(change: object) -> object:
        seen.append(change)
        return made(change)

    module.one_pass(changes, 500, acknowledge)
    assert seen == changes
    done = subprocess.run(
        [sys.executable, str(BENCH / "delivery_path.py"), "--records", "1000", "--rounds", "1"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "µs per record (best of 1)" in done.stdout
