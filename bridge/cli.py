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
import uuid
from collections.abc import Callable, Sequence
from datetime import date, datetime
from pathlib import Path

import requests
import sqlalchemy as sa

from bridge import logs
from bridge.config import Config, find_config, load_config
from bridge.demo.changes import change_journal
from bridge.engine import PlanResult, RunOptions, plan_run
from bridge.errors import BridgeError, ConfigError, ExitCode, Problem
from bridge.mapping import MappingSet, load_mappings
from bridge.portal.client import PortalClient, PortalSettings
from bridge.portal.server import DEMO_CLIENT, ReferencePortal, serve
from bridge.render import error_text, plan_json, plan_text, sync_json, sync_text
from bridge.source import open_source
from bridge.state import open_state, utc_now
from bridge.sync import SyncResult, run_sync

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
    _add_sync(sub)
    _add_approve(sub)
    _add_check(sub)
    _add_demo_db(sub)
    _add_demo(sub)
    _add_portal(sub)
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


def _add_sync(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = _command(sub, "sync", "Plan and deliver the changes to the portal.", cmd_sync,
                   "examples:\n  asiou-bridge sync                 full read; finds deletions\n"
                   "  asiou-bridge sync --incremental   rows changed since the last run\n"
                   "  asiou-bridge sync --dry-run       plan only (same as `plan`)")
    cmd.add_argument("--incremental", action="store_true",
                     help="read only rows changed since the last run (never deletes)")
    cmd.add_argument("--dry-run", action="store_true", help="plan only; send nothing")
    cmd.add_argument("--json", action="store_true", help="print the outcome as JSON")
    cmd.add_argument("--as-of", type=date.fromisoformat, help="run as on this date (YYYY-MM-DD)")


def _add_portal(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = _command(sub, "portal", "Run the bundled reference diary portal (demos, tests).",
                   cmd_portal, "example:\n  asiou-bridge portal --port 8400 --data portal.sqlite")
    cmd.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    cmd.add_argument("--port", type=int, default=8400, help="port (8400; 0 picks a free one)")
    cmd.add_argument("--data", default="var/portal.sqlite", help="SQLite file of its records")
    cmd.add_argument("--faults", help="JSON file of faults to inject (docs/portal-api.md)")
    cmd.add_argument("--seed", type=int, default=0, help="seed of the fault dice")
    cmd.add_argument("--clients", help="JSON file of schools and their client credentials")
    cmd.add_argument("--token-ttl", type=int, default=3600, help="token lifetime in seconds")


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
    cmd = _command(sub, "demo", "Demo: a school in SQLite, the reference portal, a full and an "
                   "incremental sync.", cmd_demo)
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


def cmd_sync(args: argparse.Namespace) -> int:
    """``sync``: plan and deliver; the exit code says whether anything was left undelivered."""
    if args.dry_run:
        args.detail = False
        return cmd_plan(args)
    config, mappings = _load(args)
    outcome = sync_once(config, mappings, args.incremental, args.as_of or date.today())
    if args.json:
        print(sync_json(outcome))
    else:
        print(sync_text(outcome, mappings.entities))
    return outcome.exit_code


def sync_once(config: Config, mappings: MappingSet, incremental: bool, as_of: date
              ) -> SyncResult:
    """One sync with adapters built from ``config``; logs one summary line."""
    source = open_source(config.source_url_with_password().render_as_string(False))
    state = open_state(config.state_url, utc_now)
    portal = PortalClient(portal_settings(config))
    run_id = uuid.uuid4().hex[:12]
    log = logs.get_logger(run_id=run_id, command="sync")
    started = time.monotonic()
    options = RunOptions(as_of=as_of, incremental=incremental, thresholds=config.thresholds,
                         overlap=config.overlap)
    try:
        outcome = run_sync(mappings, source, state, portal, options, run_id=run_id,
                           max_attempts=config.dead_letter_after)
    finally:
        portal.close()
        state.close()
    log.info("sync.done", mode=outcome.plan.plan.mode, delivered=outcome.delivery.total,
             refused=sum(outcome.delivery.refused.values()),
             held_back=sum(sum(c.values()) for c in outcome.plan.plan.holds.values()),
             rejected=sum(outcome.plan.plan.rejection_counts.values()),
             guard_held=outcome.plan.held, failure=outcome.delivery.failure,
             exit_code=outcome.exit_code, seconds=round(time.monotonic() - started, 2))
    return outcome


def portal_settings(config: Config) -> PortalSettings:
    """Client settings from the configuration (the secret from env, file or credential)."""
    secret = config.portal_secret()
    if secret is None:
        raise ConfigError([Problem(config.file, "portal.secret_file", "no portal secret: set "
                                   "$ASIOU_BRIDGE_PORTAL_SECRET, portal.secret_file, or the "
                                   "systemd credential portal-secret")])
    return PortalSettings(
        base_url=config.portal_url, school=config.portal_school,
        client_id=config.portal_client_id, client_secret=secret,
        connect_timeout=config.portal_timeouts[0], read_timeout=config.portal_timeouts[1],
        batch_size=config.portal_batch_size, max_attempts=config.portal_retries,
        rate_limit=config.portal_rate_limit, verify=config.portal_ca_bundle or True)


def cmd_portal(args: argparse.Namespace) -> int:
    """``portal``: serve the reference portal until interrupted."""
    Path(args.data).resolve().parent.mkdir(parents=True, exist_ok=True)
    print(f"reference portal on http://{args.host}:{args.port} (data {args.data}); demo "
          f"client {DEMO_CLIENT[0]!r} (its secret is in docs/portal-api.md)", flush=True)
    return serve(args.host, args.port, args.data, args.faults, clients_file=args.clients,
                 token_ttl=args.token_ttl, seed=args.seed)


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
    """``demo``: demo school, reference portal, a full sync, journal changes, an incremental
    sync; prints what was delivered each time and the portal's own counts."""
    folder = Path(args.dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    school = folder / "school.sqlite"
    print(f"1. Generating a demo school of {args.pupils} pupils into {school} ...")
    args.out, args.url = str(school), None
    cmd_demo_db(args)
    for stale in ("state.sqlite", "portal.sqlite"):
        (folder / stale).unlink(missing_ok=True)
    portal = ReferencePortal("127.0.0.1", 0, folder / "portal.sqlite")
    portal.start()
    try:
        return _demo_syncs(folder, school, portal.url)
    finally:
        portal.stop()


def _demo_syncs(folder: Path, school: Path, portal_url: str) -> int:
    config = load_config(_write_demo_config(folder, school, portal_url))
    mappings = load_mappings(config.mappings_dir)
    print(f"2. Reference portal on {portal_url}; config {config.file}\n")
    print("3. Full sync\n")
    first = sync_once(config, mappings, False, date.today())
    print(sync_text(first, mappings.entities) + "\n" + _portal_counts(portal_url))
    engine = sa.create_engine(f"sqlite:///{school}")
    changes = change_journal(engine, datetime.now())
    engine.dispose()
    print(f"\n4. Journal changed: {len(changes.new_marks)} new marks, mark "
          f"{changes.edited_mark} edited, pupil {changes.withdrawn_pupil} withdrawn on "
          f"{changes.withdrawn_on}, consent of pupil {changes.consent_withdrawn_pupil} "
          "withdrawn\n\n5. Incremental sync\n")
    second = sync_once(config, mappings, True, date.today())
    print(sync_text(second, mappings.entities) + "\n" + _portal_counts(portal_url))
    return max(first.exit_code, second.exit_code)


def _portal_counts(url: str) -> str:
    counts = requests.get(f"{url}/_portal/counts", timeout=10).json()
    lines = ["The portal's own counts of live records:"]
    for school, entities in counts.items():
        lines.append(f"  school {school}: " + ", ".join(f"{e} {n}" for e, n in entities.items()))
    return "\n".join(lines)


def _write_demo_config(folder: Path, school: Path, portal_url: str) -> Path:
    path = folder / "bridge.toml"
    secret = folder / "portal-secret"
    secret.write_text(DEMO_CLIENT[1], encoding="utf-8")
    os.chmod(secret, 0o600)
    mappings = Path(__file__).resolve().parent.parent / "mappings"
    path.write_text(
        "# Written by `asiou-bridge demo`.\n"
        f'[source]\nurl = "sqlite:///{school}"\n\n'
        f'[state]\nurl = "sqlite:///{folder / "state.sqlite"}"\n\n'
        f'[mappings]\ndir = "{mappings}"\n\n'
        f'[portal]\nurl = "{portal_url}"\nschool = "demo"\nclient_id = "{DEMO_CLIENT[0]}"\n'
        f'secret_file = "{secret}"\n', encoding="utf-8")
    os.chmod(path, 0o600)
    return path


if __name__ == "__main__":
    raise SystemExit(main())
