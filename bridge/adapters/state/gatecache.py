"""The gate's snapshots (a part of SqlStateStore): per entity, one text the engine writes and
reads back whole (``bridge.service.engine.lazy``); the store does not look inside."""

from __future__ import annotations

import sqlalchemy as sa

from bridge.adapters.state.schema import gate_cache

_SNAPSHOT = sa.select(gate_cache.c.snapshot).where(  # built once: see records._LOOKUP
    gate_cache.c.entity == sa.bindparam("entity", type_=gate_cache.c.entity.type)
)


class GateCaches:
    """The ``gate_cache`` table (a part of SqlStateStore)."""

    engine: sa.Engine

    def gate_cache(self, entity: str) -> str | None:
        """The snapshot last kept for ``entity``, if any."""
        with self.engine.connect() as conn:
            found = conn.execute(_SNAPSHOT, {"entity": entity}).scalar()
        return None if found is None else str(found)

    def set_gate_cache(self, entity: str, snapshot: str) -> None:
        """Keep ``snapshot`` for ``entity``, replacing the one before (one transaction)."""
        with self.engine.begin() as conn:
            conn.execute(gate_cache.delete().where(gate_cache.c.entity == entity))
            conn.execute(gate_cache.insert().values(entity=entity, snapshot=snapshot))
