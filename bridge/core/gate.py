"""The gate: which valid records may leave the school, and which are held back, and why.

Pure decisions over a :class:`Context` that remembers what earlier entities of the same run said
(consent, enrolment intervals, class grades, lesson dates). Rules (``docs/rules.md``):

* a pupil without written consent (§3.1.2): nothing of theirs leaves, not even the name, and no
  guardian who represents only such pupils;
* withdrawal is effective-dated: a mark, absence or period mark dated outside every stay of the
  pupil in that class is held (after a withdrawal, or before an enrolment); a re-admission opens
  a new stay under the same pupil key;
* no marks in grade 1 (§3.2.4.11);
* a reference to a record that is missing or was rejected makes the row a rejection;
* fail closed: a consent value that is not a documented yes is no consent (``consent_unclear``),
  and a rejected row of a pupil, enrolment or guardian link holds every record of the pupil it
  names, with that cause as the reason (``Context.closed``).
"""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, MutableMapping
from dataclasses import dataclass, field, replace
from sys import intern
from typing import Any

from bridge.core.dense import DenseIndex
from bridge.core.mapping import fingerprint
from bridge.core.model import HoldReason, Record
from bridge.core.placement import Check, Placement

Stay = tuple[str, str, str | None]
"""(class key, first day, last day or None while open): one stay of a pupil in a class."""

Pair = tuple[str, str]
"""(day, class key) of a lesson."""

INDEXED = frozenset({"lesson", "work"})
"""Entities whose index holds every key remembered (``Context.lesson``, ``Context.work_lesson``):
their keys are known by the index, kept in no set of their own (``Context.known``)."""


