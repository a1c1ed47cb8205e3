"""The reference portal: the diary import API over HTTP (stdlib ``http.server``), for demos,
staging and tests. The wire contract is ``docs/portal-api.md`` (``docs/portal-api.yaml``).

Layers: :class:`PortalService` turns a :class:`Request` into a :class:`Reply` (auth, routing,
faults, statistics; records and rules come from :mod:`bridge.refportal.store`); a thin handler
moves bytes; :class:`ReferencePortal` owns the socket, the serving thread and the data file.
All state sits behind one lock: batches apply in memory and write through to SQLite in one
transaction each, so a restarted portal holds exactly what it acknowledged.

Logs carry counts, schools and client ids, never record data or secrets.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import secrets
import socket
import sqlite3
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, parse_qsl, unquote, urlsplit

from bridge.core.errors import ConfigError, Problem
from bridge.logs import get_logger
from bridge.ports import ENTITIES, Operation
from bridge.refportal.faults import FaultPlan, FaultSettings, parse_faults
from bridge.refportal.store import MAX_BATCH, Applied, PortalFile, PortalModel

DEMO_CLIENT = ("asiou-bridge", "demo-secret")
"""(client_id, client_secret) of the demo client."""
DEMO_CLIENTS: dict[str, tuple[str, str]] = {"demo": DEMO_CLIENT}
"""school → (client_id, client_secret) the portal accepts unless told otherwise."""

JSON = "application/json"
HTML = "text/html; charset=utf-8"
MAX_BODY = 64 * 1024 * 1024
HTML_PAGE = (
    b"<html><head><title>502 Bad Gateway</title></head><body><center>"
    b"<h1>502 Bad Gateway</h1></center><hr><center>nginx</center></body></html>\n"
)


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP request as the service needs it."""

    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    authorization: str | None = None
    body: bytes = b""


@dataclass(frozen=True, slots=True)
class Reply:
    """One answer; ``drop`` ("reset" or "lost") closes the connection instead of answering."""

    status: int
    body: bytes = b""
    content_type: str = JSON
    headers: tuple[tuple[str, str], ...] = ()
    drop: str | None = None


def to_json(status: int, value: object, *headers: tuple[str, str]) -> Reply:
    """A JSON reply."""
    body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    return Reply(status, body, JSON, headers)


def error(status: int, kind: str, description: str, *headers: tuple[str, str]) -> Reply:
    """An error reply: ``{"type": kind, "description": description}``."""
    return to_json(status, {"type": kind, "description": description}, *headers)


def unauthorized(kind: str, description: str) -> Reply:
    """A 401 with the bearer challenge."""
    return error(401, kind, description, ("WWW-Authenticate", 'Bearer error="invalid_token"'))


def not_allowed(*methods: str) -> Reply:
    """A 405 naming the methods the resource takes."""
    return error(
        405, "methodNotAllowed", f"use {' or '.join(methods)}", ("Allow", ", ".join(methods))
    )


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
        self.operations += len(applied.results)
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


