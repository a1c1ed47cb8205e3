"""Configuration: validated at start-up, every problem at once, secrets never inline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bridge.adapters.portal_client import PortalSettings
from bridge.core.errors import ConfigError, ExitCode
from bridge.service.config import find_config, load_config, read_secret
from bridge.service.engine import resolve_workers


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bridge.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_minimal_config_gets_the_documented_defaults(tmp_path: Path) -> None:
    """Only source.url is required; the rest comes from the schema's defaults."""
    config = load_config(_write(tmp_path, '[source]\nurl = "sqlite:///school.sqlite"\n'))
    assert config.source.url == f"sqlite:///{tmp_path / 'school.sqlite'}"
    assert config.thresholds.max_delete_fraction == 0.10
    assert config.portal.url == "http://127.0.0.1:8400"
    assert config.mappings_dir.name == "mappings"
    assert config.sync.plan_workers == 0


def test_plan_workers_zero_means_one_per_core_and_negative_is_refused(tmp_path: Path) -> None:
    """sync.plan_workers = 0 resolves to the CPU cores this process may use (four at most); a
    negative count is refused with its key path."""
    assert resolve_workers(0) == min(len(os.sched_getaffinity(0)), 4)
    assert resolve_workers(3) == 3
    path = _write(tmp_path, '[source]\nurl = "sqlite:///s.sqlite"\n[sync]\nplan_workers = -1\n')
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [p.path for p in caught.value.problems] == ["sync.plan_workers"]


