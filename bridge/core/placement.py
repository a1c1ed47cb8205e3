"""Placement: whether a portal that owns the contingent has a place for a record, and the hold
of what it has none for (``not_matched``).

A record is *placed* when the portal has a record for it and for everything it refers to:

* a record of a matched entity (a pupil, a class, a subject...) has a usable match;
* every matched record it names has one (a lesson of a class or subject the portal has no
  record of is not placed);
* no record it names was held ``not_matched`` in this run: the works of such a lesson, the
  marks on those works, the lesson's absences are not placed either (transitively, through
  the mappings' references), so they are held in the plan, never sent for the portal to
  refuse for a missing reference.

A record not placed is held ``not_matched``: the bridge never guesses the portal's record.
The gate asks its ``check`` of every record after its own rules (``gate.compile_check``: a
record its rules hold keeps their reason), wherever the record is read: a full read, a key
range planned in a worker (what it held comes back with ``gate.learnt``), or an incremental
run's read by key of the work and lesson a changed mark names (``bridge.service.engine.lazy``).
So a lesson's placement is decided again in every run that reads it, from the run's matches
and the lesson's references, never remembered from an earlier run; a record whose reference
is not known at all is the gate's rejection, so nothing is sent of it either (fail closed).

Memory: only the keys held of the entities others refer to are kept (lessons and works, one
``DenseIndex`` each: at most four bytes a key, and nothing while none is held). A portal that
matches nothing (the reference portal) has no placement at all (``for_run`` gives None): the
gate then checks nothing more.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeAlias

from bridge.core.dense import DenseIndex
from bridge.core.matching import Matches
from bridge.core.model import HoldReason, Record
from bridge.core.support import Capability, PortalSupport, is_matched

References: TypeAlias = Mapping[str, Mapping[str, str]]
"""Entity → its references (field name → the entity it names), as the mappings declare."""

Check = Callable[[Record], "HoldReason | None"]
"""A record → ``not_matched`` when the portal has no place for it, else None."""


class Placement:
    """The placement rule of one run on a portal that matches some entities, with the keys it
    held of the entities others refer to (see the module docstring)."""

    def __init__(self, support: PortalSupport, matches: Matches, references: References) -> None:
        self.support, self.matches = support, matches
        self.held: dict[str, DenseIndex[bool]] = {}
        """Entity → the keys held ``not_matched`` in this run (only entities others refer
        to, which may be held: see ``tracked``)."""
        referred = {t for refs in references.values() for t in refs.values()}
        unplaceable = _unplaceable(support, references)
        self.tracked = frozenset(e for e in unplaceable & referred if not is_matched(support, e))
        """The entities whose held keys are kept: named by another entity, not matched (a
        matched one is placed by its match), and possibly held."""

    @staticmethod
    def for_run(
        support: PortalSupport | None, matches: Matches | None, references: References
    ) -> Placement | None:
        """The run's placement; None when the portal matches nothing (every record is placed).
        A portal that matches and a run without matches (none made): nothing is matched, so
        every matched record, and whatever refers to one, is held."""
        if support is None or not any(s.capability is Capability.MATCH for s in support.values()):
            return None
        return Placement(support, Matches() if matches is None else matches, references)

    def index(self, entity: str) -> DenseIndex[bool]:
        """The keys of ``entity`` held in this run (shared with the checks compiled: changed
        only in place)."""
        found = self.held.get(entity)
        if found is None:
            found = self.held[entity] = DenseIndex()
        return found

    def is_held(self, entity: str, key: str) -> bool:
        """True when a record of ``entity`` with ``key`` was held ``not_matched`` in this run."""
        found = self.held.get(entity)
        return found is not None and key in found

    def compile(self, entity: str, refs: Mapping[str, str]) -> Check | None:
        """The check of ``entity``'s records, which name others by ``refs`` (the gate's hot
        path: bound once per read); None when every record of it is placed whatever it holds
        (not matched, and naming nothing matched or possibly held)."""
        own = is_matched(self.support, entity)
        matched = [(n, t) for n, t in refs.items() if is_matched(self.support, t)]
        named = [(n, self.index(t)) for n, t in refs.items() if t in self.tracked]
        if not (own or matched or named):
            return None
        places = _places(entity, own, matched, named, self.matches)
        held = self.index(entity) if entity in self.tracked else None

        def check(record: Record) -> HoldReason | None:
            if places(record):
                return None
            if held is not None:
                held[record.key] = True
            return HoldReason.NOT_MATCHED

        return check

    def handover(self, entity: str) -> DenseIndex[bool] | None:
        """The keys of ``entity`` held since last asked, which it then forgets (a worker that
        planned a key range sends each once: ``gate.learnt``); None when none was held."""
        found = self.held.get(entity)
        if found is None or not found:
            return None
        taken = found.copy()
        found.clear()  # in place: the checks compiled in this process hold it
        return taken

    def take(self, entity: str, held: DenseIndex[bool]) -> None:
        """Add the keys of ``entity`` another process held (``gate.teach``)."""
        self.index(entity).update(held.items())


def _places(
    entity: str,
    own: bool,
    matched: list[tuple[str, str]],
    named: list[tuple[str, DenseIndex[bool]]],
    matches: Matches,
) -> Callable[[Record], bool]:
    """True when the portal has a place for the record: its own match (``own``), a usable
    match of each matched record it names, and none of the records it names held."""
    portal_id = matches.portal_id

    def places(record: Record) -> bool:
        if own and portal_id(entity, record.key) is None:
            return False
        payload = record.payload
        for name, target in matched:
            value = payload.get(name)
            if value is not None and portal_id(target, str(value)) is None:
                return False
        for name, held in named:
            value = payload.get(name)
            if value is not None and (held.count or held.other) and held.find(str(value)):
                return False
        return True

    return places


def _unplaceable(support: PortalSupport, references: References) -> set[str]:
    """The entities a record of which may be held: matched ones, and those naming one (at any
    depth through the references)."""
    named = {t for refs in references.values() for t in refs.values()}
    found = {e for e in {*references, *named} if is_matched(support, e)}
    grown = True
    while grown:
        more = {e for e, refs in references.items() if found & set(refs.values())} - found
        found |= more
        grown = bool(more)
    return found
