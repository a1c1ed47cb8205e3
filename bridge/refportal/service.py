"""The reference portal's API without sockets: :class:`PortalService` turns a :class:`Request`
into a :class:`Reply`: routing, ``/api/v1/schools/{school}/...`` (records and batches, applied
in memory and written through to the file), and fault injection. Tokens live in
:mod:`bridge.refportal.auth`, the ``/_portal`` endpoints in :mod:`bridge.refportal.inspection`.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from email.utils import formatdate
from urllib.parse import unquote

from bridge.logs import get_logger
from bridge.ports import ENTITIES, Operation
from bridge.refportal import auth, inspection
from bridge.refportal.checks import Verdict
from bridge.refportal.datafile import PortalFile
from bridge.refportal.faults import FaultPlan, FaultSettings
from bridge.refportal.inspection import Stats
from bridge.refportal.model import Applied, PortalModel
from bridge.refportal.wire import (
    HTML,
    HTML_PAGE,
    Reply,
    Request,
    batch_items,
    compact_json,
    decode,
    error,
    not_allowed,
    to_json,
    unauthorized,
)


class PortalService:
    """The API without sockets: ``handle(request) -> reply``. Thread-safe (one lock)."""

    def __init__(
        self,
        file: PortalFile,
        clients: Mapping[str, tuple[str, str]],
        *,
        faults: FaultSettings | None = None,
        token_ttl: int = 3600,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.file, self.clients, self.token_ttl = file, dict(clients), token_ttl
        self.seed, self.clock, self.sleep = seed, clock, sleep
        self.log = get_logger(component="portal")
        self.model = PortalModel(clock)
        self.plan = FaultPlan(faults, seed)
        self.stats = Stats()
        self.lock = threading.Lock()
        for school, record in file.records():
            self.model.restore(school, record)
        self.tokens = {d: (client, expires) for d, client, expires in file.tokens()}
        self.used: set[str] = set(self.tokens)  # tokens from before a restart count as used

    def handle(self, request: Request) -> Reply:
        """Answer one request (``/oauth/token``, ``/api/...`` or ``/_portal/...``)."""
        with self.lock:
            self.stats.requests += 1
        if request.path == "/oauth/token":
            return auth.issue_token(self, request)
        if request.path.startswith("/api/"):
            return self._api(request)
        if request.path.startswith("/_portal/"):
            return inspection.inspect(self, request)
        return error(404, "unknownResource", "no such path")

    # --- /api -----------------------------------------------------------------------------

    def _api(self, request: Request) -> Reply:
        with self.lock:
            self.stats.api_requests += 1
            fault = self.plan.next_fault(auth.is_fresh(self, request.authorization))
            if fault is not None:
                self.stats.faults[fault] += 1
        if fault is None or fault in ("slow", "lost"):
            if fault == "slow":
                self.sleep(self.plan.settings.slow_seconds)
            reply = self._api_call(request)
            return replace(reply, drop="lost") if fault == "lost" else reply
        return self._fault_reply(fault, request)

    def _fault_reply(self, fault: str, request: Request) -> Reply:
        seconds = self.plan.retry_after_seconds()
        if fault == "429":
            return error(
                429,
                "rateLimited",
                f"too many requests; retry after {seconds} s",
                ("Retry-After", str(seconds)),
            )
        if fault == "429-date":
            when = formatdate(-(-self.clock() // 1) + seconds, usegmt=True)
            return error(
                429, "rateLimited", f"too many requests; retry after {when}", ("Retry-After", when)
            )
        if fault == "token-expired":
            auth.revoke(self, request.authorization)
            return unauthorized("tokenExpired", "the token has expired; get a new one")
        if fault == "html":
            return Reply(502, HTML_PAGE, HTML)
        if fault == "reset":
            return Reply(0, drop="reset")
        kinds = {"500": "internalError", "502": "badGateway", "503": "serviceUnavailable"}
        return error(int(fault), kinds[fault], "the server cannot answer right now")

    def _api_call(self, request: Request) -> Reply:
        client = auth.authorize(self, request)
        if isinstance(client, Reply):
            return client
        parts = [unquote(p) for p in request.path.split("/")[1:]]
        if parts[:3] != ["api", "v1", "schools"] or len(parts) not in (5, 6):
            return error(404, "unknownResource", "no such path")
        school, entity = parts[3], parts[4]
        if school not in auth.schools_of(self.clients, client):
            return error(403, "forbidden", f"client {client} may not write school {school}")
        return self._route(request, school, entity, parts[5] if len(parts) == 6 else None)

    def _route(self, request: Request, school: str, entity: str, key: str | None) -> Reply:
        """Dispatch an authorized request under ``/api/v1/schools/{school}/``."""
        if entity == "batch" and key is None:
            return self._batch(request, school) if request.method == "POST" else not_allowed("POST")
        if entity not in ENTITIES:
            return error(404, "unknownResource", f"no resource {entity}")
        if key is None:
            return self._list(school, entity) if request.method == "GET" else not_allowed("GET")
        return self._record(request, school, entity, key)

    def _list(self, school: str, entity: str) -> Reply:
        with self.lock:
            live = self.model.fingerprints(school, entity)
        return to_json(
            200, {"records": [{"sourcedId": k, "fingerprint": f} for k, f in live.items()]}
        )

    def _record(self, request: Request, school: str, entity: str, key: str) -> Reply:
        if request.method == "GET":
            return self._get(school, entity, key)
        if request.method == "DELETE":
            return self._write_one(school, Operation("", "DELETE", entity, key))
        if request.method != "PUT":
            return not_allowed("GET", "PUT", "DELETE")
        body = decode(request.body)
        if not isinstance(body, dict):
            return error(400, "badRequest", "the body must be a JSON object")
        fingerprint = body.get("fingerprint")
        return self._write_one(
            school,
            Operation(
                "",
                "PUT",
                entity,
                key,
                fingerprint if isinstance(fingerprint, str) else None,
                body.get("data"),
            ),
        )

    def _get(self, school: str, entity: str, key: str) -> Reply:
        """The live record; a deleted one is 410 with its key and deletion time only."""
        with self.lock:
            record = self.model.get(school, entity, key)
        if record is None:
            return error(404, "notFound", f"no {entity} {key}")
        if not record.live:
            return to_json(
                410,
                {
                    "type": "deleted",
                    "description": f"{entity} {key} was "
                    "deleted; only its key and deletion time are kept",
                    **record.as_json(),
                },
            )
        return to_json(200, record.as_json())

    def _write_one(self, school: str, op: Operation) -> Reply:
        applied = self._commit(school, lambda model: model.apply(school, [op]))
        if isinstance(applied, Reply):
            return applied
        result = applied.results[0]
        if not result.ok:
            return error(result.status, str(result.type), str(result.description))
        if result.status == 204:
            return Reply(204)
        with self.lock:
            record = self.model.get(school, op.entity, op.sourced_id)
        assert record is not None, "a PUT that succeeded left a record"
        return to_json(result.status, record.as_json())

    def _batch(self, request: Request, school: str) -> Reply:
        items = batch_items(decode(request.body))
        if isinstance(items, Reply):
            return items
        applied = self._commit(school, lambda model: model.apply_items(school, items))
        if isinstance(applied, Reply):
            return applied
        with self.lock:
            self.stats.batches += 1
        self.log.debug(
            "batch applied", school=school, operations=len(items), rejected=applied.rejected
        )
        return Reply(200, results_json(applied).encode())

    def _commit(self, school: str, apply: Callable[[PortalModel], Applied]) -> Applied | Reply:
        """Apply in memory (``apply`` on the model) and write through in one transaction; if
        the file fails, reload the model from it (so memory never runs ahead of disk) and
        answer 500."""
        with self.lock:
            applied = apply(self.model)
            try:
                self.file.save(school, applied.changed.values())
            except sqlite3.Error as exc:
                self.log.error("write failed; reloading", school=school, error=type(exc).__name__)
                self._reload()
                return error(500, "storageFailed", "the portal could not store the batch")
            self.stats.count(applied)
        return applied

    def _reload(self) -> None:
        self.model.clear()
        for school, record in self.file.records():
            self.model.restore(school, record)


def results_json(applied: Applied) -> str:
    """``{"results": [{"id", "status", "type", "description"}, ...]}`` as compact JSON, the
    text ``to_json`` would write, put together from one piece per distinct verdict."""
    pieces: dict[Verdict, str] = {}
    parts = []
    for op_id, verdict in zip(applied.ids, applied.verdicts, strict=True):
        tail = pieces.get(verdict)
        if tail is None:
            tail = pieces[verdict] = (
                f',"status":{verdict.status},"type":{compact_json(verdict.type)}'
                f',"description":{compact_json(verdict.description)}}}'
            )
        parts.append(f'{{"id":{compact_json(op_id)}{tail}')
    return '{"results":[' + ",".join(parts) + "]}"
