"""Shared pieces of the end-to-end tests: a generated school, the reference portal over real
HTTP on 127.0.0.1, the expected export computed independently of any delivery, and a snapshot
of what the portal holds."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import requests
import sqlalchemy as sa

from bridge.adapters.portal_client import PortalClient, PortalSettings
from bridge.adapters.source import SqlSource
from bridge.adapters.state import open_state
from bridge.core.guard import Thresholds
from bridge.core.mapping import MappingSet, load_mappings
from bridge.core.model import Change
from bridge.demo.generate import SchoolSpec, generate
from bridge.refportal.server import DEMO_CLIENT, ReferencePortal
from bridge.service.engine import RunOptions, SyncResult, plan_run, run_sync
from bridge.testing.fakes import MemoryStateStore

AS_OF = date(2026, 6, 1)
MAPPINGS: MappingSet = load_mappings(Path("mappings"))
NO_GUARD = Thresholds(max_delete_fraction=1.0, min_deletes=10**9, hold_whole_class=False)
Snapshot = dict[tuple[str, str], tuple[str, Any]]


def make_school(folder: Path, pupils: int = 40, days: int = 20, seed: int = 3) -> Path:
    """A small generated school (with its journal mistakes) in a SQLite file."""
    path = folder / "school.sqlite"
    engine = sa.create_engine(f"sqlite:///{path}")
    generate(engine, SchoolSpec(pupils=pupils, seed=seed, days=days))
    engine.dispose()
    return path


def expected_export(school: Path) -> Snapshot:
    """What the portal must hold after a complete sync of a SQLite school file."""
    return expected_export_of(f"sqlite:///{school}")


def expected_export_of(source_url: str) -> Snapshot:
    """What the portal must hold after a complete sync of any source URL (MariaDB included):
    a plan against an empty state."""
    engine = sa.create_engine(source_url)
    creates: list[Change] = []
    try:
        plan_run(
            MAPPINGS,
            SqlSource(engine),
            MemoryStateStore(),
            RunOptions(as_of=AS_OF, thresholds=NO_GUARD),
            creates.append,
        )
    finally:
        engine.dispose()
    return {
        (c.entity, c.key): (c.record.fingerprint, dict(c.record.payload))
        for c in creates
        if c.record is not None
    }


def write_config(
    folder: Path,
    school: Path | str,
    url: str,
    batch_size: int = 20,
    extra: str = "",
    *,
    source: str = "",
) -> Path:
    """A config as an admin writes it (the portal secret in a 0600 file). ``school`` is the
    SQLite file of the school, or ``source`` any source URL with its [source] settings."""
    secret = folder / "portal-secret"
    secret.write_text(DEMO_CLIENT[1], encoding="utf-8")
    secret.chmod(0o600)
    path = folder / "bridge.toml"
    source = source or f'url = "sqlite:///{school}"'
    path.write_text(
        f"[source]\n{source}\n"
        f'[state]\nurl = "sqlite:///{folder / "state.sqlite"}"\n'
        f'[mappings]\ndir = "{Path("mappings").resolve()}"\n'
        f'[portal]\nurl = "{url}"\nclient_id = "{DEMO_CLIENT[0]}"\n'
        f'secret_file = "{secret}"\nbatch_size = {batch_size}\n{extra}',
        encoding="utf-8",
    )
    return path


def snapshot(url: str, school: str = "demo") -> Snapshot:
    """Every live record the portal holds, by (entity, sourcedId)."""
    found: Snapshot = {}
    for entity in MAPPINGS.entities:
        answer = requests.get(
            f"{url}/_portal/records", params={"school": school, "entity": entity}, timeout=30
        )
        answer.raise_for_status()
        for record in answer.json()["records"]:
            if record.get("status", "active") == "active":
                found[(entity, record["sourcedId"])] = (record["fingerprint"], record["data"])
    return found


def duplicates(url: str) -> list[Any]:
    """The portal's own duplicates check."""
    answer = requests.get(f"{url}/_portal/duplicates", timeout=30)
    answer.raise_for_status()
    result: list[Any] = answer.json()["duplicates"]
    return result


def set_faults(url: str, faults: dict[str, Any]) -> None:
    """Change the portal's injected faults at run time."""
    requests.post(f"{url}/_portal/faults", json=faults, timeout=10).raise_for_status()


@dataclass
class Bridge:
    """The bridge in this process, pointed at one school, state file and portal."""

    school: Path
    state_path: Path
    url: str
    read_timeout: float = 5.0
    concurrency: int = 1

    def client(self) -> PortalClient:
        return PortalClient(
            PortalSettings(
                base_url=self.url,
                school="demo",
                client_id=DEMO_CLIENT[0],
                client_secret=DEMO_CLIENT[1],
                batch_size=50,
                max_attempts=30,
                backoff_initial=0.01,
                backoff_max=0.05,
                max_retry_after=1.0,
                read_timeout=self.read_timeout,
                concurrency=self.concurrency,
            )
        )

    def sync(
        self,
        incremental: bool = False,
        run_id: str = "run",
        thresholds: Thresholds = NO_GUARD,
        reconcile: bool = False,
    ) -> SyncResult:
        engine = sa.create_engine(f"sqlite:///{self.school}")
        state = open_state(f"sqlite:///{self.state_path}")
        client = self.client()
        try:
            return run_sync(
                MAPPINGS,
                SqlSource(engine),
                state,
                client,
                RunOptions(as_of=AS_OF, incremental=incremental, thresholds=thresholds),
                run_id=run_id,
                reconcile=reconcile,
            )
        finally:
            client.close()
            state.close()
            engine.dispose()


def running_portal(folder: Path, **options: Any) -> Iterator[ReferencePortal]:
    """A reference portal on a free port of 127.0.0.1, stopped afterwards."""
    portal = ReferencePortal("127.0.0.1", 0, folder / "portal.sqlite", **options)
    portal.start()
    try:
        yield portal
    finally:
        portal.stop()
