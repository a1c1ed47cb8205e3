"""The reference portal: the diary import API over HTTP (stdlib ``http.server``), for demos,
staging and tests. The wire contract is ``docs/portal-api.md`` (``docs/portal-api.yaml``).

This module is the program: ``python -m bridge.refportal.server`` (:func:`main`, the argument
parsing, the clients and faults files) and :func:`serve`. It also re-exports the names the rest
of the code imports from here (:data:`DEMO_CLIENT`, :class:`ReferencePortal`, ...).

The package's layers: :class:`PortalService` (:mod:`bridge.refportal.service`) turns a
:class:`Request` into a :class:`Reply` (:mod:`bridge.refportal.wire`) with auth
(:mod:`bridge.refportal.auth`), routing, faults and statistics
(:mod:`bridge.refportal.inspection`); records and rules come from :mod:`bridge.refportal.store`.
A thin handler (:mod:`bridge.refportal.handler`) moves bytes; :class:`ReferencePortal`
(:mod:`bridge.refportal.portal`) owns the socket, the serving thread and the data file.
All state sits behind one lock: batches apply in memory and write through to SQLite in one
transaction each, so a restarted portal holds exactly what it acknowledged.

Logs carry counts, schools and client ids, never record data or secrets.
"""

from __future__ import annotations

import argparse
import gc
import json
from collections.abc import Sequence
from pathlib import Path

from bridge import logs
from bridge.core.errors import ConfigError, Problem
from bridge.refportal.auth import DEMO_CLIENT, DEMO_CLIENTS
from bridge.refportal.faults import parse_faults
from bridge.refportal.portal import ReferencePortal
from bridge.refportal.service import PortalService
from bridge.refportal.wire import Reply, Request

__all__ = [
    "DEMO_CLIENT",
    "DEMO_CLIENTS",
    "PortalService",
    "ReferencePortal",
    "Reply",
    "Request",
    "load_clients",
    "load_json",
    "main",
    "serve",
]


GC_THRESHOLDS = (100_000, 50, 100)
"""The program's garbage-collector thresholds (Python's are 700, 10, 10): the portal keeps every
record in memory and a batch allocates thousands of objects, few of them cycles, so collecting
less often saves about a sixth of its CPU per batch; cycles are still collected, later."""


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
    gc.set_threshold(*GC_THRESHOLDS)
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
    logs.configure()  # as `asiou-bridge portal` does: info and up, JSON lines off a terminal
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
