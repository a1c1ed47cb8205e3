"""The reference portal's HTTP layer (stdlib ``http.server``): :class:`PortalHandler` moves
bytes between a socket and the :class:`PortalService` (HTTP/1.1, keep-alive, JSON errors,
dropped connections for the ``reset`` and ``lost`` faults), :class:`ReferencePortalHandler`
adds the reference portal's 405 for OPTIONS, TRACE and QUERY; :class:`PortalHTTPServer` tracks
open connections so the portal can end them on stop.
"""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import SplitResult, parse_qsl, urlsplit

from bridge.refportal.wire import Reply, Request, error

MAX_BODY = 64 * 1024 * 1024


class Service(Protocol):
    """What the HTTP layer needs of a service: ``handle(request) -> reply`` and a logger.
    :class:`~bridge.refportal.service.PortalService` is one; the dnevnik.ru emulator's service
    (:mod:`bridge.dnevnik.service`) is another, with a request of its own."""

    log: Any

    def handle(self, request: Any) -> Reply:
        """Answer one request."""
        ...


class PortalHandler(BaseHTTPRequestHandler):
    """Moves bytes between the socket and the service; HTTP/1.1 with keep-alive."""

    protocol_version = "HTTP/1.1"
    timeout = 120  # an idle keep-alive connection is closed after two minutes
    server: PortalHTTPServer

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
        try:
            reply = self.server.service.handle(self.build_request(url, body))
        except Exception as exc:  # noqa: BLE001 - any failure must still get a JSON 500
            self.server.service.log.error(
                "request failed", path=url.path.split("/")[1:3], error=type(exc).__name__
            )
            reply = self.failure_reply()
        if reply.drop is not None:
            self._drop(reply.drop)
            return
        try:
            self._write(reply)
        except OSError:
            self.close_connection = True  # the client went away (after a slow answer, say)

    def build_request(self, url: SplitResult, body: bytes) -> Any:
        """The service's request for this HTTP request (a subclass builds its own kind)."""
        return Request(
            self.command, url.path, dict(parse_qsl(url.query)), self.headers.get("Authorization"),
            body,
        )  # fmt: skip

    def failure_reply(self) -> Reply:
        """The 500 answered when the service raised."""
        return error(500, "internalError", "the portal failed on this request")

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


class ReferencePortalHandler(PortalHandler):
    """The reference portal's handler: methods no path takes (OPTIONS, TRACE, QUERY) reach the
    service too, which answers 405 with ``Allow`` as for PATCH, where ``http.server`` alone
    answers 501 (a server error, docs/portal-api.yaml lists neither)."""

    def do_OPTIONS(self) -> None:
        """Answer an OPTIONS (405 naming the methods the path takes)."""
        self._serve()

    def do_TRACE(self) -> None:
        """Answer a TRACE (405: nothing is echoed back)."""
        self._serve()

    def do_QUERY(self) -> None:
        """Answer a QUERY (the safe method with a body; 405: no path takes one)."""
        self._serve()


class PortalHTTPServer(ThreadingHTTPServer):
    """A threading HTTP server that knows its open connections, so ``stop`` can end them."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        service: Service,
        handler: type[PortalHandler] | None = None,
    ) -> None:
        super().__init__(address, handler or PortalHandler)
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
