"""The one place that builds adapters from configuration: the ASIOU source, the state store of
this school and the portal client, each opened on first use and closed together; and the run
options a configuration implies. Every command and the daemon get their adapters here.

A command opens its adapters for its one run. The daemon keeps the source and the state store
open between its runs (``KeptEngines``): their connection pools, and SQLAlchemy's cache of
compiled statements, serve every run, so a run after the first compiles nothing and connects
to nothing anew. The portal client is still opened and closed per run (a fresh token, and
nothing idle towards the portal between runs).
"""

from __future__ import annotations

import dataclasses
import threading
import time
import tomllib
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from bridge.adapters.dnevnik import DNEVNIK_SUPPORT, DnevnikPortal, DnevnikSettings
from bridge.adapters.dnevnik.http import DnevnikHttp
from bridge.adapters.portal_client import REFERENCE_SUPPORT, PortalClient, PortalSettings
from bridge.adapters.source import SqlSource, open_source
from bridge.adapters.state import SqlStateStore, open_state, utc_now
from bridge.core.errors import ConfigError, Interrupted, Problem
from bridge.core.support import PortalSupport, is_matched
from bridge.service.config import Config
from bridge.service.engine import RunOptions, resolve_workers
from bridge.service.liveness import sliced
from bridge.service.runs import Erasures


