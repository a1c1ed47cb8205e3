"""A sync: plan, deliver creates and harmless updates as the plan streams, then (if the guard
lets them) the changes that hide a pupil (archives, membership closures; parents first) and
the deletes (children first), then advance the watermarks. It sequences I/O and decides
nothing itself.

Outcomes, as exit codes (``bridge.core.errors.ExitCode``): every change acknowledged → OK; the
source failed midway → SOURCE_UNAVAILABLE; the portal kept failing, or refused records, or
dead letters were skipped → PARTIAL; destructive changes held by a guard → PLAN_HELD (none of
them was sent, and the watermarks stay, so the next run plans them again).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from bridge.core.errors import (
    ExitCode,
    Interrupted,
    Outcome,
    RetriableError,
    SourceError,
    outcome_of,
)
from bridge.core.mapping import MappingSet
from bridge.ports import ENTITIES as PORTAL_ENTITIES
from bridge.ports import (
    ContingentPortal,
    Portal,
    Source,
    StateStore,
)
from bridge.service.engine.contingent import match_run
from bridge.service.engine.deliver import Deadline, Deliverer, DeliveryReport, Progress
from bridge.service.engine.options import PlanResult, RunOptions
from bridge.service.engine.planning import plan_run, read_back


@dataclass
class SyncResult:
    """A finished sync: its plan and what was delivered."""

    plan: PlanResult
    delivery: DeliveryReport

    @property
    def outcome(self) -> Outcome:
        """One word for run history and metrics (``bridge.core.errors.outcome_of``)."""
        return outcome_of(self.exit_code, interrupted=isinstance(self.plan.error, Interrupted))

    @property
    def exit_code(self) -> int:
        """How the run ends, for the CLI and the scheduler."""
        if isinstance(self.plan.error, SourceError):
            return ExitCode.SOURCE_UNAVAILABLE
        if isinstance(self.plan.error, Interrupted):
            return ExitCode.OK
        if self.plan.error is not None or not self.delivery.complete:
            return ExitCode.PARTIAL
        if self.plan.held:
            return ExitCode.PLAN_HELD
        return ExitCode.OK


def run_sync(
    mappings: MappingSet,
    source: Source,
    state: StateStore,
    portal: Portal,
    options: RunOptions,
    *,
    run_id: str,
    max_attempts: int = 3,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
    deadline: Deadline | None = None,
    reconcile: bool = False,
) -> SyncResult:
    """Plan and deliver one run (see the module docstring for the order of things). Setting
    ``stop`` ends the run after the batch in flight (Interrupted: nothing lost). A
    ``reconcile`` run first reads the portal back (``bridge.core.reconcile``)."""
    if options.support is None:
        options = replace(options, support=portal.support)
    if isinstance(portal, ContingentPortal):
        matches = match_run(mappings, source, state, portal, options.as_of.isoformat())
        options = replace(options, matches=matches)
    if reconcile:
        entities = [e for e in mappings.entities if e in PORTAL_ENTITIES]
        options = replace(options, drift=read_back(portal.fingerprints, state, entities))
    deliverer = Deliverer(
        portal,
        state,
        mappings,
        run_id=run_id,
        max_attempts=max_attempts,
        progress=progress,
        stop=stop,
        deadline=deadline,
    )
    try:
        result = plan_run(mappings, source, state, options, deliverer.add)
        if result.error is None:
            try:
                deliverer.flush()
                if not result.held:
                    deliverer.add_all(result.plan.destructive())
            except RetriableError as exc:
                result.error = exc
    finally:
        deliverer.drain()  # every answered batch recorded, whatever stopped the run
    if result.error is not None:
        deliverer.report.failure = str(result.error)
    elif not deliverer.report.refused and not result.held:
        # Refused records and held changes must be planned again by the next (incremental)
        # run, so the watermarks stay where they were. Dead letters no longer hold them back.
        state.set_watermarks(result.watermarks)
        # Everything that followed from the re-gated pupils' changes was acknowledged.
        regated = result.regated if options.incremental else None
        state.finish_regate(regated, options.as_of.isoformat())
    return SyncResult(result, deliverer.report)
