"""``check`` against a portal that does not answer, and ``--config`` on either side of the
subcommand."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bridge.cli.main import CHECK_PORTAL_UNREACHABLE, build_parser
from tests.e2e import make_school, write_config


def _closed_port() -> int:
    """A port of 127.0.0.1 nobody listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_check_against_a_closed_portal_port_is_quick_with_its_own_code(tmp_path: Path) -> None:
    """With the run's patience configured (8 attempts), `check` still asks a closed port once
    with short timeouts: it exits 8 (not 6, "partial delivery") within seconds and advises
    checking portal.url and the way there, not running `check`."""
    school = make_school(tmp_path, pupils=20, days=5)
    config = write_config(tmp_path, school, f"http://127.0.0.1:{_closed_port()}")
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "check", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    took = time.monotonic() - started
    assert done.returncode == CHECK_PORTAL_UNREACHABLE, done.stdout + done.stderr
    assert "source: ok" in done.stdout
    assert "did not answer" in done.stdout
    assert "portal.url" in done.stdout
    assert "asiou-bridge check" not in done.stdout
    assert took < 12, f"check took {took:.1f} s"


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--config", "a.toml", "check"], "a.toml"),
        (["check", "--config", "b.toml"], "b.toml"),
        (["--config", "a.toml", "plan", "--config", "b.toml"], "b.toml"),
        (["match", "list", "--config", "c.toml"], "c.toml"),
        (["run"], None),
    ],
)
def test_config_is_taken_before_or_after_the_subcommand(
    argv: list[str], expected: str | None
) -> None:
    """``--config FILE`` works on either side of the subcommand; the later one counts."""
    assert build_parser().parse_args(argv).config == expected


def test_commands_without_a_configuration_take_no_config_option() -> None:
    """``portal --config`` is refused as a usage error (the portal reads no bridge config)."""
    with pytest.raises(SystemExit) as refused:
        build_parser().parse_args(["portal", "--config", "x.toml"])
    assert refused.value.code == 2
