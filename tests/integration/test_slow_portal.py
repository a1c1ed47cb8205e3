"""A portal that answers too slowly, over a real socket on 127.0.0.1: the client's total
deadline per request cuts off a body that drips in a byte at a time."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bridge.adapters.portal_client import PortalClient, PortalSettings
from bridge.core.errors import PortalUnavailable
from bridge.ports import Operation

DRIP_SECONDS = 0.3
DRIP_BYTES = 60  # the whole answer would take 18 s


def _drip(conn: socket.socket, stop: threading.Event) -> None:
    """Send the headers at once, then the body one byte every DRIP_SECONDS."""
    with conn:
        conn.recv(65536)
        body = b'{"access_token": "t", "token_type": "Bearer", "expires_in": 3600}'.ljust(
            DRIP_BYTES
        )
        conn.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        for byte in body:
            if stop.wait(DRIP_SECONDS):
                return
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return


@pytest.fixture
def dripping() -> Iterator[str]:
    """A server on 127.0.0.1 that drips every answer; its base URL."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            threading.Thread(target=_drip, args=(conn, stop), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join(timeout=5)
    server.close()


def test_a_dripping_answer_is_cut_off_at_the_request_deadline(dripping: str) -> None:
    """With a read timeout of 5 s, a body dripping a byte every 0.3 s (18 s in all) ends the
    request at its 1 s total deadline, as a retriable failure that runs out of attempts."""
    settings = PortalSettings(
        base_url=dripping,
        school="s",
        client_id="c",
        client_secret="x",
        read_timeout=5.0,
        request_deadline=1.0,
        max_attempts=2,
        backoff_initial=0.01,
        backoff_max=0.01,
    )
    started = time.monotonic()
    with PortalClient(settings) as client, pytest.raises(PortalUnavailable) as failed:
        client.send([Operation("1", "PUT", "subject", "1", "fp", {"name": "Математика"})])
    elapsed = time.monotonic() - started
    assert elapsed < 5.0
    assert "RequestDeadline" in str(failed.value)
    assert client.stats.outcomes["RequestDeadline"] == 2
