"""A minimal loopback sink of the import API: the transport limit, no portal behind it.

    .venv/bin/python bench/sink.py --port 8500

Speaks just enough of docs/portal-api.md for the bridge's client
(``bridge/adapters/portal_client/``) to deliver to it: ``POST /oauth/token`` gives any client a
token; ``POST /api/v1/schools/{school}/batch`` answers every operation ``201`` (without looking
inside beyond the ids); ``GET /api/v1/schools/{school}/{entity}`` lists no records;
``GET /_portal/stats`` counts requests, batches and operations. Keeps nothing. Run as a process
of its own (``bench/limits.py`` does), so it has its own interpreter and GIL.
"""

from __future__ import annotations

import argparse
import json
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TOKEN = b'{"access_token":"sink-token","token_type":"Bearer","expires_in":3600}'
EMPTY = b'{"records":[]}'
STATS = {"requests": 0, "batches": 0, "operations": 0}


class SinkHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; every answer JSON, in one write."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        STATS["requests"] += 1
        if self.path == "/oauth/token":
            self._answer(200, TOKEN)
        elif self.path.startswith("/api/") and self.path.endswith("/batch"):
            operations = json.loads(body)["operations"]
            STATS["batches"] += 1
            STATS["operations"] += len(operations)
            results = ",".join(
                '{"id":' + json.dumps(op["id"]) + ',"status":201,"type":null,"description":null}'
                for op in operations
            )
            self._answer(200, b'{"results":[' + results.encode() + b"]}")
        else:
            self._answer(404, b'{"type":"unknownResource","description":"no such path"}')

    def do_GET(self) -> None:
        STATS["requests"] += 1
        if self.path.startswith("/api/"):
            self._answer(200, EMPTY)
        elif self.path == "/_portal/stats":
            self._answer(200, json.dumps(STATS).encode())
        else:
            self._answer(404, b'{"type":"unknownResource","description":"no such path"}')

    def _answer(self, status: int, body: bytes) -> None:
        head = (
            f"HTTP/1.1 {status} {'OK' if status == 200 else 'Not Found'}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        self.wfile.write(head.encode("latin-1") + body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's name
        """Quiet."""


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8500)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), SinkHandler)
    server.daemon_threads = True
    try:
        server.serve_forever(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
