"""The ``asiou-bridge`` command: how admins act. Builds adapters from configuration; the only
place (with the scheduler) that reads the real clock or the environment.

Exit codes: 0 ok, 1 failure, 2 usage, 3 configuration error, 4 source unavailable, 5 plan held
by a guard, 6 partial delivery, 7 portal authentication failed, and for ``check`` only 8 no
portal answering (docs/operations.md).
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from collections.abc import Callable, Sequence
from datetime import date

from bridge import __version__, logs
from bridge.cli import admin as cli_admin
from bridge.cli import demo as cli_demo
from bridge.cli import match as cli_match
from bridge.cli.common import (
    Subparsers,
    command,
    config_option,
    load,
    say,
    tty_progress,
    wait_flags,
)
from bridge.cli.render import error_text, plan_json, plan_text, sync_json, sync_text
from bridge.core.errors import BridgeError, ConfigError, ExitCode, PortalUnavailable, Problem
from bridge.core.mapping import MappingSet
from bridge.i18n import N_, _, pgettext
from bridge.resources import SHIPPED, shipped
from bridge.service.config import Config
from bridge.service.engine import PlanResult
from bridge.service.runner import Request, Service
from bridge.service.wiring import open_adapters

CHECK_PORTAL_UNREACHABLE = 8
"""``check``'s own exit code: no portal answered at portal.url (refused, timed out, no route),
so neither the portal's health nor the credentials are known (docs/operations.md)."""

EPILOG_PLAN = N_("""examples:
  asiou-bridge plan                      full plan against the configured ASIOU database
  asiou-bridge plan --incremental        only rows changed since the last run
  asiou-bridge plan --detail             field-level before/after of updates
  asiou-bridge plan --json > plan.json   the same, machine-readable
""")


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
    except KeyboardInterrupt:
        print(
            _("Interrupted. What the portal acknowledged is recorded; the next run goes on."),
            file=sys.stderr,
        )
        return 130
    return code


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="asiou-bridge",
        description=_("Sync the ASIOU school journal to the regional e-diary."),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    config_option(parser)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_plan(sub)
    _add_sync(sub)
    cli_admin.add_all(sub)
    cli_match.add_match(sub)
    _add_approve(sub)
    _add_check(sub)
    _add_files(sub)
    cli_demo.add_demo_db(sub)
    cli_demo.add_demo(sub)
    cli_demo.add_portal(sub)
    cli_demo.add_dnevnik_emulator(sub)
    return parser


def _add_plan(sub: Subparsers) -> None:
    cmd = command(
        sub,
        "plan",
        _("Preview what a sync would send; changes nothing."),
        cmd_plan,
        _(EPILOG_PLAN),
    )
    cmd.add_argument(
        "--incremental",
        action="store_true",
        help=_("read only rows changed since the last run (finds no source deletions)"),
    )
    cmd.add_argument("--detail", action="store_true", help=_("show field-level before/after"))
    cmd.add_argument("--json", action="store_true", help=_("print JSON instead of a table"))
    cmd.add_argument(
        "--as-of", type=date.fromisoformat, help=_("plan as on this date (YYYY-MM-DD)")
    )
    _reconcile_flag(cmd)


