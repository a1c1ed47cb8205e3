"""The emulator's API without sockets: :class:`DnevnikService` turns an :class:`ApiRequest`
into a :class:`Reply`: the ``Access-Token`` check, fault injection (the reference portal's
:class:`~bridge.refportal.faults.FaultPlan` and kinds), routing to :mod:`bridge.dnevnik.routes`,
the error envelope, write-through of every write, and the ``/_emulator`` inspection endpoints
(:mod:`bridge.dnevnik.inspection`).

Errors: a rejection by the journal (``ParameterInvalidError``) → 400 ``parameterInvalid``; a
missing or unknown token → 401 ``authorizationFailed``; a path the API does not have → 404
HTML page; a method a path does not take → 405 ``methodNotAllowed``; a failed write to the
file → 500 ``apiServerError``.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from typing import Any

from bridge.core.errors import ConfigError, Problem
from bridge.dnevnik import inspection, routes
from bridge.dnevnik.journal import Change, Journal, Obj, ParameterInvalidError
from bridge.dnevnik.seed import Seeded, read_school, seed
from bridge.dnevnik.store import EmulatorFile
from bridge.dnevnik.wire import ApiRequest, api_error, html_page
from bridge.logs import get_logger
from bridge.refportal.faults import FaultPlan, FaultSettings
from bridge.refportal.wire import Reply, error, to_json

DEMO_TOKEN = "dnevnik-demo-token"  # noqa: S105 - the documented token of the demo, not a secret
"""The token the emulator accepts unless told otherwise."""
PREFIXES = ("/v2/", "/v2.0/")


@dataclass
class Stats:
    """Request counts since start (or the last reset)."""

    requests: int = 0
    api_requests: int = 0
    by_route: Counter[str] = field(default_factory=Counter)
    writes: Counter[str] = field(default_factory=Counter)
    rejected: int = 0
    faults: Counter[str] = field(default_factory=Counter)

    def as_json(self) -> dict[str, Any]:
        """The counts as ``GET /_emulator/stats`` shows them."""
        return {
            "requests": self.requests, "api_requests": self.api_requests,
            "by_route": dict(sorted(self.by_route.items())),
            "writes": dict(sorted(self.writes.items())), "rejected": self.rejected,
            "faults": dict(sorted(self.faults.items())),
        }  # fmt: skip


class DnevnikService:
    """The API without sockets: ``handle(request) -> reply``. Thread-safe (one lock).

    A new data file needs ``seed_school`` (an ASIOU SQLite file); its contingent and
    mismatches are written to the file before anything is served. ``clock`` (epoch seconds)
    stamps log entries; ``sleep`` serves the ``slow`` fault."""

    def __init__(
        self,
        file: EmulatorFile,
        tokens: Iterable[str] = (DEMO_TOKEN,),
        *,
        seed_school: str | None = None,
        faults: FaultSettings | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        self.file, self.tokens = file, frozenset(tokens)
        self.seed, self.clock, self.sleep = seed, clock, sleep
        self.log = get_logger(component="dnevnik-emulator")
        self.plan = FaultPlan(faults, seed)
        self.stats = Stats()
        self.lock = threading.Lock()
        self.journal = Journal()
        self.seeded = self._load(seed_school)
        self.user_id = int(self.journal.school["id"])

    def _load(self, seed_school: str | None) -> Seeded:
        if not self.file.is_new:
            for kind, obj in self.file.objects():
                self.journal.restore(kind, obj)
            self.journal.next_id = max(self.journal.next_id, int(self.file.meta("next_id")))
            return Seeded.from_json(self.file.meta("seeded"))
        if seed_school is None:
            raise ConfigError([Problem(self.file.path, "", "a new data file needs --seed-school")])
        seeded = seed(self.journal, read_school(seed_school))
        changes: list[Change] = [
            (kind, oid, obj) for kind, objs in self.journal.objects.items() for oid, obj in
            objs.items()
        ]  # fmt: skip
        self.file.save(changes, {"seeded": seeded.as_json(), "next_id": self.journal.next_id})
        self.log.info("seeded", mismatches=len(seeded.mismatches), **self.journal.counts())
        return seeded

    def now(self) -> str:
        """The clock's time as the API writes it (UTC, seconds)."""
        return dt.datetime.fromtimestamp(self.clock(), dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")

    # --- requests ---------------------------------------------------------------------------

    def handle(self, request: ApiRequest) -> Reply:
        """Answer one request (``/v2/...`` or ``/_emulator/...``)."""
        with self.lock:
            self.stats.requests += 1
        if request.path.startswith("/_emulator/"):
            return inspection.inspect(self, request)
        prefix = next((p for p in PREFIXES if request.path.startswith(p)), None)
        if prefix is None:
            return html_page(404, "Страница не найдена", "Такой страницы нет")
        with self.lock:
            self.stats.api_requests += 1
            fault = self.plan.next_fault()
            if fault is not None:
                self.stats.faults[fault] += 1
        if fault is None or fault in ("slow", "lost"):
            if fault == "slow":
                self.sleep(self.plan.settings.slow_seconds)
            reply = self._call(request, request.path.removeprefix(prefix).strip("/"))
            return replace(reply, drop="lost") if fault == "lost" else reply
        return self._fault_reply(fault)

    def _fault_reply(self, fault: str) -> Reply:
        seconds = self.plan.retry_after_seconds()
        if fault in ("429", "429-date"):
            when = (
                str(seconds)
                if fault == "429"
                else formatdate(-(-self.clock() // 1) + seconds, usegmt=True)
            )
            return error(
                429, "apiRequestLimit", f"too many requests; retry after {when}",
                ("Retry-After", when),
            )  # fmt: skip
        if fault == "token-expired":
            return api_error("authorizationFailed", "the access token is not valid (expired)")
        if fault == "html":
            return html_page(502, "Сервис временно недоступен", "Ведутся технические работы")
        if fault == "reset":
            return Reply(0, drop="reset")
        kinds = {"500": "apiServerError", "502": "apiUnknownError", "503": "apiUnknownError"}
        return error(int(fault), kinds[fault], "the server cannot answer right now")

    def _call(self, request: ApiRequest, path: str) -> Reply:
        if not request.token or request.token not in self.tokens:
            return api_error(
                "authorizationFailed", "an Access-Token header with a valid token is required"
            )
        found = routes.match(request.method, path)
        if isinstance(found, list):
            if not found:
                return html_page(404, "Страница не найдена", f"Метода {path} нет в API")
            return error(405, "methodNotAllowed", f"use {' or '.join(found)}",
                         ("Allow", ", ".join(found)))  # fmt: skip
        name, endpoint, params = found
        with self.lock:
            self.stats.by_route[name] += 1
        try:
            return endpoint(self, request, params)
        except ParameterInvalidError as exc:
            with self.lock:
                self.stats.rejected += 1
            return api_error("parameterInvalid", exc.description)

    def commit(
        self,
        kind: str,
        apply: Callable[[Journal], tuple[Obj, list[Change]]],
        view: Callable[[Journal, Obj], object],
    ) -> Reply:
        """Apply a write to the journal and the file in one step, then answer its object. If
        the file fails, the journal is reloaded from it (memory never runs ahead of disk)."""
        with self.lock:
            obj, changes = apply(self.journal)
            try:
                self.file.save(changes, {"next_id": self.journal.next_id})
            except sqlite3.Error as exc:
                self.log.error("write failed; reloading", kind=kind, error=type(exc).__name__)
                self._reload()
                return api_error("apiServerError", "the write could not be stored")
            self.stats.writes[kind] += 1
            body = view(self.journal, obj)
        self.log.debug("written", kind=kind, id=obj["id"], changes=len(changes))
        return to_json(200, body)

    def _reload(self) -> None:
        self.journal = Journal()
        for kind, obj in self.file.objects():
            self.journal.restore(kind, obj)
        self.journal.next_id = max(self.journal.next_id, int(self.file.meta("next_id")))

    def reset_journal(self) -> int:
        """Remove every lesson, work, mark and log entry; how many objects went."""
        with self.lock:
            changes = self.journal.clear_journal()
            self.file.save(changes, {"next_id": self.journal.next_id})
            self.stats = Stats()
        self.log.info("journal reset", removed=len(changes))
        return len(changes)
