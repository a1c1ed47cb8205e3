"""The engine: the only place that sequences I/O (read → map → gate → plan → guard).

For each entity in dependency order it streams the source rows through the compiled mapping and
the gate into the planner, which merges them with the state store's entries. Deciding happens in
pure modules (``mapping``, ``gate``, ``plan``, ``guard``); the engine only wires them and
handles the read that fails midway (no deletes from a partial read).

A full run reads every row and finds deletions. An incremental run reads rows whose watermark
moved since the last run (plus every row of a pupil whose consent or enrolment changed), pairs
them with the state by lookup; it deletes only records that became forbidden, never rows
gone from the source.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from typing import Any, NoReturn

from bridge.core import gate, reconcile
from bridge.core.errors import RetriableError, SourceError, SourceOrderError
from bridge.core.fields import InvalidValue, key_part
from bridge.core.gate import Context, MissingReference
from bridge.core.guard import GuardHold, Thresholds
from bridge.core.guard import check as guard_check
from bridge.core.mapping import CompiledMapping, MappingSet, RowRejected
from bridge.core.model import Change, Hold, Op, Record, Rejection
from bridge.core.plan import (
    Item,
    Plan,
    closes_membership,
    diff,
    diff_sorted,
    may_close,
    pair_by_lookup,
)
from bridge.core.reconcile import Drift, PortalHold
from bridge.core.scope import Scope
from bridge.ports import Delivered, KeyRange, Rescan, Row, Source, StateStore
from bridge.service.shards import (
    HAS_FORK,
    ChangeSink,
    RangeWork,
    Workers,
    key_ranges,
    shown_range,
    sort_bounds,
)

# Index entities learnt in a pre-pass because an earlier entity's gate needs them.
PREPASS = {"pupil": "enrollment", "guardian": "guardian_link"}
PUPIL_FIELD = "pupil"
# A change of these makes every record of the pupil pass the gate again (consent, stays).
DIRTYING = frozenset({"pupil", "enrollment"})
# Entities whose rejected rows fail closed for the pupil they name: scanned before pupils.
CLOSING = ("enrollment", "guardian_link")
MAX_RESCAN = 1000
ABOVE_EVERY_KEY = "\U0010ffff"  # sort keys begin "i" or "s"


@dataclass(frozen=True)
class RunOptions:
    """How to plan one run."""

    as_of: date
    incremental: bool = False
    thresholds: Thresholds = field(default_factory=Thresholds)
    overlap: timedelta = timedelta(minutes=5)
    erased: frozenset[str] = frozenset()
    """Pupils erased from the portal (152-ФЗ): held back as without consent."""
    resend: Scope | None = None
    """Records to send again even where the state says delivered (``resync``)."""
    tap: tuple[str, str] | None = None
    """(entity, key) of one record whose path through the run is kept (``explain``)."""
    workers: int = 1
    """Processes that plan a full read of a large entity, each a range of its keys
    (``bridge.service.shards``); 1 plans everything in this process."""
    drift: Drift | None = None
    """The portal read back (``read_back``): a reconciling run, whose state view is corrected
    by what the portal holds (``bridge.core.reconcile``). Planned in one process."""


@dataclass
class PlanResult:
    """A planned run: the plan, the guard's verdict, and the watermarks reached."""

    plan: Plan
    guard_holds: list[GuardHold] = field(default_factory=list)
    approved: bool = False
    watermarks: dict[str, str] = field(default_factory=dict)
    tapped: list[Item | Change] = field(default_factory=list)
    """What happened to the record named by ``RunOptions.tap``: its item(s) and change(s)."""
    error: SourceError | RetriableError | None = None
    """Set when a read failed midway, or delivery from the sink ran out of retries: the plan is
    partial (it holds no deletes) and the run must not report success."""
    regated: frozenset[str] = frozenset()
    """Pupils this run re-gated (incremental runs): their re-gating marks go once the run has
    delivered everything."""
    approval_expired: bool = False
    """True when an admin approved this very plan, but longer ago than the approval is valid."""
    drift: Drift | None = None
    """What the portal's read-back found, and what was planned for it (a reconciling run)."""
    portal_holds: list[PortalHold] = field(default_factory=list)
    portal_approved: bool = False

    @property
    def portal_held(self) -> bool:
        """True when the read-back looks like an empty or lost portal and no admin approved
        the reconciliation (``Drift.drift_id``): nothing of the run is sent."""
        return bool(self.portal_holds) and not self.portal_approved

    @property
    def held(self) -> bool:
        """True when the destructive changes (deletes, archives, closures) must wait for an
        admin's approval."""
        return (bool(self.guard_holds) and not self.approved) or self.portal_held

    @property
    def held_id(self) -> str:
        """The id an admin approves: the reconciliation's when the read-back is held, else the
        plan's."""
        if self.portal_held and self.drift is not None:
            return self.drift.drift_id
        return self.plan.plan_id


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