@dataclass
class Context:
    """What the run has learnt so far; indexes hold small entities only (never marks). The
    index of lessons and works, the one that grows with the journal, is a ``DenseIndex``."""

    as_of: str = "9999-12-31"
    erased: frozenset[str] = frozenset()
    keys: dict[str, set[str]] = field(default_factory=dict)
    rejected: dict[str, set[str]] = field(default_factory=dict)
    consent: dict[str, bool] = field(default_factory=dict)
    stays: dict[str, list[Stay]] = field(default_factory=dict)
    grade: dict[str, int] = field(default_factory=dict)
    lesson: DenseIndex[Pair | None] = field(default_factory=lambda: DenseIndex(keep=_interned))
    """lesson → its (day, class) (never None: the type of the table it shares with works)."""
    work_lesson: DenseIndex[Pair | None] = field(init=False)
    """work → its lesson's (day, class) (None: its lesson was not known when it was learnt).
    Both indexes share one table: one (day, class) tuple per distinct pair, shared by every
    lesson of that class that day and their works (a school year has ~170 days and a few
    dozen classes, and tens of thousands of lessons), its texts interned."""
    period_end: dict[str, str] = field(default_factory=dict)
    guardians_allowed: set[str] = field(default_factory=set)
    guardian_of: dict[str, set[str]] = field(default_factory=dict)
    group_class: dict[str, str] = field(default_factory=dict)
    """group → the class it is a subgroup of."""
    """guardian → the pupils they represent (from the guardian links read)."""
    closed: dict[str, HoldReason] = field(default_factory=dict)
    """Pupils the gate fails closed for, with the cause: every record of theirs is held."""
    guardian_reason: dict[str, HoldReason] = field(default_factory=dict)
    placement: Placement | None = None
    """On a portal that owns the contingent: what it has no place for (``not_matched``,
    ``bridge.core.placement``), checked after every other rule; None: everything is placed."""

    def __post_init__(self) -> None:
        self.work_lesson = DenseIndex(sharing=self.lesson)

    @property
    def pairs(self) -> dict[Pair | None, int]:
        """The distinct (day, class) pairs of the lessons and works known, numbered."""
        return self.lesson.numbers

    def knows(self, entity: str, key: str) -> bool:
        """True when a record of ``entity`` with ``key`` was mapped in this run."""
        return key in self.known(entity)

    def known(self, entity: str) -> Container[str]:
        """The keys of ``entity`` remembered in this run (for lessons and works, their index)."""
        if entity == "lesson":
            return self.lesson
        if entity == "work":
            return self.work_lesson
        return self.keys.get(entity, set())

    def forget(self, entity: str, key: str) -> None:
        """Note a rejected record, so references to it are told apart from dangling ones."""
        if key:
            self.rejected.setdefault(entity, set()).add(key)

    def learn_stays(self, enrollments: Iterable[Record]) -> None:
        """Learn every pupil's stays in classes from the mapped enrolment records."""
        for record in enrollments:
            end = record.payload.get("date_to")
            stay = (
                _text(record, "class"),
                _text(record, "date_from"),
                None if end is None else str(end),
            )
            self.stays.setdefault(_text(record, "pupil"), []).append(stay)

    def allow_guardians(self, links: Iterable[tuple[str, str]]) -> None:
        """Mark guardians linked to at least one consenting pupil, from (pupil, guardian)."""
        for pupil, guardian in links:
            self.guardian_of.setdefault(guardian, set()).add(pupil)
            if self.consent.get(pupil, False):
                self.guardians_allowed.add(guardian)
            elif pupil in self.closed:
                self.guardian_reason[guardian] = self.closed[pupil]

    def close(self, pupil: str, reason: HoldReason) -> None:
        """Fail closed for ``pupil``: hold every record of theirs for ``reason`` (the first
        cause found is kept)."""
        self.closed.setdefault(pupil, reason)
        self.consent[pupil] = False

    def held_for(self, pupil: str) -> HoldReason:
        """Why a record of a pupil without consent is held (the cause, if the gate failed
        closed for them)."""
        return self.closed.get(pupil, HoldReason.NO_CONSENT)

    def stay_reason(self, pupil: str, class_key: str, day: str) -> HoldReason | None:
        """None when the pupil was in the class that day, else why not."""
        stays = self.stays.get(pupil, [])
        if any(
            c == class_key and start <= day and (end is None or day <= end)
            for c, start, end in stays
        ):
            return None
        if any(end is not None and end < day for _, _, end in stays):
            return HoldReason.AFTER_WITHDRAWAL
        return HoldReason.NOT_ENROLLED

    def lesson_class(self, record: Record) -> str | None:
        """The class a journal record belongs to (its own, its lesson's, or its work's)."""
        value = record.payload.get("class")
        if value is not None:
            return str(value)
        found = self._lesson_pair(record)
        return None if found is None else found[1]

    def _lesson_pair(self, record: Record) -> Pair | None:
        """The (day, class) of a record's lesson, or of its work's lesson; None if unknown."""
        lesson = record.payload.get("lesson")
        if lesson is not None:
            return self.lesson.get(str(lesson))
        work = record.payload.get("work")
        return None if work is None else self.work_lesson.get(str(work))

    def record_day(self, record: Record) -> str | None:
        """The date a journal record is about (a lesson's, a work's or mark's lesson's, a
        stay's first day, a period mark's period end)."""
        for name in ("date", "date_from"):
            if record.payload.get(name) is not None:
                return str(record.payload[name])
        found = self._lesson_pair(record)
        if found is not None:
            return found[0]
        period = record.payload.get("period")
        return self.period_end.get(str(period)) if period is not None else None

    def class_on(self, pupil: str, day: str) -> str | None:
        """The class the pupil was in on ``day``, if any."""
        for class_key, start, end in self.stays.get(pupil, []):
            if start <= day and (end is None or day <= end):
                return class_key
        return None

    def last_class(self, pupil: str) -> str | None:
        """The class of the pupil's latest stay, if any."""
        stays = self.stays.get(pupil)
        return max(stays, key=lambda s: s[1])[0] if stays else None

    def pupils_by_class(self, day: str) -> dict[str, int]:
        """How many pupils have a stay open on ``day`` in each class."""
        counts: dict[str, int] = {}
        for stays in self.stays.values():
            for class_key in {
                c for c, start, end in stays if start <= day and (end is None or end >= day)
            }:
                counts[class_key] = counts.get(class_key, 0) + 1
        return counts

    def is_open(self, pupil: str, day: str) -> bool:
        """True when the pupil has a stay that has not ended by ``day``."""
        return any(
            start <= day and (end is None or end >= day)
            for _, start, end in self.stays.get(pupil, [])
        )


