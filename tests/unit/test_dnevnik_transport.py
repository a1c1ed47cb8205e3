"""The dnevnik.ru adapter's connections write a request's head and body in one call (the same
bytes as urllib3's own connection, in fewer writes)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from urllib3.connection import HTTPConnection

from bridge.adapters.dnevnik.transport import OneWriteConnection, write_heads_with_bodies


class Wire:
    """A socket that records each write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def settimeout(self, _: Any) -> None:
        return None


def sent(connection_class: type[HTTPConnection], body: bytes | None) -> list[bytes]:
    connection = connection_class("portal.test", 80)
    wire = Wire()
    connection.sock = wire  # type: ignore[assignment]
    headers = {"Content-Type": "application/json"} if body else {}
    connection.request("POST" if body else "GET", "/v2/lessons", body=body, headers=headers)
    return wire.writes


@pytest.mark.parametrize("body", [b'{"subject":9}', None])
def test_the_head_and_the_body_go_out_in_one_write_as_the_same_bytes(body: bytes | None) -> None:
    """One write a request (two with urllib3's connection when there is a body), same bytes."""
    ours, theirs = sent(OneWriteConnection, body), sent(HTTPConnection, body)
    assert len(ours) == 1
    assert len(theirs) == (2 if body else 1)
    assert ours[0] == b"".join(theirs)


def test_the_adapter_session_gets_the_pools_of_those_connections() -> None:
    """Every transport adapter of the session makes its pools of one-write connections."""
    session = requests.Session()
    write_heads_with_bodies(session)
    pool = session.get_adapter("http://portal.test/").poolmanager.connection_from_url(
        "http://portal.test/v2/"
    )
    assert pool.ConnectionCls is OneWriteConnection
    session.close()