class _Run:
    """The mutable working set of one planning run."""

    def __init__(
        self,
        mappings: MappingSet,
        source: Source,
        state: StateStore,
        options: RunOptions,
        sink: ChangeSink | None,
    ) -> None:
        self.mappings, self.source, self.state, self.options = mappings, source, state, options
        self.sink = sink
        self.ctx = Context(as_of=options.as_of.isoformat(), erased=options.erased)
        self.result = PlanResult(Plan(mode="incremental" if options.incremental else "full"))
        self.watermarks: dict[str, str] = {}
        self.dirty_pupils: set[str] = set()
        self.marked: set[str] = set()  # dirty pupils whose re-gating mark is in the state store
        self.last_as_of: str | None = None
        if options.incremental:
            # Marks left by a run that did not deliver everything (a crash, a portal outage):
            # what follows from their gate-relevant change is planned again.
            self.marked = state.regate_marks()
            self.dirty_pupils |= self.marked
            self.last_as_of = state.last_as_of()
        self.referenced = {t for m in mappings.mappings for t in m.refs.values()}

    def plan_entity(self, mapping: CompiledMapping) -> None:
        """Read, map, gate and plan one entity."""
        if mapping.entity == "pupil":
            for closing in CLOSING:
                if closing in self.mappings:
                    self._close_for_rejected(self.mappings[closing])
        needed = PREPASS.get(mapping.entity)
        if needed is not None and needed in self.mappings:
            self._prepass(self.mappings[needed])
        self._persist_dirty()
        since = self._since(mapping)
        if self._rescan_too_big(mapping, since):
            since = None
        tapped = self.options.tap is not None and self.options.tap[0] == mapping.entity
        watching = tapped or (self.options.incremental and mapping.entity in DIRTYING)
        if (
            since is None
            and not watching
            and mapping.entity not in mapping.refs.values()
            and self.options.drift is None
        ):
            ranges = self._key_ranges(mapping)
            if len(ranges) > 1:
                self._plan_in_ranges(mapping, ranges)
                return
        outcomes = self._outcomes(mapping, since)
        if watching:
            self._note_watching(mapping, outcomes)
        else:
            self.result.plan.note_all(mapping.entity, outcomes, self.sink, self._closes)

    def _is_leaf(self, mapping: CompiledMapping) -> bool:
        return mapping.entity not in self.referenced

    def _outcomes(
        self, mapping: CompiledMapping, since: datetime | None
    ) -> Iterator[Item | Change]:
        """The entity's items and changes: merged with the state on a full read, paired by
        lookup on an incremental one."""
        leaf, tap = self._is_leaf(mapping), self.options.tap
        rows = self.source.read(mapping, since if leaf else None, self._dirty(mapping, since))
        items = self._items(mapping, rows)
        if tap is not None and tap[0] == mapping.entity:
            items = self._tapped(items, tap[1])
        if since is None:
            return self._reconciled(mapping.entity, items)
        changed = items if leaf else (i for i in items if self._is_changed(i, since))
        return diff(
            pair_by_lookup(changed, lambda keys: self.state.lookup(mapping.entity, keys)),
            complete=False,
        )

    def _reconciled(self, entity: str, items: Iterator[Item]) -> Iterator[Item | Change]:
        """The full merge; in a reconciling run over the state as the portal has it."""
        drift = self.options.drift
        found = drift.entities.get(entity) if drift is not None else None
        entries = self.state.entries(entity)
        if drift is None or found is None:
            return diff_sorted(entity, items, entries, self._resend())
        merged = diff_sorted(entity, items, reconcile.corrected(entries, found), self._resend())
        return reconcile.annotate(merged, found, drift)

    def _note_watching(self, mapping: CompiledMapping, outcomes: Iterable[Item | Change]) -> None:
        """Note outcomes one by one, keeping the tapped record's changes (``explain``) and the
        pupils whose consent or stays changed (incremental runs)."""
        note, sink, tap = self.result.plan.note, self.sink, self.options.tap
        dirtying = self.options.incremental and mapping.entity in DIRTYING
        watched = tap[1] if tap is not None and tap[0] == mapping.entity else None
        for outcome in outcomes:
            withheld = note(mapping.entity, outcome, self._closes)
            if watched is not None and outcome.__class__ is Change and outcome.key == watched:
                self.result.tapped.append(outcome)
            if outcome.__class__ is Change:
                if dirtying:  # marked durably before anything that follows is delivered
                    self._note_dirty(outcome)
                    self._persist_dirty()
                if sink is not None and outcome.record is not None and not withheld:
                    sink(outcome)

    def _resend(self) -> Callable[[Record], bool] | None:
        resend, ctx = self.options.resend, self.ctx
        return None if resend is None else (lambda record: resend(record, ctx))

    def _key_ranges(self, mapping: CompiledMapping) -> list[KeyRange]:
        """The key ranges to plan a full read of ``mapping`` in, one per worker; fewer than two
        when it is better planned here (one worker, a small table, keys that are not whole
        numbers, no ``fork``). An entity that refers to itself is never split (a reference
        could cross ranges)."""
        if self.options.workers < 2 or not HAS_FORK:
            return []
        bounds = self.source.key_bounds(mapping)
        return (
            []
            if bounds is None
            else key_ranges(mapping.key_columns[0], bounds, self.options.workers)
        )

    def _plan_in_ranges(self, mapping: CompiledMapping, ranges: list[KeyRange]) -> None:
        """Plan ranges here, from the first, while forked workers plan them from the last;
        then take the workers' outcomes in key order: the plan and the changes sent are those
        of one process."""
        workers = Workers(
            mapping.entity,
            ranges,
            self._forked_work(mapping),
            self._after_fork,
            self.options.workers - 1,
            self.sink is not None,
        )
        track, plan = Watermark(), self.result.plan
        try:
            workers.start()
            mine = 0
            while (at := workers.take()) is not None:
                track.see(self._plan_range(mapping, ranges[at], plan, self.sink))
                mine = at + 1
            for part, (best, lesson) in workers.outcomes(mine, self.sink):
                plan.absorb(part)
                gate.teach(self.ctx, lesson)
                track.see(best)
        finally:
            workers.close()
        mark = track.text()
        if mark is not None:
            self.watermarks[mapping.entity] = mark

    def _after_fork(self) -> None:
        self.source.after_fork()
        self.state.after_fork()

    def _forked_work(self, mapping: CompiledMapping) -> RangeWork:
        def work(
            key_range: KeyRange, plan: Plan, sink: ChangeSink | None
        ) -> tuple[Any, gate.Learnt]:
            best = self._plan_range(mapping, key_range, plan, sink)
            return best, gate.learnt(self.ctx, mapping.entity)

        return work

    def _plan_range(
        self, mapping: CompiledMapping, key_range: KeyRange, plan: Plan, sink: ChangeSink | None
    ) -> Any:
        """Plan one key range of an entity's full read into ``plan`` (the context learns its
        keys); returns the highest raw watermark read."""
        entity, track = mapping.entity, Watermark()
        rows = self.source.read(mapping, key_range=key_range)
        items = to_items(
            mapping,
            rows,
            self.ctx,
            track=track,
            indexed=not self._is_leaf(mapping),
            read=plan.records_read,
            key_range=key_range,
        )
        start, stop = sort_bounds(key_range)
        plan.note_all(
            entity,
            diff_sorted(entity, items, self.state.entries(entity, start, stop), self._resend()),
            sink,
            self._closes,
        )
        return track.best

    def _closes(self, change: Change) -> bool:
        """True when a membership update closes a membership open on the portal (as the state
        recorded it); the recorded payload becomes the change's ``before``."""
        if not may_close(change):
            return False
        change.before = self.state.payloads(change.entity, [change.sort_key]).get(change.sort_key)
        return closes_membership(change, change.before)

    def _note_dirty(self, change: Change) -> None:
        owner = (
            change.key
            if change.entity == "pupil"
            else (gate.owner_pupil(change.record) if change.record is not None else None)
        )
        if owner is not None:
            self.dirty_pupils.add(owner)

    def _since(self, mapping: CompiledMapping) -> datetime | None:
        if not self.options.incremental or mapping.watermark is None:
            return None
        mark = self.state.watermark(mapping.entity)
        try:
            return None if mark is None else datetime.fromisoformat(mark) - self.options.overlap
        except ValueError:  # not a date-time: read everything rather than guess
            return None

    def _dirty(self, mapping: CompiledMapping, since: datetime | None) -> Rescan | None:
        """The pupils whose rows an incremental read must re-read in full (their consent or
        enrolment changed, so every record of theirs must pass the gate again)."""
        if since is None or not self.dirty_pupils or mapping.entity == "pupil":
            return None
        spec = next((f for f in mapping.fields if f.name == PUPIL_FIELD), None)
        return None if spec is None else Rescan(spec.columns[0], sorted(self.dirty_pupils))

    def _rescan_too_big(self, mapping: CompiledMapping, since: datetime | None) -> bool:
        """Too many dirty pupils for one IN list (MS SQL takes 2,100 parameters at most): read
        the entity in full instead."""
        return (
            since is not None
            and len(self.dirty_pupils) > MAX_RESCAN
            and any(f.name == PUPIL_FIELD for f in mapping.fields)
        )

    def _tapped(self, items: Iterator[Item], key: str) -> Iterator[Item]:
        for item in items:
            record = item.record if isinstance(item, Hold) else item
            if record.key == key:
                self.result.tapped.append(item)
            yield item

    def _persist_dirty(self) -> None:
        """Write the re-gating marks of dirty pupils not yet marked (only a run that delivers:
        a preview changes nothing)."""
        fresh = self.dirty_pupils - self.marked
        if fresh and self.sink is not None and self.options.incremental:
            self.state.mark_regate(fresh)
            self.marked |= fresh
        self.result.regated = frozenset(self.dirty_pupils)

    def _dirty_from_stays(self, mapping: CompiledMapping, records: list[Record]) -> None:
        """Pupils whose stays really changed since the last run (not merely re-read within
        the overlap) are dirty, and so are those whose stay began or ended on a day that came
        since the last run (time is an input: a withdrawal dated ahead takes effect when its
        day passes, whether or not a row changed)."""
        since = self._since(mapping)
        if since is None:
            return
        self.dirty_pupils.update(due_stays(records, self.last_as_of, self.ctx.as_of))
        last = since + self.options.overlap
        moved = [r for r in records if _changed_since(r, since)]
        known = self.state.lookup(mapping.entity, [r.sort_key for r in moved])
        for record in moved:
            entry = known.get(record.sort_key)
            # Not delivered (held, or new): dirty only if it is newer than the last run's mark,
            # not merely re-read within the overlap.
            changed = (
                entry.fingerprint != record.fingerprint
                if entry is not None
                else _newer(record, last)
            )
            if changed:
                self.dirty_pupils.add(gate.owner_pupil(record) or "")

    def _is_changed(self, item: Item, since: datetime) -> bool:
        record = item.record if isinstance(item, Hold) else item
        if not isinstance(record, Record):
            return True
        if record.entity == "pupil" and record.key in self.dirty_pupils:
            return True
        if (
            record.entity == "guardian"
            and self.ctx.guardian_of.get(record.key, set()) & self.dirty_pupils
        ):
            return True  # one of their pupils' consent changed: they must pass the gate again
        return _changed_since(record, since)

    def _items(self, mapping: CompiledMapping, rows: Iterable[Row]) -> Iterator[Item]:
        """Rows → records, holds and rejections, in key order; learns the context and the
        highest watermark."""
        track = Watermark() if mapping.watermark else None
        try:
            yield from to_items(
                mapping,
                rows,
                self.ctx,
                track=track,
                indexed=mapping.entity in self.referenced,
                read=self.result.plan.records_read,
            )
        finally:
            mark = track.text() if track is not None else None
            if mark is not None:
                self.watermarks[mapping.entity] = mark

    def _prepass(self, mapping: CompiledMapping) -> None:
        """Learn stays (before pupils) or guardian links (before guardians) from a full read.
        In an incremental run a changed stay makes its pupil dirty before pupils are planned,
        so a withdrawal archives the pupil in the same run."""
        records = [
            r
            for r in to_items(mapping, self.source.read(mapping), Context(), gated=False)
            if isinstance(r, Record)
        ]
        if mapping.entity == "enrollment":
            self._dirty_from_stays(mapping, records)
            self.ctx.learn_stays(records)
            return
        links = [(str(r.payload["pupil"]), str(r.payload["guardian"])) for r in records]
        self.ctx.allow_guardians(links)

    def _close_for_rejected(self, mapping: CompiledMapping) -> None:
        """Fail closed for the pupil of every rejected row of an entity the gate reads (an
        enrolment, a guardian link): every record of theirs is held, and what was published
        goes. Where the row's pupil cannot be read, the pupil the state recorded for the row's
        key is closed (what was published under it goes); a row with neither concerns nothing
        published and stays a rejection. In an incremental run the pupils are re-gated."""
        reason = gate.ROW_REJECTED[mapping.entity]
        pupil_at, guardian_at = _column_of(mapping, PUPIL_FIELD), _column_of(mapping, "guardian")
        unread: list[str] = []
        for row, sort_key in rejected_rows(mapping, self.source.read(mapping)):
            pupil = _raw_key(row, pupil_at)
            if pupil is None:
                unread.append(sort_key)
                continue
            self.ctx.close(pupil, reason)
            guardian = _raw_key(row, guardian_at)
            if guardian is not None:  # held for it, and re-gated with the pupil (incremental)
                self.ctx.guardian_reason.setdefault(guardian, reason)
                self.ctx.guardian_of.setdefault(guardian, set()).add(pupil)
        if unread:
            for entry in self.state.lookup(mapping.entity, [k for k in unread if k]).values():
                if entry.pupil_key is not None:
                    self.ctx.close(entry.pupil_key, reason)
        if self.options.incremental:
            self.dirty_pupils.update(p for p, r in self.ctx.closed.items() if r is reason)


