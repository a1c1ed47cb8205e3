"""The reference portal's inspection endpoints (``/_portal/...``: counts, records, duplicates,
statistics, faults, reset; no auth, never faulted) and the request statistics they report.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bridge.core.errors import ConfigError
from bridge.ports import ENTITIES
from bridge.refportal.faults import FaultPlan, parse_faults
from bridge.refportal.model import Applied
from bridge.refportal.wire import Reply, Request, decode, error, not_allowed, to_json

if TYPE_CHECKING:
    from bridge.refportal.service import PortalService


@dataclass
class Stats:
    """Request counts since start (or the last reset)."""

    requests: int = 0
    token_requests: int = 0
    api_requests: int = 0
    batches: int = 0
    operations: int = 0
    rejected: int = 0
    faults: Counter[str] = field(default_factory=Counter)

    def count(self, applied: Applied) -> None:
        """Count the operations one write applied or rejected."""
        self.operations += len(applied.verdicts)
        self.rejected += applied.rejected

    def as_json(self) -> dict[str, Any]:
        """The counts as ``GET /_portal/stats`` shows them."""
        return {
            "requests": self.requests,
            "token_requests": self.token_requests,
            "api_requests": self.api_requests,
            "batches": self.batches,
            "operations": self.operations,
            "applied": self.operations - self.rejected,
            "rejected": self.rejected,
            "faults": dict(sorted(self.faults.items())),
        }


def inspect(service: PortalService, request: Request) -> Reply:
    """Answer a request under ``/_portal/``."""
    name = request.path.removeprefix("/_portal/")
    readers: dict[str, Callable[[PortalService, Request], Reply]] = {
        "counts": _counts,
        "records": _records,
        "duplicates": _duplicates,
        "stats": _stats,
        "faults": _faults,
    }
    if name == "reset":
        return _reset(service) if request.method == "POST" else not_allowed("POST")
    if name not in readers:
        return error(404, "unknownResource", "no such inspection endpoint")
    if name == "faults" and request.method == "POST":
        return _set_faults(service, request)
    if request.method != "GET":
        return not_allowed("GET", "POST") if name == "faults" else not_allowed("GET")
    return readers[name](service, request)


def _counts(service: PortalService, _: Request) -> Reply:
    with service.lock:
        names = sorted(set(service.clients) | set(service.model.schools))
        counts = {s: {e: len(service.model.fingerprints(s, e)) for e in ENTITIES} for s in names}
    return to_json(200, counts)


def _records(service: PortalService, request: Request) -> Reply:
    school, entity = request.query.get("school"), request.query.get("entity")
    if not school or not entity:
        return error(400, "badRequest", "give ?school=S&entity=E")
    if entity not in ENTITIES:
        return error(404, "unknownResource", f"no resource {entity}")
    with service.lock:
        records = [r.as_json() for r in service.model.records(school, entity)]
    return to_json(200, {"records": records})


def _duplicates(service: PortalService, _: Request) -> Reply:
    with service.lock:
        return to_json(200, {"duplicates": service.model.duplicates()})


def _stats(service: PortalService, _: Request) -> Reply:
    with service.lock:
        return to_json(200, service.stats.as_json())


def _faults(service: PortalService, _: Request) -> Reply:
    with service.lock:
        return to_json(
            200,
            {**service.plan.settings.as_json(), "remaining_script": service.plan.remaining_script},
        )


def _set_faults(service: PortalService, request: Request) -> Reply:
    try:
        settings = parse_faults(decode(request.body), "/_portal/faults")
    except ConfigError as exc:
        return error(400, "badRequest", "; ".join(str(p) for p in exc.problems))
    with service.lock:
        service.plan = FaultPlan(settings, service.seed)
    service.log.info("faults set", kinds=sorted(settings.rates), script=len(settings.script))
    return to_json(200, settings.as_json())


def _reset(service: PortalService) -> Reply:
    with service.lock:
        service.model.clear()
        service.file.clear()
        service.stats = Stats()
    service.log.info("data reset")
    return Reply(204)