def _text(record: Record, name: str) -> str:
    value = record.payload.get(name)
    if value is None:
        value = record.attrs.get(name)
    return value if value.__class__ is str else str(value)


def _learn_pupil(ctx: Context, record: Record) -> None:
    # An erased pupil (152-ФЗ) counts as without consent, whatever ASIOU still says.
    key = record.key
    if consent_verdict(record) is HoldReason.CONSENT_UNCLEAR:
        ctx.closed.setdefault(key, HoldReason.CONSENT_UNCLEAR)
    ctx.consent[key] = has_consent(record) and key not in ctx.erased and key not in ctx.closed


def _learn_class(ctx: Context, record: Record) -> None:
    ctx.grade[record.key] = int(str(record.payload["grade"]))


def _learn_lesson(ctx: Context, record: Record) -> None:
    ctx.lesson[record.key] = (_text(record, "date"), _text(record, "class"))


def _interned(pair: Pair | None) -> Pair | None:
    """The (day, class) pair the index keeps: its texts interned, so that the few hundred days
    and classes are kept once each, whatever the number of pairs."""
    return None if pair is None else (intern(pair[0]), intern(pair[1]))


def _learn_work(ctx: Context, record: Record) -> None:
    # The lesson's pair itself, not its key: a mark is gated with one lookup, and no work
    # keeps a copy of a lesson key.
    lessons, lesson = ctx.lesson, _text(record, "lesson")
    ctx.work_lesson[record.key] = lessons.table[lessons.recent.get(lesson) or lessons.find(lesson)]


def _learn_period(ctx: Context, record: Record) -> None:
    ctx.period_end[record.key] = _text(record, "date_to")


def _learn_group(ctx: Context, record: Record) -> None:
    ctx.group_class[record.key] = _text(record, "class")


LEARNERS: dict[str, Callable[[Context, Record], None]] = {
    "group": _learn_group,
    "pupil": _learn_pupil,
    "class": _learn_class,
    "lesson": _learn_lesson,
    "work": _learn_work,
    "period": _learn_period,
}


@dataclass
class Learnt:
    """What planning one entity (or one key range of it, in another process) taught the
    context: its keys, its rejected keys, and its index (consent, grades, lesson days...)."""

    entity: str
    keys: set[str]
    rejected: set[str]
    index: MutableMapping[str, Any]
    """A dict, or for lessons and works a ``DenseIndex`` (pickled as arrays, no key strings)."""
    closed: dict[str, HoldReason] = field(default_factory=dict)
    held: DenseIndex[bool] | None = None
    """The keys held ``not_matched`` (``Placement.handover``), None when none was."""


def _index(ctx: Context, entity: str) -> MutableMapping[str, Any] | None:
    indexes: dict[str, MutableMapping[str, Any]] = {
        "pupil": ctx.consent,
        "class": ctx.grade,
        "lesson": ctx.lesson,
        "work": ctx.work_lesson,
        "period": ctx.period_end,
    }
    return indexes.get(entity)


def learnt(ctx: Context, entity: str) -> Learnt:
    """What the context learnt of ``entity`` since it was last asked, which it then forgets:
    a worker that planned a key range of ``entity`` since it was forked sends each lesson once.
    (Only a worker asks; an entity never refers to itself, so nothing it plans later needs
    what it forgets.)"""
    keys, rejected = ctx.keys.pop(entity, set()), ctx.rejected.pop(entity, set())
    index = _index(ctx, entity)
    taught: MutableMapping[str, Any] = {}
    if isinstance(index, DenseIndex):
        taught = index.copy()
    elif index is not None:
        taught = dict(index)
    if index is not None:
        index.clear()  # in place: the rules compiled in this process hold it
    held = None if ctx.placement is None else ctx.placement.handover(entity)
    return Learnt(entity, keys, rejected, taught, dict(ctx.closed), held)


