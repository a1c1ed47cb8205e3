"""The CLI as an admin uses it: subprocesses, real config files, exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.core.errors import ExitCode
from bridge.demo import schema
from tests import school
from tests.school import write_local_config


def run(*args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bridge"]
    if config is not None:
        command += ["--config", str(config)]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, check=False, timeout=300
    )


def record_first_sync(folder: Path) -> sa.Engine:
    """Plan the school in ``folder`` and record every change as delivered (as a sync would);
    returns the school's engine for the test to change."""
    from bridge.adapters.source import SqlSource
    from bridge.adapters.state import open_state
    from bridge.core.mapping import load_mappings
    from bridge.service.engine import RunOptions, delivered, plan_run

    engine = sa.create_engine(f"sqlite:///{folder / 'asiou.sqlite'}")
    state = open_state(f"sqlite:///{folder / 'state.sqlite'}")
    mappings = load_mappings(Path("mappings"))
    sent: list = []
    plan_run(mappings, SqlSource(engine), state, RunOptions(as_of=school.FIRST_DAY), sent.append)
    state.record([delivered(c, mappings) for c in sent])
    state.close()
    return engine


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_local_config(tmp_path)


def test_plan_prints_counts_and_holds_and_exits_zero(config: Path) -> None:
    """`plan` prints a table of counts per entity and the held-back reasons."""
    result = run("plan", "--as-of", "2025-12-01", config=config)
    assert result.returncode == ExitCode.OK, result.stderr
    assert "nothing was sent or recorded" in result.stdout
    mark_line = next(line for line in result.stdout.splitlines() if line.startswith("mark "))
    assert mark_line.split()[1:3] == ["60", "28"]
    assert "after_withdrawal 8, grade_1_mark 12, no_consent 12" in result.stdout


def test_plan_json_is_machine_readable(config: Path) -> None:
    """`plan --json` prints only JSON with the same counts."""
    result = run("plan", "--json", "--as-of", "2025-12-01", config=config)
    data = json.loads(result.stdout)
    assert data["counts"]["mark"] == {"create": 28}
    assert data["held_back"]["pupil"] == {"no_consent": 1}
    assert data["guard"]["held"] is False


def test_plan_changes_nothing(config: Path) -> None:
    """Two plans in a row are identical: `plan` records nothing in the state store."""
    first = run("plan", "--json", "--as-of", "2025-12-01", config=config)
    second = run("plan", "--json", "--as-of", "2025-12-01", config=config)
    assert json.loads(first.stdout)["counts"] == json.loads(second.stdout)["counts"]
    assert json.loads(second.stdout)["counts"]["mark"] == {"create": 28}


def test_bad_config_exits_with_the_config_code_listing_every_problem(tmp_path: Path) -> None:
    """A broken config exits 3 and names each bad key; nothing is run."""
    path = tmp_path / "bridge.toml"
    path.write_text('[source]\nurl = 5\n[guard]\nmin_deletes = "x"\n', encoding="utf-8")
    result = run("plan", config=path)
    assert result.returncode == ExitCode.CONFIG
    assert "source.url" in result.stderr
    assert "guard.min_deletes" in result.stderr
    assert "Traceback" not in result.stderr


def test_broken_mappings_exit_with_the_config_code(tmp_path: Path, config: Path) -> None:
    """A mapping error is a configuration error, reported with file and path."""
    broken = tmp_path / "mappings"
    broken.mkdir()
    (broken / "mark.toml").write_text('entity = "mark"\n[source]\ntable = "mark"\n', "utf-8")
    config.write_text(config.read_text().replace(str(Path("mappings").resolve()), str(broken)))
    result = run("plan", config=config)
    assert result.returncode == ExitCode.CONFIG
    assert "mark.toml: source.key" in result.stderr


def test_unreachable_source_exits_with_the_source_code(tmp_path: Path) -> None:
    """A source that cannot be reached exits 4 with what failed and what to check."""
    path = tmp_path / "bridge.toml"
    path.write_text(
        '[source]\nurl = "sqlite:////nonexistent/dir/asiou.sqlite"\n'
        f'[state]\nurl = "sqlite:///{tmp_path / "s.sqlite"}"\n',
        encoding="utf-8",
    )
    result = run("plan", config=path)
    assert result.returncode == ExitCode.SOURCE_UNAVAILABLE, result.stderr
    assert "The ASIOU database failed" in result.stderr
    assert "asiou-bridge check" in result.stderr