def digest(token: str) -> str:
    """What the portal keeps of a token (never the token itself)."""
    return hashlib.sha256(token.encode()).hexdigest()


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
            return self._token(request)
        if request.path.startswith("/api/"):
            return self._api(request)
        if request.path.startswith("/_portal/"):
            return self._inspect(request)
        return error(404, "unknownResource", "no such path")

    # --- tokens ---------------------------------------------------------------------------

    def _token(self, request: Request) -> Reply:
        with self.lock:
            self.stats.token_requests += 1
        if request.method != "POST":
            return not_allowed("POST")
        form = {k: v[-1] for k, v in parse_qs(request.body.decode("utf-8", "replace")).items()}
        if form.get("grant_type") != "client_credentials":
            return error(400, "badRequest", "grant_type must be client_credentials")
        client_id, secret = _credentials(form, request.authorization)
        if not self._schools_of(client_id, secret):
            return error(401, "authorizationFailed", "unknown client or wrong secret")
        token = secrets.token_urlsafe(32)
        expires_at = self.clock() + self.token_ttl
        with self.lock:
            self.tokens[digest(token)] = (client_id, expires_at)
            self.file.save_token(digest(token), client_id, expires_at)
        self.log.info("token issued", client_id=client_id, expires_in=self.token_ttl)
        return to_json(
            200,
            {"access_token": token, "token_type": "Bearer", "expires_in": self.token_ttl},
            ("Cache-Control", "no-store"),
        )

    def _schools_of(self, client_id: str, secret: str | None = None) -> list[str]:
        """Schools the client may write (checking the secret when one is given)."""
        return [
            school
            for school, (cid, known) in self.clients.items()
            if cid == client_id and (secret is None or hmac.compare_digest(known, secret))
        ]

    def _authorize(self, request: Request) -> str | Reply:
        """The client id of a valid bearer token, or the 401 to answer."""
        token = _bearer_token(request.authorization)
        if not token:
            return unauthorized("authorizationFailed", "Authorization: Bearer TOKEN is required")
        with self.lock:
            entry = self.tokens.get(digest(token))
            if entry is not None:
                self.used.add(digest(token))
        if entry is None:
            return unauthorized("authorizationFailed", "unknown token")
        if self.clock() >= entry[1]:
            return unauthorized("tokenExpired", "the token has expired; get a new one")
        return entry[0]

    # --- /api -----------------------------------------------------------------------------

    def _api(self, request: Request) -> Reply:
        with self.lock:
            self.stats.api_requests += 1
            fault = self.plan.next_fault(self._is_fresh(request.authorization))
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
            self._revoke(request.authorization)
            return unauthorized("tokenExpired", "the token has expired; get a new one")
        if fault == "html":
            return Reply(502, HTML_PAGE, HTML)
        if fault == "reset":
            return Reply(0, drop="reset")
        kinds = {"500": "internalError", "502": "badGateway", "503": "serviceUnavailable"}
        return error(int(fault), kinds[fault], "the server cannot answer right now")

    def _is_fresh(self, authorization: str | None) -> bool:
        """True when the request bears a known token no request has used yet (call locked)."""
        key = digest(_bearer_token(authorization))
        return key in self.tokens and key not in self.used

    def _revoke(self, authorization: str | None) -> None:
        """Expire the presented token now: after tokenExpired it stays expired."""
        key = digest(_bearer_token(authorization))
        with self.lock:
            entry = self.tokens.get(key)
            if entry is not None:
                self.tokens[key] = (entry[0], 0.0)
                self.file.save_token(key, entry[0], 0.0)

    def _api_call(self, request: Request) -> Reply:
        client = self._authorize(request)
        if isinstance(client, Reply):
            return client
        parts = [unquote(p) for p in request.path.split("/")[1:]]
        if parts[:3] != ["api", "v1", "schools"] or len(parts) not in (5, 6):
            return error(404, "unknownResource", "no such path")
        school, entity = parts[3], parts[4]
        if school not in self._schools_of(client):
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
        body = _decode(request.body)
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
        applied = self._commit(school, [op])
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
        operations = parse_batch(_decode(request.body))
        if isinstance(operations, Reply):
            return operations
        applied = self._commit(school, operations)
        if isinstance(applied, Reply):
            return applied
        with self.lock:
            self.stats.batches += 1
        self.log.debug(
            "batch applied", school=school, operations=len(operations), rejected=applied.rejected
        )
        return to_json(
            200,
            {
                "results": [
                    {
                        "id": r.op_id,
                        "status": r.status,
                        "type": r.type,
                        "description": r.description,
                    }
                    for r in applied.results
                ]
            },
        )

    def _commit(self, school: str, operations: Sequence[Operation]) -> Applied | Reply:
        """Apply in memory and write through in one transaction; if the file fails, reload
        the model from it (so memory never runs ahead of disk) and answer 500."""
        with self.lock:
            applied = self.model.apply(school, operations)
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

    # --- /_portal (inspection, no auth, never faulted) --------------------------------------

    def _inspect(self, request: Request) -> Reply:
        name = request.path.removeprefix("/_portal/")
        readers: dict[str, Callable[[Request], Reply]] = {
            "counts": self._counts,
            "records": self._records,
            "duplicates": self._duplicates,
            "stats": self._stats,
            "faults": self._faults,
        }
        if name == "reset":
            return self._reset() if request.method == "POST" else not_allowed("POST")
        if name not in readers:
            return error(404, "unknownResource", "no such inspection endpoint")
        if name == "faults" and request.method == "POST":
            return self._set_faults(request)
        return readers[name](request) if request.method == "GET" else not_allowed("GET")

    def _counts(self, _: Request) -> Reply:
        with self.lock:
            names = sorted(set(self.clients) | set(self.model.schools))
            counts = {s: {e: len(self.model.fingerprints(s, e)) for e in ENTITIES} for s in names}
        return to_json(200, counts)

    def _records(self, request: Request) -> Reply:
        school, entity = request.query.get("school"), request.query.get("entity")
        if not school or not entity:
            return error(400, "badRequest", "give ?school=S&entity=E")
        if entity not in ENTITIES:
            return error(404, "unknownResource", f"no resource {entity}")
        with self.lock:
            records = [r.as_json() for r in self.model.records(school, entity)]
        return to_json(200, {"records": records})

    def _duplicates(self, _: Request) -> Reply:
        with self.lock:
            return to_json(200, {"duplicates": self.model.duplicates()})

    def _stats(self, _: Request) -> Reply:
        with self.lock:
            return to_json(200, self.stats.as_json())

    def _faults(self, _: Request) -> Reply:
        with self.lock:
            return to_json(
                200,
                {**self.plan.settings.as_json(), "remaining_script": self.plan.remaining_script},
            )

    def _set_faults(self, request: Request) -> Reply:
        try:
            settings = parse_faults(_decode(request.body), "/_portal/faults")
        except ConfigError as exc:
            return error(400, "badRequest", "; ".join(str(p) for p in exc.problems))
        with self.lock:
            self.plan = FaultPlan(settings, self.seed)
        self.log.info("faults set", kinds=sorted(settings.rates), script=len(settings.script))
        return to_json(200, settings.as_json())

    def _reset(self) -> Reply:
        with self.lock:
            self.model.clear()
            self.file.clear()
            self.stats = Stats()
        self.log.info("data reset")
        return Reply(204)