def due_stays(records: Iterable[Record], last_as_of: str | None, as_of: str) -> set[str]:
    """Pupils with a stay that began or ended after ``last_as_of`` and by ``as_of``: the day
    of a dated admission or withdrawal came since the last run. With no day remembered (the
    first run after an upgrade) every pupil with a stay ended by ``as_of`` is due: a withdrawal
    is never missed for want of a date."""
    if last_as_of is not None and last_as_of >= as_of:
        return set()
    names = ("date_to",) if last_as_of is None else ("date_from", "date_to")
    since = last_as_of or ""
    due: set[str] = set()
    for record in records:
        for name in names:
            day = record.payload.get(name)
            if day is not None and since <= str(day) <= as_of:
                due.add(gate.owner_pupil(record) or "")
    due.discard("")
    return due


def rejected_rows(mapping: CompiledMapping, rows: Iterable[Row]) -> Iterator[tuple[Row, str]]:
    """(row, sort key or "") of every row the mapping rejects (a bad value, or a key that
    repeats an earlier row's)."""
    seen: set[str] = set()
    for row in rows:
        try:
            record = mapping.build(row)
        except RowRejected as exc:
            yield row, exc.sort_key
            continue
        if record.sort_key in seen:
            yield row, record.sort_key
        seen.add(record.sort_key)