def _reconcile_flag(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument(
        "--reconcile",
        action="store_true",
        help=_(
            "read the portal back first: re-send what is missing or changed "
            "there, remove what must not be there (a full run)"
        ),
    )


def _add_sync(sub: Subparsers) -> None:
    cmd = command(
        sub,
        "sync",
        _("Plan and deliver the changes to the portal."),
        cmd_sync,
        _(
            "examples:\n  asiou-bridge sync                 full read; finds deletions\n"
            "  asiou-bridge sync --incremental   rows changed since the last run\n"
            "  asiou-bridge sync --dry-run       plan only (same as `plan`)\n"
            "  asiou-bridge sync --reconcile     also read the portal back and repair it"
        ),
    )
    cmd.add_argument(
        "--incremental",
        action="store_true",
        help=_("read only rows changed since the last run (finds no source deletions)"),
    )
    cmd.add_argument("--dry-run", action="store_true", help=_("plan only; send nothing"))
    cmd.add_argument("--json", action="store_true", help=_("print the outcome as JSON"))
    cmd.add_argument("--as-of", type=date.fromisoformat, help=_("run as on this date (YYYY-MM-DD)"))
    _reconcile_flag(cmd)
    wait_flags(cmd)


def _add_approve(sub: Subparsers) -> None:
    cmd = command(
        sub,
        "approve",
        _("Approve the deletes, archives and closures of a plan a guard held."),
        cmd_approve,
        _(
            "example:\n  asiou-bridge approve 3f2a9c1b7d4e   (the id `plan` or `status` "
            "printed)\nAn unknown id is refused (exit 2); an approval expires after "
            "guard.approval_valid_hours."
        ),
    )
    cmd.add_argument("plan_id", help=_("the plan id that `asiou-bridge plan` or `status` printed"))


def _add_check(sub: Subparsers) -> None:
    command(sub, "check", _("Check configuration, mappings and the ASIOU connection."), cmd_check)


def _add_files(sub: Subparsers) -> None:
    cmd = command(
        sub,
        "files",
        _("Where the installed bridge keeps the files it ships (example config, mappings, units)."),
        cmd_files,
        configured=False,
        epilog=_(
            "examples:\n  asiou-bridge files                every shipped file and where it is"
        )
        + "\n"
        '  sudo cp "$(asiou-bridge files config)" /etc/asiou-bridge/bridge.toml\n'
        '  sudo cp -r "$(asiou-bridge files mappings)" /etc/asiou-bridge/mappings',
    )
    cmd.add_argument("name", nargs="?", choices=list(SHIPPED), help=_("print only this one's path"))


# --- commands -------------------------------------------------------------------------------


def cmd_plan(args: argparse.Namespace) -> int:
    """``plan``: a full (or incremental) plan, printed; nothing is sent or recorded."""
    if args.reconcile and args.incremental:
        print(_("--reconcile is a full run: it cannot be --incremental."), file=sys.stderr)
        return ExitCode.USAGE
    config, mappings = load(args)
    result = _plan(config, mappings, args.incremental, args.as_of or date.today(), args.reconcile)
    print(
        plan_json(result, args.detail)
        if args.json
        else plan_text(result, mappings.entities, args.detail)
    )
    return ExitCode.PLAN_HELD if result.held else ExitCode.OK


def _plan(
    config: Config, mappings: MappingSet, incremental: bool, as_of: date, reconcile: bool = False
) -> PlanResult:
    log = logs.get_logger(command="plan")
    started = time.monotonic()
    request = Request(command="plan", incremental=incremental, as_of=as_of, reconcile=reconcile)
    result = Service(config, mappings).preview(request)
    plan = result.plan
    log.info(
        "plan.done",
        mode=plan.mode,
        read=sum(plan.records_read.values()),
        changes={e: dict(c) for e, c in plan.counts.items()},
        held_back=sum(sum(c.values()) for c in plan.holds.values()),
        rejected=sum(plan.rejection_counts.values()),
        guard_held=result.held,
        seconds=round(time.monotonic() - started, 2),
    )
    return result


def cmd_sync(args: argparse.Namespace) -> int:
    """``sync``: plan and deliver; the exit code says whether anything was left undelivered."""
    if args.dry_run:
        args.detail = False
        return cmd_plan(args)
    if args.reconcile and args.incremental:
        print(_("--reconcile is a full run: it cannot be --incremental."), file=sys.stderr)
        return ExitCode.USAGE
    config, mappings = load(args)
    request = cli_admin.manual(
        "sync", args, incremental=args.incremental, as_of=args.as_of, reconcile=args.reconcile
    )
    outcome = Service(config, mappings).sync(request, say=say, progress=tty_progress(args.json))
    print(sync_json(outcome) if args.json else sync_text(outcome, mappings.entities))
    return outcome.exit_code


def cmd_approve(args: argparse.Namespace) -> int:
    """``approve``: let the next sync send the deletes of a held plan."""
    config, _mappings = load(args)
    with open_adapters(config) as io:
        io.state.approve(args.plan_id, getpass.getuser())  # UnknownPlan: nothing is stored
        held = io.state.held_plan(args.plan_id)
    hours = config.thresholds.approval_valid_hours
    print(
        _(
            "Plan {plan_id} approved ({summary}).\nA sync within {hours} hours sends its "
            "deletes, archives and closures if the plan is still the same; then the approval "
            "expires (guard.approval_valid_hours)."
        ).format(
            plan_id=args.plan_id,
            summary=held.summary if held else pgettext("plan", "held"),
            hours=f"{hours:g}",
        )
    )
    return ExitCode.OK


def cmd_files(args: argparse.Namespace) -> int:
    """``files``: the installed paths of the shipped files (no configuration needed)."""
    if args.name is not None:
        print(shipped(args.name))
        return ExitCode.OK
    width = max(map(len, SHIPPED))
    for name in SHIPPED:
        print(f"{name:<{width}}  {shipped(name)}")
    return ExitCode.OK


def cmd_check(args: argparse.Namespace) -> int:
    """``check``: configuration, mappings, the source and its tables, portal authentication;
    each gets a verdict, and the exit code is that of the first failure."""
    config, mappings = load(args)  # without these nothing else can be checked
    print(_("configuration: ok ({file})").format(file=config.file))
    print(
        _("mappings: ok ({n} entities from {folder})").format(
            n=len(mappings.mappings), folder=config.mappings_dir
        )
    )
    codes = [
        _verdict(_("source"), lambda: _check_source(config, mappings)),
        _verdict(_("portal"), lambda: _check_portal(config)),
    ]
    return next((code for code in codes if code != ExitCode.OK), ExitCode.OK)


def _verdict(name: str, check: Callable[[], str]) -> int:
    try:
        print(_("{name}: ok ({detail})").format(name=name, detail=check()))
    except _Unreachable as exc:
        print(_("{name}: FAILED").format(name=name) + f"\n{exc}")
        return CHECK_PORTAL_UNREACHABLE
    except BridgeError as exc:
        print(_("{name}: FAILED").format(name=name) + "\n" + error_text(exc))
        return exc.exit_code
    return ExitCode.OK


def _check_source(config: Config, mappings: MappingSet) -> str:
    with open_adapters(config) as io:
        missing = io.source.missing_tables(mappings.mappings)
    if missing:
        raise ConfigError(
            [
                Problem(
                    str(config.mappings_dir),
                    "",
                    _("table or view {table} is not in the ASIOU database").format(table=t),
                )
                for t in missing
            ]
        )
    return _("connected; every mapped table is there")


class _Unreachable(Exception):  # noqa: N818 - reads as the condition it reports
    """``check`` found no portal answering at the configured URL (its text is the advice)."""


def _check_portal(config: Config) -> str:
    try:
        with open_adapters(config, probe=True) as io:
            io.portal.authenticate()
    except PortalUnavailable as exc:
        raise _Unreachable(
            _(
                "The portal at {url} did not answer ({last}).\nNothing is known yet about the "
                "credentials. Check portal.url, that the portal is up, and that this server may "
                "reach it (a firewall, a proxy): "
            ).format(url=config.portal.url, last=exc.last)
            + f"curl -sS -o /dev/null -w '%{{http_code}}\\n' {config.portal.url}"
        ) from exc
    return _("authenticated at {url} as {client}").format(
        url=config.portal.url, client=config.portal.client_id
    )


if __name__ == "__main__":
    raise SystemExit(main())
