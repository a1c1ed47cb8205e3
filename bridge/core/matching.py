"""Matching the school's contingent with the portal's: which portal person, class, subject or
period an ASIOU record is, decided by rules, never guessed.

A portal that owns its contingent (dnevnik.ru: persons, edu-groups, subjects, reporting periods
are read, never written, by a partner) has its own record of every pupil and class. The bridge
finds it:

1. a match the admin settled (``asiou-bridge match confirm | reject``) is final: a confirmed one
   names the portal's id (still there, or the match is missing again), a rejected one is never
   made by a rule;
2. a portal id the school keeps in ASIOU (the mapping's ``portal_id`` field) names the record;
   an id the portal does not know is missing, not looked for by name;
3. otherwise the rule of the entity: a pupil by surname, first name and birth date among the
   members of the portal class matched to the pupil's class; a class by name (and study year
   where both give one); a subject or period by name, through the school's table of names.

One candidate is a match; none is *missing*, several are *ambiguous*; a portal record two
records of the school would match is ambiguous for both. Only a match (or a confirmed one)
gives an id; nothing of a pupil without one leaves (the gate holds it). Candidates are ids,
never names: a report of a match carries the keys and ids only. Names are compared in memory,
folded as :func:`fold` says (case, spaces, «ё» as «е», Latin look-alikes in class names).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum


class MatchStatus(StrEnum):
    """Where a school record stands with the portal's."""

    MATCHED = "matched"  # by a rule
    CONFIRMED = "confirmed"  # by the admin
    AMBIGUOUS = "ambiguous"
    MISSING = "missing"
    REJECTED = "rejected"  # by the admin: no match, and no rule may make one

    @property
    def usable(self) -> bool:
        """True when the match gives the portal's id to send with."""
        return self in {MatchStatus.MATCHED, MatchStatus.CONFIRMED}


@dataclass(frozen=True, slots=True)
class Match:
    """One school record's match: its status, the portal's id when usable, the candidates
    (portal ids) the rule found or an admin may choose from, and the rule that decided."""

    entity: str
    key: str
    status: MatchStatus
    portal_id: str | None = None
    candidates: tuple[str, ...] = ()
    rule: str = ""


@dataclass(frozen=True, slots=True)
class Settled:
    """The admin's decision on one record: confirmed (with the portal's id) or rejected."""

    entity: str
    key: str
    status: MatchStatus
    portal_id: str | None = None


# --- the two sides ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PortalPerson:
    """A person of the portal's contingent, and the portal groups they are an active member of."""

    id: str
    last_name: str
    first_name: str
    birthday: str | None  # ISO date
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class PortalNamed:
    """A portal class, subgroup, subject or period: id, name, a study year where it has one,
    and for a subgroup the portal class it is part of."""

    id: str
    name: str
    year: int | None = None
    parent: str | None = None


@dataclass(frozen=True, slots=True)
class SchoolPupil:
    """What matching needs of a pupil (in memory only): names, birth date, the class on the
    day of the run, and the portal's id if the school keeps one."""

    key: str
    last_name: str
    first_name: str
    birthday: str | None
    class_key: str | None
    portal_id: str | None = None


@dataclass(frozen=True, slots=True)
class SchoolNamed:
    """A school class, subgroup, subject or period: key, name, study year where it has one,
    the portal's id if the school keeps one, and for a subgroup the class it is part of."""

    key: str
    name: str
    year: int | None = None
    portal_id: str | None = None
    parent: str | None = None


@dataclass(frozen=True)
class Contingent:
    """What the portal owns, as read from it: its persons (pupils) with their groups, its
    classes, subgroups, subjects and periods."""

    persons: tuple[PortalPerson, ...] = ()
    classes: tuple[PortalNamed, ...] = ()
    groups: tuple[PortalNamed, ...] = ()
    subjects: tuple[PortalNamed, ...] = ()
    periods: tuple[PortalNamed, ...] = ()


