"""The settings: one typed, frozen object per section of the configuration file, each key
with its TOML type, its default and its meaning, defined once, here. Validation
(``bridge.service.config``) checks a file against these and builds them; the daemon reads the
schedule already parsed (``Schedule``).

Defaults that a component owns are taken from it, not repeated: the portal client's patience
from ``PortalSettings``, the guard's thresholds from ``Thresholds``.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from datetime import timedelta
from functools import cached_property
from typing import Any

from bridge.adapters.portal_client import PortalSettings
from bridge.core.guard import Thresholds
from bridge.resources import default_mappings

Kinds = type | tuple[type, ...]
NUMBER = (float, int)
DEFAULT_CONCURRENCY = 4
"""The service's batches in flight (the client's own default is one at a time): four overlap
a distant portal's answers with the bridge's own work, and gain less against a portal on the
same machine (docs/benchmarks.md, "Batches in flight")."""


def key(default: Any, meaning: str, kinds: Kinds | None = None) -> Any:
    """A setting: its default (``dataclasses.MISSING``: required), its meaning, and the TOML
    types it accepts (by default the default's own type)."""
    accepted = kinds if kinds is not None else type(default)
    metadata = {"meaning": meaning, "kinds": accepted}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _portal(name: str) -> Any:
    """The portal client's own default for one of its settings."""
    found = next(f for f in dataclasses.fields(PortalSettings) if f.name == name)
    return found.default


@dataclass(frozen=True)
class SourceSettings:
    """``[source]``: the ASIOU database."""

    url: str = key(
        dataclasses.MISSING, "SQLAlchemy URL of the ASIOU database, without a password", str
    )
    password_file: str = key("", "file holding the database password (relative to the config file)")
    query_timeout: float = key(
        300.0,
        "seconds one source query may run (waiting on a lock included) before the database "
        "stops it and the run fails as source_unavailable; 0: no limit",
        NUMBER,
    )


@dataclass(frozen=True)
class StateSettings:
    """``[state]``: where the bridge keeps what the portal holds."""

    url: str = key(
        "sqlite:////var/lib/asiou-bridge/state.sqlite",
        "SQLAlchemy URL of the state store (SQLite file or PostgreSQL)",
    )
    max_connections: int = key(
        4,
        "on PostgreSQL, at most this many connections of this instance to the state store at "
        "once (planning workers open one more each); docs/operations.md, 'Several schools'",
    )


@dataclass(frozen=True)
class MappingsSettings:
    """``[mappings]``: the declarative mappings."""

    dir: str = key(
        str(default_mappings()),
        "directory of the mapping files (*.toml); by default the mappings the bridge ships",
    )


@dataclass(frozen=True)
class PortalSection:
    """``[portal]``: the diary import API and how patient to be with it."""

    kind: str = key(
        "reference",
        "which portal: reference (the bundled import API) or dnevnik (the dnevnik.ru "
        "partner API v2; url is then its /v2/ root, school the portal's school id, and "
        "the secret the Access-Token)",
    )
    url: str = key("http://127.0.0.1:8400", "base URL of the diary import API")
    school: str = key("demo", "the school's id on the portal")
    client_id: str = key("asiou-bridge", "OAuth2 client id")
    secret_file: str = key(
        "", "file holding the OAuth2 client secret (relative to the config file)"
    )
    batch_size: int = key(_portal("batch_size"), "operations per batch request")
    connect_timeout: float = key(
        _portal("connect_timeout"), "seconds to wait for a connection", NUMBER
    )
    read_timeout: float = key(_portal("read_timeout"), "seconds to wait for an answer", NUMBER)
    request_deadline: float = key(
        _portal("request_deadline"),
        "seconds one request may take in all, a slowly dripping answer included",
        NUMBER,
    )
    max_retry_after: float = key(
        _portal("max_retry_after"), "the longest Retry-After wait honoured", NUMBER
    )
    max_batch_wait: float = key(
        _portal("max_batch_wait"), "seconds one batch may spend in retries in all", NUMBER
    )
    retries: int = key(_portal("max_attempts"), "attempts per request before the run gives up")
    rate_limit: float = key(
        _portal("rate_limit"), "at most this many requests per second (0: no limit)", NUMBER
    )
    concurrency: int = key(
        DEFAULT_CONCURRENCY,
        "batch requests in flight at once (1: one at a time; batches that could refer to "
        "each other are never sent together)",
    )
    ca_bundle: str = key("", "CA bundle for TLS verification (default: the system's)")
    tables_file: str = key(
        "",
        "dnevnik: the school's tables (log-entry statuses, work types, names the portal "
        "spells otherwise), relative to this file; config/dnevnik-tables.toml is the example",
    )


EVERY = re.compile(r"(\d+)\s*([smh])")
CLOCK = re.compile(r"([01]?\d|2[0-3]):([0-5]\d)")
HOURS = re.compile(r"\d{1,2}(-\d{1,2})?(,\d{1,2}(-\d{1,2})?)*")
DAYS = re.compile(
    r"(mon|tue|wed|thu|fri|sat|sun)(-(mon|tue|wed|thu|fri|sat|sun))?"
    r"(,(mon|tue|wed|thu|fri|sat|sun)(-(mon|tue|wed|thu|fri|sat|sun))?)*"
)


def every_seconds(text: str) -> float:
    """``30s``, ``15m`` or ``1h`` in seconds."""
    found = EVERY.fullmatch(text.strip())
    if found is None:
        raise ValueError(text)
    return int(found[1]) * {"s": 1, "m": 60, "h": 3600}[found[2]]


def clock_time(text: str) -> tuple[int, int]:
    """``02:30`` as (hour, minute)."""
    found = CLOCK.fullmatch(text.strip())
    if found is None:
        raise ValueError(text)
    return int(found[1]), int(found[2])


def reconcile_when(text: str) -> tuple[str, int, int] | None:
    """``schedule.reconcile_at`` as (days, hour, minute); None when it is off (empty)."""
    if not text.strip():
        return None
    days, _, at = text.strip().rpartition(" ")
    if not DAYS.fullmatch(days.strip().lower()) or not CLOCK.fullmatch(at):
        raise ValueError(text)
    hour, minute = clock_time(at)
    return days.strip().lower(), hour, minute


@dataclass(frozen=True)
class Schedule:
    """``[schedule]``: when the daemon runs what, as written, and parsed (once, on first use,
    after validation accepted it)."""

    incremental_every: str = key("15m", "how often an incremental sync runs (30s, 15m, 1h)")
    hours: str = key("", "only in these hours, e.g. 7-19 (empty: round the clock)")
    days: str = key("mon-sun", "only on these days, e.g. mon-sat")
    full_at: str = key("02:30", "the nightly full run (HH:MM, local time)")
    dead_letters_at: str = key("02:15", "dead letters get another chance (before full_at)")
    misfire_grace_seconds: int = key(300, "a run missed by less than this still runs")
    spread_minutes: int = key(
        60,
        "the nightly jobs (dead_letters_at, full_at, reconcile_at) of this school start up to "
        "this many minutes late, at an offset derived from portal.school, so that the "
        "schools of a region do not all start at the same minute (0: exactly on time)",
    )
    # reconciliation (bridge.core.reconcile): the portal read back and repaired
    reconcile_at: str = key(
        "sun 03:00",
        "when the portal is read back and repaired: days and a time, like 'sun 03:00' or "
        "'mon-fri 03:00' (empty: only on demand, `sync --reconcile`)",
    )

    @cached_property
    def every(self) -> float:
        """Seconds between incremental runs."""
        return every_seconds(self.incremental_every)

    @property
    def windowed(self) -> bool:
        """True when incremental runs keep to some hours or days."""
        return bool(self.hours) or self.days != "mon-sun"

    @cached_property
    def full_time(self) -> tuple[int, int]:
        """(hour, minute) of the nightly full run."""
        return clock_time(self.full_at)

    @cached_property
    def dead_letters_time(self) -> tuple[int, int]:
        """(hour, minute) of the dead letters' next chance."""
        return clock_time(self.dead_letters_at)

    @cached_property
    def reconcile(self) -> tuple[str, int, int] | None:
        """(days, hour, minute) of the reconciliation; None when only on demand."""
        return reconcile_when(self.reconcile_at)


@dataclass(frozen=True)
class MetricsSettings:
    """``[metrics]``: Prometheus metrics."""

    textfile: str = key("", "write Prometheus metrics to this .prom file (node_exporter)")
    listen: str = key("", "serve Prometheus metrics on HOST:PORT (empty: off)")


@dataclass(frozen=True)
class DeliverySettings:
    """``[delivery]``: refusals."""

    dead_letter_after: int = key(3, "refusals of one record before it becomes a dead letter")


@dataclass(frozen=True)
class SyncSettings:
    """``[sync]``: how a run reads and how long it may take."""

    watermark_overlap_minutes: int = key(5, "re-read this much before the last watermark")
    run_deadline_minutes: float = key(
        120.0,
        "a run still delivering after this stops after the batch in flight, a partial "
        "delivery (0: no limit)",
        NUMBER,
    )
    plan_workers: int = key(
        0,
        "processes that plan a full run's large tables (0: one per CPU core, at most 4; "
        "1: plan in one process)",
    )

    @property
    def overlap(self) -> timedelta:
        """How far before the last watermark an incremental run reads again."""
        return timedelta(minutes=self.watermark_overlap_minutes)


@dataclass(frozen=True)
class GuardSettings:
    """``[guard]``: when destructive changes wait for an admin (``Thresholds``' defaults)."""

    max_delete_fraction: float = key(
        Thresholds.max_delete_fraction, "hold a plan deleting more of an entity", NUMBER
    )
    min_deletes: int = key(Thresholds.min_deletes, "never hold for fewer deletes than this")
    hold_whole_class: bool = key(Thresholds.hold_whole_class, "hold a plan deleting a whole class")
    approval_valid_hours: float = key(
        Thresholds.approval_valid_hours,
        "an approval of a held plan expires after this many hours",
        NUMBER,
    )

    @property
    def thresholds(self) -> Thresholds:
        """The guard's thresholds."""
        return Thresholds(
            float(self.max_delete_fraction),
            self.min_deletes,
            self.hold_whole_class,
            float(self.approval_valid_hours),
        )


SECTIONS: dict[str, type] = {
    "source": SourceSettings,
    "state": StateSettings,
    "mappings": MappingsSettings,
    "portal": PortalSection,
    "schedule": Schedule,
    "metrics": MetricsSettings,
    "delivery": DeliverySettings,
    "sync": SyncSettings,
    "guard": GuardSettings,
}
"""Section name → its settings type, in the order the example file has them."""


def schema() -> dict[str, dict[str, tuple[Kinds, Any, str]]]:
    """section → key → (TOML types, default (None: required), meaning), from the sections."""
    return {
        name: {
            f.name: (
                f.metadata["kinds"],
                None if f.default is dataclasses.MISSING else f.default,
                f.metadata["meaning"],
            )
            for f in dataclasses.fields(kind)
        }
        for name, kind in SECTIONS.items()
    }
