"""The Portal port in memory: the reference portal's rules (its store), without HTTP."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from bridge.core.errors import PortalFatalError
from bridge.core.support import PortalSupport, full_support
from bridge.ports import ENTITIES, Operation, OperationResult
from bridge.refportal.store import MAX_BATCH, PortalModel


class MemoryPortal:
    """The Portal port on a :class:`PortalModel`: the reference portal's rules, no HTTP. Over
    ``MAX_BATCH`` operations or an unknown entity raise PortalFatalError, as the server's 413
    and 404 answers do through an HTTP adapter."""

    def __init__(
        self,
        school: str = "demo",
        batch_size: int = 500,
        model: PortalModel | None = None,
        *,
        concurrency: int = 1,
        support: PortalSupport | None = None,
    ) -> None:
        if not 1 <= batch_size <= MAX_BATCH:
            raise ValueError(f"batch_size must be from 1 to {MAX_BATCH}")
        self.school, self.batch_size, self.concurrency = school, batch_size, concurrency
        self.model = model if model is not None else PortalModel()
        self.support: PortalSupport = full_support(ENTITIES) if support is None else support
        self._lock = threading.Lock()  # batches apply one at a time, as the server's do

    def send(self, operations: Sequence[Operation]) -> list[OperationResult]:
        """Apply one batch in order; one result per operation, in the same order."""
        if len(operations) > MAX_BATCH:
            raise PortalFatalError(
                413, "batchTooLarge", f"{len(operations)} operations, at most {MAX_BATCH}"
            )
        with self._lock:
            return self.model.apply(self.school, operations).results

    def fingerprints(self, entity: str) -> dict[str, str]:
        """sourcedId → fingerprint of every live record of ``entity``."""
        if entity not in ENTITIES:
            raise PortalFatalError(404, "unknownResource", f"no resource {entity}")
        with self._lock:
            return self.model.fingerprints(self.school, entity)