def _column_of(mapping: CompiledMapping, name: str) -> int | None:
    spec = next((f for f in mapping.fields if f.name == name), None)
    return None if spec is None else mapping.columns.index(spec.columns[0])


def _raw_key(row: Row, at: int | None) -> str | None:
    """A reference column's raw value as key text, None when it cannot be read."""
    raw = None if at is None else row[at]
    if raw is None:
        return None
    try:
        return key_part(raw.strip() if isinstance(raw, str) else raw)
    except InvalidValue:
        return None


class Watermark:
    """The highest raw watermark seen (drivers return one type per column: compare raw)."""

    def __init__(self) -> None:
        self.best: object = None

    def see(self, raw: object) -> None:
        """Remember ``raw`` if it is the highest so far."""
        if raw is not None and (self.best is None or raw > self.best):  # type: ignore[operator]
            self.best = raw

    def text(self) -> str | None:
        """The highest watermark as ISO text (state store format); None when the column does
        not hold date-times (then no watermark is kept and incremental runs read everything)."""
        best = _as_datetime(self.best)
        return None if best is None else best.isoformat(sep=" ")


def to_items(
    mapping: CompiledMapping,
    rows: Iterable[Row],
    ctx: Context,
    *,
    track: Watermark | None = None,
    gated: bool = True,
    indexed: bool = True,
    read: Counter[str] | None = None,
    key_range: KeyRange | None = None,
) -> Iterator[Item]:
    """Map (and unless ``gated`` is false, gate) rows that come in key order. A duplicate key is
    rejected (the first row with that key is kept); rows out of order mean the merge cannot be
    trusted: fatal, as is a row outside ``key_range`` (a database comparing keys otherwise than
    the sort keys do would pair it with the wrong state entries). ``read`` counts rows."""
    entity, build, previous, count = mapping.entity, mapping.build, "", 0
    check = gate.compile_check(entity, mapping.refs, ctx)
    remember = gate.compile_remember(entity, indexed, ctx)
    derive = gate.derive if entity in gate.DERIVED else None
    start, stop = _bounds(key_range)
    best: Any = None  # the highest watermark so far (inline: a call per row costs)
    try:
        for count, row in enumerate(rows, 1):  # noqa: B007 - read in finally
            try:
                record = build(row)
            except RowRejected as exc:
                if exc.sort_key and (not previous <= exc.sort_key < stop or exc.sort_key < start):
                    _raise_out_of_range(mapping, exc.key, previous, key_range)
                previous = max(previous, exc.sort_key)
                yield Rejection(
                    entity,
                    mapping.location,
                    exc.key,
                    exc.field,
                    exc.reason,
                    exc.sort_key,
                    closes=gate.reject_row(ctx, entity, exc.key),
                )
                continue
            mark = record.watermark
            best = mark if mark is not None and (best is None or mark > best) else best
            if not previous < record.sort_key < stop or record.sort_key < start:
                yield _out_of_order(mapping, record, previous, key_range)
                continue
            previous = record.sort_key
            if not gated:
                yield record
                continue
            verdict = check(record)
            if verdict is None or verdict.__class__ is not MissingReference:
                if derive is not None:
                    record = derive(record, ctx)
                if remember is not None:
                    remember(record)
                yield record if verdict is None else Hold(record, verdict)  # type: ignore[arg-type]
            else:
                yield _dangling(mapping, record, verdict, ctx)
    finally:
        if read is not None:
            read[entity] += count
        if track is not None and best is not None:
            track.see(best)


