"""What the store keeps of matching the school's contingent with the portal's: the last
matching of each record (``match list``, the gate's holds) and the admin's decisions, which
are final (``match confirm | reject``). Ids only: the names compared never leave memory."""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from bridge.adapters.state.schema import match_settlement, portal_match
from bridge.core.matching import Match, MatchStatus, Settled
from bridge.ports import Clock

SETTLED = frozenset({MatchStatus.CONFIRMED, MatchStatus.REJECTED})


class MatchTables:
    """Matches and settlements (a part of SqlStateStore)."""

    engine: sa.Engine
    clock: Clock

    def record_matches(self, entity: str, found: Sequence[Match]) -> None:
        """Replace the last matching of ``entity`` with ``found``, in one transaction."""
        now = self.clock()
        rows = [
            {
                "entity": entity,
                "key": m.key,
                "status": m.status.value,
                "portal_id": m.portal_id,
                "candidates": " ".join(m.candidates),
                "rule": m.rule[:100],
                "matched_at": now,
            }
            for m in found
        ]
        with self.engine.begin() as conn:
            conn.execute(portal_match.delete().where(portal_match.c.entity == entity))
            if rows:
                conn.execute(portal_match.insert(), rows)

    def matches(self, entity: str | None = None) -> list[Match]:
        """The last matching, of one entity or all, by entity and key."""
        query = sa.select(
            portal_match.c.entity,
            portal_match.c.key,
            portal_match.c.status,
            portal_match.c.portal_id,
            portal_match.c.candidates,
            portal_match.c.rule,
        ).order_by(portal_match.c.entity, portal_match.c.key)
        if entity is not None:
            query = query.where(portal_match.c.entity == entity)
        with self.engine.connect() as conn:
            return [
                Match(e, k, MatchStatus(s), p, tuple(c.split()), r)
                for e, k, s, p, c, r in conn.execute(query)
            ]

    def settlements(self, entity: str) -> dict[str, Settled]:
        """Key → the admin's decision, for ``entity``."""
        query = sa.select(
            match_settlement.c.key, match_settlement.c.status, match_settlement.c.portal_id
        ).where(match_settlement.c.entity == entity)
        with self.engine.connect() as conn:
            return {
                str(k): Settled(entity, str(k), MatchStatus(s), p)
                for k, s, p in conn.execute(query)
            }

    def settle(self, decision: Settled, by: str) -> None:
        """Remember the admin's decision (it replaces an earlier one on the same record)."""
        if decision.status not in SETTLED:
            raise ValueError(f"a decision confirms or rejects, not {decision.status.value}")
        if (decision.status is MatchStatus.CONFIRMED) != (decision.portal_id is not None):
            raise ValueError("a confirmation names the portal's id; a rejection names none")
        where = sa.and_(
            match_settlement.c.entity == decision.entity, match_settlement.c.key == decision.key
        )
        with self.engine.begin() as conn:
            conn.execute(match_settlement.delete().where(where))
            conn.execute(
                match_settlement.insert().values(
                    entity=decision.entity,
                    key=decision.key,
                    status=decision.status.value,
                    portal_id=decision.portal_id,
                    settled_by=by[:100],
                    settled_at=self.clock(),
                )
            )