def test_a_held_plan_exits_with_its_code_and_says_how_to_approve(config: Path) -> None:
    """A mass delete makes `plan` exit 5 and print the approve command; approving clears it."""
    engine = record_first_sync(config.parent)
    with engine.begin() as conn:
        conn.execute(schema.mark.delete())
    engine.dispose()
    held = run("plan", config=config)
    assert held.returncode == ExitCode.PLAN_HELD
    plan_id = held.stdout.split("asiou-bridge approve ")[1].split()[0]
    assert run("approve", plan_id, config=config).returncode == ExitCode.OK
    assert run("plan", config=config).returncode == ExitCode.OK


def test_approve_refuses_an_id_that_names_no_held_plan(config: Path) -> None:
    """`approve deadbeef0000` with no such held plan exits 2, names the id and the command that
    shows the held plan, and stores no approval."""
    record_first_sync(config.parent).dispose()
    refused = run("approve", "deadbeef0000", config=config)
    assert refused.returncode == ExitCode.USAGE, refused.stdout
    assert "deadbeef0000" in refused.stderr
    assert "asiou-bridge status" in refused.stderr
    assert "approved" not in refused.stdout
    engine = sa.create_engine(f"sqlite:///{config.parent / 'state.sqlite'}")
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT count(*) FROM approval")).scalar_one()
    engine.dispose()
    assert stored == 0


def test_an_expired_approval_holds_the_plan_again_until_approved_anew(config: Path) -> None:
    """An approval older than guard.approval_valid_hours no longer lets the plan through:
    `plan` exits 5 and says the approval expired; approving again lets it through."""
    engine = record_first_sync(config.parent)
    with engine.begin() as conn:
        conn.execute(schema.mark.delete())
    engine.dispose()
    plan_id = run("plan", config=config).stdout.split("asiou-bridge approve ")[1].split()[0]
    assert run("approve", plan_id, config=config).returncode == ExitCode.OK
    assert run("plan", config=config).returncode == ExitCode.OK
    state = sa.create_engine(f"sqlite:///{config.parent / 'state.sqlite'}")
    with state.begin() as conn:  # the approval was given 73 hours ago
        conn.execute(
            sa.text("UPDATE approval SET approved_at = :at"),
            {"at": datetime.now(UTC) - timedelta(hours=73)},
        )
    state.dispose()
    expired = run("plan", config=config)
    assert expired.returncode == ExitCode.PLAN_HELD
    assert "approval of this plan expired" in expired.stdout
    assert f"asiou-bridge approve {plan_id}" in expired.stdout
    assert run("approve", plan_id, config=config).returncode == ExitCode.OK
    assert run("plan", config=config).returncode == ExitCode.OK


def test_check_reports_missing_tables(config: Path) -> None:
    """`check` names a mapped table the ASIOU database does not have."""
    engine = sa.create_engine(f"sqlite:///{config.parent / 'asiou.sqlite'}")
    schema.period_mark.drop(engine)
    engine.dispose()
    result = run("check", config=config)
    assert result.returncode == ExitCode.CONFIG
    assert "source: FAILED" in result.stdout
    assert "table or view period_mark is not in the ASIOU database" in result.stdout


def test_every_command_has_help_with_examples() -> None:
    """Each subcommand answers --help, and plan's help shows examples."""
    for command in ("plan", "approve", "check", "demo-db", "demo"):
        assert run(command, "--help").returncode == 0
    assert "examples:" in run("plan", "--help").stdout


