"""Prometheus metrics: what each run did, exported as a node_exporter textfile or over HTTP.

A run is described by a :class:`RunSummary`, plain data built from a ``SyncResult`` by
:func:`summary_from` (so nothing here depends on the engine's internals). :class:`Metrics`
owns its own ``CollectorRegistry`` (never the process-wide default) and folds each summary into
it with :meth:`Metrics.observe`. The exposition format is always prometheus_client's own.

Label values are words only (entity names, operations, hold reasons, mode, trigger, outcome),
never personal data: :class:`RunSummary` refuses anything else when it is built.

::

    asiou_bridge_runs_total{trigger,mode,outcome}            counter (outcome: ok, partial, held,
                                                             failed, source_unavailable,
                                                             auth_failed, interrupted); a run
                                                             that raised counts too
    asiou_bridge_records_delivered_total{entity,op}          counter
    asiou_bridge_records_refused_total{entity}               counter
    asiou_bridge_records_held_back{entity,reason}            gauge (the last run's; the same rows
                                                             are held again every run)
    asiou_bridge_records_rejected{entity}                    gauge (the last run's)
    asiou_bridge_records_not_supported{entity}               gauge (the last run's)
    asiou_bridge_dead_letters                                gauge (current total)
    asiou_bridge_pending_changes                             gauge
    asiou_bridge_last_run_timestamp_seconds{mode}            gauge (when the last run ended)
    asiou_bridge_last_success_timestamp_seconds{mode}        gauge (moves only on outcome "ok")
    asiou_bridge_last_run_duration_seconds{mode}             gauge
    asiou_bridge_run_duration_seconds{mode}                  histogram, seconds to hours
    asiou_bridge_up                                          gauge, 1 while the daemon runs
    asiou_bridge_build_info{version,python}                  gauge, always 1

The two timestamps survive a restart: the daemon seeds them from the run history
(:meth:`Metrics.seed`) before its first run, so an alert on ``last_success`` does not fire
just because the service was restarted.
"""

from __future__ import annotations

import platform
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, get_args
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    start_http_server,
    write_to_textfile,
)

import bridge
from bridge.core.errors import ConfigError, Outcome, Problem

if TYPE_CHECKING:
    from bridge.service.engine import SyncResult