def _bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer TOKEN`` header, or ""."""
    scheme, _, token = (authorization or "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _credentials(form: Mapping[str, str], authorization: str | None) -> tuple[str, str]:
    """client_id and client_secret from the form, or from HTTP Basic auth."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() == "basic" and "client_id" not in form:
        try:
            pair = base64.b64decode(encoded.strip(), validate=True).decode()
        except ValueError:
            return "", ""
        client_id, _, secret = pair.partition(":")
        return unquote(client_id), unquote(secret)
    return form.get("client_id", ""), form.get("client_secret", "")


def _decode(body: bytes) -> object:
    """The body's JSON, or None when it is not JSON at all."""
    try:
        return json.loads(body)
    except ValueError:
        return None


def parse_batch(body: object) -> list[Operation] | Reply:
    """The operations of a batch body, or the 400/413 to answer. An operation with a bad method,
    entity or data still becomes an Operation: it gets its own per-operation rejection."""
    if not isinstance(body, dict) or not isinstance(body.get("operations"), list):
        return error(400, "badRequest", 'the body must be {"operations": [...]}')
    items: list[object] = body["operations"]
    if len(items) > MAX_BATCH:
        return error(413, "batchTooLarge", f"{len(items)} operations; at most {MAX_BATCH}")
    operations = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            return error(400, "badRequest", f"operations[{index}] needs an id string")
        operations.append(
            Operation(
                item["id"],
                _text(item, "method"),
                _text(item, "entity"),
                _text(item, "sourcedId"),
                item.get("fingerprint") if isinstance(item.get("fingerprint"), str) else None,
                item.get("data"),
            )
        )
    return operations


def _text(item: Mapping[str, object], name: str) -> str:
    value = item.get(name)
    return value if isinstance(value, str) else ""


