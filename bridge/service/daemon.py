"""``asiou-bridge run``: the daemon. APScheduler 3 jobs, systemd notify, graceful stop.

Start-up (``serve``): whatever no restart can fix is done before READY=1 (the triggers, the
secrets, the metrics endpoint), so a bad setting ends the daemon with exit 3 rather than a
restart loop or a daemon that reports ready and then fails every run.

Jobs (``[schedule]`` in the config, their triggers built by ``bridge.service.schedule``): an
incremental sync every ``incremental_every`` (first one at start; optionally only in ``hours``
on ``days``), the nightly full run at ``full_at``, dead letters given another chance at
``dead_letters_at``, and the reconciliation (a full run that reads the portal back and repairs
it) at ``reconcile_at``, weekly by default. Syncs run one at a
time on a single worker (``max_instances=1``, coalesced, with a misfire grace), and under the
same database lock as manual commands: a scheduled run that finds a manual one running skips its
turn. SIGTERM or SIGINT stops the run in flight after its current batch (acknowledged changes
are recorded), then the daemon exits 0.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from datetime import datetime
from types import FrameType
from typing import Any

import structlog
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bridge.core.errors import BridgeError, LockBusy
from bridge.core.mapping import MappingSet
from bridge.service.config import Config
from bridge.service.notify import Notifier
from bridge.service.runner import Request, Service
from bridge.service.schedule import Triggers, build_triggers
from bridge.service.spread import offset_minutes
from bridge.service.wiring import require_secrets

log = structlog.get_logger()


class Daemon:
    """The scheduler and its jobs around one Service."""

    def __init__(
        self, config: Config, mappings: MappingSet, notifier: Notifier, service: Service
    ) -> None:
        self.config, self.mappings, self.notifier, self.service = (
            config,
            mappings,
            notifier,
            service,
        )
        self._stalled = False
        # The nightly jobs' minutes late, this school's own (bridge.service.spread).
        self.offset = offset_minutes(config.portal.school, config.schedule.spread_minutes)
        grace = config.schedule.misfire_grace_seconds
        self.scheduler = BackgroundScheduler(
            executors={"sync": ThreadPoolExecutor(1), "default": ThreadPoolExecutor(2)},
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": grace},
        )

    def add_jobs(self, triggers: Triggers) -> None:
        """The sync jobs on ``triggers``, and the watchdog ping when systemd asks for one."""
        self.scheduler.add_job(
            self.incremental,
            triggers.incremental,
            id="incremental",
            executor="sync",
            next_run_time=datetime.now(),
        )
        self.scheduler.add_job(self.full, triggers.full, id="full", executor="sync")
        self.scheduler.add_job(
            self.revive, triggers.dead_letters, id="dead_letters", executor="sync"
        )
        if triggers.reconcile is not None:
            self.scheduler.add_job(
                self.reconcile, triggers.reconcile, id="reconcile", executor="sync"
            )
        interval = self.notifier.watchdog_interval()
        if interval is not None:
            self.scheduler.add_job(
                self.watchdog,
                IntervalTrigger(seconds=interval),
                args=[2 * interval],
                id="watchdog",
                next_run_time=datetime.now(),
            )

    def watchdog(self, stall_after: float) -> None:
        """Ping systemd while the daemon is idle or its run's work moves (rows read, batches
        recorded, retry waits); a run quiet for ``stall_after`` seconds (the unit's
        ``WatchdogSec``: a driver hung, a query that never returns) gets no ping, so systemd
        kills the service and starts it again."""
        quiet = self.service.liveness.quiet_for()
        if quiet is None or quiet < stall_after:
            self.notifier.watchdog()
            self._stalled = False
            return
        if not self._stalled:  # once per stall
            log.error("watchdog.stalled", quiet_seconds=round(quiet, 1))
            self.notifier.status(f"stuck: no progress for {round(quiet)} s")
            self._stalled = True

    def triggers(self) -> Triggers:
        """The jobs' triggers (ConfigError naming the ``[schedule]`` key that cannot be run)."""
        return build_triggers(self.config.schedule, self.config.file, late=self.offset)

    def incremental(self) -> None:
        """The frequent job."""
        self._sync(Request(command="incremental", trigger="schedule", incremental=True, wait=False))

    def full(self) -> None:
        """The nightly full run (finds deletions; reads the portal back only at reconcile_at)."""
        self._sync(Request(command="full", trigger="schedule", wait=False))

    def reconcile(self) -> None:
        """The weekly reconciliation: a full run that reads the portal back first and repairs
        what is missing or changed there (``bridge.core.reconcile``)."""
        self._sync(Request(command="reconcile", trigger="schedule", reconcile=True, wait=False))

    def revive(self) -> None:
        """Give dead letters another chance: the next full run sends them again."""
        with self.service.state_store() as state:
            revived = state.revive()
        log.info("dead_letters.revived", count=revived)

    def _sync(self, request: Request) -> None:
        if self.service.stop.is_set():
            return
        self.notifier.status(f"running a {request.command} sync")
        try:
            outcome = self.service.sync(request)
        except LockBusy as exc:
            log.info("run.skipped", job=request.command, holder=exc.holder)
            self.notifier.status(f"skipped a {request.command} sync: a manual one is running")
            return
        except BridgeError as exc:  # the daemon outlives a failed run; the next one retries
            log.error(
                "run.failed", job=request.command, error=str(exc), error_type=type(exc).__name__
            )
            self.notifier.status(f"last {request.command} sync failed: {type(exc).__name__}")
            return
        report = outcome.delivery
        self.notifier.status(
            f"last {request.command} sync: {outcome.outcome}, "
            f"{report.total} delivered, {sum(report.refused.values())} refused"
        )

    def serve(self, stop: threading.Event, *, prepared: Callable[[], None] = lambda: None) -> int:
        """Run until ``stop`` is set; then finish the run in flight and shut down. The source
        and the state store stay open between runs and are closed last.

        Everything that can fail for a reason no restart fixes happens before systemd hears
        READY=1: the triggers are built, the secrets and the portal's settings are read, and
        ``prepared`` runs (the CLI opens the metrics endpoint and textfile there). A failure
        there ends the daemon with its ConfigError (exit 3, which the units do not restart)."""
        triggers = self.triggers()
        require_secrets(self.config)
        prepared()
        with self.service.kept_open():
            self.service.seed_metrics()
            self.add_jobs(triggers)
            self.scheduler.start()
            self.notifier.ready()
            log.info("daemon.started", jobs=[j.id for j in self.scheduler.get_jobs()])
            while not stop.wait(1.0):
                pass
            self.notifier.stopping()
            log.info("daemon.stopping")
            self.scheduler.shutdown(wait=True)
        log.info("daemon.stopped")
        return 0


def install_signals(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set ``stop`` (the run in flight ends after its current batch)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("daemon.signal", signal=signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, handler)


def next_runs(daemon: Daemon) -> dict[str, Any]:
    """When each job runs next (for ``status``), without starting the scheduler."""
    now = datetime.now().astimezone()
    triggers = daemon.triggers()
    found: dict[str, Any] = {
        job_id: trigger.get_next_fire_time(None, now)
        for job_id, trigger in (
            ("incremental", triggers.incremental),
            ("full", triggers.full),
            ("dead_letters", triggers.dead_letters),
        )
    }
    reconciling = triggers.reconcile
    found["reconcile"] = None if reconciling is None else reconciling.get_next_fire_time(None, now)
    return found
