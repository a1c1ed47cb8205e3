"""The matching phase of a run on a portal that owns its contingent: read the school's side
(classes, subgroups, subjects, periods, pupils and their stays, through the mappings), match it
with what the portal gave (``bridge.core.matching``), and give the matches to the run.

It reads the small entities once more before the plan (about two thousand rows for a school of
a thousand pupils): the matches must be known before any pupil's record is gated. A row that
cannot become a record is left out here; its record has no match, so it is held (the gate also
rejects the row itself). Names are compared in memory; nothing but keys, ids and counts leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import structlog

from bridge.core.builder import RowRejected
from bridge.core.mapping import CompiledMapping, MappingSet
from bridge.core.matching import (
    Contingent,
    Match,
    Matches,
    SchoolNamed,
    SchoolPupil,
    Settled,
    class_on,
    match_groups,
    match_named,
    match_pupils,
)
from bridge.core.model import Record, Value
from bridge.ports import ContingentPortal, MatchState, Source, StateStore

log = structlog.get_logger()

Settlements = Callable[[str], Mapping[str, Settled]]
"""Entity → key → the admin's decision (the state store's ``settlements``)."""


@dataclass
class SchoolSide:
    """What matching needs of the school, read from ASIOU (in memory only)."""

    classes: list[SchoolNamed] = field(default_factory=list)
    groups: list[SchoolNamed] = field(default_factory=list)
    subjects: list[SchoolNamed] = field(default_factory=list)
    periods: list[SchoolNamed] = field(default_factory=list)
    pupils: list[SchoolPupil] = field(default_factory=list)


def read_school(mappings: MappingSet, source: Source, as_of: str) -> SchoolSide:
    """The school's side of matching: each pupil in the class of the stay open on ``as_of``
    (else of their latest stay begun by then)."""
    side = SchoolSide()
    named = {"class": side.classes, "subject": side.subjects, "period": side.periods}
    for entity, found in named.items():
        found += [_named(r) for r in _records(mappings, source, entity)]
    side.groups += [
        _named(r, parent=_text(r.payload.get("class"))) for r in _records(mappings, source, "group")
    ]
    stays: dict[str, list[tuple[str, str, str | None]]] = {}
    for r in _records(mappings, source, "enrollment"):
        pupil, cls, start = (_text(r.payload.get(n)) for n in ("pupil", "class", "date_from"))
        if pupil and cls and start:
            stays.setdefault(pupil, []).append((cls, start, _text(r.payload.get("date_to"))))
    for r in _records(mappings, source, "pupil"):
        side.pupils.append(
            SchoolPupil(
                r.key,
                _text(r.payload.get("last_name")) or "",
                _text(r.payload.get("first_name")) or "",
                _text(r.payload.get("birth_date")),
                class_on(stays.get(r.key, []), as_of),
                _portal_id(r),
            )
        )
    return side


def match_school(
    side: SchoolSide,
    contingent: Contingent,
    settlements: Settlements,
    names: Mapping[str, Mapping[str, str]] | None = None,
) -> Matches:
    """Every match of the school's side with the portal's contingent; ``names`` gives, per
    entity, the school's name → the portal's (a subject called otherwise on the portal)."""
    names = names or {}
    matches = Matches()
    classes = match_named(
        "class",
        side.classes,
        contingent.classes,
        settlements("class"),
        names.get("class"),
        folding="class",
    )
    matches.add(classes)
    class_ids = {m.key: m.portal_id for m in classes if m.status.usable and m.portal_id}
    matches.add(match_groups(side.groups, contingent.groups, class_ids, settlements("group")))
    for entity, ours, theirs in (
        ("subject", side.subjects, contingent.subjects),
        ("period", side.periods, contingent.periods),
    ):
        matches.add(match_named(entity, ours, theirs, settlements(entity), names.get(entity)))
    matches.add(match_pupils(side.pupils, contingent.persons, class_ids, settlements("pupil")))
    return matches


def match_run(
    mappings: MappingSet, source: Source, state: StateStore, portal: ContingentPortal, as_of: str
) -> Matches:
    """The matching phase of one run: read both sides, match them (the admin's decisions
    first), keep the result in the state store for ``match list``, give it to the portal."""
    contingent = portal.contingent()
    side = read_school(mappings, source, as_of)
    book = _book_of(state)
    matches = match_school(side, contingent, book.settlements, portal.names)
    for entity, found in matches.by_entity.items():
        book.record_matches(entity, list(found.values()))
    portal.use_matches(matches)
    kept = book is not _UNKEPT
    log.info("contingent.matched", kept=kept, **{e: dict(c) for e, c in matches.counts().items()})
    return matches


class _Book(Protocol):
    """What matching asks of the state store: the admin's decisions, and a place to keep the
    matching for ``match list`` (``MatchState``)."""

    def settlements(self, entity: str) -> Mapping[str, Settled]: ...
    def record_matches(self, entity: str, found: Sequence[Match]) -> None: ...


class _Unkept:
    """The book of a state store that keeps no matching: nothing settled, nothing kept."""

    def settlements(self, entity: str) -> Mapping[str, Settled]:
        return {}

    def record_matches(self, entity: str, found: Sequence[Match]) -> None:
        """Nothing to keep the matching in: each run matches afresh."""


_UNKEPT = _Unkept()


def _book_of(state: StateStore) -> _Book:
    """The state store itself when it keeps matchings, else a book that keeps nothing."""
    return state if isinstance(state, MatchState) else _UNKEPT


def stored_matches(state: StateStore) -> Matches | None:
    """The last matching the state store keeps (a preview uses it: it reads no portal)."""
    if not isinstance(state, MatchState):
        return None
    matches = Matches()
    matches.add(state.matches())
    return matches


def _records(mappings: MappingSet, source: Source, entity: str) -> Iterator[Record]:
    if entity not in mappings:
        return
    mapping: CompiledMapping = mappings[entity]
    for row in source.read(mapping):
        try:
            yield mapping.build(row)
        except RowRejected:
            continue  # no record, so no match: the gate holds what would follow from it


def _named(record: Record, parent: str | None = None) -> SchoolNamed:
    year = record.payload.get("year")
    return SchoolNamed(
        record.key,
        _text(record.payload.get("name")) or "",
        year if isinstance(year, int) else None,
        _portal_id(record),
        parent,
    )


def _portal_id(record: Record) -> str | None:
    """The portal's id the school keeps in ASIOU (a mapping field ``portal_id``), if any."""
    return _text(record.attrs.get("portal_id", record.payload.get("portal_id")))


def _text(value: Value) -> str | None:
    return None if value is None or value == "" else str(value)
