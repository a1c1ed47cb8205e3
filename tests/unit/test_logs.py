"""Every line is JSON, the libraries' too, and carries its priority on the journal (issue #13,
defect 6)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest
import structlog

from bridge import logs


@pytest.fixture
def stream(tmp_path: Path) -> Iterator[TextIO]:
    """A real file to log into (it has a descriptor, as the journal's stream does); the
    logging set-up is put back to the tests' default afterwards."""
    with (tmp_path / "log.jsonl").open("w+", encoding="utf-8") as out:
        yield out
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.__class__.__name__ == "_BridgeHandler"]:
        root.removeHandler(handler)


def _lines(out: TextIO) -> list[str]:
    out.flush()
    out.seek(0)
    return [line for line in out.read().splitlines() if line]


def _journal(out: TextIO) -> dict[str, str]:
    stat = os.fstat(out.fileno())
    return {"JOURNAL_STREAM": f"{stat.st_dev}:{stat.st_ino}"}


def test_a_standard_library_line_is_json_like_the_bridges_own(stream: TextIO) -> None:
    logs.configure(stream)
    logging.getLogger("apscheduler.executors.default").warning(
        "Execution of job %r skipped: maximum number of running instances reached (%d)",
        "incremental",
        1,
    )
    structlog.get_logger().info("run.summary", outcome="ok")
    first, second = (json.loads(line) for line in _lines(stream))
    assert first["event"] == (
        "Execution of job 'incremental' skipped: maximum number of running instances reached (1)"
    )
    assert first["level"] == "warning"
    assert first["logger"] == "apscheduler.executors.default"
    assert "timestamp" in first
    assert second["event"] == "run.summary"


def test_library_info_lines_are_quiet_and_their_warnings_are_not(stream: TextIO) -> None:
    logs.configure(stream)
    logging.getLogger("apscheduler.scheduler").info("Added job %s", "incremental")
    logging.getLogger("urllib3.connectionpool").info("Starting new HTTP connection")
    logging.getLogger("apscheduler.scheduler").error("Job failed")
    assert [json.loads(line)["event"] for line in _lines(stream)] == ["Job failed"]


def test_on_the_journal_each_line_starts_with_its_priority(
    stream: TextIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in _journal(stream).items():
        monkeypatch.setenv(name, value)
    logs.configure(stream)
    log = structlog.get_logger()
    log.info("daemon.started")
    log.warning("run.summary", outcome="partial")
    log.error("run.failed")
    logging.getLogger("apscheduler.scheduler").warning("skipped")
    lines = _lines(stream)
    assert [line[:3] for line in lines] == ["<6>", "<4>", "<3>", "<4>"]
    assert [json.loads(line[3:])["event"] for line in lines] == [
        "daemon.started",
        "run.summary",
        "run.failed",
        "skipped",
    ]


def test_off_the_journal_no_line_has_a_prefix(
    stream: TextIO, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with (tmp_path / "other").open("w", encoding="utf-8") as other:
        for name, value in _journal(other).items():  # the journal is another stream
            monkeypatch.setenv(name, value)
    logs.configure(stream)
    structlog.get_logger().warning("run.summary")
    (line,) = _lines(stream)
    assert json.loads(line)["level"] == "warning"


@pytest.mark.parametrize("value", ["", "12", "a:b", "1:2:3", ":"])
def test_a_journal_stream_that_names_nothing_is_not_the_journal(stream: TextIO, value: str) -> None:
    assert not logs.on_journal(stream, {"JOURNAL_STREAM": value})


def test_the_journal_stream_is_recognised_by_device_and_inode(stream: TextIO) -> None:
    assert logs.on_journal(stream, _journal(stream))
    assert not logs.on_journal(stream, {})