@dataclass
class Matches:
    """Every match of a run, by entity and key."""

    by_entity: dict[str, dict[str, Match]] = field(default_factory=dict)

    def add(self, found: Iterable[Match]) -> None:
        for match in found:
            self.by_entity.setdefault(match.entity, {})[match.key] = match

    def get(self, entity: str, key: str) -> Match | None:
        return self.by_entity.get(entity, {}).get(key)

    def portal_id(self, entity: str, key: str) -> str | None:
        """The portal's id of a usable match, else None."""
        match = self.get(entity, key)
        return match.portal_id if match is not None and match.status.usable else None

    def unusable(self, entity: str) -> dict[str, MatchStatus]:
        """Key → status of the records of ``entity`` without a usable match."""
        return {
            k: m.status for k, m in self.by_entity.get(entity, {}).items() if not m.status.usable
        }

    def counts(self) -> dict[str, Counter[str]]:
        """Entity → status → records (for logs and the run summary: no names, no ids)."""
        return {
            entity: Counter(m.status.value for m in found.values())
            for entity, found in self.by_entity.items()
        }


# --- folding names ----------------------------------------------------------------------------

_SPACES = re.compile(r"\s+")
_CLASS_NOISE = re.compile(r"[\s\-–—_\"'«»“”.]+")
_LOOKALIKES = str.maketrans("abcehkmoptxy", "авсенкмортху")


def fold(text: str) -> str:
    """A name as compared: trimmed, one space between words, case folded, «ё» as «е»."""
    return _SPACES.sub(" ", text.strip()).casefold().replace("ё", "е")


def fold_class(text: str) -> str:
    """A class name as compared: folded, without spaces, dashes, dots and quotes, Latin
    look-alike letters as the Cyrillic ones («5 А», «5-а», «5A» are «5а»)."""
    return _CLASS_NOISE.sub("", fold(text)).translate(_LOOKALIKES)


# --- the rules --------------------------------------------------------------------------------


def match_named(
    entity: str,
    school: Sequence[SchoolNamed],
    portal: Sequence[PortalNamed],
    settled: Mapping[str, Settled],
    names: Mapping[str, str] | None = None,
    *,
    folding: str = "name",
) -> list[Match]:
    """Classes (``folding="class"``), subjects and periods by name: the school's name, or the
    portal's name the ``names`` table gives for it, folded; the study year must agree where
    both sides give one."""
    folder = fold_class if folding == "class" else fold
    table = {fold(k): v for k, v in (names or {}).items()}
    by_name: dict[str, list[PortalNamed]] = defaultdict(list)
    for theirs in portal:
        by_name[folder(theirs.name)].append(theirs)
    known = {r.id for r in portal}
    found = []
    for ours in school:
        decided = _settled_or_stored(entity, ours.key, ours.portal_id, settled, known)
        if decided is not None:
            found.append(decided)
            continue
        wanted = folder(table.get(fold(ours.name), ours.name))
        candidates = [
            p.id
            for p in by_name.get(wanted, [])
            if p.year is None or ours.year is None or p.year == ours.year
        ]
        found.append(_by_rule(entity, ours.key, candidates, f"{folding} name"))
    return _unique(found)


def match_groups(
    groups: Sequence[SchoolNamed],
    portal: Sequence[PortalNamed],
    classes: Mapping[str, str],
    settled: Mapping[str, Settled],
) -> list[Match]:
    """Subgroups by name within the portal class matched to their class (``classes``: school
    class key → portal class id); a subgroup of an unmatched class is missing."""
    known = {g.id for g in portal}
    found = []
    for ours in groups:
        decided = _settled_or_stored("group", ours.key, ours.portal_id, settled, known)
        if decided is not None:
            found.append(decided)
            continue
        parent = classes.get(ours.parent) if ours.parent is not None else None
        if parent is None:
            found.append(Match("group", ours.key, MatchStatus.MISSING, rule="class not matched"))
            continue
        candidates = [
            g.id for g in portal if g.parent == parent and fold(g.name) == fold(ours.name)
        ]
        found.append(_by_rule("group", ours.key, candidates, "name in class"))
    return _unique(found)


def class_on(stays: Sequence[tuple[str, str, str | None]], day: str) -> str | None:
    """The class of the stay (class, first day, last day or None) open on ``day``, else of the
    latest stay begun by then; None without one."""
    begun = sorted((s for s in stays if s[1] <= day), key=lambda s: s[1])
    open_then = [s for s in begun if s[2] is None or day <= s[2]]
    chosen = open_then or begun
    return chosen[-1][0] if chosen else None