def test_plan_detail_shows_field_level_before_and_after(config: Path) -> None:
    """After a recorded sync, an edited topic shows in `plan --detail` as before -> after."""
    engine = record_first_sync(config.parent)
    with engine.begin() as conn:
        conn.execute(
            schema.lesson.update().where(schema.lesson.c.id == 100).values(topic="Сложение дробей")
        )
    engine.dispose()
    result = run("plan", "--detail", "--as-of", "2025-09-01", config=config)
    assert "lesson 100:" in result.stdout
    assert "topic: 'Тема урока 0' -> 'Сложение дробей'" in result.stdout
    data = json.loads(
        run("plan", "--json", "--detail", "--as-of", "2025-09-01", config=config).stdout
    )
    assert data["updates"] == [
        {
            "entity": "lesson",
            "key": "100",
            "fields": {"topic": {"before": "Тема урока 0", "after": "Сложение дробей"}},
        }
    ]


def test_demo_runs_a_full_and_an_incremental_sync(tmp_path: Path) -> None:
    """`demo` generates a school, syncs it to the reference portal, changes the journal and syncs
    the changes, each run ending OK, and prints the portal's own counts."""
    result = run("demo", "--dir", str(tmp_path), "--pupils", "40", "--days", "20")
    assert result.returncode == ExitCode.OK, result.stderr[-2000:]
    assert result.stdout.count("OK: every planned change was delivered.") == 2
    assert "Sync (full run)" in result.stdout
    assert "Sync (incremental run)" in result.stdout
    assert result.stdout.count("The portal's own counts of live records:") == 2
    incremental = result.stdout.split("5. Incremental sync")[1]
    mark_line = next(line for line in incremental.splitlines() if line.startswith("mark "))
    assert int(mark_line.split()[2]) == 1  # the edited mark is the only mark update
    for step in ("the full sync took ", "the incremental sync took ", "The demo took "):
        assert re.search(re.escape(step) + r"\d+\.\d s", result.stdout), step  # how long


def test_demo_against_the_dnevnik_emulator(tmp_path: Path) -> None:
    """`demo --portal dnevnik`: the emulator in its own process, the matching report (what
    waits for a decision, ids only), a full and an incremental sync, what the portal could not
    take, the emulator's own counts."""
    result = run("demo", "--portal", "dnevnik", "--dir", str(tmp_path), "--days", "10")
    assert result.returncode == ExitCode.OK, result.stderr[-2000:]
    out = result.stdout
    assert out.count("OK: every planned change was delivered.") == 2
    assert "dnevnik.ru emulator on http://127.0.0.1:" in out
    assert "The contingent matched with the portal's" in out
    assert re.search(r"waiting: pupil \d+ ambiguous, candidates \d+ \d+", out)
    assert re.search(r"waiting: pupil \d+ missing", out)
    incremental = out.split("5. Incremental sync")[1]
    assert "Not sent: this portal does not take them" in incremental
    assert "not supported by this portal: the portal keeps its own" in incremental
    counts = re.findall(r"The emulator's own counts: lesson (\d+), work \d+, mark (\d+)", out)
    assert len(counts) == 2
    assert int(counts[0][1]) > 0


def test_status_says_when_the_approval_of_the_held_plan_expired(tmp_path: Path) -> None:
    """`status` shows the held plan with when it was held and its summary, and says that its
    approval expired once guard.approval_valid_hours have passed since it."""
    from bridge.adapters.state import open_state
    from bridge.cli.render import status_json, status_text
    from bridge.service.admin import status
    from bridge.service.runs import RunLog

    now = [datetime(2026, 12, 1, 8, 0, tzinfo=UTC)]
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}", lambda: now[0])
    try:
        history = RunLog(state.engine, lambda: now[0])
        history.start("r1", "manual", "admin", "sync", "full")
        history.finish("r1", "held", ExitCode.PLAN_HELD, {"plan_id": "0a1b2c3d4e5f"})
        state.hold_plan("0a1b2c3d4e5f", "would archive 26 of 40 pupil records (65.0 %)")
        state.approve("0a1b2c3d4e5f", "admin")
        valid = timedelta(hours=72)
        fresh = status_text(status(state, {}, valid))
        now[0] += timedelta(hours=73)
        expired = status(state, {}, valid)
    finally:
        state.close()
    assert "held since 2026-12-01 08:00 UTC: would archive 26 of 40 pupil records" in fresh
    assert "approved by admin" in fresh
    assert expired.approval_expired
    assert "the approval by admin on 2026-12-01 08:00 UTC expired" in status_text(expired)
    assert json.loads(status_json(expired))["approval"]["expired"] is True
