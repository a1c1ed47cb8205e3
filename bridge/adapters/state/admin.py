"""What the store keeps beside the delivered records, for the gate and the admin: held plans
and their approvals, re-gate marks and the last as-of date, and what the last reconciliation
(read-back of the portal) found per record."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from datetime import datetime, timedelta

import sqlalchemy as sa

from bridge.adapters.state.helpers import aware, chunks, is_valid
from bridge.adapters.state.schema import (
    LAST_AS_OF,
    approval,
    held_plan,
    meta,
    portal_check,
    portal_checked,
    regate,
)
from bridge.core.errors import UnknownPlan
from bridge.ports import Approval, Clock, HeldPlan


class AdminTables:
    """Held plans, approvals, re-gate marks and portal checks (a part of SqlStateStore)."""

    engine: sa.Engine
    clock: Clock

    def hold_plan(self, plan_id: str, summary: str) -> None:
        with self.engine.begin() as conn:
            where = held_plan.c.plan_id == plan_id
            if conn.execute(sa.select(held_plan.c.plan_id).where(where)).first() is None:
                conn.execute(
                    held_plan.insert().values(
                        plan_id=plan_id, held_at=self.clock(), summary=summary[:500]
                    )
                )
            else:
                conn.execute(held_plan.update().where(where).values(summary=summary[:500]))

    def held_plan(self, plan_id: str) -> HeldPlan | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(held_plan.c.held_at, held_plan.c.summary).where(
                    held_plan.c.plan_id == plan_id
                )
            ).first()
        return None if row is None else HeldPlan(plan_id, aware(row[0]), row[1])

    def approval(self, plan_id: str) -> Approval | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(approval.c.approved_by, approval.c.approved_at).where(
                    approval.c.plan_id == plan_id
                )
            ).first()
        return None if row is None else Approval(row[0], aware(row[1]))

    def is_approved(self, plan_id: str, valid_for: timedelta | None = None) -> bool:
        return is_valid(self.approval(plan_id), self.clock(), valid_for)

    def approve(self, plan_id: str, by: str) -> None:
        with self.engine.begin() as conn:
            if (
                conn.execute(
                    sa.select(held_plan.c.plan_id).where(held_plan.c.plan_id == plan_id)
                ).first()
                is None
            ):
                raise UnknownPlan(plan_id)
            conn.execute(approval.delete().where(approval.c.plan_id == plan_id))
            conn.execute(
                approval.insert().values(plan_id=plan_id, approved_by=by, approved_at=self.clock())
            )

    def regate_marks(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(regate.c.pupil_key)).scalars())

    def mark_regate(self, pupils: Collection[str]) -> None:
        if not pupils:
            return
        now = self.clock()
        with self.engine.begin() as conn:
            known = set(conn.execute(sa.select(regate.c.pupil_key)).scalars())
            fresh = [{"pupil_key": p, "marked_at": now} for p in sorted(set(pupils) - known)]
            if fresh:
                conn.execute(regate.insert(), fresh)

    def finish_regate(self, pupils: Collection[str] | None, as_of: str) -> None:
        with self.engine.begin() as conn:
            if pupils is None:
                conn.execute(regate.delete())
            else:
                for chunk in chunks(sorted(pupils), 500):
                    conn.execute(regate.delete().where(regate.c.pupil_key.in_(chunk)))
            conn.execute(meta.delete().where(meta.c.name == LAST_AS_OF))
            conn.execute(meta.insert().values(name=LAST_AS_OF, value=as_of))

    def last_as_of(self) -> str | None:
        with self.engine.connect() as conn:
            value = conn.execute(sa.select(meta.c.value).where(meta.c.name == LAST_AS_OF)).scalar()
        return None if value is None else str(value)

    def record_check(
        self, entity: str, findings: Iterable[tuple[str, str, str]], now: datetime
    ) -> None:
        """Replace what the last read-back of ``entity`` found: (sort key, key, finding) of
        every record that did not match, at ``now``; the others matched."""
        rows = [
            {"entity": entity, "sort_key": s, "key": k, "finding": f, "checked_at": now}
            for s, k, f in findings
        ]
        with self.engine.begin() as conn:
            conn.execute(portal_check.delete().where(portal_check.c.entity == entity))
            conn.execute(portal_checked.delete().where(portal_checked.c.entity == entity))
            conn.execute(portal_checked.insert().values(entity=entity, checked_at=now))
            if rows:
                conn.execute(portal_check.insert(), rows)

    def portal_finding(self, entity: str, key: str) -> tuple[str, datetime] | None:
        """What the last read-back of ``entity`` found for ``key`` ("matches" when it did not
        differ), and when; None when the entity was never read back."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(portal_check.c.finding, portal_check.c.checked_at).where(
                    portal_check.c.entity == entity, portal_check.c.key == key
                )
            ).first()
            if row is not None:
                return str(row[0]), row[1]
            at = conn.execute(
                sa.select(portal_checked.c.checked_at).where(portal_checked.c.entity == entity)
            ).scalar()
        return None if at is None else ("matches", at)
