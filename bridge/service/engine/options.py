"""What one planning run is asked to do (``RunOptions``) and what it found (``PlanResult``),
with the engine's constants: which entities are read first for the gate, and which changes make
a pupil pass the gate again."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta

from bridge.core.errors import (
    RetriableError,
    SourceError,
)
from bridge.core.guard import GuardHold, Thresholds
from bridge.core.matching import Matches
from bridge.core.model import Change
from bridge.core.plan import (
    Item,
    Plan,
)
from bridge.core.reconcile import Drift, PortalHold
from bridge.core.scope import Scope
from bridge.core.support import PortalSupport

# Index entities learnt in a pre-pass because an earlier entity's gate needs them.
PREPASS = {"pupil": "enrollment", "guardian": "guardian_link"}


PUPIL_FIELD = "pupil"


# A change of these makes every record of the pupil pass the gate again (consent, stays).
DIRTYING = frozenset({"pupil", "enrollment"})


# Entities whose rejected rows fail closed for the pupil they name: scanned before pupils.
CLOSING = ("enrollment", "guardian_link")


MAX_RESCAN = 1000


# Entities an incremental run reads only the changed rows of, looking the gate's facts of the
# rest up by key (``bridge.service.engine.lazy``): the big ones that marks and absences name.
LAZY = frozenset({"lesson", "work"})


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
    (``bridge.service.engine.ranges``); 1 plans everything in this process."""
    keep_builds: bool = False
    """Records built are kept for this process's next incremental run, which gives them again
    for rows read unchanged (``bridge.service.engine.memo``): for a long-running process (the
    daemon); a one-shot command would only pay for keeping them."""
    drift: Drift | None = None
    """The portal read back (``read_back``): a reconciling run, whose state view is corrected
    by what the portal holds (``bridge.core.reconcile``). Planned in one process."""
    matches: Matches | None = None
    """The run's matching of the school's contingent with the portal's (a portal that owns
    it): a pupil without a usable match is held, everything of theirs with them."""
    support: PortalSupport | None = None
    """What the portal receives, entity by entity (``Portal.support``); the changes it does
    not take are counted in ``Plan.not_supported`` and never sent. None: everything."""


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
