"""The portal port: operations the diary import API takes, and what it answers per operation.

The wire format is the reference diary import API (``docs/portal-api.md``,
``docs/portal-api.yaml``): resources per school keyed by the bridge's ``sourcedId``; ``PUT``
creates or replaces (idempotent), ``DELETE`` tombstones (idempotent), a batch endpoint answers
per operation. Adapters: ``client.PortalClient`` (HTTP) and ``store.MemoryPortal`` (in memory,
the same rules as the reference portal); both pass ``tests/contracts/test_portal_contract.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

ENTITIES = (
    "period",
    "subject",
    "teacher",
    "class",
    "group",
    "pupil",
    "enrollment",
    "group_member",
    "guardian",
    "guardian_link",
    "lesson",
    "work",
    "mark",
    "absence",
    "period_mark",
)
"""Canonical entities the API has a resource for; the resource path is the entity name."""


@dataclass(frozen=True, slots=True)
class Operation:
    """One write: PUT (create or replace) with data, or DELETE (tombstone)."""

    op_id: str
    method: str  # "PUT" | "DELETE"
    entity: str
    sourced_id: str
    fingerprint: str | None = None
    data: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class OperationResult:
    """The portal's answer to one operation: ``ok``, or a rejection with type and reason."""

    op_id: str
    ok: bool
    status: int
    type: str | None = None
    description: str | None = None


class Portal(Protocol):
    """The port every portal adapter implements."""

    batch_size: int

    def send(self, operations: Sequence[Operation]) -> list[OperationResult]:
        """Apply one batch in order; one result per operation, in the same order. Raises
        PortalUnavailable (retries ran out), PortalAuthError or PortalFatalError."""
        ...

    def fingerprints(self, entity: str) -> dict[str, str]:
        """sourcedId → fingerprint of every live record of ``entity`` (reconciliation)."""
        ...
