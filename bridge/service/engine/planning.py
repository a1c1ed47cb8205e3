"""``plan_run``: one planning run over every entity in dependency order, then the guard and
the approval check. Nothing is sent here: changes go to the run's sink as the plan streams.

A full run reads every row and finds deletions. An incremental run reads rows whose watermark
moved since the last run (plus every row of a pupil whose consent or enrolment changed), pairs
them with the state by lookup; it deletes only records that became forbidden, never rows gone
from the source."""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import timedelta

from bridge.core import reconcile
from bridge.core.errors import (
    RetriableError,
    SourceError,
)
from bridge.core.gate import Context
from bridge.core.guard import Thresholds
from bridge.core.guard import check as guard_check
from bridge.core.mapping import MappingSet
from bridge.core.model import Op
from bridge.core.plan import (
    Plan,
)
from bridge.core.reconcile import Drift, PortalHold
from bridge.ports import (
    Source,
    StateStore,
)
from bridge.service.engine.keys import ChangeSink
from bridge.service.engine.options import PlanResult, RunOptions
from bridge.service.engine.working import _Run


def plan_run(
    mappings: MappingSet,
    source: Source,
    state: StateStore,
    options: RunOptions,
    sink: ChangeSink | None = None,
) -> PlanResult:
    """Plan one run; creates and harmless updates go to ``sink`` as they are found, deletes and
    the changes that hide a pupil (archives, membership closures) wait in the plan (they go
    last, and only if the guard lets them). A plan the guard holds is remembered by the state
    store, so an admin can approve it. A read that fails midway does not raise: the result
    carries the error and no deletes. A reconciling run whose read-back the guard holds
    sends nothing (its changes are planned for review only)."""
    portal_holds, portal_approved = _guard_portal(options, state)
    if portal_holds and not portal_approved:
        sink = None
    run = _Run(mappings, source, state, options, sink)
    run.result.drift, run.result.portal_holds = options.drift, portal_holds
    run.result.portal_approved = portal_approved
    try:
        for mapping in mappings.mappings:
            gc.freeze()  # the context learnt so far is long-lived: keep the collector off it
            run.plan_entity(mapping)
    except (SourceError, RetriableError) as exc:
        # A partial read proves nothing is gone: keep no delete, advance no watermark.
        run.result.plan.discard_deletes(str(exc))
        run.result.error = exc
        return run.result
    finally:
        gc.unfreeze()
    run.result.watermarks = run.watermarks
    _place_archives(run.result.plan, run.ctx)
    _guard(run.result, state, options.thresholds, run.ctx.pupils_by_class(run.ctx.as_of))
    _fill_before(run.result.plan, state)
    return run.result


def _fill_classes(plan: Plan, state: StateStore) -> None:
    """Give enrolment deletes their owner class, which the whole-class guard counts by."""
    wanted = [c.sort_key for c in plan.deletes if c.entity == "enrollment" and not c.class_key]
    if wanted:
        found = state.lookup("enrollment", wanted)
        for change in plan.deletes:
            entry = found.get(change.sort_key) if change.entity == "enrollment" else None
            if entry is not None:
                change.class_key = entry.class_key


def _fill_before(plan: Plan, state: StateStore) -> None:
    """Give the sampled updates their recorded payloads, for a field-level review."""
    for entity in {c.entity for c in plan.updates}:
        found = state.payloads(entity, [c.sort_key for c in plan.updates if c.entity == entity])
        plan.updates = [
            replace(c, before=found.get(c.sort_key)) if c.entity == entity else c
            for c in plan.updates
        ]


def _guard_portal(options: RunOptions, state: StateStore) -> tuple[list[PortalHold], bool]:
    """The read-back's guard: its holds, and whether an admin approved them (in time)."""
    if options.drift is None:
        return [], False
    holds = reconcile.check(options.drift, options.thresholds)
    if not holds:
        return [], False
    drift_id = options.drift.drift_id
    state.hold_plan(drift_id, "; ".join(h.describe() for h in holds))
    valid = timedelta(hours=options.thresholds.approval_valid_hours)
    return holds, state.is_approved(drift_id, valid)


def read_back(
    listing: Callable[[str], Mapping[str, str]], state: StateStore, entities: Iterable[str]
) -> Drift:
    """Read the portal back (``listing``: entity → sourcedId → fingerprint of its live
    records) and compare it with the state, entity by entity; unexpected records get the sort
    key of the state's tombstone where there is one."""
    drift = Drift()
    for entity in entities:
        found = reconcile.compare(entity, state.entries(entity), listing(entity))
        if found.unexpected:
            found.unexpected.update(state.tombstones(entity, list(found.unexpected)))
        drift.entities[entity] = found
    return drift


def _place_archives(plan: Plan, ctx: Context) -> None:
    """Give pupil archives the class of the pupil's last stay, which the guard counts by."""
    for change in plan.hiding:
        if change.op is Op.ARCHIVE and change.entity == "pupil" and change.class_key is None:
            change.class_key = ctx.last_class(change.key)


def _guard(
    result: PlanResult, state: StateStore, thresholds: Thresholds, pupils_by_class: dict[str, int]
) -> None:
    plan = result.plan
    if not plan.deletes and not plan.hiding:
        return
    _fill_classes(plan, state)
    entities = {c.entity for c in (*plan.deletes, *plan.hiding)}
    totals = {e: state.count(e) for e in entities}
    opened = state.count_open_by_class("enrollment") if "enrollment" in entities else {}
    result.guard_holds = guard_check(
        plan,
        totals,
        state.count_by_class("enrollment"),
        thresholds,
        open_by_class=opened,
        pupils_by_class=pupils_by_class,
    )
    if result.guard_holds:
        _judge_approval(result, state, thresholds)


def _judge_approval(result: PlanResult, state: StateStore, thresholds: Thresholds) -> None:
    """Remember the held plan; it goes through only with an approval that has not expired."""
    plan_id = result.plan.plan_id
    state.hold_plan(plan_id, "; ".join(h.describe() for h in result.guard_holds))
    result.approved = state.is_approved(plan_id, timedelta(hours=thresholds.approval_valid_hours))
    result.approval_expired = not result.approved and state.approval(plan_id) is not None