def test_the_regions_settings_are_read_and_checked(tmp_path: Path) -> None:
    """state.max_connections, schedule.spread_minutes and source.query_timeout are read as
    given, and out-of-range values are refused together, each with its key path."""
    good = load_config(
        _write(
            tmp_path,
            '[source]\nurl = "sqlite:///s.sqlite"\nquery_timeout = 45\n'
            '[state]\nurl = "sqlite:///st.sqlite"\nmax_connections = 3\n'
            "[schedule]\nspread_minutes = 0\n",
        )
    )
    assert (good.state.max_connections, good.schedule.spread_minutes) == (3, 0)
    assert good.source.query_timeout == 45
    bad = _write(
        tmp_path,
        '[source]\nurl = "sqlite:///s.sqlite"\nquery_timeout = -1\n'
        "[state]\nmax_connections = 1\n[schedule]\nspread_minutes = 721\n",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    assert sorted(p.path for p in caught.value.problems) == [
        "schedule.spread_minutes",
        "source.query_timeout",
        "state.max_connections",
    ]


@pytest.mark.parametrize("value", [0, 65, -2])
def test_portal_concurrency_outside_1_to_64_is_refused(tmp_path: Path, value: int) -> None:
    """portal.concurrency defaults to four requests in flight (the client alone: one at a time);
    0, negative or over 64 is refused with its key path and the allowed range."""
    base = '[source]\nurl = "sqlite:///s.sqlite"\n'
    assert load_config(_write(tmp_path, base)).portal.concurrency == 4
    assert PortalSettings("http://portal", "s", "c", "secret").concurrency == 1
    path = _write(tmp_path, f"{base}[portal]\nconcurrency = {value}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert [(p.path, p.message) for p in caught.value.problems] == [
        ("portal.concurrency", "must be from 1 to 64")
    ]


def test_every_problem_is_reported_at_once_with_its_key_path(tmp_path: Path) -> None:
    """Unknown sections and keys, wrong types, missing keys and inline passwords all at once."""
    path = _write(
        tmp_path,
        """
[source]
password_file = 5
[state]
url = "postgresql://bridge:hunter2@db/bridge"
urll = "typo"
[guard]
max_delete_fraction = 2.5
min_deletes = "many"
hold_whole_class = 1
[extra]
x = 1
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    paths = {p.path for p in caught.value.problems}
    assert paths == {
        "source.url",
        "source.password_file",
        "state.url",
        "state.urll",
        "guard.max_delete_fraction",
        "guard.min_deletes",
        "guard.hold_whole_class",
        "extra",
    }
    assert all(p.file == str(path) for p in caught.value.problems)
    assert "hunter2" not in str(caught.value)
    assert caught.value.exit_code == ExitCode.CONFIG


def test_a_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    """A file that is not TOML is reported with its name, not a traceback."""
    path = _write(tmp_path, "[source\nurl = 1")
    with pytest.raises(ConfigError, match=str(path)):
        load_config(path)


def test_lookup_order_is_flag_then_environment_then_etc(tmp_path: Path) -> None:
    """--config wins over $ASIOU_BRIDGE_CONFIG, which is used when there is no flag."""
    assert find_config("a.toml", {"ASIOU_BRIDGE_CONFIG": "b.toml"}) == Path("a.toml")
    assert find_config(None, {"ASIOU_BRIDGE_CONFIG": "b.toml"}) == Path("b.toml")


def test_no_config_anywhere_says_where_it_looked() -> None:
    """Without any config the error names the flag, the variable and the system path."""
    if Path("/etc/asiou-bridge/bridge.toml").exists():
        pytest.skip("this machine has a system-wide config")
    with pytest.raises(ConfigError, match="ASIOU_BRIDGE_CONFIG"):
        find_config(None, {})


def test_secrets_come_from_environment_file_or_credentials(tmp_path: Path) -> None:
    """The variable wins; then the configured file; then $CREDENTIALS_DIRECTORY."""
    (tmp_path / "creds").mkdir()
    (tmp_path / "creds" / "db-password").write_text("from-credential\n")
    (tmp_path / "file").write_text("from-file\n")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path / "creds")}
    assert read_secret("PW", "", "db-password", env) == "from-credential"
    assert read_secret("PW", str(tmp_path / "file"), "db-password", env) == "from-file"
    assert read_secret("PW", str(tmp_path / "file"), "db-password", {**env, "PW": "v"}) == "v"
    assert read_secret("PW", "", "db-password", {}) is None


def test_the_password_is_added_to_the_source_url_but_not_shown(tmp_path: Path) -> None:
    """The database password reaches the URL used to connect and never its printed form."""
    config = load_config(_write(tmp_path, '[source]\nurl = "mysql+pyodbc://bridge@h/asiou"\n'))
    url = config.source_url_with_password({"ASIOU_BRIDGE_DB_PASSWORD": "s3cret"})
    assert url.password == "s3cret"
    assert "s3cret" not in str(url)
    assert "s3cret" not in repr(config)


def test_the_shipped_example_config_is_valid() -> None:
    """config/bridge.toml passes validation as shipped."""
    config = load_config(Path("config/bridge.toml"))
    assert config.source.url.startswith("mysql+pyodbc://")


def test_schedule_metrics_and_ports_are_checked_up_front(tmp_path: Path) -> None:
    """Settings that would crash the daemon later are refused at start-up with their path."""
    path = _write(
        tmp_path,
        """
[source]
url = "mysql+pyodbc://bridge@host:port/asiou"
[schedule]
hours = "7-25"
incremental_every = "2h"
full_at = "2:61"
[metrics]
textfile = "/tmp/asiou.txt"
listen = "nine"
""",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert {p.path for p in caught.value.problems} == {
        "source.url",
        "schedule.hours",
        "schedule.incremental_every",
        "schedule.full_at",
        "metrics.textfile",
        "metrics.listen",
    }


def test_progress_shows_only_on_a_terminal_and_never_with_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Progress is drawn on an interactive stderr, and not when --json asks for quiet output."""
    import io

    from bridge.cli.common import tty_progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    assert tty_progress(quiet=True) is None
    show = tty_progress()
    assert show is not None
    show("mark", 1500)
    assert "mark" in terminal.getvalue()
    assert "1,500 delivered" in terminal.getvalue()
    monkeypatch.setattr("sys.stderr", io.StringIO())
    assert tty_progress() is None


def test_approval_validity_defaults_to_72_hours_and_is_checked(tmp_path: Path) -> None:
    """guard.approval_valid_hours defaults to 72 and is read into the thresholds; zero, a
    negative number or text is refused with its key path."""
    base = '[source]\nurl = "sqlite:///s.sqlite"\n'
    assert load_config(_write(tmp_path, base)).thresholds.approval_valid_hours == 72.0
    given = load_config(_write(tmp_path, base + "[guard]\napproval_valid_hours = 12\n"))
    assert given.thresholds.approval_valid_hours == 12.0
    for wrong in ("0", "-5", '"soon"'):
        path = _write(tmp_path, base + f"[guard]\napproval_valid_hours = {wrong}\n")
        with pytest.raises(ConfigError) as caught:
            load_config(path)
        assert [p.path for p in caught.value.problems] == ["guard.approval_valid_hours"]


def test_reconciliation_is_weekly_by_default_and_its_schedule_is_checked(tmp_path: Path) -> None:
    """schedule.reconcile_at defaults to a weekly run (sun 03:00), the daemon schedules it
    there, empty turns it off, and a value that is not days and a time is refused."""
    from datetime import datetime

    from bridge.service.schedule import reconcile_trigger

    base = '[source]\nurl = "sqlite:///school.sqlite"\n'
    config = load_config(_write(tmp_path, base))
    assert config.schedule.reconcile_at == "sun 03:00"
    trigger = reconcile_trigger(config.schedule.reconcile)
    assert trigger is not None
    fire = trigger.get_next_fire_time(None, datetime(2026, 12, 2, 12, 0).astimezone())
    assert (fire.strftime("%a %H:%M"), fire.day) == ("Sun 03:00", 6)
    off = load_config(_write(tmp_path, base + '[schedule]\nreconcile_at = ""\n'))
    assert reconcile_trigger(off.schedule.reconcile) is None
    with pytest.raises(ConfigError) as bad:
        load_config(_write(tmp_path, base + '[schedule]\nreconcile_at = "sunday"\n'))
    assert [p.path for p in bad.value.problems] == ["schedule.reconcile_at"]
