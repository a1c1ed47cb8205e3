"""The emulator's inspection endpoints (``/_emulator/...``: no token, never faulted), for tests
and demos: ``state`` (counts per kind, every object, the seeding map, duplicates),
``mismatches``, ``stats``, ``faults`` (GET, POST to replace) and ``reset`` (POST: the journal
goes, the contingent stays). The same facts are methods of
:class:`~bridge.dnevnik.emulator.DnevnikEmulator`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from bridge.core.errors import ConfigError
from bridge.dnevnik.journal import Journal
from bridge.dnevnik.wire import ApiRequest
from bridge.refportal.faults import FaultPlan, parse_faults
from bridge.refportal.wire import Reply, decode, error, not_allowed, to_json

if TYPE_CHECKING:
    from bridge.dnevnik.service import DnevnikService


def duplicates(journal: Journal) -> dict[str, list[list[int]]]:
    """Ids of lessons sharing group, subject, date and number, and of marks sharing person and
    work: what a client that retried a create without looking first leaves behind."""
    keys: dict[str, dict[tuple[Any, ...], list[int]]] = {
        "lessons": defaultdict(list), "marks": defaultdict(list),
    }  # fmt: skip
    for x in journal.objects["lesson"].values():
        keys["lessons"][x["group"], x["subject"], x["date"], x["number"]].append(x["id"])
    for m in journal.objects["mark"].values():
        keys["marks"][m["person"], m["work"]].append(m["id"])
    return {kind: [ids for ids in found.values() if len(ids) > 1] for kind, found in keys.items()}


def state(service: DnevnikService) -> dict[str, Any]:
    """Everything the emulator holds (call with the lock held)."""
    journal = service.journal
    return {
        "school": journal.school["id"],
        "counts": journal.counts(),
        "objects": {kind: list(objs.values()) for kind, objs in journal.objects.items()},
        "portal_ids": service.seeded.as_json()["portal_ids"],
        "duplicates": duplicates(journal),
    }


def inspect(service: DnevnikService, request: ApiRequest) -> Reply:
    """Answer a request under ``/_emulator/``."""
    name = request.path.removeprefix("/_emulator/").strip("/")
    if name == "reset":
        if request.method != "POST":
            return not_allowed("POST")
        return to_json(200, {"removed": service.reset_journal()})
    if name == "faults" and request.method == "POST":
        return _set_faults(service, request)
    reader = READERS.get(name)
    if reader is None:
        return error(404, "unknownResource", "no such inspection endpoint")
    if request.method != "GET":
        return not_allowed("GET")
    with service.lock:
        return to_json(200, reader(service))


def _mismatches(service: DnevnikService) -> object:
    return [m.as_json() for m in service.seeded.mismatches]


def _stats(service: DnevnikService) -> object:
    return service.stats.as_json()


def _faults(service: DnevnikService) -> object:
    return {**service.plan.settings.as_json(), "remaining_script": service.plan.remaining_script}


READERS: dict[str, Callable[[DnevnikService], object]] = {
    "state": state, "mismatches": _mismatches, "stats": _stats, "faults": _faults,
}  # fmt: skip


def _set_faults(service: DnevnikService, request: ApiRequest) -> Reply:
    try:
        settings = parse_faults(decode(request.body), "/_emulator/faults")
    except ConfigError as exc:
        return error(400, "invalidRequest", "; ".join(str(p) for p in exc.problems))
    with service.lock:
        service.plan = FaultPlan(settings, service.seed)
    service.log.info("faults set", kinds=sorted(settings.rates), script=len(settings.script))
    return to_json(200, settings.as_json())
