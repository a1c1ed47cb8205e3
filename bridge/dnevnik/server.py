"""The dnevnik.ru emulator as a program: ``python -m bridge.dnevnik.server`` and ``asiou-bridge
dnevnik-emulator`` (:func:`main`, :func:`serve`): the partner API v2 on ``/v2/``, its objects
in a SQLite file, the contingent seeded from an ASIOU SQLite file when the data file is new
(``docs/dnevnik-emulator.md``).

Logs carry counts and ids, never names, mark values or tokens.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from bridge import logs
from bridge.core.errors import ConfigError, Problem
from bridge.dnevnik.emulator import DnevnikEmulator
from bridge.dnevnik.service import DEMO_TOKEN
from bridge.refportal.faults import parse_faults
from bridge.refportal.server import load_json

__all__ = ["DEMO_TOKEN", "DnevnikEmulator", "add_arguments", "load_tokens", "main", "serve"]


def load_tokens(path: str | Path) -> list[str]:
    """Tokens from a file, one a line (blank lines and ``#`` comments skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError([Problem(str(path), "", f"cannot read tokens: {exc}")]) from exc
    tokens = [t.strip() for t in lines if t.strip() and not t.strip().startswith("#")]
    if not tokens:
        raise ConfigError([Problem(str(path), "", "holds no token")])
    return tokens


def serve(args: argparse.Namespace) -> int:
    """Run the emulator in the foreground until interrupted; returns the exit code. Raises
    ConfigError for an unreadable faults or tokens file or a new data file without a seed."""
    faults = parse_faults(load_json(args.faults, "faults"), args.faults) if args.faults else None
    tokens = load_tokens(args.token_file) if args.token_file else [args.token or DEMO_TOKEN]
    emulator = DnevnikEmulator(
        args.host, args.port, args.data, seed_school=args.seed_school, tokens=tokens,
        faults=faults, seed=args.seed,
    )  # fmt: skip
    try:
        emulator.serve_forever()
    except KeyboardInterrupt:
        emulator.service.log.info("interrupted")
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The program's options (shared with ``asiou-bridge dnevnik-emulator``)."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--data", required=True, help="SQLite file of the emulator's objects")
    parser.add_argument("--seed-school", help="ASIOU SQLite file to seed a new data file from")
    parser.add_argument("--faults", help="JSON file of faults to inject (as the portal's)")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--token-file", help="file of accepted Access-Tokens, one a line")
    group.add_argument("--token", help=f"the accepted Access-Token (default {DEMO_TOKEN})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the fault RNG")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bridge.dnevnik.server --data FILE [--seed-school SCHOOL.sqlite] ...``."""
    parser = argparse.ArgumentParser(
        prog="asiou-bridge dnevnik-emulator",
        description="Run the dnevnik.ru partner API v2 emulator.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    logs.configure()
    return serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