def teach(ctx: Context, lesson: Learnt) -> None:
    """Add what another process learnt of one entity to this context."""
    if lesson.entity not in INDEXED:  # a lesson's or work's key is known by its index
        ctx.keys.setdefault(lesson.entity, set()).update(lesson.keys)
    if lesson.rejected:
        ctx.rejected.setdefault(lesson.entity, set()).update(lesson.rejected)
    index = _index(ctx, lesson.entity)
    if lesson.entity in INDEXED:  # the shared table keeps one tuple per (day, class)
        _dense(ctx, lesson.entity).update(lesson.index.items())
    elif index is not None:
        index.update(lesson.index)
    for pupil, reason in lesson.closed.items():
        ctx.close(pupil, reason)
    if lesson.held is not None and ctx.placement is not None:
        ctx.placement.take(lesson.entity, lesson.held)


# --- decisions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MissingReference:
    """A record refers to a record of another entity that is missing or was rejected."""

    field: str
    entity: str
    key: str
    rejected: bool

    @property
    def reason(self) -> str:
        """The rejection reason, fit to show an admin."""
        why = "was rejected" if self.rejected else "is missing from the source"
        return f"refers to {self.entity} {self.key}, which {why}"


Verdict = HoldReason | MissingReference | None


def compile_check(entity: str, refs: dict[str, str], ctx: Context) -> Callable[[Record], Verdict]:
    """``check`` for one entity with its references and rule bound once (the hot path); on
    a portal that owns the contingent, what passes them is then placed (``ctx.placement``)."""
    compiled = COMPILED_RULES.get(entity)
    rule = compiled(ctx) if compiled is not None else _bound(RULES.get(entity), ctx)
    if INDEXED.isdisjoint(refs.values()):
        checked = _checked_by_sets(refs, ctx, rule)
    else:
        checked = _checked_by_indexes(refs, ctx, rule)
    place = None if ctx.placement is None else ctx.placement.compile(entity, refs)
    return checked if place is None else _then_placed(checked, place)


def _then_placed(checked: Callable[[Record], Verdict], place: Check) -> Callable[[Record], Verdict]:
    """``checked``, and for a record it lets through, the placement's verdict."""

    def check(record: Record) -> Verdict:
        verdict = checked(record)
        return place(record) if verdict is None else verdict

    return check


def _missing(ctx: Context, name: str, target: str, value: object) -> Verdict:
    """The verdict on a record whose ``name`` refers to no known record of ``target``."""
    key = str(value)
    closed = ctx.closed.get(key) if target == "pupil" else None
    if closed is not None:
        return closed  # its pupil's row was rejected: held, so it goes if published
    return MissingReference(name, target, key, key in ctx.rejected.get(target, ()))


def _checked_by_sets(
    refs: dict[str, str], ctx: Context, rule: Callable[[Record], Verdict] | None
) -> Callable[[Record], Verdict]:
    known = tuple(
        (name, target, ctx.keys.setdefault(target, set())) for name, target in refs.items()
    )

    def checked(record: Record) -> Verdict:
        payload = record.payload
        for name, target, keys in known:
            value = payload.get(name)
            if value is None:
                value = record.attrs.get(name)
            if value is not None and value not in keys:
                return _missing(ctx, name, target, value)
        return None if rule is None else rule(record)

    return checked


def _checked_by_indexes(
    refs: dict[str, str], ctx: Context, rule: Callable[[Record], Verdict] | None
) -> Callable[[Record], Verdict]:
    """As ``_checked_by_sets``, with a reference to a lesson or work looked up in its
    ``DenseIndex``: a key found lately is in its ``recent`` dict (marks name the same work a
    few dozen times in a row), any other is found by ``DenseIndex.find``."""
    no_keys: set[str] = set()
    no_recent: dict[str, int] = {}
    known: list[tuple[str, str, Container[str], dict[str, int], DenseIndex[Any] | None]] = []
    for name, target in refs.items():
        if target in INDEXED:
            dense = _dense(ctx, target)
            known.append((name, target, no_keys, dense.recent, dense))
        else:
            known.append((name, target, ctx.keys.setdefault(target, set()), no_recent, None))

    def checked(record: Record) -> Verdict:
        payload = record.payload
        for name, target, keys, recent, dense in known:
            value = payload.get(name)
            if value is None:
                value = record.attrs.get(name)
                if value is None:
                    continue
            if dense is None:
                if value in keys:
                    continue
            elif value in recent or dense.find(value):
                continue
            return _missing(ctx, name, target, value)
        return None if rule is None else rule(record)

    return checked


