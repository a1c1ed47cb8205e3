"""The planner: a pure diff of one entity's records against the state store.

Source records and state entries both arrive in ``sort_key`` order and are merged in one pass
(constant memory); an incremental read, which sees only changed rows, pairs them by lookup
instead and never calls a record gone. ``decide`` holds every case, one commented branch each.

A :class:`Plan` accumulates the outcome of a run: counts per entity and operation, holds per
reason, rejections (with a bounded sample), bounded field-level detail of updates, and the
deletes, which are delivered last, children first.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from bridge.core.mapping import key_from_sort_key
from bridge.core.model import Change, EntryView, Hold, Op, Record, Rejection, StateEntry, Value
from bridge.core.support import Refuser

Item = Record | Hold | Rejection
Pair = tuple[Item | None, StateEntry | None]
SAMPLE_LIMIT = 50


def sort_key_of(item: Item) -> str:
    """The sort key of a source item ("" for a row whose key could not be read)."""
    if isinstance(item, Hold):
        return item.record.sort_key
    return item.sort_key


def pair_by_lookup(
    items: Iterable[Item], lookup: Callable[[list[str]], dict[str, StateEntry]], chunk: int = 500
) -> Iterator[Pair]:
    """Pair source items with their state entries by key lookups, ``chunk`` keys at a time."""
    batch: list[Item] = []
    for item in items:
        batch.append(item)
        if len(batch) >= chunk:
            yield from _paired(batch, lookup)
            batch = []
    yield from _paired(batch, lookup)


def _paired(
    batch: list[Item], lookup: Callable[[list[str]], dict[str, StateEntry]]
) -> Iterator[Pair]:
    found = lookup([k for k in map(sort_key_of, batch) if k])
    for item in batch:
        yield item, found.get(sort_key_of(item))


def decide(item: Item | None, entry: StateEntry | None, complete: bool) -> Change | None:
    """The change one (source item, state entry) pair calls for, if any."""
    if item is None:
        assert entry is not None
        # Delivered once, gone from the source now. Only a complete read may say "gone".
        return _delete(entry, "gone from the source") if complete else None
    if isinstance(item, Record):
        return _upsert(item, entry)
    if isinstance(item, Hold):
        # Valid but must not leave (consent withdrawn, dated after withdrawal...): if the portal
        # has it, it must not keep it.
        return _delete(entry, item.reason.value) if entry is not None else None
    # A rejected row of a pupil, enrolment or guardian link: the gate fails closed, so if the
    # portal holds the record it goes (full or incremental), for the cause the rejection names.
    if item.closes is not None and entry is not None:
        return _delete(entry, item.closes.value)
    # A rejected row. When it refers to a record gone from the source and the portal holds it,
    # it goes too (a deleted lesson takes its marks). Any other bad row leaves the portal as is.
    if item.dangling and entry is not None and complete:
        return _delete(entry, item.reason)
    return None


def _upsert(record: Record, entry: StateEntry | None) -> Change | None:
    if entry is None:
        # New in the source: create.
        return _create(record)
    if entry.fingerprint == record.fingerprint:
        # Unchanged since delivered.
        return None
    return _update(record, entry)


def _create(record: Record) -> Change:
    return Change(Op.CREATE, record.entity, record.key, record.sort_key, record)


def _update(record: Record, entry: StateEntry | EntryView) -> Change:
    status = entry.status if isinstance(entry, StateEntry) else entry[2]
    if record.payload.get("active") is False and status != "archived":
        # A pupil withdrawn with no stay left open: archived on the portal, not deleted.
        return Change(Op.ARCHIVE, record.entity, record.key, record.sort_key, record)
    # Changed since delivered (a re-admission makes an archived pupil active again).
    return Change(Op.UPDATE, record.entity, record.key, record.sort_key, record)


def _delete(entry: StateEntry, reason: str) -> Change:
    return Change(
        Op.DELETE,
        entry.entity,
        entry.key,
        entry.sort_key,
        None,
        reason=reason,
        class_key=entry.class_key,
    )


def _delete_view(entity: str, entry: EntryView, reason: str) -> Change:
    """A delete from a merge's light entry: the key is decoded from the sort key, the owner
    class is looked up later, for the few deletes the guard needs it for."""
    return Change(Op.DELETE, entity, key_from_sort_key(entry[0]), entry[0], None, reason=reason)


def diff(pairs: Iterable[Pair], complete: bool) -> Iterator[Item | Change]:
    """Every held or rejected source item (for counting) and every change the pairs call for."""
    for item, entry in pairs:
        if item is not None and item.__class__ is not Record:
            yield item
        change = decide(item, entry, complete)
        if change is not None:
            yield change


def diff_sorted(
    entity: str,
    items: Iterable[Item],
    entries: Iterator[EntryView],
    resend: Callable[[Record], bool] | None = None,
) -> Iterator[Item | Change]:
    """A merge of items and state entries, both in sort key order, deciding as it goes (the
    full run's hot path; ``diff`` over ``pair_by_lookup`` is the incremental one).
    Records ``resend`` picks are updated even when their fingerprint did not change."""
    gone = "gone from the source"
    entry = next(entries, None)
    for item in items:
        if item.__class__ is Record:
            key = item.sort_key
            while entry is not None and entry[0] < key:
                yield _delete_view(entity, entry, gone)
                entry = next(entries, None)
            if entry is not None and entry[0] == key:
                matched, entry = entry, next(entries, None)
                if matched[1] != item.fingerprint or (resend is not None and resend(item)):
                    yield _update(item, matched)
            else:
                yield _create(item)
            continue
        yield item
        yield from _pair_other(entity, item, entries_at := [entry], entries)
        entry = entries_at[0]
    while entry is not None:
        yield _delete_view(entity, entry, gone)
        entry = next(entries, None)


def _pair_other(
    entity: str, item: Item, at: list[EntryView | None], entries: Iterator[EntryView]
) -> Iterator[Change]:
    """The merge step for a held or rejected item: ``at[0]`` is the current entry, and is
    advanced past what this item consumed."""
    entry, key, matched = at[0], sort_key_of(item), None
    if key:
        while entry is not None and entry[0] < key:
            yield _delete_view(entity, entry, "gone from the source")
            entry = next(entries, None)
        if entry is not None and entry[0] == key:
            matched, entry = entry, next(entries, None)
    at[0] = entry
    if matched is None:
        change = decide(item, None, True)
    elif isinstance(item, Hold):
        change = _delete_view(entity, matched, item.reason.value)
    elif item.closes is not None:  # type: ignore[union-attr]
        change = _delete_view(entity, matched, item.closes.value)  # type: ignore[union-attr]
    else:
        change = _delete_view(entity, matched, item.reason) if item.dangling else None  # type: ignore[union-attr]
    if change is not None:
        yield change


MEMBERSHIPS = frozenset({"enrollment", "group_member"})
"""Entities whose ``date_to`` ends a pupil's membership (of a class, of a subgroup)."""
Closes = Callable[[Change], bool]


def may_close(change: Change) -> bool:
    """True when ``change`` is an update of a membership that sets a ``date_to``: it may close
    a membership open on the portal (``closes_membership`` decides, given what was sent)."""
    return (
        change.op is Op.UPDATE
        and change.entity in MEMBERSHIPS
        and change.record is not None
        and change.record.payload.get("date_to") is not None
    )


def closes_membership(change: Change, before: Mapping[str, Value] | None) -> bool:
    """True when a membership update ends, or ends earlier, a membership the portal holds as
    ``before``; an unknown ``before`` counts as open (fail closed)."""
    if not may_close(change):
        return False
    assert change.record is not None
    ended = before.get("date_to") if before is not None else None
    return ended is None or str(change.record.payload["date_to"]) < str(ended)


def hides_pupil(change: Change, closes: Closes = may_close) -> bool:
    """True when ``change`` hides a pupil, or a pupil's membership, on the portal: an archive,
    or a membership closure. Like deletes, such changes wait for the guard."""
    return change.op is Op.ARCHIVE or (change.entity in MEMBERSHIPS and closes(change))


NUMBERS = re.compile(r"\d+")
QUOTED = re.compile(r"'[^']*'")


def rejection_group(rejection: Rejection) -> tuple[str, str, str, str]:
    """(entity, table, field, kind of reason): rejections alike but for keys and values."""
    kind = NUMBERS.sub("N", QUOTED.sub("'…'", rejection.reason))
    return rejection.entity, rejection.table, rejection.field, kind


@dataclass
class Plan:
    """The outcome of planning a run (counts, samples, deletes), built while streaming.
    Rejections are counted by group and kept as samples of ``sample_limit`` per group.
    Changes that hide a pupil (``hides_pupil``: archives, membership closures) are kept in
    ``hiding``, not given to the sink: like the deletes, they wait for the guard."""

    mode: str = "full"
    counts: dict[str, Counter[str]] = field(default_factory=dict)
    holds: dict[str, Counter[str]] = field(default_factory=dict)
    rejection_counts: Counter[str] = field(default_factory=Counter)
    rejections: list[Rejection] = field(default_factory=list)
    rejection_groups: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    updates: list[Change] = field(default_factory=list)
    deletes: list[Change] = field(default_factory=list)
    hiding: list[Change] = field(default_factory=list)
    records_read: Counter[str] = field(default_factory=Counter)
    not_supported: dict[str, Counter[str]] = field(default_factory=dict)
    """Entity → reason → changes this portal will not receive (``bridge.core.support``): not
    sent, not recorded, so every run plans and counts them again."""
    failure: str | None = None
    sample_limit: int = SAMPLE_LIMIT

    def note(
        self,
        entity: str,
        outcome: Item | Change,
        closes: Closes = may_close,
        refuses: Refuser | None = None,
    ) -> bool:
        """Count one outcome; keep samples, deletes and the changes that hide a pupil. True
        when the outcome is a change kept here for after the guard, or one the portal does not
        take (``refuses``), counted only: never for the sink."""
        if outcome.__class__ is Change:
            if refuses is not None and self.refused(outcome, refuses):
                return True
            self._note_change(outcome)
            if outcome.op is not Op.DELETE and hides_pupil(outcome, closes):
                self.hiding.append(outcome)
                return True
        elif isinstance(outcome, Hold):
            self.holds.setdefault(entity, Counter())[outcome.reason.value] += 1
        elif isinstance(outcome, Rejection):
            self.rejection_counts[entity] += 1
            group = rejection_group(outcome)
            self.rejection_groups[group] += 1
            if self.rejection_groups[group] <= self.sample_limit:
                self.rejections.append(outcome)
        return False

    def note_all(
        self,
        entity: str,
        outcomes: Iterable[Item | Change],
        sink: Callable[[Change], None] | None = None,
        closes: Closes = may_close,
        refuses: Refuser | None = None,
    ) -> None:
        """``note`` every outcome, and give each change with a record (not a delete, not one
        that hides a pupil) to ``sink``: the hot loop of a full run, counting creates and
        updates in locals. ``closes`` tells a membership closure from a harmless update;
        ``refuses`` (None: the portal takes every operation) the changes this portal does not
        take, which are counted apart and never given to the sink."""
        if refuses is not None:
            outcomes = self._taken(outcomes, refuses)
        known = self.counts.get(entity)
        creates = updates = 0
        memberships = entity in MEMBERSHIPS
        room = self.sample_limit - (known[Op.UPDATE] if known is not None else 0)
        try:
            for outcome in outcomes:
                if outcome.__class__ is not Change:
                    self.note(entity, outcome)
                    continue
                op = outcome.op
                if op is Op.CREATE:
                    creates += 1
                elif op is Op.UPDATE:
                    updates += 1
                    if updates <= room:
                        self.updates.append(outcome)
                    if memberships and closes(outcome):
                        self.hiding.append(outcome)
                        continue
                else:
                    self._note_change(outcome)
                    if op is Op.ARCHIVE:
                        self.hiding.append(outcome)
                        continue
                if sink is not None and outcome.record is not None:
                    sink(outcome)
        finally:
            self._add_counts(entity, {Op.CREATE: creates, Op.UPDATE: updates})

    def refused(self, change: Change, refuses: Refuser) -> bool:
        """Count ``change`` as not supported when the portal does not take it; True if so."""
        reason = refuses(change.op)
        if reason is None:
            return False
        self.not_supported.setdefault(change.entity, Counter())[reason] += 1
        return True

    def _taken(
        self, outcomes: Iterable[Item | Change], refuses: Refuser
    ) -> Iterator[Item | Change]:
        for outcome in outcomes:
            if outcome.__class__ is not Change or not self.refused(outcome, refuses):
                yield outcome

    def _add_counts(self, entity: str, counts: dict[Op, int]) -> None:
        added = {op: n for op, n in counts.items() if n}
        if added:
            self.counts.setdefault(entity, Counter()).update(added)

    def _note_change(self, change: Change) -> None:
        counts = self.counts.get(change.entity)
        if counts is None:
            counts = self.counts[change.entity] = Counter()
        op = change.op
        counts[op] += 1  # Op is a StrEnum: its value is the counter key
        if op is Op.DELETE:
            self.deletes.append(change)
        elif op is Op.UPDATE and counts[op] <= self.sample_limit:
            self.updates.append(change)

    def absorb(self, later: Plan) -> None:
        """Add what ``later`` noted: a plan of the keys after every key noted here (a later key
        range of the same entity, planned apart). The result is what noting its outcomes here
        would have given, samples and the order of deletes included."""
        for entity, counts in later.counts.items():
            mine = self.counts.setdefault(entity, Counter())
            room = max(0, self.sample_limit - mine[Op.UPDATE])
            self.updates += [c for c in later.updates if c.entity == entity][:room]
            mine.update(counts)
        for entity, held in later.holds.items():
            self.holds.setdefault(entity, Counter()).update(held)
        seen = Counter(self.rejection_groups)
        for rejection in later.rejections:
            group = rejection_group(rejection)
            seen[group] += 1
            if seen[group] <= self.sample_limit:
                self.rejections.append(rejection)
        self.rejection_counts.update(later.rejection_counts)
        self.rejection_groups.update(later.rejection_groups)
        self.deletes += later.deletes
        self.hiding += later.hiding
        self.records_read.update(later.records_read)
        for entity, refused in later.not_supported.items():
            self.not_supported.setdefault(entity, Counter()).update(refused)

    def deletes_children_first(self) -> list[Change]:
        """The deletes in delivery order: children before parents (marks before their works,
        works before their lessons), since they were found parents first."""
        return self.deletes[::-1]

    def discard_deletes(self, why: str) -> None:
        """Drop every delete (a read failed midway: nothing may be called gone)."""
        for change in self.deletes:
            self.counts[change.entity][Op.DELETE.value] -= 1
        self.deletes.clear()
        self.failure = why

    @property
    def is_empty(self) -> bool:
        """True when the plan has no change at all."""
        return not any(n for counts in self.counts.values() for n in counts.values())

    def total(self, op: Op) -> int:
        """Changes of one operation across entities."""
        return sum(c[op.value] for c in self.counts.values())

    def destructive(self) -> list[Change]:
        """What a held plan must not send, in delivery order: the changes that hide a pupil
        (parents first, as found), then the deletes (children first)."""
        return [*self.hiding, *self.deletes_children_first()]

    @property
    def plan_id(self) -> str:
        """A stable id of the plan's destructive changes (the deletes and the changes that hide
        a pupil: entity, key, operation and the fingerprint they leave on the portal), which an
        admin approves when a guard holds it: any other plan has another id."""
        digest = hashlib.blake2b(digest_size=6)
        for change in (*self.deletes, *self.hiding):
            digest.update(
                f"{change.entity}\x1f{change.sort_key}\x1f{change.op.value}\x1f"
                f"{change.fingerprint or ''}\x1e".encode()
            )
        return digest.hexdigest()