def match_pupils(
    pupils: Sequence[SchoolPupil],
    persons: Sequence[PortalPerson],
    classes: Mapping[str, str],
    settled: Mapping[str, Settled],
) -> list[Match]:
    """Pupils by surname, first name and birth date among the members of the portal class
    matched to their class (``classes``: school class key → portal group id). A pupil whose
    class has no match is missing: the rule does not look school-wide."""
    members: dict[tuple[str, str, str, str | None], list[str]] = defaultdict(list)
    in_group: dict[str, list[PortalPerson]] = defaultdict(list)
    for person in persons:
        for group in person.groups:
            in_group[group].append(person)
            name = (group, fold(person.last_name), fold(person.first_name), person.birthday)
            members[name].append(person.id)
    known = {p.id for p in persons}
    found = []
    for pupil in pupils:
        decided = _settled_or_stored("pupil", pupil.key, pupil.portal_id, settled, known)
        if decided is not None:
            found.append(decided)
            continue
        portal_class = classes.get(pupil.class_key) if pupil.class_key is not None else None
        if portal_class is None:
            found.append(Match("pupil", pupil.key, MatchStatus.MISSING, rule="class not matched"))
            continue
        wanted = (portal_class, fold(pupil.last_name), fold(pupil.first_name), pupil.birthday)
        candidates = members.get(wanted, [])
        match = _by_rule("pupil", pupil.key, candidates, "name and birth date in class")
        if match.status is MatchStatus.MISSING:
            hints = _near(pupil, in_group[portal_class])
            match = Match("pupil", pupil.key, MatchStatus.MISSING, None, hints, match.rule)
        found.append(match)
    return _unique(found)


def _near(pupil: SchoolPupil, members: Sequence[PortalPerson]) -> tuple[str, ...]:
    """Members of the class who agree on two of surname, first name and birth date: what an
    admin may confirm (a name spelled otherwise, a birth date mistyped)."""
    last, first = fold(pupil.last_name), fold(pupil.first_name)

    def agreeing(p: PortalPerson) -> int:
        return [
            fold(p.last_name) == last,
            fold(p.first_name) == first,
            p.birthday == pupil.birthday,
        ].count(True)

    return tuple(p.id for p in members if agreeing(p) >= 2)


def _settled_or_stored(
    entity: str, key: str, stored: str | None, settled: Mapping[str, Settled], known: set[str]
) -> Match | None:
    """The admin's decision, else the id the school keeps; None: the rule decides."""
    decision = settled.get(key)
    if decision is not None:
        if decision.status is MatchStatus.REJECTED:
            return Match(entity, key, MatchStatus.REJECTED, rule="rejected by the admin")
        if decision.portal_id in known:
            return Match(entity, key, MatchStatus.CONFIRMED, decision.portal_id, rule="confirmed")
        return Match(entity, key, MatchStatus.MISSING, rule="confirmed id not on the portal")
    if stored:
        if stored in known:
            return Match(entity, key, MatchStatus.MATCHED, stored, rule="portal id in ASIOU")
        return Match(entity, key, MatchStatus.MISSING, rule="portal id in ASIOU not on the portal")
    return None


def _by_rule(entity: str, key: str, candidates: Sequence[str], rule: str) -> Match:
    unique = tuple(dict.fromkeys(candidates))
    if len(unique) == 1:
        return Match(entity, key, MatchStatus.MATCHED, unique[0], unique, rule)
    status = MatchStatus.AMBIGUOUS if unique else MatchStatus.MISSING
    return Match(entity, key, status, None, unique, rule)


def _unique(found: list[Match]) -> list[Match]:
    """A portal record that two school records match by a rule is ambiguous for both (an
    admin's confirmation stands: it was chosen knowingly)."""
    claims = Counter(m.portal_id for m in found if m.status is MatchStatus.MATCHED)
    return [
        Match(
            m.entity,
            m.key,
            MatchStatus.AMBIGUOUS,
            None,
            m.candidates or (str(m.portal_id),),
            m.rule + ", shared",
        )
        if m.status is MatchStatus.MATCHED and claims[m.portal_id] > 1
        else m
        for m in found
    ]
