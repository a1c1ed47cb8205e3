"""Logging: structlog, JSON lines when not on a terminal, readable console output on one.

Log lines carry ids, counts and entity names; never names of people, birth dates, mark values
or secrets (records are logged by entity and key only).

The standard library's ``logging`` (APScheduler, urllib3, anything else) goes through the same
renderer: every line the process writes is one JSON object, the bridge's own and the libraries'
alike. When the stream is the systemd journal (``JOURNAL_STREAM`` names it), each line starts
with its syslog priority (``<4>`` for a warning, ``<3>`` for an error), which journald takes as
the line's priority and strips, so ``journalctl -p warning`` finds the problems.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

PRIORITY = {
    "critical": 2,
    "exception": 3,
    "error": 3,
    "warning": 4,
    "warn": 4,
    "notice": 5,
    "info": 6,
    "debug": 7,
}
"""syslog priorities (``sd-daemon(3)``) by structlog method or stdlib level name."""

QUIET_LIBRARIES = {"apscheduler": logging.WARNING, "urllib3": logging.WARNING}
"""Libraries whose info lines say nothing an admin needs (job added, connection opened)."""


def configure(stream: TextIO | None = None, level: int = logging.INFO) -> None:
    """Set up structlog once for the process: JSON unless ``stream`` is a TTY, and the
    standard library's logging rendered the same way onto the same stream."""
    out = stream or sys.stderr
    render = _renderer(out)
    if on_journal(out, os.environ):
        render = with_priority(render)
    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, render],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    _route_stdlib(out, level, shared, render)


def _renderer(out: TextIO) -> Processor:
    if out.isatty():
        return structlog.dev.ConsoleRenderer(colors=False)
    return structlog.processors.JSONRenderer(ensure_ascii=False)


def _route_stdlib(out: TextIO, level: int, shared: list[Processor], render: Processor) -> None:
    """A root handler: every stdlib record through ``shared`` and ``render`` onto ``out``,
    in place of the one an earlier ``configure`` set (other handlers stay)."""
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, render],
    )
    handler = _BridgeHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _BridgeHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name, quiet in QUIET_LIBRARIES.items():
        logging.getLogger(name).setLevel(max(level, quiet))


class _BridgeHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler ``configure`` installs (told apart from others, such as pytest's)."""


def on_journal(out: TextIO, env: Mapping[str, str]) -> bool:
    """True when ``out`` is the journal's stream: ``JOURNAL_STREAM`` is ``DEVICE:INODE`` of the
    socket systemd connected stdout/stderr to, compared with ``out``'s own."""
    named = env.get("JOURNAL_STREAM", "")
    device, _, inode = named.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        stat = os.fstat(out.fileno())
    except (OSError, ValueError):  # no file descriptor (a StringIO in a test, a closed stream)
        return False
    return (stat.st_dev, stat.st_ino) == (int(device), int(inode))


def with_priority(render: Processor) -> Processor:
    """``render`` with each line prefixed by its syslog priority, ``<N>``."""

    def prefixed(logger: WrappedLogger, method: str, event: EventDict) -> Any:
        line = render(logger, method, event)
        level = str(event.get("level", method)).lower()
        text = line.decode("utf-8") if isinstance(line, bytes) else str(line)
        return f"<{PRIORITY.get(level, 6)}>{text}"

    return prefixed


def get_logger(**context: object) -> structlog.typing.FilteringBoundLogger:
    """A logger bound to ``context`` (run id, command...)."""
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger().bind(**context)
    return logger
