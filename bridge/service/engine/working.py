"""The working set of one planning run (``_Run``): per entity it reads the rows, maps and
gates them, merges them with the state store and notes the outcomes in the plan; it keeps the
pupils to re-gate durably marked before anything that follows from their change is sent."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from bridge.core import gate, reconcile
from bridge.core.gate import Context
from bridge.core.mapping import CompiledMapping, MappingSet
from bridge.core.model import Change, Hold, HoldReason, Record
from bridge.core.placement import Placement
from bridge.core.plan import (
    Item,
    Plan,
    closes_membership,
    diff,
    diff_sorted,
    may_close,
    pair_by_lookup,
)
from bridge.core.support import Refuser, refuser
from bridge.ports import (
    Rescan,
    Row,
    Source,
    StateStore,
)
from bridge.service.engine import lazy, memo
from bridge.service.engine.keys import ChangeSink
from bridge.service.engine.lazy import Lazy
from bridge.service.engine.options import (
    CLOSING,
    DIRTYING,
    MAX_RESCAN,
    PREPASS,
    PUPIL_FIELD,
    PlanResult,
    RunOptions,
)
from bridge.service.engine.ranges import RangePlanner
from bridge.service.engine.reading import (
    BuiltRows,
    Watermark,
    _as_datetime,
    _column_of,
    _raw_key,
    due_stays,
    rejected_rows,
    to_items,
)


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
        placement = Placement.for_run(
            options.support, options.matches, {m.entity: m.refs for m in mappings.mappings}
        )
        self.ctx = Context(
            as_of=options.as_of.isoformat(), erased=options.erased, placement=placement
        )
        if options.matches is not None:
            for pupil in options.matches.unusable("pupil"):
                self.ctx.close(pupil, HoldReason.NOT_MATCHED)
        self.result = PlanResult(Plan(mode="incremental" if options.incremental else "full"))
        self.watermarks: dict[str, str] = {}
        self.dirty_pupils: set[str] = set()
        self.marked: set[str] = set()  # dirty pupils whose re-gating mark is in the state store
        self.last_as_of: str | None = None
        self.whole: dict[str, BuiltRows] = {}  # see _whole_rows
        if options.incremental:
            # Marks left by a run that did not deliver everything (a crash, a portal outage):
            # what follows from their gate-relevant change is planned again.
            self.marked = state.regate_marks()
            self.dirty_pupils |= self.marked
            self.last_as_of = state.last_as_of()
        self.referenced = {t for m in mappings.mappings for t in m.refs.values()}
        self.ranges = RangePlanner(source, state, options.workers)
        plain = options.tap is None and options.resend is None and options.drift is None
        self.lazy = (
            Lazy.for_run(
                source,
                state,
                self.ctx,
                writes=sink is not None,
                overlap=options.overlap,
                read=self.result.plan.records_read,
            )
            if options.incremental and plain
            else None
        )

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
        if self.lazy is not None and self._plan_lazily(mapping, since):
            return
        tapped = self.options.tap is not None and self.options.tap[0] == mapping.entity
        watching = tapped or (self.options.incremental and mapping.entity in DIRTYING)
        if (
            since is None
            and not watching
            and mapping.entity not in mapping.refs.values()
            and self.options.drift is None
        ):
            ranges = self.ranges.ranges(mapping)
            if len(ranges) > 1:
                mark = self.ranges.plan(self, mapping, ranges, self.result.plan)
                if mark is not None:
                    self.watermarks[mapping.entity] = mark
                return
        outcomes = self._outcomes(mapping, since)
        if watching:
            self._note_watching(mapping, outcomes)
        else:
            self.result.plan.note_all(
                mapping.entity, outcomes, self.sink, self.closes, self.refuses(mapping.entity)
            )

    def refuses(self, entity: str) -> Refuser | None:
        """What of ``entity`` the portal does not take (None: it takes everything)."""
        return refuser(self.options.support, entity)

    def is_leaf(self, mapping: CompiledMapping) -> bool:
        return mapping.entity not in self.referenced

    def _plan_lazily(self, mapping: CompiledMapping, since: datetime | None) -> bool:
        """Plan an entity of an incremental run whose gate facts are looked up by key
        (``bridge.service.engine.lazy``): read only its changed rows where the snapshot allows,
        else read it whole and take the snapshot. False: the entity is not such a one."""
        assert self.lazy is not None
        if since is None or not lazy.may_be_lazy(mapping):
            if since is None or not self.is_leaf(mapping):
                self.lazy.complete(mapping)  # each of its rows may name any lazily read record
            return False
        self.lazy.begin(mapping)
        rows: Iterable[Row] | None = self.lazy.changed_rows(mapping, since)
        if rows is None:
            self.lazy.complete(mapping)
            rows = self.lazy.observe(mapping, self.source.read(mapping))
        outcomes = self._outcomes(mapping, since, rows)
        self.result.plan.note_all(
            mapping.entity, outcomes, self.sink, self.closes, self.refuses(mapping.entity)
        )
        mark = self.lazy.finish(mapping, self.watermarks.get(mapping.entity))
        if mark is not None:
            self.watermarks[mapping.entity] = mark
        return True

    def _outcomes(
        self, mapping: CompiledMapping, since: datetime | None, rows: Iterable[Row] | None = None
    ) -> Iterator[Item | Change]:
        """The entity's items and changes: merged with the state on a full read, paired by
        lookup on an incremental one (``rows``: the rows read, if already chosen)."""
        leaf, tap = self.is_leaf(mapping), self.options.tap
        if rows is None:
            rows = self.source.read(mapping, since if leaf else None, self._dirty(mapping, since))
        if self.lazy is not None:
            rows = self.lazy.wrap(mapping, rows)
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
            return diff_sorted(entity, items, entries, self.resend())
        merged = diff_sorted(entity, items, reconcile.corrected(entries, found), self.resend())
        return reconcile.annotate(merged, found, drift)

    def _note_watching(self, mapping: CompiledMapping, outcomes: Iterable[Item | Change]) -> None:
        """Note outcomes one by one, keeping the tapped record's changes (``explain``) and the
        pupils whose consent or stays changed (incremental runs)."""
        note, sink, tap = self.result.plan.note, self.sink, self.options.tap
        refuses = self.refuses(mapping.entity)
        dirtying = self.options.incremental and mapping.entity in DIRTYING
        watched = tap[1] if tap is not None and tap[0] == mapping.entity else None
        for outcome in outcomes:
            withheld = note(mapping.entity, outcome, self.closes, refuses)
            if watched is not None and outcome.__class__ is Change and outcome.key == watched:
                self.result.tapped.append(outcome)
            if outcome.__class__ is Change:
                if dirtying:  # marked durably before anything that follows is delivered
                    self._note_dirty(outcome)
                    self._persist_dirty()
                if sink is not None and outcome.record is not None and not withheld:
                    sink(outcome)

    def resend(self) -> Callable[[Record], bool] | None:
        resend, ctx = self.options.resend, self.ctx
        return None if resend is None else (lambda record: resend(record, ctx))

    def closes(self, change: Change) -> bool:
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
            items = to_items(
                mapping,
                rows,
                self.ctx,
                track=track,
                indexed=mapping.entity in self.referenced,
                read=self.result.plan.records_read,
                build=self._builder(mapping),
            )
            yield from items
        finally:
            mark = track.text() if track is not None else None
            if mark is not None:
                self.watermarks[mapping.entity] = mark

    def _prepass(self, mapping: CompiledMapping) -> None:
        """Learn stays (before pupils) or guardian links (before guardians) from a full read.
        In an incremental run a changed stay makes its pupil dirty before pupils are planned,
        so a withdrawal archives the pupil in the same run."""
        whole = self._whole_rows(mapping)
        items = to_items(mapping, whole.rows, Context(), gated=False, build=whole.build)
        records = [r for r in items if isinstance(r, Record)]
        if mapping.entity == "enrollment":
            self._dirty_from_stays(mapping, records)
            self.ctx.learn_stays(records)
            return
        links = [(str(r.payload["pupil"]), str(r.payload["guardian"])) for r in records]
        self.ctx.allow_guardians(links)

    def _whole_rows(self, mapping: CompiledMapping) -> BuiltRows:
        """Every row of an entity the gate reads before pupils and guardians (enrolments,
        guardian links), read and built once per run: the scan for rejected rows and the
        pre-pass take the same rows (one read, so they also agree on what the source held)."""
        whole = self.whole.get(mapping.entity)
        if whole is None:
            rows = self.source.read(mapping)
            built = self._builder(mapping, "whole")
            whole = self.whole[mapping.entity] = BuiltRows(mapping, rows, built)
        return whole

    def _builder(
        self, mapping: CompiledMapping, read: str = "own"
    ) -> Callable[[Row], Record] | None:
        """How an incremental run of a long-running process builds records: giving again
        those built of the same rows in its last read of the entity
        (``bridge.service.engine.memo``: the daemon's runs read the small entities whole each
        time); None: ``mapping.build``."""
        keeps = self.options.incremental and self.options.keep_builds
        return memo.builder(mapping, read) if keeps else None

    def _close_for_rejected(self, mapping: CompiledMapping) -> None:
        """Fail closed for the pupil of every rejected row of an entity the gate reads (an
        enrolment, a guardian link): every record of theirs is held, and what was published
        goes. Where the row's pupil cannot be read, the pupil the state recorded for the row's
        key is closed (what was published under it goes); a row with neither concerns nothing
        published and stays a rejection. In an incremental run the pupils are re-gated."""
        reason = gate.ROW_REJECTED[mapping.entity]
        pupil_at, guardian_at = _column_of(mapping, PUPIL_FIELD), _column_of(mapping, "guardian")
        unread: list[str] = []
        whole = self._whole_rows(mapping)
        for row, sort_key in rejected_rows(mapping, whole.rows, whole.build):
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


def _newer(record: Record, than: datetime) -> bool:
    """True when the record's watermark is strictly after ``than`` (new since the last run)."""
    mark = _as_datetime(record.watermark)
    return mark is None or mark > than


def _changed_since(record: Record, since: datetime) -> bool:
    mark = _as_datetime(record.watermark)
    return mark is None or mark >= since
