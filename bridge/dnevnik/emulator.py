"""The emulator as an object: :class:`DnevnikEmulator` owns the socket, the serving thread and
the data file (``start``/``serve_forever``/``stop``, or a ``with`` block), and offers the
inspection facts to tests as methods. :class:`EmulatorHandler` is the reference portal's HTTP
handler with the emulator's request (the ``Access-Token`` header, repeated query keys, the
body's content type) and its 500 envelope.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qs, unquote

from bridge.dnevnik import inspection
from bridge.dnevnik.seed import Mismatch
from bridge.dnevnik.service import DEMO_TOKEN, DnevnikService
from bridge.dnevnik.store import EmulatorFile
from bridge.dnevnik.wire import ApiRequest, api_error
from bridge.refportal.faults import FaultSettings, parse_faults
from bridge.refportal.handler import PortalHandler, PortalHTTPServer
from bridge.refportal.wire import Reply


class EmulatorHandler(PortalHandler):
    """HTTP/1.1 with keep-alive; builds :class:`ApiRequest` (path segments unquoted, so a
    date-time with a space arrives as sent)."""

    def build_request(self, url: SplitResult, body: bytes) -> ApiRequest:
        """The emulator's request for this HTTP request."""
        return ApiRequest(
            self.command,
            unquote(url.path),
            parse_qs(url.query, keep_blank_values=True),
            self.headers.get("Access-Token"),
            body,
            (self.headers.get("Content-Type") or "").lower(),
        )

    def failure_reply(self) -> Reply:
        """``apiServerError``, as the API answers its own failures."""
        return api_error("apiServerError", "the server failed on this request")


class DnevnikEmulator:
    """The emulator on ``host:port`` (port 0 picks a free one; see ``url`` and ``api_url``),
    its objects in the SQLite file ``data_path`` (None: in memory only; a new or in-memory file
    needs ``seed_school``). ``tokens``: the accepted Access-Tokens (default
    :data:`DEMO_TOKEN`); ``faults``: settings or their JSON (the reference portal's format)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        data_path: str | Path | None = None,
        *,
        seed_school: str | Path | None = None,
        tokens: Iterable[str] = (DEMO_TOKEN,),
        faults: FaultSettings | Mapping[str, Any] | None = None,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        settings = faults if isinstance(faults, FaultSettings | None) else parse_faults(faults)
        self._stopping = threading.Event()
        self._file = EmulatorFile(data_path)
        try:
            self.service = DnevnikService(
                self._file, tokens, seed_school=None if seed_school is None else str(seed_school),
                faults=settings, seed=seed, clock=clock, sleep=sleep or self._stopping.wait,
            )  # fmt: skip
            self._server = PortalHTTPServer((host, port), self.service, EmulatorHandler)
        except BaseException:
            self._file.close()
            raise
        self.url = f"http://{host}:{self._server.server_address[1]}"
        self.api_url = f"{self.url}/v2/"
        self._thread: threading.Thread | None = None
        self._serving = self._stopped = False
        self._stop_lock = threading.Lock()

    # --- for tests ----------------------------------------------------------------------------

    @property
    def school_id(self) -> int:
        """The id of the emulator's school."""
        return int(self.service.journal.school["id"])

    def mismatches(self) -> list[Mismatch]:
        """The mismatches injected when the contingent was seeded."""
        return list(self.service.seeded.mismatches)

    def portal_id(self, table: str, asiou_id: int) -> int | None:
        """The portal id seeded for an ASIOU row (``pupil``, ``teacher``, ``class_unit``,
        ``class_group``, ``subject``), or None (a pupil missing on the portal)."""
        return self.service.seeded.portal_ids.get(table, {}).get(asiou_id)

    def state(self) -> dict[str, Any]:
        """What ``GET /_emulator/state`` answers."""
        with self.service.lock:
            return inspection.state(self.service)

    def counts(self) -> dict[str, int]:
        """Objects per kind."""
        with self.service.lock:
            return self.service.journal.counts()

    # --- running ------------------------------------------------------------------------------

    def start(self) -> DnevnikEmulator:
        """Serve on a background thread; returns self."""
        self._serving = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="dnevnik-emulator", daemon=True
        )
        self._thread.start()
        self.service.log.info("emulator started", url=self.url, school=self.school_id)
        return self

    def serve_forever(self) -> None:
        """Serve on this thread until ``stop`` is called from another (or Ctrl-C)."""
        self._serving = True
        self.service.log.info("emulator serving", url=self.url, school=self.school_id)
        try:
            self._server.serve_forever(0.2)
        finally:
            self.stop()

    def stop(self) -> None:
        """Stop serving, end open connections, close the data file. Idempotent."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
        self._stopping.set()
        if self._serving:
            self._server.shutdown()
        if self._thread is not None:
            self._thread.join()
        self._server.end_connections()
        self._server.server_close()
        self._file.close()
        self.service.log.info("emulator stopped", url=self.url)

    def __enter__(self) -> DnevnikEmulator:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