# --- HTTP ------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    """Moves bytes between the socket and the service; HTTP/1.1 with keep-alive."""

    protocol_version = "HTTP/1.1"
    timeout = 120  # an idle keep-alive connection is closed after two minutes
    server: _Server

    def do_GET(self) -> None:
        """Serve a GET."""
        self._serve()

    def do_POST(self) -> None:
        """Serve a POST."""
        self._serve()

    def do_PUT(self) -> None:
        """Serve a PUT."""
        self._serve()

    def do_DELETE(self) -> None:
        """Serve a DELETE."""
        self._serve()

    def do_PATCH(self) -> None:
        """Answer a PATCH (always 405: no resource takes one)."""
        self._serve()

    def _serve(self) -> None:
        body = self._read_body()
        if body is None:
            return
        url = urlsplit(self.path)
        request = Request(
            self.command,
            url.path,
            dict(parse_qsl(url.query)),
            self.headers.get("Authorization"),
            body,
        )
        try:
            reply = self.server.service.handle(request)
        except Exception as exc:  # noqa: BLE001 - any failure must still get a JSON 500
            self.server.service.log.error(
                "request failed", path=url.path.split("/")[1:3], error=type(exc).__name__
            )
            reply = error(500, "internalError", "the portal failed on this request")
        if reply.drop is not None:
            self._drop(reply.drop)
            return
        try:
            self._write(reply)
        except OSError:
            self.close_connection = True  # the client went away (after a slow answer, say)

    def _read_body(self) -> bytes | None:
        """The request body, or None after answering 411/413 (and closing)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._refuse(error(411, "lengthRequired", "send a Content-Length"))
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self._refuse(error(413, "payloadTooLarge", f"bodies up to {MAX_BODY} bytes"))
            return None
        return self.rfile.read(length)

    def _refuse(self, reply: Reply) -> None:
        self.close_connection = True
        self._write(replace(reply, headers=(*reply.headers, ("Connection", "close"))))

    def setup(self) -> None:
        """Small answers go out at once (no Nagle delay waiting for the client's ACK)."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _write(self, reply: Reply) -> None:
        """Status line, headers and body in one write."""
        phrase = self.responses.get(reply.status, ("",))[0]
        lines = [
            f"{self.protocol_version} {reply.status} {phrase}",
            f"Server: {self.version_string()}",
            f"Date: {self.date_time_string()}",
            *(f"{name}: {value}" for name, value in reply.headers),
        ]
        if reply.status != 204:
            lines += [f"Content-Type: {reply.content_type}", f"Content-Length: {len(reply.body)}"]
        head = "\r\n".join([*lines, "", ""]).encode("latin-1")
        self.wfile.write(head + reply.body if reply.status != 204 else head)

    def _drop(self, kind: str) -> None:
        """Close without answering; ``reset`` aborts the connection (RST) instead of FIN."""
        self.close_connection = True
        if kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()  # takes effect once the handler's file objects close

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Errors http.server raises itself (bad request line, unknown method) as JSON too."""
        self.close_connection = True
        kind = "notImplemented" if code == 501 else "badRequest"
        reply = error(code, kind, message or explain or "bad request", ("Connection", "close"))
        try:
            self._write(reply)
        except OSError:
            return

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        """Per-request lines stay off: the service logs summaries (ids and counts only)."""


class _Server(ThreadingHTTPServer):
    """A threading HTTP server that knows its open connections, so ``stop`` can end them."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: PortalService) -> None:
        super().__init__(address, _Handler)
        self.service = service
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()

    def process_request(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        """Remember the connection, then serve it on its own thread."""
        if isinstance(request, socket.socket):
            with self.connections_lock:
                self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket | tuple[bytes, socket.socket]) -> None:
        """Forget the connection and close it."""
        if isinstance(request, socket.socket):
            with self.connections_lock:
                self.connections.discard(request)
        super().shutdown_request(request)

    def end_connections(self) -> None:
        """Shut every open connection down, so each handler thread ends."""
        with self.connections_lock:
            open_now = list(self.connections)
        for connection in open_now:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                continue  # already closed by its handler


class ReferencePortal:
    """The reference portal on ``host:port`` (port 0 picks a free one; see ``url``), with its
    records in the SQLite file ``data_path`` (None: in memory only).

    ``clients`` maps a school to the (client_id, client_secret) allowed to write it (default:
    school ``demo``, client ``asiou-bridge``, secret ``demo-secret``). ``faults`` is a settings
    object or its JSON (see :mod:`bridge.refportal.faults`); ``seed`` seeds the fault RNG unless the
    settings carry their own. ``clock`` (epoch seconds) decides token expiry; ``sleep`` serves
    the ``slow`` fault (default: a wait that ``stop`` interrupts)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        data_path: str | Path | None = None,
        *,
        clients: Mapping[str, tuple[str, str]] | None = None,
        faults: FaultSettings | Mapping[str, Any] | None = None,
        token_ttl: int = 3600,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        settings = faults if isinstance(faults, FaultSettings | None) else parse_faults(faults)
        self._stopping = threading.Event()
        self._file = PortalFile(data_path)
        self.service = PortalService(
            self._file,
            clients or DEMO_CLIENTS,
            faults=settings,
            token_ttl=token_ttl,
            seed=seed,
            clock=clock,
            sleep=sleep or self._stopping.wait,
        )
        try:
            self._server = _Server((host, port), self.service)
        except OSError:
            self._file.close()
            raise
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self._thread: threading.Thread | None = None
        self._serving = self._stopped = False
        self._stop_lock = threading.Lock()

    def start(self) -> ReferencePortal:
        """Serve on a background thread; returns self."""
        self._serving = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="reference-portal", daemon=True
        )
        self._thread.start()
        self.service.log.info("portal started", url=self.url, schools=len(self.service.clients))
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until ``stop`` is called from another (or Ctrl-C); the portal
        is stopped when this returns."""
        self._serving = True
        self.service.log.info("portal serving", url=self.url, schools=len(self.service.clients))
        try:
            self._server.serve_forever(0.2)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, end open connections, wait for their threads, close the data file.
        Idempotent."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._stopping.set()  # wakes requests sleeping in a ``slow`` fault
        if self._serving:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join()
        self._server.end_connections()
        self._server.server_close()  # joins the handler threads
        self._file.close()
        self.service.log.info("portal stopped", url=self.url)

    def __enter__(self) -> ReferencePortal:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


# --- the command -----------------------------------------------------------------------------


def load_json(path: str | Path, what: str) -> object:
    """A JSON file's content; ConfigError naming the file when unreadable or not JSON."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError([Problem(str(path), "", f"cannot read {what}: {exc}")]) from exc


def load_clients(path: str | Path) -> dict[str, tuple[str, str]]:
    """Clients from ``{"school": {"client_id": "...", "client_secret": "..."}}``; every problem
    reported at once."""
    raw = load_json(path, "clients")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError([Problem(str(path), "", "must be a non-empty JSON object")])
    clients, problems = {}, []
    for school, entry in raw.items():
        pair = [
            entry.get(k) if isinstance(entry, dict) else None
            for k in ("client_id", "client_secret")
        ]
        if all(isinstance(v, str) and v for v in pair):
            clients[school] = (str(pair[0]), str(pair[1]))
        else:
            problems.append(Problem(str(path), school, "needs client_id and client_secret"))
    if problems:
        raise ConfigError(problems)
    return clients


def serve(
    host: str = "127.0.0.1",
    port: int = 8400,
    data: str | Path = "portal.sqlite",
    faults_file: str | Path | None = None,
    *,
    clients_file: str | Path | None = None,
    token_ttl: int = 3600,
    seed: int = 0,
) -> int:
    """Run the reference portal in the foreground until interrupted; returns the exit code.
    Raises ConfigError for an unreadable or invalid faults or clients file."""
    faults = (
        parse_faults(load_json(faults_file, "faults"), str(faults_file)) if faults_file else None
    )
    clients = load_clients(clients_file) if clients_file else None
    portal = ReferencePortal(
        host, port, data, clients=clients, faults=faults, token_ttl=token_ttl, seed=seed
    )
    try:
        portal.serve_forever()
    except KeyboardInterrupt:
        portal.service.log.info("interrupted")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bridge.refportal.server [--host H] [--port P] [--data FILE] [--faults FILE]
    [--clients FILE] [--token-ttl S] [--seed N]``."""
    parser = argparse.ArgumentParser(
        prog="asiou-bridge portal", description="Run the reference diary import API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8400)
    parser.add_argument("--data", default="portal.sqlite", help="SQLite file of the records")
    parser.add_argument("--faults", help="JSON file of fault settings")
    parser.add_argument("--clients", help="JSON file: school → client_id, client_secret")
    parser.add_argument("--token-ttl", type=int, default=3600, help="token lifetime, seconds")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")
    args = parser.parse_args(argv)
    return serve(
        args.host,
        args.port,
        args.data,
        args.faults,
        clients_file=args.clients,
        token_ttl=args.token_ttl,
        seed=args.seed,
    )


if __name__ == "__main__":
    raise SystemExit(main())
