"""The ``asiou-bridge`` command: how admins act. Builds adapters from configuration; the only
place (with the scheduler) that reads the real clock or the environment.

Exit codes: 0 ok, 1 failure, 2 usage, 3 configuration error, 4 source unavailable, 5 plan held
by a guard, 6 partial delivery, 7 portal authentication failed (docs/operations.md).
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date
from pathlib import Path

import sqlalchemy as sa

from bridge import logs
from bridge.config import Config, find_config, load_config
from bridge.engine import PlanResult, RunOptions, plan_run
from bridge.errors import BridgeError, ConfigError, ExitCode, Problem
from bridge.mapping import MappingSet, load_mappings
from bridge.render import error_text, plan_json, plan_text
from bridge.source import open_source
from bridge.state import open_state, utc_now

DEMO_DIR = Path("var/demo")
EPILOG_PLAN = """examples:
  asiou-bridge plan                      full plan against the configured ASIOU database
  asiou-bridge plan --incremental        only rows changed since the last run
  asiou-bridge plan --detail             field-level before/after of updates
  asiou-bridge plan --json > plan.json   the same, machine-readable
"""


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure()
    try:
        code: int = args.handler(args)
    except BridgeError as exc:
        print(error_text(exc), file=sys.stderr)
        return exc.exit_code
    return code


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="asiou-bridge", description="Sync the ASIOU school journal to the regional e-diary.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="config file (default: $ASIOU_BRIDGE_CONFIG, then "
                        "/etc/asiou-bridge/bridge.toml)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_plan(sub)
    _add_approve(sub)
    _add_check(sub)
    _add_demo_db(sub)
    _add_demo(sub)
    return parser


def _command(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str,
             handler: Callable[[argparse.Namespace], int], epilog: str = ""
             ) -> argparse.ArgumentParser:
    cmd = sub.add_parser(name, help=help_, description=help_, epilog=epilog,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    cmd.set_defaults(handler=handler)
    return cmd


def _add_plan(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = _command(sub, "plan", "Preview what a sync would send; changes nothing.", cmd_plan,
                   EPILOG_PLAN)
    cmd.add_argument("--incremental", action="store_true",
                     help="read only rows changed since the last run (never deletes)")
    cmd.add_argument("--detail", action="store_true", help="show field-level before/after")
    cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cmd.add_argument("--as-of", type=date.fromisoformat, help="plan as on this date (YYYY-MM-DD)")


def _add_approve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = _command(sub, "approve", "Approve the deletes of a plan a guard held.", cmd_approve,
                   "example:\n  asiou-bridge approve 3f2a9c1b7d4e   (the id `plan` printed)")
    cmd.add_argument("plan_id", help="the plan id that `asiou-bridge plan` printed")


def _add_check(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    _command(sub, "check", "Check configuration, mappings and the ASIOU connection.", cmd_check)


def _add_demo_db(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = _command(sub, "demo-db", "Write a synthetic demo school into a database.", cmd_demo_db,
                   "examples:\n  asiou-bridge demo-db --out school.sqlite --pupils 1100 --seed 1\n"
                   "  asiou-bridge demo-db --url 'mysql+pyodbc://root@127.0.0.1/test"
                   "?driver=MariaDB+Unicode' --pupils 200")
    where = cmd.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help="SQLite file to (re)create")
    where.add_argument("--url", help="SQLAlchemy URL of a database to fill (tables replaced)")
    _school_options(cmd)


def _school_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--pupils", type=int, default=1100, help="pupils in the school (1100)")
    cmd.add_argument("--seed", type=int, default=1, help="random seed (same seed, same school)")
    cmd.add_argument("--days", type=int, help="only the first N days of the school year")
    cmd.add_argument("--clean", action="store_true", help="without the usual journal mistakes")


def _add_demo(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = _command(sub, "demo", "Create the demo school in SQLite and show its plan.", cmd_demo)
    cmd.add_argument("--dir", default=str(DEMO_DIR), help="where the demo files go (var/demo)")
    _school_options(cmd)
    cmd.set_defaults(pupils=300)


# --- commands -------------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> tuple[Config, MappingSet]:
    config = load_config(find_config(args.config))
    return config, load_mappings(config.mappings_dir)


def cmd_plan(args: argparse.Namespace) -> int:
    """``plan``: a full (or incremental) plan, printed; nothing is sent or recorded."""
    config, mappings = _load(args)
    result = _plan(config, mappings, args.incremental, args.as_of or date.today())
    print(plan_json(result, args.detail) if args.json
          else plan_text(result, mappings.entities, args.detail))
    return ExitCode.PLAN_HELD if result.held else ExitCode.OK


def _plan(config: Config, mappings: MappingSet, incremental: bool, as_of: date) -> PlanResult:
    source = open_source(config.source_url_with_password().render_as_string(False))
    state = open_state(config.state_url, utc_now)
    options = RunOptions(as_of=as_of, incremental=incremental, thresholds=config.thresholds,
                         overlap=config.overlap)
    log = logs.get_logger(command="plan")
    started = time.monotonic()
    try:
        result = plan_run(mappings, source, state, options)
    finally:
        state.close()
    if result.error is not None:
        raise result.error
    plan = result.plan
    log.info("plan.done", mode=plan.mode, read=sum(plan.records_read.values()),
             changes={e: dict(c) for e, c in plan.counts.items()},
             held_back=sum(sum(c.values()) for c in plan.holds.values()),
             rejected=sum(plan.rejection_counts.values()), guard_held=result.held,
             seconds=round(time.monotonic() - started, 2))
    return result


def cmd_approve(args: argparse.Namespace) -> int:
    """``approve``: let the next sync send the deletes of a held plan."""
    config, _ = _load(args)
    state = open_state(config.state_url, utc_now)
    try:
        state.approve(args.plan_id, getpass.getuser())
    finally:
        state.close()
    print(f"Plan {args.plan_id} approved: the next sync sends its deletes if the plan is "
          "still the same.")
    return ExitCode.OK


def cmd_check(args: argparse.Namespace) -> int:
    """``check``: configuration, mappings, the source connection and its tables."""
    config, mappings = _load(args)
    print(f"configuration: ok ({config.file})")
    print(f"mappings: ok ({len(mappings.mappings)} entities from {config.mappings_dir})")
    source = open_source(config.source_url_with_password().render_as_string(False))
    missing = source.missing_tables(mappings.mappings)
    if missing:
        raise ConfigError([Problem(str(config.mappings_dir), "", f"table or view {t} is not in "
                                   "the ASIOU database") for t in missing])
    print("source: ok (every mapped table is there)")
    return ExitCode.OK


def cmd_demo_db(args: argparse.Namespace) -> int:
    """``demo-db``: write a synthetic school (see docs/asiou-schema.md)."""
    url = args.url or f"sqlite:///{Path(args.out).resolve()}"
    if args.out:
        Path(args.out).resolve().parent.mkdir(parents=True, exist_ok=True)
    counts = _generate(url, args)
    print(f"demo school written: {sum(counts.values())} rows "
          f"({counts.get('mark', 0)} marks, {counts.get('pupil', 0)} pupils)")
    return ExitCode.OK


def _generate(url: str, args: argparse.Namespace) -> dict[str, int]:
    from bridge.demo.generate import SchoolSpec, generate  # noqa: PLC0415 - demo only

    spec = SchoolSpec(pupils=args.pupils, seed=args.seed, days=args.days,
                      mistakes=not args.clean)
    engine = sa.create_engine(url)
    last = [0.0]

    def progress(table: str, rows: int) -> None:
        if sys.stderr.isatty() and time.monotonic() - last[0] > 0.5:
            last[0] = time.monotonic()
            print(f"\r  writing {table}: {rows} rows ", end="", file=sys.stderr, flush=True)

    try:
        return generate(engine, spec, progress)
    finally:
        engine.dispose()
        if sys.stderr.isatty():
            print(file=sys.stderr)


def cmd_demo(args: argparse.Namespace) -> int:
    """``demo``: the demo school in SQLite, a config for it, and its plan."""
    folder = Path(args.dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    school = folder / "school.sqlite"
    print(f"Generating a demo school of {args.pupils} pupils into {school} ...")
    args.out, args.url = str(school), None
    cmd_demo_db(args)
    config_file = _write_demo_config(folder, school)
    state = folder / "state.sqlite"
    if state.exists():
        state.unlink()
    print(f"Config: {config_file}\n")
    config = load_config(config_file)
    mappings = load_mappings(config.mappings_dir)
    result = _plan(config, mappings, False, date.today())
    print(plan_text(result, mappings.entities))
    return ExitCode.OK


def _write_demo_config(folder: Path, school: Path) -> Path:
    path = folder / "bridge.toml"
    mappings = Path(__file__).resolve().parent.parent / "mappings"
    path.write_text(
        "# Written by `asiou-bridge demo`.\n"
        f'[source]\nurl = "sqlite:///{school}"\n\n'
        f'[state]\nurl = "sqlite:///{folder / "state.sqlite"}"\n\n'
        f'[mappings]\ndir = "{mappings}"\n', encoding="utf-8")
    os.chmod(path, 0o600)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
