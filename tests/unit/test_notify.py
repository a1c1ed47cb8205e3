"""The systemd notify protocol against real Unix datagram sockets standing in for systemd."""

from __future__ import annotations

import errno
import os
import secrets
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from bridge.service.notify import Notifier


@pytest.fixture
def systemd_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket bound in ``tmp_path``, and its address as ``$NOTIFY_SOCKET`` says it."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(2)
        yield sock, str(path)


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in the abstract namespace, and its ``@name`` address."""
    if not sys.platform.startswith("linux"):
        pytest.skip("abstract Unix sockets exist on Linux only")
    name = f"asiou-bridge-test-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        yield sock, "@" + name


def received(sock: socket.socket) -> str:
    """The next datagram on ``sock``, decoded."""
    return sock.recv(4096).decode("utf-8")


def test_each_message_is_one_exact_datagram(systemd_socket: tuple[socket.socket, str]) -> None:
    """ready, status, watchdog and stopping each send exactly their one datagram."""
    sock, address = systemd_socket
    notifier = Notifier.from_env({"NOTIFY_SOCKET": address})
    notifier.ready()
    notifier.status("syncing: 120 changes")
    notifier.watchdog()
    notifier.stopping()
    assert [received(sock) for _ in range(4)] == [
        "READY=1",
        "STATUS=syncing: 120 changes",
        "WATCHDOG=1",
        "STOPPING=1",
    ]


def test_abstract_socket_address(abstract_socket: tuple[socket.socket, str]) -> None:
    """A NOTIFY_SOCKET starting with '@' reaches the abstract socket of that name."""
    sock, address = abstract_socket
    Notifier.from_env({"NOTIFY_SOCKET": address}).ready()
    assert received(sock) == "READY=1"


def test_status_is_one_line(systemd_socket: tuple[socket.socket, str]) -> None:
    """Line breaks in a status text become spaces, so it cannot inject another protocol line."""
    sock, address = systemd_socket
    Notifier.from_env({"NOTIFY_SOCKET": address}).status("held plan\nREADY=1\r\nсм. журнал\n")
    assert received(sock) == "STATUS=held plan READY=1 см. журнал"


def test_without_notify_socket_nothing_is_sent() -> None:
    """Without NOTIFY_SOCKET every method returns quietly and logs nothing."""
    notifier = Notifier.from_env({"WATCHDOG_USEC": "120000000"})
    with capture_logs() as logs:
        notifier.ready()
        notifier.status("idle")
        notifier.watchdog()
        notifier.stopping()
    assert not notifier.enabled
    assert logs == []


def test_empty_notify_socket_is_unset() -> None:
    """An empty NOTIFY_SOCKET counts as unset."""
    assert not Notifier.from_env({"NOTIFY_SOCKET": ""}).enabled


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "120000000"}, 60.0),
        ({"WATCHDOG_USEC": "3000000", "WATCHDOG_PID": "4242"}, 1.5),
        ({}, None),
        ({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": "1"}, None),
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "two minutes"}, None),
        ({"WATCHDOG_USEC": "120000000", "WATCHDOG_PID": "not a pid"}, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], interval: float | None) -> None:
    """The ping interval is half of WATCHDOG_USEC in seconds, None unless meant for this process."""
    assert Notifier.from_env(env, pid=4242).watchdog_interval() == interval


def test_watchdog_pid_defaults_to_this_process() -> None:
    """Without an explicit pid, WATCHDOG_PID is compared with the running process's own id."""
    env = {"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_env(env).watchdog_interval() == 5.0


def test_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    """Sending to a socket that is gone neither raises nor logs more than once, with its errno."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
    path.unlink()
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(path)})
    with capture_logs() as logs:
        notifier.ready()
        notifier.watchdog()
        notifier.stopping()
    assert logs == [{"event": "notify.send_failed", "errno": errno.ENOENT, "log_level": "warning"}]


def test_closed_listener_does_not_raise(tmp_path: Path) -> None:
    """A socket file left behind by a listener that closed (connection refused) does not raise."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
    notifier = Notifier.from_env({"NOTIFY_SOCKET": str(path)})
    with capture_logs() as logs:
        notifier.watchdog()
    assert [(entry["event"], entry["errno"]) for entry in logs] == [
        ("notify.send_failed", errno.ECONNREFUSED)
    ]
