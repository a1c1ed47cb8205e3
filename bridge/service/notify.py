"""The systemd notify protocol (``sd_notify(3)``) in a few lines, with no dependency.

Under ``Type=notify`` systemd passes the daemon ``$NOTIFY_SOCKET``, the address of a Unix
datagram socket, and with ``WatchdogSec=`` also ``$WATCHDOG_USEC`` (and ``$WATCHDOG_PID``). The
daemon sends one datagram per message, newline-separated ``KEY=value`` lines:

    READY=1         start-up finished (``systemctl start`` returns)
    STATUS=text     one line shown by ``systemctl status``
    WATCHDOG=1      still alive; due at least every ``WATCHDOG_USEC``
    STOPPING=1      shutting down

A ``NOTIFY_SOCKET`` beginning with ``@`` names a socket in the abstract namespace. Without
``NOTIFY_SOCKET`` (a terminal, a test, another init system) every method does nothing. Sending
never raises: the daemon's work matters more than telling systemd about it. The first failed send
is logged (event and errno only); the rest are not, so a watchdog ping every minute cannot flood
the journal.

The environment is passed in (``Notifier.from_env(os.environ)``), never read here.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

NOTIFY_SOCKET = "NOTIFY_SOCKET"
WATCHDOG_USEC = "WATCHDOG_USEC"
WATCHDOG_PID = "WATCHDOG_PID"


class Notifier:
    """Sends state changes to systemd over its notify socket, or does nothing without one."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        """``address`` as in ``$NOTIFY_SOCKET`` (``@name`` is abstract); ``None`` disables."""
        self._address = _socket_address(address) if address else None
        self._watchdog_usec = watchdog_usec
        self._failure_logged = False

    @classmethod
    def from_env(cls, env: Mapping[str, str], pid: int | None = None) -> Notifier:
        """A notifier for the process ``pid`` (default: this one) from systemd's variables.

        The watchdog is ignored when ``$WATCHDOG_PID`` names another process (the variables were
        inherited from a parent) or ``$WATCHDOG_USEC`` is not a positive whole number.
        """
        own_pid = os.getpid() if pid is None else pid
        usec = _positive_int(env.get(WATCHDOG_USEC))
        watchdog_pid = env.get(WATCHDOG_PID)
        if watchdog_pid is not None and _positive_int(watchdog_pid) != own_pid:
            usec = None
        return cls(env.get(NOTIFY_SOCKET) or None, usec)

    @property
    def enabled(self) -> bool:
        """Whether there is a notify socket to send to."""
        return self._address is not None

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half the timeout), or ``None`` without a watchdog."""
        if self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2 / 1_000_000

    def ready(self) -> None:
        """Tell systemd that start-up is complete."""
        self._send("READY=1")

    def status(self, text: str) -> None:
        """Show ``text`` in ``systemctl status``; line breaks become spaces."""
        self._send("STATUS=" + " ".join(text.splitlines()).strip())

    def watchdog(self) -> None:
        """Tell systemd the daemon is alive."""
        self._send("WATCHDOG=1")

    def stopping(self) -> None:
        """Tell systemd that shutdown has begun."""
        self._send("STOPPING=1")

    def _send(self, message: str) -> None:
        if self._address is None:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # Non-blocking: a full socket buffer costs one message, never a stalled daemon.
                sock.sendto(message.encode("utf-8"), socket.MSG_DONTWAIT, self._address)
        except OSError as exc:
            self._log_failure(exc)

    def _log_failure(self, exc: OSError) -> None:
        if self._failure_logged:
            return
        self._failure_logged = True
        structlog.get_logger().warning("notify.send_failed", errno=exc.errno)


def _socket_address(address: str) -> str:
    """``@name`` is the abstract socket ``\\0name``; anything else is a file system path."""
    return "\0" + address[1:] if address.startswith("@") else address


def _positive_int(value: str | None) -> int | None:
    """``value`` as a whole number above zero, else ``None``."""
    if value is None:
        return None
    try:
        number = int(value)
    except ValueError:
        return None
    return number if number > 0 else None
