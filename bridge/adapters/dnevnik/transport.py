"""Connections that write a request's head and its body at once.

``http.client`` (and urllib3 over it) writes the head of a request, then its body: two
packets for every record the adapter creates, each a system call and a wake-up of the server
(the head alone is of no use to it). One record a request, those writes were the larger part
of the bridge's CPU a request after ``requests`` itself. :func:`write_heads_with_bodies` gives
a session's adapters pools whose connections hold the head back until the body comes, then
write both in one call. The bytes sent are the same, in the same order; only the number of
writes changes. A request through a proxy keeps urllib3's own connections.
"""

from __future__ import annotations

from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool


class OneWriteConnection(HTTPConnection):
    """An HTTP connection that sends a request's head with its body (one bytes object)."""

    _body: bytes | None = None
    _head: bytes | None = None

    def request(
        self, method: str, url: str, body: Any = None, headers: Any = None, **options: Any
    ) -> None:
        """Send the request (see urllib3); a body of bytes goes out with the head."""
        self._body = body if isinstance(body, bytes) and body else None
        self._head = None
        try:
            super().request(method, url, body=body, headers=headers, **options)
            if self._head is not None:  # no body came after all: the head on its own
                super().send(self._head)
        finally:
            self._body = self._head = None

    def send(self, data: Any) -> None:
        """Hold the head back while a body is due; then write both at once."""
        if self._body is None:
            super().send(data)
        elif self._head is None:
            self._head = bytes(data)
        else:
            head, self._head, self._body = self._head, None, None
            super().send(head + bytes(data))


class OneWriteTLSConnection(OneWriteConnection, HTTPSConnection):
    """The same over TLS (one TLS record, one write)."""


class _Pool(HTTPConnectionPool):
    ConnectionCls = OneWriteConnection


class _TLSPool(HTTPSConnectionPool):
    ConnectionCls = OneWriteTLSConnection


def write_heads_with_bodies(session: requests.Session) -> None:
    """Give the session's transport adapters the pools of :class:`OneWriteConnection`."""
    for adapter in session.adapters.values():
        if isinstance(adapter, HTTPAdapter):
            adapter.poolmanager.pool_classes_by_scheme = {"http": _Pool, "https": _TLSPool}
