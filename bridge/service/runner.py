"""The service: one sync at a time, with run history, logs and metrics around it.

Used by the CLI's manual commands and by the daemon's scheduled jobs alike, so both take the same
lock, write the same history and log the same summary line. Builds the adapters from the
configuration (with ``bridge.cli.main`` the only place that does).
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import structlog

from bridge.adapters.portal_client import PortalClient, PortalSettings
from bridge.adapters.source import open_source
from bridge.adapters.state import SqlStateStore, open_state, utc_now
from bridge.core.errors import ConfigError, ExitCode, Problem
from bridge.core.mapping import MappingSet
from bridge.core.scope import Scope
from bridge.service.config import Config
from bridge.service.engine import (
    Deadline,
    Progress,
    RunOptions,
    SyncResult,
    resolve_workers,
    run_sync,
)
from bridge.service.metrics import MetricsSink, summary_from
from bridge.service.runs import Erasures, RunLog, SyncLock

Say = Callable[[str], None]


@dataclass
class Request:
    """What to run: a sync of some kind, by whom."""

    command: str = "sync"
    trigger: str = "manual"
    user: str | None = None
    incremental: bool = False
    resend: Scope | None = None
    tap: tuple[str, str] | None = None
    """(entity, key) whose path through the run is kept (a resync of one pupil or class)."""
    as_of: date | None = None
    wait: bool = True
    reconcile: bool = False
    """Read the portal back first and repair what is missing or changed there."""
    extra: dict[str, Any] = field(default_factory=dict)


def portal_settings(config: Config) -> PortalSettings:
    """Client settings from the configuration (the secret from env, file or credential)."""
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
    return PortalSettings(
        base_url=config.portal_url,
        school=config.portal_school,
        client_id=config.portal_client_id,
        client_secret=secret,
        connect_timeout=config.portal_timeouts[0],
        read_timeout=config.portal_timeouts[1],
        batch_size=config.portal_batch_size,
        max_attempts=config.portal_retries,
        rate_limit=config.portal_rate_limit,
        verify=config.portal_ca_bundle or True,
        request_deadline=config.portal_patience[0],
        max_retry_after=config.portal_patience[1],
        max_batch_wait=config.portal_patience[2],
    )


class Service:
    """Runs syncs for one configured school."""

    def __init__(
        self,
        config: Config,
        mappings: MappingSet,
        metrics: MetricsSink | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.config, self.mappings, self.metrics = config, mappings, metrics
        self.stop = stop or threading.Event()
        self.last: SyncResult | None = None

    def open_state(self) -> SqlStateStore:
        """The state store of this school."""
        return open_state(self.config.state_url, utc_now, school=self.config.portal_school)

    @contextmanager
    def state_store(self) -> Iterator[SqlStateStore]:
        """The state store of this school, closed after the block."""
        state = self.open_state()
        try:
            yield state
        finally:
            state.close()

    def sync(
        self, request: Request, say: Say | None = None, progress: Progress | None = None
    ) -> SyncResult:
        """One sync under the lock, with history, a summary log line and metrics."""
        with self.state_store() as state:
            lock = SyncLock(state.engine, f"sync:{self.config.portal_school}")
            with lock.held(wait=request.wait, say=say):
                return self._locked(state, request, progress)

    def _locked(
        self, state: SqlStateStore, request: Request, progress: Progress | None
    ) -> SyncResult:
        run_id = uuid.uuid4().hex[:12]
        mode = "incremental" if request.incremental else "full"
        structlog.contextvars.bind_contextvars(run_id=run_id)
        log = structlog.get_logger().bind(command=request.command, trigger=request.trigger)
        history = RunLog(state.engine)
        history.close_interrupted(run_id)
        history.start(run_id, request.trigger, request.user, request.command, mode)
        started, wall = time.monotonic(), time.time()
        try:
            outcome = self._run(state, request, run_id, progress)
        except BaseException as exc:  # note the failure in the history, then let it go on
            history.finish(
                run_id,
                "failed",
                getattr(exc, "exit_code", ExitCode.FAILURE),
                {"error": type(exc).__name__},
            )
            log.error(
                "run.summary",
                run_id=run_id,
                mode=mode,
                outcome="failed",
                error=type(exc).__name__,
                seconds=round(time.monotonic() - started, 2),
            )
            raise
        finally:
            structlog.contextvars.unbind_contextvars("run_id")
        summary = _summary(outcome)
        history.finish(run_id, outcome.outcome, outcome.exit_code, summary)
        log.info(
            "run.summary",
            run_id=run_id,
            mode=mode,
            outcome=outcome.outcome,
            exit_code=outcome.exit_code,
            seconds=round(time.monotonic() - started, 2),
            **summary,
        )
        self._observe(outcome, request, wall, state)
        self.last = outcome
        return outcome

    def _run(
        self, state: SqlStateStore, request: Request, run_id: str, progress: Progress | None
    ) -> SyncResult:
        config = self.config
        source = open_source(config.source_url_with_password().render_as_string(False))
        portal = PortalClient(portal_settings(config))
        options = RunOptions(
            as_of=request.as_of or date.today(),
            incremental=request.incremental,
            thresholds=config.thresholds,
            overlap=config.overlap,
            erased=Erasures(state.engine).keys(),
            resend=request.resend,
            tap=request.tap,
            workers=resolve_workers(config.plan_workers),
        )
        checked_at = state.clock()  # the read-back comes first
        try:
            outcome = run_sync(
                self.mappings,
                source,
                state,
                portal,
                options,
                run_id=run_id,
                max_attempts=config.dead_letter_after,
                progress=progress,
                stop=self.stop,
                reconcile=request.reconcile,
                deadline=_deadline(config.run_deadline_minutes),
            )
            drift = outcome.plan.drift
            if drift is not None:
                for entity in drift.entities:
                    state.record_check(entity, drift.findings(entity), checked_at)
            return outcome
        finally:
            portal.close()
            source.engine.dispose()

    def _observe(
        self, outcome: SyncResult, request: Request, started: float, state: SqlStateStore
    ) -> None:
        if self.metrics is None:
            return
        letters = state.dead_letters()
        dead = sum(1 for letter in letters.values() if letter.is_dead)
        scheduled = request.trigger == "schedule"
        self.metrics.after_run(
            summary_from(
                outcome,
                "schedule" if scheduled else "manual",
                started=started,
                ended=time.time(),
                dead_letters=dead,
                pending=len(letters) - dead,
            )
        )


def _deadline(minutes: float) -> Deadline | None:
    """The run's delivery deadline from now (None: ``sync.run_deadline_minutes`` is 0)."""
    if minutes <= 0:
        return None
    end = time.monotonic() + 60.0 * minutes
    return Deadline(minutes, lambda: time.monotonic() > end)


def _summary(outcome: SyncResult) -> dict[str, Any]:
    """Counts only (entities, operations, reasons): safe for logs and history."""
    plan, report = outcome.plan.plan, outcome.delivery
    return {
        "delivered": {e: dict(c) for e, c in report.delivered.items()},
        "delivered_total": report.total,
        "refused": dict(report.refused),
        "skipped_dead_letters": dict(report.skipped_dead),
        "held_back": {e: dict(c) for e, c in plan.holds.items()},
        "rejected": dict(plan.rejection_counts),
        "guard_held": outcome.plan.held,
        "plan_id": outcome.plan.held_id if outcome.plan.held else None,
        "reconcile": None
        if outcome.plan.drift is None
        else {
            **outcome.plan.drift.summary(),
            "held": [h.describe() for h in outcome.plan.portal_holds]
            if outcome.plan.portal_held
            else [],
        },
        "approval_expired": outcome.plan.approval_expired,
        "batches": report.batches,
        "error": report.failure,
    }