def _dense(ctx: Context, entity: str) -> DenseIndex[Any]:
    return ctx.lesson if entity == "lesson" else ctx.work_lesson


def _bound(
    rule: Callable[[Record, Context], Verdict] | None, ctx: Context
) -> Callable[[Record], Verdict] | None:
    return None if rule is None else (lambda record: rule(record, ctx))


def compile_remember(entity: str, indexed: bool, ctx: Context) -> Callable[[Record], None] | None:
    """``Context.remember`` for one entity: keys only where other entities refer to it (and
    for lessons and works, which their index knows, never); None when there is nothing to
    remember (marks, absences)."""
    keys = ctx.keys.setdefault(entity, set()) if indexed and entity not in INDEXED else None
    learn = LEARNERS.get(entity)
    if keys is None and learn is None:
        return None

    def remember(record: Record) -> None:
        if keys is not None:
            keys.add(record.key)
        if learn is not None:
            learn(ctx, record)

    return remember


def has_consent(record: Record) -> bool:
    """True when a pupil record says written consent is on file: only a yes (``True``, which
    the yes/no field gives for a documented yes word) is consent; anything else is not."""
    return record.attrs.get("consent", record.payload.get("consent")) is True


def consent_verdict(record: Record) -> HoldReason | None:
    """None for a clear yes; ``no_consent`` for a no or nothing; ``consent_unclear`` for any
    other value (the field's fallback for 2, 'отозвано', a BLOB...)."""
    value = record.attrs.get("consent", record.payload.get("consent"))
    if value is True:
        return None
    return HoldReason.NO_CONSENT if value is None or value is False else HoldReason.CONSENT_UNCLEAR


def _pupil(record: Record, ctx: Context) -> Verdict:
    closed = ctx.closed.get(record.key)
    if closed is not None:
        return closed
    if record.key in ctx.erased:
        return HoldReason.NO_CONSENT
    return consent_verdict(record)


def _owned(record: Record, ctx: Context) -> Verdict:
    pupil = _text(record, "pupil")
    return None if ctx.consent.get(pupil, False) else ctx.held_for(pupil)


def _guardian(record: Record, ctx: Context) -> Verdict:
    if record.key in ctx.guardians_allowed:
        return None
    return ctx.guardian_reason.get(record.key, HoldReason.NO_CONSENT)


def _period_mark(record: Record, ctx: Context) -> Verdict:
    pupil = _text(record, "pupil")
    if not ctx.consent.get(pupil, False):
        return ctx.held_for(pupil)
    day = ctx.period_end[_text(record, "period")]
    class_key = ctx.class_on(pupil, day)
    if class_key is None:
        return ctx.stay_reason(pupil, "", day)
    return HoldReason.GRADE_1_MARK if ctx.grade.get(class_key) == 1 else None


# The mark and absence rules run a million times a run: each is one frame with the context's
# indexes bound (a helper call per record costs more than these few repeated lines). A mark's
# work and an absence's lesson are looked up in their ``DenseIndex`` inline: in ``recent``
# (where the reference check has just put it), else by ``find``.


def _compiled_mark(ctx: Context) -> Callable[[Record], Verdict]:
    consent, grade, stays, works = ctx.consent, ctx.grade, ctx.stays, ctx.work_lesson
    recent, find, table, held_for = works.recent, works.find, works.table, ctx.held_for

    def rule(record: Record) -> Verdict:
        payload = record.payload
        pupil = payload["pupil"]
        if not consent.get(pupil, False):
            return held_for(pupil)
        work = payload["work"]
        pair = table[recent.get(work) or find(work)]
        if pair is None:  # no such work, or its lesson was unknown: as a missing key did
            raise KeyError(work)
        day, class_key = pair
        if grade.get(class_key) == 1:
            return HoldReason.GRADE_1_MARK
        for stay_class, start, end in stays.get(pupil, ()):
            if stay_class == class_key and start <= day and (end is None or day <= end):
                return None
        return ctx.stay_reason(str(pupil), class_key, day)

    return rule