Trigger = Literal["schedule", "manual"]
Mode = Literal["full", "incremental"]
# A label value is a lower-case identifier: an entity, operation or reason name, nothing else.
LABEL_WORD = re.compile(r"[a-z][a-z0-9_]{0,62}")
# Incremental runs take seconds, full runs of a large school up to hours.
DURATION_BUCKETS = (
    1.0,
    5.0,
    15.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    1200.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
)
TEXTFILE_SUFFIX = ".prom"


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    """What one run did, as plain data. Timestamps are UNIX seconds.

    Contract: ``trigger``, ``mode`` and ``outcome`` are among their literals; every entity,
    operation and reason is a lower-case word (``LABEL_WORD``); every count is ≥ 0. A summary
    breaking it is refused with ``ValueError``, so no label can ever carry personal data.
    A run that raised before it had a ``SyncResult`` (a missing secret, refused credentials,
    an unreachable source) is built by :func:`failed_summary`: ``planned`` False, no counts.
    """

    trigger: Trigger
    mode: Mode
    outcome: Outcome
    started: float
    ended: float
    delivered: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    refused: Mapping[str, int] = field(default_factory=dict)
    held_back: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    rejected: Mapping[str, int] = field(default_factory=dict)
    not_supported: Mapping[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    pending: int = 0
    planned: bool = True

    def __post_init__(self) -> None:
        _require_choice("trigger", self.trigger, Trigger)
        _require_choice("mode", self.mode, Mode)
        _require_choice("outcome", self.outcome, Outcome)
        for name, nested in (("delivered", self.delivered), ("held_back", self.held_back)):
            for entity, counts in nested.items():
                _require_word(name, entity)
                _require_counts(f"{name}[{entity!r}]", counts)
        _require_counts("refused", self.refused)
        _require_counts("rejected", self.rejected)
        _require_counts("not_supported", self.not_supported)
        _require_counts("totals", {"dead_letters": self.dead_letters, "pending": self.pending})

    @property
    def duration(self) -> float:
        """Seconds the run took; never negative (a wall clock stepped back counts as 0)."""
        return max(0.0, self.ended - self.started)


def _require_choice(name: str, value: str, choices: object) -> None:
    if value not in get_args(choices):
        raise ValueError(f"run summary: {name} {value!r} is not one of {get_args(choices)}")


def _require_word(where: str, word: str) -> None:
    if not LABEL_WORD.fullmatch(word):
        raise ValueError(
            f"run summary: {where}: label value {word!r} is not a lower-case "
            f"word (entity, operation or reason names only)"
        )


def _require_counts(where: str, counts: Mapping[str, int]) -> None:
    for word, number in counts.items():
        _require_word(where, word)
        if number < 0:
            raise ValueError(f"run summary: {where}: count of {word!r} is negative ({number})")


def summary_from(
    result: SyncResult,
    trigger: Trigger,
    *,
    started: float,
    ended: float,
    dead_letters: int,
    pending: int,
) -> RunSummary:
    """The summary of a finished sync; the outcome follows ``result.exit_code``, except that a
    run stopped on request (exit code 0, but not a success) is "interrupted".

    ``dead_letters`` and ``pending`` are the state store's totals after the run. The counts are
    copied, so later changes to ``result`` do not reach the summary. Keyword-only past
    ``trigger``: two timestamps and two totals are too easy to swap by position.
    """
    plan, delivery = result.plan.plan, result.delivery
    return RunSummary(
        trigger=trigger,
        mode=_mode_of(plan.mode),
        outcome=result.outcome,
        started=started,
        ended=ended,
        delivered=_nested_copy(delivery.delivered),
        refused=dict(delivery.refused),
        held_back=_nested_copy(plan.holds),
        rejected=dict(plan.rejection_counts),
        not_supported={e: sum(c.values()) for e, c in plan.not_supported.items()},
        dead_letters=dead_letters,
        pending=pending,
    )


def failed_summary(
    outcome: Outcome, trigger: Trigger, mode: Mode, *, started: float, ended: float
) -> RunSummary:
    """The summary of a run that raised before it had a result: it counts as a run with its
    ``outcome`` (from the error's exit code), and says nothing of records."""
    return RunSummary(
        trigger=trigger, mode=mode, outcome=outcome, started=started, ended=ended, planned=False
    )


def _mode_of(value: str) -> Mode:
    if value == "incremental":
        return "incremental"
    if value == "full":
        return "full"
    raise ValueError(f"run summary: mode {value!r} is not one of {get_args(Mode)}")


def _nested_copy(counts: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    return {outer: dict(inner) for outer, inner in counts.items()}


def require_textfile_path(path: str | Path) -> Path:
    """``path`` as a ``Path``; ``ValueError`` unless it ends in ``.prom``, the only files
    node_exporter's textfile collector reads."""
    target = Path(path)
    if target.suffix != TEXTFILE_SUFFIX or not target.stem:
        raise ValueError(
            f"metrics textfile {str(path)!r} must end in {TEXTFILE_SUFFIX!r}: "
            f"node_exporter's textfile collector reads only *{TEXTFILE_SUFFIX} files"
        )
    return target


class MetricsServer:
    """A running HTTP endpoint serving one registry at any path (``/metrics`` by convention).

    ``close()`` stops it and releases the socket; it is also a context manager.
    """

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server, self._thread = server, thread

    @property
    def port(self) -> int:
        """The port actually bound (useful when 0 asked the OS for a free one)."""
        return self._server.server_port

    def close(self) -> None:
        """Stop serving, close the listening socket and wait for the serving thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


class Metrics:
    """The bridge's metrics, in a registry of their own (see the module docstring for names)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._define_counters()
        self._define_gauges()

    def _define_counters(self) -> None:
        reg = self.registry
        self.runs = Counter(
            "asiou_bridge_runs_total",
            "Runs finished, by trigger, mode and outcome.",
            ["trigger", "mode", "outcome"],
            registry=reg,
        )
        self.delivered = Counter(
            "asiou_bridge_records_delivered_total",
            "Changes the portal acknowledged, by entity and operation.",
            ["entity", "op"],
            registry=reg,
        )
        self.refused = Counter(
            "asiou_bridge_records_refused_total",
            "Changes the portal refused (they become dead letters).",
            ["entity"],
            registry=reg,
        )
        self.duration = Histogram(
            "asiou_bridge_run_duration_seconds",
            "How long runs take.",
            ["mode"],
            buckets=DURATION_BUCKETS,
            registry=reg,
        )

    def _define_gauges(self) -> None:
        reg = self.registry
        self.held_back = Gauge(
            "asiou_bridge_records_held_back",
            "Valid records the last run held back from the portal, by reason.",
            ["entity", "reason"],
            registry=reg,
        )
        self.rejected = Gauge(
            "asiou_bridge_records_rejected",
            "Source rows the last run rejected as invalid.",
            ["entity"],
            registry=reg,
        )
        self.not_supported = Gauge(
            "asiou_bridge_records_not_supported",
            "Changes the last run found that this portal does not take (do them by hand).",
            ["entity"],
            registry=reg,
        )
        self.dead_letters = Gauge(
            "asiou_bridge_dead_letters",
            "Dead letters in the state store after the last run.",
            registry=reg,
        )
        self.pending = Gauge(
            "asiou_bridge_pending_changes",
            "Changes still waiting for delivery after the last run.",
            registry=reg,
        )
        self.last_run = Gauge(
            "asiou_bridge_last_run_timestamp_seconds",
            "When the last run ended (UNIX time).",
            ["mode"],
            registry=reg,
        )
        self.last_success = Gauge(
            "asiou_bridge_last_success_timestamp_seconds",
            "When the last run with outcome ok ended (UNIX time).",
            ["mode"],
            registry=reg,
        )
        self.last_duration = Gauge(
            "asiou_bridge_last_run_duration_seconds",
            "How long the last run took.",
            ["mode"],
            registry=reg,
        )
        self.up = Gauge(
            "asiou_bridge_up", "1 while the daemon runs, 0 once it stopped.", registry=reg
        )
        Info("asiou_bridge_build", "The bridge's version and Python.", registry=reg).info(
            {"version": bridge.__version__, "python": platform.python_version()}
        )

    def observe(self, summary: RunSummary) -> None:
        """Fold one finished run in: counters add up, gauges are replaced, the last-success
        timestamp moves only when the outcome is "ok". A run that failed before it had a plan
        (``planned=False``) counts in ``runs_total`` and its timings, and leaves the last
        plan's gauges as they were."""
        self.runs.labels(summary.trigger, summary.mode, summary.outcome).inc()
        self._count_records(summary)
        self._set_timings(summary)
        if summary.planned:
            self._set_last_plan(summary)
            self.dead_letters.set(summary.dead_letters)
            self.pending.set(summary.pending)

    def seed(self, mode: Mode, *, last_run: float | None, last_success: float | None) -> None:
        """Set the two timestamps of ``mode`` from the run history (when the daemon starts)."""
        if last_run is not None:
            self.last_run.labels(mode).set(last_run)
        if last_success is not None:
            self.last_success.labels(mode).set(last_success)

    def _count_records(self, summary: RunSummary) -> None:
        for entity, ops in summary.delivered.items():
            for op, number in ops.items():
                self.delivered.labels(entity, op).inc(number)
        for entity, number in summary.refused.items():
            self.refused.labels(entity).inc(number)

    def _set_last_plan(self, summary: RunSummary) -> None:
        """The last run's held-back, rejected and not-supported counts replace the ones
        before: the same rows are found again every run, so adding them would overcount."""
        for gauge in (self.held_back, self.rejected, self.not_supported):
            gauge.clear()
        for entity, reasons in summary.held_back.items():
            for reason, number in reasons.items():
                self.held_back.labels(entity, reason).set(number)
        for entity, number in summary.rejected.items():
            self.rejected.labels(entity).set(number)
        for entity, number in summary.not_supported.items():
            self.not_supported.labels(entity).set(number)

    def _set_timings(self, summary: RunSummary) -> None:
        self.duration.labels(summary.mode).observe(summary.duration)
        self.last_duration.labels(summary.mode).set(summary.duration)
        self.last_run.labels(summary.mode).set(summary.ended)
        if summary.outcome == "ok":
            self.last_success.labels(summary.mode).set(summary.ended)

    def set_up(self, running: bool) -> None:
        """Set ``asiou_bridge_up``: 1 while the daemon runs, 0 once it stopped."""
        self.up.set(1 if running else 0)

    def write_textfile(self, path: str | Path) -> None:
        """Write the registry to ``path`` atomically (temporary file in the same directory,
        then rename). ``ValueError`` unless the name ends in ``.prom``; ``OSError`` as raised."""
        target = require_textfile_path(path)
        write_to_textfile(str(target), self.registry)
        # node_exporter runs as another user, and the service's umask is 0077.
        target.chmod(0o644)

    def serve(self, host: str, port: int) -> MetricsServer:
        """Serve the registry over HTTP on ``host:port`` (0 picks a free port) from a daemon
        thread; the caller must ``close()`` what is returned."""
        server, thread = start_http_server(port, addr=host, registry=self.registry)
        return MetricsServer(server, thread)


class RunObserver(Protocol):
    """What the daemon calls after each run (the metrics port; tests may pass a fake)."""

    def after_run(self, summary: RunSummary) -> None:
        """Record one finished run."""


class MetricsSink:
    """The daemon's metrics: observes each run, then rewrites the textfile and/or keeps an
    HTTP endpoint, as configured. Both outputs are optional and independent.

    Lifecycle: ``start()`` (up = 1, endpoint opened, textfile written), ``after_run()`` per
    run, ``close()`` (up = 0 written to the textfile, endpoint closed). The textfile path is
    validated when the sink is built, so a bad path stops the daemon at start-up.
    """

    def __init__(
        self,
        metrics: Metrics | None = None,
        *,
        textfile: str | Path | None = None,
        listen: tuple[str, int] | None = None,
        config_file: str = "(configuration)",
    ) -> None:
        """``config_file`` is named by the errors of ``start`` (where the settings came from)."""
        self.config_file = config_file
        self.metrics = metrics if metrics is not None else Metrics()
        self.textfile = require_textfile_path(textfile) if textfile is not None else None
        self.listen = listen
        self.server: MetricsServer | None = None
        self._started = False

    def start(self) -> None:
        """Mark the daemon up, open the HTTP endpoint if configured, write the textfile.
        ConfigError naming the key when the port cannot be bound or the textfile not written:
        the daemon calls this before it tells systemd it is ready, and neither heals by itself.
        """
        self.metrics.set_up(True)
        if self.listen is not None and self.server is None:
            host, port = self.listen
            try:
                self.server = self.metrics.serve(host, port)
            except (OSError, OverflowError) as exc:
                raise self._unusable(
                    "metrics.listen",
                    f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}; "
                    "another program may hold the port (`ss -ltnp`), or the address is not "
                    "this machine's: choose another",
                ) from exc
        try:
            self._write()
        except OSError as exc:
            raise self._unusable(
                "metrics.textfile",
                f"cannot write {self.textfile}: {exc.strerror}; the folder must exist and the "
                "service may write there (ReadWritePaths=, docs/operations.md, Metrics)",
            ) from exc
        self._started = True

    def after_run(self, summary: RunSummary) -> None:
        """Observe one finished run and rewrite the textfile if configured."""
        self.metrics.observe(summary)
        self._write()

    def refresh(self) -> None:
        """Rewrite the textfile (after the metrics were changed outside a run)."""
        self._write()

    def close(self) -> None:
        """Close the HTTP endpoint and mark the daemon down in the textfile (not written when
        ``start`` did not get that far)."""
        if self.server is not None:
            self.server.close()
            self.server = None
        if self._started:
            self._started = False
            self.metrics.set_up(False)
            self._write()

    def _unusable(self, key: str, message: str) -> ConfigError:
        return ConfigError([Problem(self.config_file, key, message)])

    def _write(self) -> None:
        if self.textfile is not None:
            self.metrics.write_textfile(self.textfile)

    def __enter__(self) -> MetricsSink:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()
