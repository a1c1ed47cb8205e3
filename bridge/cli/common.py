"""Pieces every CLI module shares: subcommand registration, loading the configuration."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from bridge.core.mapping import MappingSet, load_mappings
from bridge.i18n import N_, _
from bridge.service.config import Config, find_config, load_config

if TYPE_CHECKING:
    Subparsers = argparse._SubParsersAction[argparse.ArgumentParser]
else:  # argparse's class is not subscriptable at run time
    Subparsers = argparse._SubParsersAction
Handler = Callable[[argparse.Namespace], int]


CONFIG_HELP = N_("config file (default: $ASIOU_BRIDGE_CONFIG, then /etc/asiou-bridge/bridge.toml)")


def command(
    sub: Subparsers,
    name: str,
    help_: str,
    handler: Handler,
    epilog: str = "",
    *,
    configured: bool = True,
) -> argparse.ArgumentParser:
    """Register one subcommand with its handler. A ``configured`` one (it reads the config)
    takes ``--config`` after its name too: ``asiou-bridge check --config FILE``."""
    cmd: argparse.ArgumentParser = sub.add_parser(
        name,
        help=help_,
        description=help_,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.set_defaults(handler=handler)
    if configured:
        config_option(cmd, default=argparse.SUPPRESS)
    return cmd


def config_option(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    """``--config FILE``; given before and after the subcommand, the later one counts (the
    subcommand's default, ``SUPPRESS``, leaves what the main parser read)."""
    parser.add_argument("--config", default=default, metavar="FILE", help=_(CONFIG_HELP))


def load(args: argparse.Namespace) -> tuple[Config, MappingSet]:
    """The config found by the documented lookup order, and its compiled mappings."""
    config = load_config(find_config(args.config))
    return config, load_mappings(config.mappings_dir)


def say(text: str) -> None:
    """A message for the admin, on stderr (stdout is for results)."""
    print(text, file=sys.stderr, flush=True)


def tty_progress(quiet: bool = False) -> Callable[[str, int], None] | None:
    """Progress per entity (records and rate) on an interactive terminal; None otherwise, and
    None when ``quiet`` (``--json``: machine-readable runs show none)."""
    if quiet or not sys.stderr.isatty():
        return None
    started = time.monotonic()

    def show(entity: str, delivered: int) -> None:
        rate = delivered / max(time.monotonic() - started, 1e-6)
        shown = _("{entity} {delivered} delivered  {rate}/s").format(
            entity=f"{entity:<14}", delivered=f"{delivered:>10,}", rate=f"{rate:>8,.0f}"
        )
        print(
            f"\r  {shown} ",
            end="",
            file=sys.stderr,
            flush=True,
        )

    return show


def wait_flags(cmd: argparse.ArgumentParser) -> None:
    """``--wait`` (the default) or ``--no-wait`` when another sync holds the lock."""
    group = cmd.add_mutually_exclusive_group()
    group.add_argument(
        "--wait",
        dest="wait",
        action="store_true",
        default=True,
        help=_("if a sync is running, wait for it (default)"),
    )
    group.add_argument(
        "--no-wait",
        dest="wait",
        action="store_false",
        help=_("if a sync is running, refuse at once"),
    )
