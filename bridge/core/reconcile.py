"""Reconciliation: the portal read back and compared with the state store (pure).

A reconciling run is a full run whose state view is corrected by what the portal holds. For
each entity the portal lists its live records (sourcedId → the fingerprint the bridge sent);
``compare`` sets them against the state's live entries:

missing
    delivered (the state says so) but not on the portal: the merge sees the entry with no
    fingerprint, so a record the source still allows is created again ("missing on the
    portal"); one that is held or gone is deleted (a no-op on the portal that tombstones it).
changed
    on the portal with another fingerprint: the merge sees the portal's fingerprint, so the
    source's version is sent again ("changed on the portal").
unexpected
    live on the portal, but not live in the state. Where the source has the record and allows
    it, it is sent (and so known again). Where the gate holds it, it is deleted: fail closed,
    nothing forbidden stays. Where the source lacks it, it is deleted only when the state
    remembers deleting it (a tombstone), and also when the state never knew it: nothing
    allows it, so it goes (fail closed).

``check`` is the guard of the read-back: a portal that suddenly looks empty or mostly missing
(like an empty source) holds the whole reconciliation until an admin approves its id.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.core.builder import sort_key_from_key
from bridge.core.guard import Thresholds
from bridge.core.mapping import key_from_sort_key
from bridge.core.model import Change, EntryView, Hold, Op
from bridge.core.plan import Item

MISSING = "missing on the portal"
CHANGED = "changed on the portal"
UNEXPECTED = "unexpected on the portal"
SAMPLE_LIMIT = 50


@dataclass
class EntityDrift:
    """How the portal's records of one entity differ from the state's live entries."""

    entity: str
    in_state: int = 0
    on_portal: int = 0
    missing: set[str] = field(default_factory=set)
    """Sort keys of live state entries the portal does not have."""
    changed: dict[str, str] = field(default_factory=dict)
    """Sort key → the portal's fingerprint, where it is not the state's."""
    unexpected: dict[str, str] = field(default_factory=dict)
    """Key → sort key (from the state's tombstone; "" when the state never knew the key) of
    live portal records the state has no live entry for."""
    planned: Counter[str] = field(default_factory=Counter)
    """Changes planned for the drift, by "operation: reason"."""
    reported: list[str] = field(default_factory=list)
    """Keys of unexpected records left on the portal (unknown to the state, not in the source)."""

    @property
    def matches(self) -> int:
        """Live state entries the portal holds with the same fingerprint."""
        return self.in_state - len(self.missing) - len(self.changed)


@dataclass
class Drift:
    """The read-back of every entity of a reconciling run."""

    entities: dict[str, EntityDrift] = field(default_factory=dict)
    samples: list[Change] = field(default_factory=list)

    @property
    def drift_id(self) -> str:
        """A digest of what the read-back found (entity, finding, key): the id an admin
        approves when the guard holds the reconciliation; another finding has another id."""
        digest = hashlib.blake2b(b"reconcile", digest_size=6)
        for name, found in sorted(self.entities.items()):
            for kind, keys in (("m", found.missing), ("c", found.changed), ("u", found.unexpected)):
                for key in sorted(keys):
                    digest.update(f"{name}\x1f{kind}\x1f{key}\x1e".encode())
        return digest.hexdigest()

    def summary(self) -> dict[str, dict[str, Any]]:
        """Counts per entity (ids and counts only): safe for logs, history and JSON."""
        return {
            name: {
                "in_state": d.in_state,
                "on_portal": d.on_portal,
                "matches": d.matches,
                "missing": len(d.missing),
                "changed": len(d.changed),
                "unexpected": len(d.unexpected),
                "planned": dict(d.planned),
                "left_unexpected": len(d.reported),
            }
            for name, d in self.entities.items()
        }

    def findings(self, entity: str) -> Iterator[tuple[str, str, str]]:
        """(sort key, key, finding) of every record of ``entity`` that did not match."""
        found = self.entities[entity]
        for sort_key in sorted(found.missing):
            yield sort_key, key_from_sort_key(sort_key), "missing"
        for sort_key in sorted(found.changed):
            yield sort_key, key_from_sort_key(sort_key), "changed"
        for key, sort_key in sorted(found.unexpected.items()):
            yield sort_key or f"?{key}", key, "unexpected"

    def note(self, change: Change, reason: str) -> None:
        """Give ``change`` its drift reason and count it (and keep a bounded sample)."""
        change.reason = reason
        planned = self.entities[change.entity].planned
        planned[f"{change.op.value}: {reason}"] += 1
        if planned[f"{change.op.value}: {reason}"] <= SAMPLE_LIMIT:
            self.samples.append(change)


def compare(entity: str, entries: Iterable[EntryView], portal: Mapping[str, str]) -> EntityDrift:
    """The drift of one entity: the state's live ``entries`` against the portal's listing
    (sourcedId → fingerprint). Unexpected records get no sort key here (see ``EntityDrift``)."""
    found = EntityDrift(entity, on_portal=len(portal))
    seen: set[str] = set()
    for entry in entries:
        sort_key, fingerprint = entry[0], entry[1]
        key = key_from_sort_key(sort_key)
        found.in_state += 1
        seen.add(key)
        there = portal.get(key)
        if there is None:
            found.missing.add(sort_key)
        elif there != fingerprint:
            found.changed[sort_key] = there
    found.unexpected = {k: "" for k in portal if k not in seen}
    return found


@dataclass(frozen=True)
class PortalHold:
    """Why the read-back holds the reconciliation: an entity mostly missing, or an empty portal."""

    entity: str | None
    missing: int
    total: int

    def describe(self) -> str:
        """One line for admins."""
        if self.entity is None:
            return (
                f"the portal holds no records at all, though the state says "
                f"{self.total} were delivered"
            )
        share = 100.0 * self.missing / self.total if self.total else 100.0
        return (
            f"the portal is missing {self.missing} of {self.total} delivered "
            f"{self.entity} records ({share:.1f} %)"
        )


def check(drift: Drift, thresholds: Thresholds) -> list[PortalHold]:
    """Every reason to hold a reconciliation: a portal with no record at all while the state
    has some, or an entity missing more than ``max_delete_fraction`` of its delivered records
    (and at least ``min_deletes``), the thresholds of deletes from a suspicious source."""
    found = drift.entities.values()
    in_state = sum(d.in_state for d in found)
    if in_state and not any(d.on_portal for d in found):
        return [PortalHold(None, in_state, in_state)]
    return [
        PortalHold(d.entity, len(d.missing), d.in_state)
        for d in found
        if len(d.missing) >= thresholds.min_deletes
        and len(d.missing) > thresholds.max_delete_fraction * d.in_state
    ]


def corrected(entries: Iterator[EntryView], found: EntityDrift) -> Iterator[EntryView]:
    """The state's entries as the portal has them: no fingerprint where the record is
    missing, the portal's fingerprint where it differs."""
    missing, changed = found.missing, found.changed
    for entry in entries:
        sort_key = entry[0]
        if sort_key in missing:
            yield (sort_key, "", entry[2])
        elif sort_key in changed:
            yield (sort_key, changed[sort_key], entry[2])
        else:
            yield entry


def annotate(
    outcomes: Iterable[Item | Change], found: EntityDrift, drift: Drift
) -> Iterator[Item | Change]:
    """The merge's outcomes over a ``corrected`` view, with each change the drift calls for
    given its reason, and the deletes of unexpected records added (see the module docstring).
    """
    unexpected = dict(found.unexpected)
    for outcome in outcomes:
        if isinstance(outcome, Change):
            change = outcome
            if change.op is Op.CREATE and unexpected.pop(change.key, None) is not None:
                # The source has it and allows it: sent, and so known again.
                drift.note(change, UNEXPECTED)
            yield _reasoned(change, found, drift)
            continue
        yield outcome
        key = outcome.record.key if isinstance(outcome, Hold) else outcome.key
        if unexpected.pop(key, None) is None:
            continue
        if isinstance(outcome, Hold):
            # Forbidden, yet on the portal: fail closed.
            record = outcome.record
            change = Change(Op.DELETE, record.entity, record.key, record.sort_key, None)
            drift.note(change, f"{UNEXPECTED} ({outcome.reason.value})")
            yield change
        # A rejected row leaves the portal as is, as in any run.
    for key, sort_key in sorted(unexpected.items()):
        if sort_key:
            # The bridge deleted it once and the source does not have it: it goes again.
            change = Change(Op.DELETE, found.entity, key, sort_key, None)
            drift.note(change, f"{UNEXPECTED} (deleted by the bridge)")
            yield change
        else:
            # Never sent by the bridge and not in the source: nothing allows it; fail closed.
            change = Change(Op.DELETE, found.entity, key, sort_key_from_key(key), None)
            drift.note(change, f"{UNEXPECTED} (unknown to the bridge)")
            yield change


def _reasoned(change: Change, found: EntityDrift, drift: Drift) -> Change:
    sort_key = change.sort_key
    if sort_key in found.missing and change.op is not Op.DELETE:
        # Re-sent in full: a create, whatever the state said it was.
        if change.op is Op.UPDATE:
            change.op = Op.CREATE
        drift.note(change, MISSING)
    elif sort_key in found.changed and change.op is not Op.DELETE:
        drift.note(change, CHANGED)
    return change