class KeptEngines:
    """The source and the state store of one school kept open between runs (the daemon's),
    each opened when first asked for, its connections tested before use (``pre_ping``: a
    database restarted between runs has dropped them), closed by ``close``. The source is
    opened again when its URL changes (a new password in the credential file)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._lock = threading.Lock()  # the daemon's jobs run on one thread; this is cheap
        self._source: tuple[str, SqlSource] | None = None
        self._state: SqlStateStore | None = None

    def source(self) -> SqlSource:
        """The ASIOU database, open (again, if ``source.url`` or its password changed)."""
        url = self.config.source_url_with_password().render_as_string(False)
        with self._lock:
            if self._source is not None and self._source[0] != url:
                self._source[1].engine.dispose()
                self._source = None
            if self._source is None:
                timeout = self.config.source.query_timeout
                self._source = (url, open_source(url, pre_ping=True, query_timeout=timeout))
            return self._source[1]

    def state(self) -> SqlStateStore:
        """The state store of this school, open."""
        with self._lock:
            if self._state is None:
                config = self.config
                self._state = open_state(
                    config.state.url,
                    utc_now,
                    school=config.portal.school,
                    pre_ping=True,
                    max_connections=config.state.max_connections,
                )
            return self._state

    def close(self) -> None:
        """Close both (their pools' connections); a later use opens them again."""
        with self._lock:
            source, state, self._source, self._state = self._source, self._state, None, None
        if state is not None:
            state.close()
        if source is not None:
            source[1].engine.dispose()


class Adapters:
    """The adapters of one configured school, opened when first asked for; ``close`` (or the
    end of a ``with`` block) closes those that were opened, the last opened first. With
    ``kept``, the source and the state store are the kept ones, left open by ``close``."""

    def __init__(
        self,
        config: Config,
        kept: KeptEngines | None = None,
        stop: threading.Event | None = None,
        beat: Callable[[], None] | None = None,
        *,
        probe: bool = False,
    ) -> None:
        self.config, self.kept, self.beat, self.probe = config, kept, beat, probe
        self.sleep = interruptible(stop, beat)  # the portal's retry and rate-limit waits
        self._source: SqlSource | None = None
        self._state: SqlStateStore | None = None
        self._portal: PortalClient | DnevnikPortal | None = None
        self._opened = ExitStack()  # what was opened, closed in reverse order

    @property
    def source(self) -> SqlSource:
        """The ASIOU database (``source.url``)."""
        if self._source is None and self.kept is not None:
            self._source = self.kept.source()
        if self._source is None:
            url = self.config.source_url_with_password().render_as_string(False)
            self._source = open_source(url, query_timeout=self.config.source.query_timeout)
            self._opened.callback(self._source.engine.dispose)
        self._source.beat = self.beat
        return self._source

    @property
    def state(self) -> SqlStateStore:
        """The state store of this school (``state.url``, the school's own schema)."""
        if self._state is None and self.kept is not None:
            self._state = self.kept.state()
        if self._state is None:
            config = self.config
            self._state = open_state(
                config.state.url,
                utc_now,
                school=config.portal.school,
                max_connections=config.state.max_connections,
            )
            self._opened.callback(self._state.close)
        return self._state

    @property
    def portal(self) -> PortalClient | DnevnikPortal:
        """The portal adapter of ``portal.kind`` (the secret from env, file or credential)."""
        if self._portal is None:
            if self.config.portal.kind == "dnevnik":
                state = self.state
                dnevnik = dnevnik_settings(self.config)
                dnevnik = impatient(dnevnik) if self.probe else dnevnik
                self._portal = DnevnikPortal(
                    dnevnik,
                    state.portal_ids,
                    state.holders,
                    http=DnevnikHttp(dnevnik, sleep=self.sleep),
                    careful=lambda: state.batches_in_doubt() > 0,
                )
            else:
                reference = portal_settings(self.config)
                self._portal = PortalClient(
                    impatient(reference) if self.probe else reference, sleep=self.sleep
                )
            self._opened.callback(self._portal.close)
        return self._portal

    def close(self) -> None:
        """Close what was opened, the last opened first."""
        self._portal = self._state = self._source = None
        self._opened.close()

    def __enter__(self) -> Adapters:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def interruptible(
    stop: threading.Event | None, beat: Callable[[], None] | None = None
) -> Callable[[float], None]:
    """The sleep of the portal adapters' retry and rate-limit waits: a stop (SIGTERM) ends
    it at once with ``Interrupted`` instead of letting a Retry-After of minutes run out, so
    the run ends after recording what was acknowledged, as after any batch. ``beat`` is told
    every few seconds of the wait (the watchdog's liveness: waiting is not being stuck)."""
    if stop is None:
        return time.sleep
    wait = stop.wait if beat is None else sliced(stop.wait, beat)

    def sleep(seconds: float) -> None:
        if wait(max(0.0, seconds)):
            raise Interrupted

    return sleep


def open_adapters(
    config: Config,
    kept: KeptEngines | None = None,
    stop: threading.Event | None = None,
    beat: Callable[[], None] | None = None,
    *,
    probe: bool = False,
) -> Adapters:
    """The adapters of ``config``'s school (nothing is opened until it is used), the source
    and the state store taken from ``kept`` if given; ``stop`` ends the portal's waits, and
    ``beat`` is told as the work moves (rows read, retry waits: the watchdog's liveness).
    ``probe``: the portal is only asked whether it answers (``check``), so it gets one
    attempt and short timeouts (``impatient``)."""
    return Adapters(config, kept, stop, beat, probe=probe)


PROBE_CONNECT_TIMEOUT = 3.05
PROBE_READ_TIMEOUT = 10.0
PROBE_DEADLINE = 15.0
Patient = TypeVar("Patient", PortalSettings, DnevnikSettings)


def impatient(settings: Patient) -> Patient:
    """``settings`` for a probe: one attempt, at most 3 s to connect, 10 s to answer, 15 s in
    all (a portal that does not answer is reported at once, not after a run's retries)."""
    return dataclasses.replace(
        settings,
        max_attempts=1,
        connect_timeout=min(settings.connect_timeout, PROBE_CONNECT_TIMEOUT),
        read_timeout=min(settings.read_timeout, PROBE_READ_TIMEOUT),
        request_deadline=min(settings.request_deadline, PROBE_DEADLINE),
    )


def run_options(config: Config, state: SqlStateStore, **given: Any) -> RunOptions:
    """The run options ``config`` implies (guard thresholds, overlap, planning processes, the
    erased pupils in ``state``), with ``given`` on top (``as_of`` defaults to today)."""
    given.setdefault("as_of", date.today())
    return RunOptions(
        thresholds=config.thresholds,
        overlap=config.sync.overlap,
        erased=Erasures(state.engine).keys(),
        workers=resolve_workers(config.sync.plan_workers),
        support=portal_support(config),
        **given,
    )


def matched_entities(config: Config) -> frozenset[str]:
    """The entities the configured portal owns and the bridge matches (``match``)."""
    support = portal_support(config)
    return frozenset(e for e in support if is_matched(support, e))


def portal_support(config: Config) -> PortalSupport:
    """What the configured portal receives, per entity (known without connecting to it, so
    that a preview says it too)."""
    return DNEVNIK_SUPPORT if config.portal.kind == "dnevnik" else REFERENCE_SUPPORT


def _tables(path: str) -> dict[str, Any]:
    """The adapter's settings a tables file gives (none without one: the defaults)."""
    if not path:
        return {}
    tables = load_tables(path)
    given: dict[str, Any] = {"names": tables.names}
    if tables.log_status is not None:
        given["statuses"] = tables.log_status
    if tables.work_type is not None:
        given["work_types"] = tables.work_type
    return given


def require_secrets(config: Config) -> None:
    """Read the secrets and build the configured portal's settings without connecting: the
    database password (if one is configured), the portal secret and a dnevnik.ru tables file,
    so that a daemon missing any stops before it is ready (ConfigError naming the key)."""
    config.source_url_with_password()
    if config.portal.kind == "dnevnik":
        dnevnik_settings(config)
    else:
        portal_settings(config)


def dnevnik_settings(config: Config) -> DnevnikSettings:
    """The dnevnik.ru adapter's settings (the secret is the Access-Token)."""
    portal = config.portal
    try:
        return DnevnikSettings(
            base_url=portal.url,
            school=portal.school,
            token=_secret(config),
            connect_timeout=portal.connect_timeout,
            read_timeout=portal.read_timeout,
            request_deadline=portal.request_deadline,
            batch_size=portal.batch_size,
            max_attempts=portal.retries,
            max_retry_after=portal.max_retry_after,
            max_batch_wait=portal.max_batch_wait,
            rate_limit=portal.rate_limit,
            concurrency=portal.concurrency,
            verify=portal.ca_bundle or True,
            **_tables(portal.tables_file),
        )
    except ValueError as exc:
        raise ConfigError([Problem(config.file, "portal", str(exc))]) from exc


def load_tables(path: str) -> Tables:
    """The school's dnevnik.ru tables (``config/dnevnik-tables.toml``): ``[log_status]``,
    ``[work_type]`` and ``[names.ENTITY]``, each of text = text; ConfigError naming the file
    and every table that is not."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(path, "", f"cannot read the tables: {exc}")]) from exc
    problems: list[Problem] = []
    names = data.pop("names", {})
    tables = {"log_status": data.pop("log_status", None), "work_type": data.pop("work_type", None)}
    problems += [Problem(path, str(k), "unknown table") for k in data]
    if not isinstance(names, dict):
        problems.append(Problem(path, "names", "must hold one table per entity"))
        names = {}
    for where, table in [*tables.items(), *((f"names.{e}", t) for e, t in names.items())]:
        if table is not None and not _text_table(table):
            problems.append(Problem(path, where, "must be a table of text = text"))
    if problems:
        raise ConfigError(problems)
    return Tables(
        log_status=tables["log_status"],
        work_type=tables["work_type"],
        names={str(e): dict(t) for e, t in names.items()},
    )


@dataclass(frozen=True)
class Tables:
    """The school's dnevnik.ru tables (None: the adapter's defaults)."""

    log_status: dict[str, str] | None
    work_type: dict[str, str] | None
    names: dict[str, dict[str, str]]


def _text_table(table: object) -> bool:
    return isinstance(table, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in table.items()
    )


def _secret(config: Config) -> str:
    secret = config.portal_secret()
    if secret is None:
        raise ConfigError(
            [
                Problem(
                    config.file,
                    "portal.secret_file",
                    "no portal secret: set "
                    "$ASIOU_BRIDGE_PORTAL_SECRET, portal.secret_file, or the "
                    "systemd credential portal-secret",
                )
            ]
        )
    return secret


def portal_settings(config: Config) -> PortalSettings:
    """Client settings from the configuration (the secret from env, file or credential)."""
    secret = _secret(config)
    return PortalSettings(
        base_url=config.portal.url,
        school=config.portal.school,
        client_id=config.portal.client_id,
        client_secret=secret,
        connect_timeout=config.portal.connect_timeout,
        read_timeout=config.portal.read_timeout,
        batch_size=config.portal.batch_size,
        max_attempts=config.portal.retries,
        rate_limit=config.portal.rate_limit,
        concurrency=config.portal.concurrency,
        verify=config.portal.ca_bundle or True,
        request_deadline=config.portal.request_deadline,
        max_retry_after=config.portal.max_retry_after,
        max_batch_wait=config.portal.max_batch_wait,
    )