def _compiled_absence(ctx: Context) -> Callable[[Record], Verdict]:
    consent, stays, held_for = ctx.consent, ctx.stays, ctx.held_for
    recent, find, table = ctx.lesson.recent, ctx.lesson.find, ctx.lesson.table

    def rule(record: Record) -> Verdict:
        payload = record.payload
        pupil = payload["pupil"]
        if not consent.get(pupil, False):
            return held_for(pupil)
        lesson = payload["lesson"]
        pair = table[recent.get(lesson) or find(lesson)]
        if pair is None:  # no such lesson
            raise KeyError(lesson)
        day, class_key = pair
        for stay_class, start, end in stays.get(pupil, ()):
            if stay_class == class_key and start <= day and (end is None or day <= end):
                return None
        return ctx.stay_reason(str(pupil), class_key, day)

    return rule


# Rules compiled against the context, for the entities with a million rows a year. They read
# the gate's fields from the payload directly: mapping.py requires those fields be exported.
COMPILED_RULES: dict[str, Callable[[Context], Callable[[Record], Verdict]]] = {
    "mark": _compiled_mark,
    "absence": _compiled_absence,
}

RULES: dict[str, Callable[[Record, Context], Verdict]] = {
    "pupil": _pupil,
    "enrollment": _owned,
    "group_member": _owned,
    "guardian_link": _owned,
    "guardian": _guardian,
    "period_mark": _period_mark,
}


ROW_REJECTED = {
    "pupil": HoldReason.PUPIL_ROW_REJECTED,
    "enrollment": HoldReason.ENROLLMENT_ROW_REJECTED,
    "guardian_link": HoldReason.GUARDIAN_LINK_ROW_REJECTED,
}
"""The entities whose rejected rows the gate fails closed for, and the hold reason of each."""


def reject_row(ctx: Context, entity: str, key: str) -> HoldReason | None:
    """Note a rejected row (``Context.forget``); for an entity the gate reads, the reason its
    published record must go. A pupil row closes the pupil itself (an enrolment's or link's
    pupil is closed by the engine's pre-pass, which reads the row's pupil column)."""
    ctx.forget(entity, key)
    reason = ROW_REJECTED.get(entity)
    if reason is not None and entity == "pupil" and key:
        ctx.close(key, reason)
    return reason if key else None


def owner_pupil(record: Record) -> str | None:
    """The pupil a record belongs to (itself for a pupil), for scoped resync, erase, explain."""
    if record.entity == "pupil":
        return record.key
    value = record.payload.get("pupil", record.attrs.get("pupil"))
    return None if value is None else str(value)


DERIVED = frozenset({"pupil", "group_member"})
"""Entities that get fields computed by the gate (see ``derive``)."""


def left_class_on(ctx: Context, pupil: str, class_key: str) -> str | None:
    """The last day of the pupil's stays in ``class_key`` when none is open on ``as_of`` (they
    left it), else None."""
    stays = [(start, end) for c, start, end in ctx.stays.get(pupil, ()) if c == class_key]
    if not stays or any(end is None or end >= ctx.as_of for _, end in stays):
        return None
    return max(str(end) for _, end in stays)


def _close_membership(record: Record, ctx: Context) -> Record:
    """An open subgroup membership of a pupil who left the group's class closes on the day
    they left (re-admission reopens it: the derived end goes)."""
    if "date_to" not in record.payload or record.payload["date_to"] is not None:
        return record
    class_key = ctx.group_class.get(_text(record, "group"))
    left = None if class_key is None else left_class_on(ctx, _text(record, "pupil"), class_key)
    if left is None:
        return record
    payload = {**record.payload, "date_to": left}
    return replace(record, payload=payload, fingerprint=fingerprint(1, [record.fingerprint, left]))


def derive(record: Record, ctx: Context) -> Record:
    """Add fields the gate computes: a pupil is ``active`` while a stay is open on ``as_of``
    (withdrawal archives the pupil on the portal; re-admission makes it active again); a
    subgroup membership closes when its pupil left the group's class."""
    if record.entity == "group_member":
        return _close_membership(record, ctx)
    if record.entity != "pupil":
        return record
    active = ctx.is_open(record.key, ctx.as_of)
    payload = {**record.payload, "active": active}
    marked = fingerprint(1, [record.fingerprint, active])
    return replace(record, payload=payload, fingerprint=marked)
