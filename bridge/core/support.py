"""What a portal receives: per canonical entity, whether the bridge *writes* it, *matches* it or
the portal does not support it, and which operations it takes.

A portal adapter declares its :data:`PortalSupport` (``Portal.support``); the plan asks it of
every change (:func:`refusal`) and counts what this portal will not receive, with the reason,
instead of sending it (``Plan.not_supported``). Fail closed: an entity the portal does not
declare is not supported, so nothing of it leaves.

* ``WRITE``: the bridge creates, updates and deletes the portal's records of the entity, as far
  as ``ops`` allows: a real diary may take a mark but never its correction or retraction.
* ``MATCH``: the portal owns the entity (its persons, classes, subjects, periods); the bridge
  finds the portal's record and keeps its id, and never writes it. The adapter answers such
  changes itself.
* ``UNSUPPORTED``: the portal has no place for it; nothing of it is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from bridge.core.model import Op


class Capability(StrEnum):
    """How a portal treats one canonical entity."""

    WRITE = "write"
    MATCH = "match"
    UNSUPPORTED = "unsupported"


ALL_OPS = frozenset(Op)

CANNOT = {
    Op.CREATE: "cannot create on this portal",
    Op.UPDATE: "cannot update on this portal",
    Op.ARCHIVE: "cannot archive on this portal",
    Op.DELETE: "cannot retract on this portal",
}
"""The reason a plan gives for an operation the portal does not take."""


@dataclass(frozen=True, slots=True)
class EntitySupport:
    """One entity's treatment by a portal; ``note`` says why, in a word an admin reads (it is
    added to the reason of every change this portal will not receive). ``alone``: its batches
    are sent one at a time, never beside another batch (the adapter finds the portal's record
    by its natural key before it creates one: two batches in flight could both create it)."""

    capability: Capability = Capability.WRITE
    ops: frozenset[Op] = ALL_OPS
    note: str = ""
    alone: bool = False

    def refusal(self, op: Op) -> str | None:
        """None when the portal takes ``op`` of this entity; else why it does not."""
        if self.capability is Capability.UNSUPPORTED:
            return _with_note("not supported by this portal", self.note)
        if self.capability is Capability.MATCH or op in self.ops:
            return None
        return _with_note(CANNOT[op], self.note)


PortalSupport = Mapping[str, EntitySupport]
"""Entity → how the portal treats it; an entity absent from it is not supported."""

NOT_DECLARED = EntitySupport(Capability.UNSUPPORTED, frozenset(), "not declared by the adapter")
FULL = EntitySupport()


def full_support(entities: Iterable[str]) -> dict[str, EntitySupport]:
    """Every operation of every entity written (the reference portal)."""
    return dict.fromkeys(entities, FULL)


def support_of(support: PortalSupport, entity: str) -> EntitySupport:
    """How ``support`` treats ``entity`` (not declared: not supported)."""
    return support.get(entity, NOT_DECLARED)


Refuser = Callable[[Op], "str | None"]
"""Op → why the portal does not take it (None: it does)."""


def refuser(support: PortalSupport | None, entity: str) -> Refuser | None:
    """The check a plan makes of each change of ``entity``; None when every operation goes
    (the common case: the hot loop then checks nothing)."""
    if support is None:
        return None
    treated = support_of(support, entity)
    if treated.capability is Capability.MATCH or (
        treated.capability is Capability.WRITE and treated.ops == ALL_OPS
    ):
        return None
    return treated.refusal


def is_matched(support: PortalSupport | None, entity: str) -> bool:
    """True when the portal owns ``entity`` and the bridge only finds its records."""
    return support is not None and support_of(support, entity).capability is Capability.MATCH


def _with_note(reason: str, note: str) -> str:
    return f"{reason}: {note}" if note else reason
