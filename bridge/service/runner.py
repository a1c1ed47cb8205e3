"""The service: one sync at a time, with run history, logs and metrics around it.

Used by the CLI's manual commands and by the daemon's scheduled jobs alike, so both take the same
lock, write the same history and log the same summary line. The engine's only caller: every
sync (``sync``) and every preview (``preview``: ``plan``, ``explain``) goes through it, with
the adapters ``bridge.service.wiring`` builds from the configuration.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any

import structlog

from bridge.adapters.state import SqlStateStore
from bridge.core.errors import BridgeError, ExitCode, LockBusy, outcome_of
from bridge.core.mapping import MappingSet
from bridge.core.matching import Matches
from bridge.core.scope import Scope
from bridge.ports import ENTITIES as PORTAL_ENTITIES
from bridge.service.config import Config
from bridge.service.engine import (
    Deadline,
    PlanResult,
    Progress,
    RunOptions,
    SyncResult,
    plan_run,
    read_back,
    run_sync,
)
from bridge.service.engine.contingent import stored_matches
from bridge.service.liveness import Liveness
from bridge.service.metrics import MetricsSink, failed_summary, summary_from
from bridge.service.runs import RunLog, SyncLock
from bridge.service.wiring import (
    Adapters,
    KeptEngines,
    matched_entities,
    open_adapters,
    run_options,
)

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
        self.liveness = Liveness()  # the watchdog's: beats as the runs' work moves
        self.stop = stop or threading.Event()
        self.last: SyncResult | None = None
        self.kept: KeptEngines | None = None

    def adapters(self) -> Adapters:
        """This school's adapters (``bridge.service.wiring``), for a ``with`` block; inside
        ``kept_open`` the source and the state store are the kept ones."""
        return open_adapters(self.config, self.kept, self.stop, self.liveness.beat)

    @contextmanager
    def kept_open(self) -> Iterator[None]:
        """Keep the source and the state store open between the runs of the block (the
        daemon's: ``bridge.service.wiring.KeptEngines``); closed when it ends."""
        kept = self.kept = KeptEngines(self.config)
        try:
            yield
        finally:
            self.kept = None
            kept.close()

    @contextmanager
    def state_store(self) -> Iterator[SqlStateStore]:
        """The state store of this school, closed after the block."""
        with self.adapters() as io:
            yield io.state

    def preview(self, request: Request, io: Adapters | None = None) -> PlanResult:
        """Plan a run as ``request`` asks, sending and recording nothing (``plan``,
        ``explain``); a reconciling preview reads the portal back first."""
        if io is None:
            with self.adapters() as mine:
                return self.preview(request, mine)
        options = self._options(io, request)
        if matched_entities(self.config):  # the last matching: a preview reads no portal
            options = replace(options, matches=stored_matches(io.state) or Matches())
        if request.reconcile:
            entities = [e for e in self.mappings.entities if e in PORTAL_ENTITIES]
            options = replace(options, drift=read_back(io.portal.fingerprints, io.state, entities))
        result = plan_run(self.mappings, io.source, io.state, options)
        if result.error is not None:
            raise result.error
        return result

    def sync(
        self, request: Request, say: Say | None = None, progress: Progress | None = None
    ) -> SyncResult:
        """One sync under the lock, with history, a summary log line and metrics. A run that
        raises counts in the metrics too (with the outcome of its exit code); one that found
        another sync holding the lock did not run, and does not count."""
        wall = time.time()
        try:
            with self.liveness.working(), self.adapters() as io:
                lock = SyncLock(io.state.engine, f"sync:{self.config.portal.school}")
                with lock.held(wait=request.wait, say=say):
                    return self._locked(io, request, self._beating(progress))
        except LockBusy:
            raise
        except Exception as exc:
            self._observe_failure(exc, request, wall)
            raise

    def _beating(self, progress: Progress | None) -> Progress:
        """``progress`` (per batch recorded), beating the liveness first."""
        beat = self.liveness.beat

        def told(entity: str, delivered: int) -> None:
            beat()
            if progress is not None:
                progress(entity, delivered)

        return told

    def seed_metrics(self) -> None:
        """Set the metrics' last-run and last-success times from the run history, so that a
        restarted daemon does not look as if it had never succeeded."""
        if self.metrics is None:
            return
        try:
            with self.state_store() as state:
                history = RunLog(state.engine)
                for mode in ("full", "incremental"):
                    last = history.last_ended(mode)
                    success = history.last_ended(mode, outcome="ok")
                    self.metrics.metrics.seed(
                        mode, last_run=_unix(last), last_success=_unix(success)
                    )
        except BridgeError as exc:  # the first run will say what is wrong; metrics stay unset
            structlog.get_logger().warning("metrics.not_seeded", error_type=type(exc).__name__)
            return
        self.metrics.refresh()

    def _options(self, io: Adapters, request: Request) -> RunOptions:
        return run_options(
            self.config,
            io.state,
            as_of=request.as_of or date.today(),
            incremental=request.incremental,
            resend=request.resend,
            tap=request.tap,
            keep_builds=self.kept is not None,
        )

    def _locked(self, io: Adapters, request: Request, progress: Progress | None) -> SyncResult:
        state = io.state
        run_id = uuid.uuid4().hex[:12]
        mode = "incremental" if request.incremental else "full"
        structlog.contextvars.bind_contextvars(run_id=run_id)
        log = structlog.get_logger().bind(command=request.command, trigger=request.trigger)
        history = RunLog(state.engine)
        history.close_interrupted(run_id)
        history.start(run_id, request.trigger, request.user, request.command, mode)
        started, wall = time.monotonic(), time.time()
        try:
            outcome = self._run(io, request, run_id, progress)
        except BaseException as exc:  # note the failure in the history, then let it go on
            code = getattr(exc, "exit_code", ExitCode.FAILURE)
            failed = outcome_of(code)  # auth_failed, source_unavailable, or failed
            reason = {"error": type(exc).__name__, "reason": _reason(exc)}
            history.finish(run_id, failed, code, reason)
            log.error(
                "run.summary",
                run_id=run_id,
                mode=mode,
                outcome=failed,
                exit_code=code,
                error=type(exc).__name__,
                seconds=round(time.monotonic() - started, 2),
            )
            raise
        finally:
            structlog.contextvars.unbind_contextvars("run_id")
        summary = _summary(outcome)
        history.finish(run_id, outcome.outcome, outcome.exit_code, summary)
        say_summary = getattr(log, SUMMARY_LEVEL.get(outcome.outcome, "error"))
        say_summary(
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
        self, io: Adapters, request: Request, run_id: str, progress: Progress | None
    ) -> SyncResult:
        config, state = self.config, io.state
        options = self._options(io, request)
        checked_at = state.clock()  # the read-back comes first
        outcome = run_sync(
            self.mappings,
            io.source,
            state,
            io.portal,
            options,
            run_id=run_id,
            max_attempts=config.delivery.dead_letter_after,
            progress=progress,
            stop=self.stop,
            reconcile=request.reconcile,
            deadline=_deadline(config.sync.run_deadline_minutes),
        )
        drift = outcome.plan.drift
        if drift is not None:
            for entity in drift.entities:
                state.record_check(entity, drift.findings(entity), checked_at)
        return outcome

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

    def _observe_failure(self, exc: Exception, request: Request, started: float) -> None:
        if self.metrics is None:
            return
        self.metrics.after_run(
            failed_summary(
                outcome_of(getattr(exc, "exit_code", ExitCode.FAILURE)),
                "schedule" if request.trigger == "schedule" else "manual",
                "incremental" if request.incremental else "full",
                started=started,
                ended=time.time(),
            )
        )


def _reason(exc: BaseException) -> str:
    """The first line of what an error says, for the run history (``status``), cut short."""
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else ""


def _unix(moment: datetime | None) -> float | None:
    """UNIX seconds of a history time (stored in UTC, naive or aware), or None."""
    if moment is None:
        return None
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.timestamp()


SUMMARY_LEVEL = {
    "ok": "info",
    "interrupted": "warning",
    "held": "warning",
    "partial": "warning",
    "source_unavailable": "error",
    "auth_failed": "error",
    "failed": "error",
}
"""The level of a run's summary line by its outcome: anything short of ok is a warning at
least, so ``journalctl -p warning`` lists every run that needs a look."""


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
        "not_supported": {e: dict(c) for e, c in plan.not_supported.items()},
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
