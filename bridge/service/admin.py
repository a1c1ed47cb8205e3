"""What the admin commands find out: status, explain, erase. Facts as data; ``render`` words
them."""

from __future__ import annotations

import getpass
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from bridge.adapters.state import DELETED, SqlStateStore, delivery_batch, is_valid, record_state
from bridge.core.errors import UnknownKey
from bridge.core.gate import Context
from bridge.core.mapping import MappingSet
from bridge.core.model import Change, Hold, Op, Record, Rejection
from bridge.ports import Approval, DeadLetter, HeldPlan
from bridge.service.config import Config
from bridge.service.engine import Deliverer, to_items
from bridge.service.runner import Request, Service
from bridge.service.runs import DEFAULT_GROUND, Erasures, RunLog, RunRecord
from bridge.service.wiring import Adapters, open_adapters


@dataclass
class Status:
    """The state of the bridge for ``status``."""

    runs: list[RunRecord]
    next_runs: dict[str, Any]
    dead_letters: list[DeadLetter]
    in_doubt_batches: int
    held_plan: str | None
    held: HeldPlan | None = None
    approval: Approval | None = None
    approval_expired: bool = False
    erasures_due: list[ErasureDue] = field(default_factory=list)


ERASURE_DAYS = 30
"""152-ФЗ ст. 21 ч. 5: personal data are destroyed within 30 days of consent withdrawn."""


@dataclass(frozen=True)
class ErasureDue:
    """A pupil removed from the portal for lack of consent and not yet erased."""

    pupil: str
    withdrawn: date
    deadline: date
    days_left: int

    @property
    def is_overdue(self) -> bool:
        """True once the deadline has passed."""
        return self.days_left < 0


def erasures_due(
    withdrawals: Mapping[str, datetime], erased: frozenset[str], today: date
) -> list[ErasureDue]:
    """The pupils whose consent was withdrawn and who are not erased, deadline first."""
    due = []
    for pupil, at in withdrawals.items():
        if pupil not in erased:
            deadline = at.date() + timedelta(days=ERASURE_DAYS)
            due.append(ErasureDue(pupil, at.date(), deadline, (deadline - today).days))
    return sorted(due, key=lambda d: (d.deadline, d.pupil))


def status(
    state: SqlStateStore, next_runs: dict[str, Any], approval_valid: timedelta | None = None
) -> Status:
    """Last runs, next runs, dead letters, batches sent but never answered, a held plan (when
    it was held, its summary, and whether its approval is still valid)."""
    runs = RunLog(state.engine).last(10)
    with state.engine.connect() as conn:
        in_doubt = conn.execute(
            sa.select(sa.func.count())
            .select_from(delivery_batch)
            .where(delivery_batch.c.status == "sent")
        ).scalar_one()
    held = next((r.summary.get("plan_id") for r in runs if r.outcome is not None), None)
    letters = sorted(state.dead_letters().values(), key=lambda d: (d.entity, d.sort_key))
    due = erasures_due(
        state.withdrawals(), Erasures(state.engine).completed(), state.clock().date()
    )
    found = Status(runs, next_runs, letters, int(in_doubt), held, erasures_due=due)
    if held is not None:
        found.held, found.approval = state.held_plan(held), state.approval(held)
        found.approval_expired = found.approval is not None and not is_valid(
            found.approval, state.clock(), approval_valid
        )
    return found


@dataclass
class Explanation:
    """The path of one record: source, mapping, gate, plan, delivery, the portal's answer."""

    entity: str
    key: str
    found: bool = False
    rejection: Rejection | None = None
    hold: str | None = None
    change: Change | None = None
    record: Record | None = None
    delivered: dict[str, Any] | None = None
    dead_letter: DeadLetter | None = None
    erased: Mapping[str, Any] | None = None
    portal_check: tuple[str, datetime] | None = None
    """What the last reconciliation found on the portal ("missing", "changed", "unexpected",
    "matches"), and when."""


def explain(service: Service, io: Adapters, entity: str, key: str) -> Explanation:
    """Trace ``entity`` ``key`` through a preview run (nothing is sent or recorded)."""
    state = io.state
    result = service.preview(Request(command="explain", tap=(entity, key)), io)
    found = Explanation(entity, key, delivered=_delivered(state, entity, key))
    for item in result.tapped:
        _note(found, item)
    if found.delivered is not None:
        found.dead_letter = state.dead_letters().get((entity, found.delivered["sort_key"]))
    else:
        found.dead_letter = next(
            (d for d in state.dead_letters().values() if d.entity == entity and d.key == key), None
        )
    if entity == "pupil":
        found.erased = Erasures(state.engine).get(key)
    found.portal_check = state.portal_finding(entity, key)
    return found


def require_key(config: Config, mappings: MappingSet, entity: str, key: str) -> None:
    """Raise UnknownKey unless the source has a row of ``entity`` with ``key`` (valid or
    rejected): a scoped resync of a key that does not exist is a usage error, not a no-op."""
    mapping = mappings[entity]
    with open_adapters(config) as io:
        rows = io.source.read(mapping)
        items = to_items(mapping, rows, Context(), gated=False, indexed=False)
        if any(not isinstance(item, Hold) and item.key == key for item in items):
            return
    raise UnknownKey(entity, key)