def _bounds(key_range: KeyRange | None) -> tuple[str, str]:
    """The sort keys ``[start, stop)`` of a key range ("" and a key above every sort key when
    it is open)."""
    start, stop = (None, None) if key_range is None else sort_bounds(key_range)
    return start or "", stop or ABOVE_EVERY_KEY


def _out_of_order(
    mapping: CompiledMapping, record: Record, previous: str, key_range: KeyRange | None
) -> Rejection:
    start, stop = _bounds(key_range)
    if record.sort_key != previous or not start <= record.sort_key < stop:
        _raise_out_of_range(mapping, record.key, previous, key_range)
    return Rejection(
        mapping.entity,
        mapping.location,
        record.key,
        ",".join(mapping.key_columns),
        "duplicate key: an earlier row has the same key and was kept",
    )


def _raise_out_of_range(
    mapping: CompiledMapping, key: str, previous: str, key_range: KeyRange | None
) -> NoReturn:
    """Raise for a row out of key order, or outside the key range being read."""
    if key_range is not None:
        previous = f"{previous or 'nothing'}, reading {shown_range(key_range)}"
    raise SourceOrderError(mapping.entity, mapping.location, key, previous)


def _dangling(
    mapping: CompiledMapping, record: Record, missing: MissingReference, ctx: Context
) -> Rejection:
    if missing.rejected:
        # Its parent is bad, not gone: its own children must not be taken for orphans.
        ctx.forget(mapping.entity, record.key)
    return Rejection(
        mapping.entity,
        mapping.location,
        record.key,
        missing.field,
        missing.reason,
        record.sort_key,
        dangling=not missing.rejected,
    )


def _newer(record: Record, than: datetime) -> bool:
    """True when the record's watermark is strictly after ``than`` (new since the last run)."""
    mark = _as_datetime(record.watermark)
    return mark is None or mark > than


def _changed_since(record: Record, since: datetime) -> bool:
    mark = _as_datetime(record.watermark)
    return mark is None or mark >= since


def _as_datetime(raw: object) -> datetime | None:
    if isinstance(raw, datetime):
        return raw.replace(tzinfo=None)
    if isinstance(raw, str) and raw:
        try:
            return datetime.fromisoformat(raw).replace(tzinfo=None)
        except ValueError:
            return None
    return None


def delivered(change: Change, mappings: MappingSet) -> Delivered:
    """What the state store records once the portal acknowledged ``change``."""
    record = change.record
    version = mappings[change.entity].version if change.entity in mappings else 1
    if record is None:
        return Delivered(change, mapping_version=version)
    class_key = record.payload.get("class")
    return Delivered(
        change,
        gate.owner_pupil(record),
        None if class_key is None else str(class_key),
        mapping_version=version,
    )
