"""``DnevnikPortal``: the Portal port on the dnevnik.ru partner API v2.

What it takes (``DNEVNIK_SUPPORT``): the contingent (classes, subgroups, subjects, periods,
pupils) is the portal's and is matched, never written; lessons are created only; works are
written; marks are created only (the API has no correction or retraction of a mark); absences
are lesson log entries; teachers, memberships, guardians and period marks are not sent (the
portal keeps its own, and final marks are read-only to a partner).

A batch is applied one record per request, in order. A batch that stops partway raises
``PartialDelivery`` with what was done, so that it is recorded and never written again."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from bridge.adapters.dnevnik.contingent import read_contingent
from bridge.adapters.dnevnik.http import DnevnikHttp
from bridge.adapters.dnevnik.ids import Holders, IdBook, Lookup
from bridge.adapters.dnevnik.journal import Journal
from bridge.adapters.dnevnik.settings import DnevnikSettings
from bridge.core.errors import PortalFatalError
from bridge.core.matching import Contingent, Matches
from bridge.core.model import Op
from bridge.core.support import Capability, EntitySupport, PortalSupport
from bridge.ports import Operation, OperationResult, PartialDelivery

_MATCHED = EntitySupport(Capability.MATCH)
_OWN = "the portal keeps its own"
DNEVNIK_SUPPORT: PortalSupport = {
    "class": _MATCHED,
    "group": _MATCHED,
    "subject": _MATCHED,
    "period": _MATCHED,
    "pupil": _MATCHED,
    "teacher": EntitySupport(Capability.UNSUPPORTED, frozenset(), _OWN),
    "enrollment": EntitySupport(Capability.UNSUPPORTED, frozenset(), _OWN),
    "group_member": EntitySupport(Capability.UNSUPPORTED, frozenset(), _OWN),
    "guardian": EntitySupport(Capability.UNSUPPORTED, frozenset(), _OWN),
    "guardian_link": EntitySupport(Capability.UNSUPPORTED, frozenset(), _OWN),
    "lesson": EntitySupport(  # alone: a day's lessons are listed once a batch
        Capability.WRITE, frozenset({Op.CREATE}), "the API has no lesson update or delete", True
    ),
    "work": EntitySupport(Capability.WRITE, frozenset({Op.CREATE, Op.UPDATE, Op.DELETE})),
    "mark": EntitySupport(
        Capability.WRITE, frozenset({Op.CREATE}), "the API has no mark correction or retraction"
    ),
    "absence": EntitySupport(Capability.WRITE, frozenset({Op.CREATE, Op.UPDATE, Op.DELETE})),
    "period_mark": EntitySupport(
        Capability.UNSUPPORTED, frozenset(), "final marks are read-only to a partner"
    ),
}
"""What dnevnik.ru takes from the bridge, entity by entity (docs/portal-dnevnik.md)."""


class DnevnikPortal:
    """The Portal port on dnevnik.ru (thread-safe for ``concurrency`` > 1)."""

    support: PortalSupport = DNEVNIK_SUPPORT

    def __init__(
        self,
        settings: DnevnikSettings,
        lookup: Lookup,
        holders: Holders,
        *,
        http: DnevnikHttp | None = None,
        careful: Callable[[], bool] = lambda: False,
    ) -> None:
        """``lookup`` and ``holders`` are the state store's ``portal_ids`` and ``holders``;
        ``careful`` says whether the last run ended uncleanly (batches sent, never answered),
        so that every create first looks for its record on the portal: asked once, here,
        before the run sends anything (one adapter a run)."""
        self.settings = settings
        self.batch_size, self.concurrency = settings.batch_size, settings.concurrency
        self.http = http if http is not None else DnevnikHttp(settings)
        self.ids = IdBook(lookup, holders)
        # Asked now, before this run opens a batch of its own (which stays "sent" until
        # answered, and would make every run look like one after an unclean end).
        self._careful = careful()
        self._journal: Journal | None = None

    @property
    def names(self) -> Mapping[str, Mapping[str, str]]:
        """The school's tables of names the portal spells otherwise (for matching)."""
        return self.settings.names

    def authenticate(self) -> None:
        """Check the token now (``asiou-bridge check``): one read the token must allow."""
        self.http.get(f"schools/{self.settings.school}/edu-groups")

    def contingent(self) -> Contingent:
        """The school's contingent as the portal holds it."""
        return read_contingent(self.http, self.settings.school)

    def use_matches(self, matches: Matches) -> None:
        """The run's matches: the portal's ids of the pupils, classes, subjects, periods."""
        self.ids.use_matches(matches)

    def send(self, operations: Sequence[Operation]) -> list[OperationResult]:
        """Apply one batch, one record per request, in order (see Portal.send)."""
        journal = self._journal_now().for_batch()
        self._prefetch(operations)
        results: list[OperationResult] = []
        for op in operations:
            try:
                results.append(journal.apply(op))
            except Exception as failure:
                if results:
                    raise PartialDelivery(results, failure) from failure
                raise
        return results

    def fingerprints(self, entity: str) -> dict[str, str]:
        """Not on this portal: its records carry none of the bridge's keys or fingerprints."""
        raise PortalFatalError(
            0,
            "notSupported",
            f"dnevnik.ru cannot be read back by the bridge's keys ({entity}): "
            "`sync --reconcile` is not supported on this portal",
        )

    def close(self) -> None:
        self.http.close()

    def _journal_now(self) -> Journal:
        if self._journal is None:
            self._journal = Journal(self.http, self.settings, self.ids, careful=self._careful)
        return self._journal

    def _prefetch(self, operations: Sequence[Operation]) -> None:
        """The state's ids of the batch's own records and of what they refer to, at once."""
        own: dict[str, list[str]] = {}
        for op in operations:
            own.setdefault(op.entity, []).append(op.sourced_id)
            for name, target in REFERS.get(op.entity, ()):
                value = (op.data or {}).get(name)
                if value is not None:
                    own.setdefault(target, []).append(str(value))
        for entity, keys in own.items():
            if entity in WRITTEN:
                self.ids.prefetch(entity, keys)


WRITTEN = frozenset({"lesson", "work", "mark", "absence"})
REFERS: dict[str, tuple[tuple[str, str], ...]] = {
    "work": (("lesson", "lesson"),),
    "mark": (("work", "work"),),
    "absence": (("lesson", "lesson"),),
}
"""Entity → (field, entity) of the written records its records refer to."""
