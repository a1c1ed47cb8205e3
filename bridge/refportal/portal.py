"""The reference portal as an object: :class:`ReferencePortal` owns the socket, the serving
thread and the data file, and stops them all (``start``/``serve_forever``/``stop``, or a
``with`` block).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bridge.refportal.auth import DEMO_CLIENTS
from bridge.refportal.datafile import PortalFile
from bridge.refportal.faults import FaultSettings, parse_faults
from bridge.refportal.handler import PortalHTTPServer, ReferencePortalHandler
from bridge.refportal.service import PortalService


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
            self._server = PortalHTTPServer((host, port), self.service, ReferencePortalHandler)
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