def why_not_sent(tapped: Sequence[object]) -> str | None:
    """Why the record a run tapped was not sent (held back or rejected), as explain says it;
    None when it was sendable."""
    found = Explanation("", "")
    for item in tapped:
        _note(found, item)
    if found.hold is not None:
        return f"held back ({found.hold})"
    if found.rejection is not None:
        rejection = found.rejection
        return (
            f"its row is rejected ({rejection.table}, field {rejection.field}: {rejection.reason})"
        )
    return None


def _note(found: Explanation, item: object) -> None:
    if isinstance(item, Change):
        found.change = item
        return
    found.found = True
    if isinstance(item, Rejection):
        found.rejection = item
    elif isinstance(item, Hold):
        found.hold, found.record = item.reason.value, item.record
    elif isinstance(item, Record):
        found.record = item


def _delivered(state: SqlStateStore, entity: str, key: str) -> dict[str, Any] | None:
    columns = (
        record_state.c.sort_key,
        record_state.c.status,
        record_state.c.first_delivered_at,
        record_state.c.updated_at,
        record_state.c.fingerprint,
    )
    with state.engine.connect() as conn:
        row = conn.execute(
            sa.select(*columns).where(record_state.c.entity == entity, record_state.c.key == key)
        ).first()
    return None if row is None else dict(row._mapping)


@dataclass
class Erasure:
    """What ``erase pupil`` deleted from the portal in this run, and the act kept."""

    pupil: str
    planned: Counter[str] = field(default_factory=Counter)
    deleted: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    act: Mapping[str, Any] | None = None


def erase_pupil(
    config: Config,
    mappings: MappingSet,
    state: SqlStateStore,
    pupil: str,
    run_id: str,
    *,
    ground: str = DEFAULT_GROUND,
) -> Erasure:
    """Delete every record of ``pupil`` from the portal (children first), with the guardians
    who represent no other exported pupil, record the erasure act, and keep the pupil out of
    every later export."""
    changes = erasure_changes(state, mappings, pupil)
    register = Erasures(state.engine)
    # The act first: from now on the pupil is never exported again, even if the portal fails
    # midway (run the command again to finish the deletes).
    register.begin(pupil, getpass.getuser(), ground, run_id, _earlier(state, pupil))
    with open_adapters(config) as io:
        deliverer = Deliverer(io.portal, state, mappings, run_id=run_id, send_dead=True)
        deliverer.add_all(changes)
    done = Erasure(
        pupil,
        Counter(c.entity for c in changes),
        Counter({e: c.get("delete", 0) for e, c in deliverer.report.delivered.items()}),
        deliverer.report.refused,
    )
    register.complete(pupil, done.planned, done.deleted, done.refused)
    done.act = register.get(pupil)
    return done


def erasure_changes(state: SqlStateStore, mappings: MappingSet, pupil: str) -> list[Change]:
    """The deletes an erasure sends, children first: every live record of the pupil (its
    guardian links included) and each guardian linked to the pupil who has no live link to
    another pupil."""
    order = {e: i for i, e in enumerate(mappings.entities)}
    query = sa.select(record_state.c.entity, record_state.c.key, record_state.c.sort_key).where(
        record_state.c.status != DELETED,
        sa.or_(
            record_state.c.pupil_key == pupil,
            sa.and_(record_state.c.entity == "pupil", record_state.c.key == pupil),
        ),
    )
    with state.engine.connect() as conn:
        rows = [*conn.execute(query), *_lone_guardians(conn, pupil)]
    rows.sort(key=lambda r: -order.get(r[0], 0))
    return [Change(Op.DELETE, r[0], r[1], r[2], None, reason="erased (152-FZ)") for r in rows]


def _lone_guardians(conn: sa.Connection, pupil: str) -> list[Any]:
    links = conn.execute(
        sa.select(record_state.c.pupil_key, record_state.c.payload).where(
            record_state.c.entity == "guardian_link", record_state.c.status != DELETED
        )
    )
    mine: set[str] = set()
    kept: set[str] = set()
    for owner, payload in links:
        guardian = json.loads(payload or "{}").get("guardian")
        (mine if owner == pupil else kept).add(str(guardian))
    query = sa.select(record_state.c.entity, record_state.c.key, record_state.c.sort_key).where(
        record_state.c.entity == "guardian",
        record_state.c.status != DELETED,
        record_state.c.key.in_(sorted(mine - kept)),
    )
    return list(conn.execute(query))


def _earlier(state: SqlStateStore, pupil: str) -> dict[str, int]:
    """Records of the pupil already deleted from the portal before the erasure, per entity."""
    query = (
        sa.select(record_state.c.entity, sa.func.count())
        .where(
            record_state.c.status == DELETED,
            sa.or_(
                record_state.c.pupil_key == pupil,
                sa.and_(record_state.c.entity == "pupil", record_state.c.key == pupil),
            ),
        )
        .group_by(record_state.c.entity)
    )
    with state.engine.connect() as conn:
        return {str(e): int(n) for e, n in conn.execute(query)}
