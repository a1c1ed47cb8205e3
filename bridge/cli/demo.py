"""The demo and bundled-portal commands: ``demo-db``, ``demo``, ``portal``,
``dnevnik-emulator``."""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import requests
import sqlalchemy as sa

from bridge.cli.common import Subparsers, command
from bridge.cli.render import sync_text
from bridge.core.errors import ExitCode
from bridge.core.mapping import load_mappings
from bridge.demo.changes import change_journal
from bridge.demo.target import foreign_tables, mark_as_demo
from bridge.dnevnik import server as dnevnik_server
from bridge.dnevnik.service import DEMO_TOKEN
from bridge.i18n import _, ngettext
from bridge.refportal.server import DEMO_CLIENT, serve
from bridge.resources import default_mappings
from bridge.service.config import load_config
from bridge.service.runner import Request, Service

DEMO_DIR = Path("var/demo")


def add_demo_db(sub: Subparsers) -> None:
    cmd = command(
        sub,
        "demo-db",
        _("Write a synthetic demo school into a database."),
        cmd_demo_db,
        _(
            "examples:\n  asiou-bridge demo-db --out school.sqlite --pupils 1100 --seed 1\n"
            "  mariadb -e 'CREATE DATABASE asiou_demo CHARACTER SET utf8mb4'\n"
            "  asiou-bridge demo-db --url 'mysql+pyodbc://root@127.0.0.1/asiou_demo"
            "?driver=MariaDB+Unicode&charset=utf8mb4' --pupils 200\n"
            "The demo's tables have the names of a real ASIOU journal's, and are replaced: it "
            "writes only\ninto an empty database or one it wrote before, and refuses any other "
            "unless --replace."
        ),
        configured=False,
    )
    where = cmd.add_mutually_exclusive_group(required=True)
    where.add_argument("--out", help=_("SQLite file to create (or one the demo wrote before)"))
    where.add_argument(
        "--url",
        help=_("SQLAlchemy URL of an empty database to fill (or one the demo wrote before)"),
    )
    _school_options(cmd)


def _school_options(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("--pupils", type=int, default=1100, help=_("pupils in the school (1100)"))
    cmd.add_argument("--seed", type=int, default=1, help=_("random seed (same seed, same school)"))
    cmd.add_argument("--days", type=int, help=_("only the first N days of the school year"))
    cmd.add_argument("--clean", action="store_true", help=_("without the usual journal mistakes"))
    cmd.add_argument(
        "--replace",
        action="store_true",
        help=_(
            "write even where other tables are: the demo's own tables are dropped and "
            "re-created (an ASIOU journal's of the same names too), the others left alone"
        ),
    )


def add_demo(sub: Subparsers) -> None:
    cmd = command(
        sub,
        "demo",
        _("Demo: a school in SQLite, the reference portal, a full and an incremental sync."),
        cmd_demo,
        configured=False,
    )
    cmd.add_argument("--dir", default=str(DEMO_DIR), help=_("where the demo files go (var/demo)"))
    cmd.add_argument(
        "--portal",
        choices=["reference", "dnevnik"],
        default="reference",
        help=_(
            "the bundled reference portal, or the dnevnik.ru emulator (one record a request: "
            "a school of 60 pupils and 20 days unless --pupils and --days say otherwise)"
        ),
    )
    _school_options(cmd)
    cmd.set_defaults(pupils=None)


def add_portal(sub: Subparsers) -> None:
    cmd = command(
        sub,
        "portal",
        _("Run the bundled reference diary portal (demos, tests)."),
        cmd_portal,
        _("example:") + "\n  asiou-bridge portal --port 8400 --data portal.sqlite",
        configured=False,
    )
    cmd.add_argument("--host", default="127.0.0.1", help=_("address to listen on (127.0.0.1)"))
    cmd.add_argument("--port", type=int, default=8400, help=_("port (8400; 0 picks a free one)"))
    cmd.add_argument("--data", default="var/portal.sqlite", help=_("SQLite file of its records"))
    cmd.add_argument("--faults", help=_("JSON file of faults to inject (docs/portal-api.md)"))
    cmd.add_argument("--seed", type=int, default=0, help=_("seed of the fault dice"))
    cmd.add_argument("--clients", help=_("JSON file of schools and their client credentials"))
    cmd.add_argument("--token-ttl", type=int, default=3600, help=_("token lifetime in seconds"))


def add_dnevnik_emulator(sub: Subparsers) -> None:
    cmd = command(
        sub,
        "dnevnik-emulator",
        _("Run the bundled dnevnik.ru partner API v2 emulator (demos, tests)."),
        cmd_dnevnik_emulator,
        _("example:") + "\n  asiou-bridge dnevnik-emulator --port 8500 --data var/dnevnik.sqlite"
        " --seed-school school.sqlite\n(docs/dnevnik-emulator.md)",
        configured=False,
    )
    dnevnik_server.add_arguments(cmd)


def cmd_dnevnik_emulator(args: argparse.Namespace) -> int:
    """``dnevnik-emulator``: serve the dnevnik.ru emulator until interrupted."""
    Path(args.data).resolve().parent.mkdir(parents=True, exist_ok=True)
    print(
        _("dnevnik.ru emulator on {url} (data {data})").format(
            url=f"http://{args.host}:{args.port}/v2/", data=args.data
        ),
        flush=True,
    )
    return dnevnik_server.serve(args)


def cmd_portal(args: argparse.Namespace) -> int:
    """``portal``: serve the reference portal until interrupted."""
    Path(args.data).resolve().parent.mkdir(parents=True, exist_ok=True)
    print(
        _(
            "reference portal on {url} (data {data}); demo client {client} (its secret is in "
            "docs/portal-api.md)"
        ).format(
            url=f"http://{args.host}:{args.port}", data=args.data, client=repr(DEMO_CLIENT[0])
        ),
        flush=True,
    )
    return serve(
        args.host,
        args.port,
        args.data,
        args.faults,
        clients_file=args.clients,
        token_ttl=args.token_ttl,
        seed=args.seed,
    )


def cmd_demo_db(args: argparse.Namespace) -> int:
    """``demo-db``: write a synthetic school (see docs/asiou-schema.md)."""
    url = args.url or f"sqlite:///{Path(args.out).resolve()}"
    if args.out:
        Path(args.out).resolve().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url)
    try:
        others = foreign_tables(engine)
        if others and not args.replace:
            print(_refusal(engine.url, others), file=sys.stderr)
            return ExitCode.USAGE
        mark_as_demo(engine)
    finally:
        engine.dispose()
    counts = _generate(url, args)
    rows, marks, pupils = sum(counts.values()), counts.get("mark", 0), counts.get("pupil", 0)
    print(
        _("demo school written: {rows} ({marks}, {pupils})").format(
            rows=ngettext("{n} row", "{n} rows", rows).format(n=rows),
            marks=ngettext("{n} mark", "{n} marks", marks).format(n=marks),
            pupils=ngettext("{n} pupil", "{n} pupils", pupils).format(n=pupils),
        )
    )
    return ExitCode.OK


def _refusal(url: sa.URL, others: list[str]) -> str:
    more = _(" and {n} more").format(n=len(others) - 8) if len(others) > 8 else ""
    return _(
        "The database {url} holds tables the demo did not write ({n}: {tables}): nothing was "
        "written.\nThe demo drops and re-creates tables named as an ASIOU journal's. Give it an "
        "empty database of its own (CREATE DATABASE asiou_demo) or a new --out file, or add "
        "--replace if its tables of those names may go."
    ).format(
        url=url.render_as_string(hide_password=True),
        n=len(others),
        tables=", ".join(others[:8]) + more,
    )


def _generate(url: str, args: argparse.Namespace) -> dict[str, int]:
    from bridge.demo.generate import SchoolSpec, generate  # noqa: PLC0415 - demo only

    spec = SchoolSpec(pupils=args.pupils, seed=args.seed, days=args.days, mistakes=not args.clean)
    engine = sa.create_engine(url)
    last = [0.0]

    def progress(table: str, rows: int) -> None:
        if sys.stderr.isatty() and time.monotonic() - last[0] > 0.5:
            last[0] = time.monotonic()
            shown = ngettext("writing {table}: {n} row", "writing {table}: {n} rows", rows)
            print(f"\r  {shown.format(table=table, n=rows)} ", end="", file=sys.stderr, flush=True)

    try:
        return generate(engine, spec, progress)
    finally:
        engine.dispose()
        if sys.stderr.isatty():
            print(file=sys.stderr)


def cmd_demo(args: argparse.Namespace) -> int:
    """``demo``: demo school, reference portal, a full sync, journal changes, an incremental
    sync; prints what was delivered each time and the portal's own counts."""
    started = time.monotonic()
    folder = Path(args.dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    school = folder / "school.sqlite"
    dnevnik = args.portal == "dnevnik"
    if args.pupils is None:
        args.pupils = 60 if dnevnik else 300
    if dnevnik and args.days is None:
        args.days = 20
    print(
        ngettext(
            "1. Generating a demo school of {n} pupil into {file} ...",
            "1. Generating a demo school of {n} pupils into {file} ...",
            args.pupils,
        ).format(n=args.pupils, file=school)
    )
    args.out, args.url = str(school), None
    written = cmd_demo_db(args)
    if written != ExitCode.OK:
        return written
    print(f"   ({_since(started)})")
    for stale in ("state.sqlite", "portal.sqlite", "dnevnik.sqlite"):
        (folder / stale).unlink(missing_ok=True)
    if dnevnik:
        with _emulator_process(folder, school) as (url, school_id):
            code = _demo_syncs(folder, school, url, dnevnik_school=school_id)
    else:
        with _portal_process(folder) as url:
            code = _demo_syncs(folder, school, url)
    print("\n" + _("The demo took {time} in all.").format(time=_since(started)))
    return code


def _since(started: float) -> str:
    """Seconds since ``started`` (a monotonic clock reading), for people."""
    return _("{seconds} s").format(seconds=f"{time.monotonic() - started:.1f}")


@contextmanager
def _portal_process(folder: Path) -> Iterator[str]:
    """The reference portal in a process of its own (the bridge and the portal do not share
    one interpreter's lock), on a free port of 127.0.0.1, its log in ``portal.log``; its URL.
    Stopped (SIGTERM) at the end of the block."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "bridge", "portal", "--port", str(port)]
    command += ["--data", str(folder / "portal.sqlite")]
    with (folder / "portal.log").open("w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)  # noqa: S603 - our own program
        try:
            _wait_until_up(url, process)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextmanager
def _emulator_process(folder: Path, school: Path) -> Iterator[tuple[str, str]]:
    """The dnevnik.ru emulator in a process of its own, seeded from the demo school, its log
    in ``dnevnik.log``; its /v2/ URL and the portal's id of the school."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "bridge", "dnevnik-emulator", "--port", str(port)]
    command += ["--data", str(folder / "dnevnik.sqlite"), "--seed-school", str(school)]
    with (folder / "dnevnik.log").open("w", encoding="utf-8") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log)  # noqa: S603 - our own program
        try:
            _wait_until_up(f"{url}/_emulator/stats", process, what=_("the dnevnik.ru emulator"))
            school_id = requests.get(f"{url}/_emulator/state", timeout=30).json()["school"]
            yield f"{url}/v2/", str(school_id)
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_up(
    url: str,
    process: subprocess.Popen[bytes],
    seconds: float = 30.0,
    what: str = "",
) -> None:
    """Wait until ``url`` answers (a health read of the portal)."""
    what = what or _("the reference portal")
    probe = url if "/_" in url else f"{url}/_portal/counts"
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if process.poll() is not None:
            raise RuntimeError(
                _("{what} exited at start ({code})").format(what=what, code=process.returncode)
            )
        try:
            requests.get(probe, timeout=1).raise_for_status()
            return
        except requests.RequestException:
            time.sleep(0.05)
    raise RuntimeError(
        _("{what} did not answer at {url} within {seconds} s").format(
            what=what, url=url, seconds=f"{seconds:g}"
        )
    )


def _demo_syncs(
    folder: Path, school: Path, portal_url: str, *, dnevnik_school: str | None = None
) -> int:
    written = (
        _write_demo_config(folder, school, portal_url)
        if dnevnik_school is None
        else _write_dnevnik_config(folder, school, portal_url, dnevnik_school)
    )
    config = load_config(written)
    mappings = load_mappings(config.mappings_dir)
    counts = _portal_counts if dnevnik_school is None else _emulator_counts
    name = _("Reference portal") if dnevnik_school is None else _("dnevnik.ru emulator")
    print(
        _("2. {portal} on {url}; config {config}").format(
            portal=name, url=portal_url, config=config.file
        )
        + "\n"
    )
    print(_("3. Full sync") + "\n")
    service = Service(config, mappings)
    started = time.monotonic()
    first = service.sync(Request(command="demo"))
    print(sync_text(first, mappings.entities) + "\n" + counts(portal_url))
    print(_("(the full sync took {time})").format(time=_since(started)))
    if dnevnik_school is not None:
        print("\n" + _matching_report(service))
    engine = sa.create_engine(f"sqlite:///{school}")
    changes = change_journal(engine, datetime.now())
    engine.dispose()
    new = len(changes.new_marks)
    print(
        "\n"
        + ngettext(
            "4. Journal changed: {n} new mark, mark {mark} edited, pupil {pupil} withdrawn "
            "on {day}, consent of pupil {consent} withdrawn",
            "4. Journal changed: {n} new marks, mark {mark} edited, pupil {pupil} withdrawn "
            "on {day}, consent of pupil {consent} withdrawn",
            new,
        ).format(
            n=new,
            mark=changes.edited_mark,
            pupil=changes.withdrawn_pupil,
            day=changes.withdrawn_on,
            consent=changes.consent_withdrawn_pupil,
        )
        + "\n\n"
        + _("5. Incremental sync")
        + "\n"
    )
    started = time.monotonic()
    second = service.sync(Request(command="demo", incremental=True))
    print(sync_text(second, mappings.entities) + "\n" + counts(portal_url))
    print(_("(the incremental sync took {time})").format(time=_since(started)))
    return max(first.exit_code, second.exit_code)


def _portal_counts(url: str) -> str:
    counts = requests.get(f"{url}/_portal/counts", timeout=10).json()
    lines = [_("The portal's own counts of live records:")]
    for school, entities in counts.items():
        shown = ", ".join(f"{e} {n}" for e, n in entities.items())
        lines.append("  " + _("school {school}: {counts}").format(school=school, counts=shown))
    return "\n".join(lines)


def _emulator_counts(url: str) -> str:
    root = url.removesuffix("/v2/")
    counts = requests.get(f"{root}/_emulator/state", timeout=30).json()["counts"]
    shown = ", ".join(f"{k} {counts[k]}" for k in ("lesson", "work", "mark", "logentry"))
    return _("The emulator's own counts: {counts}").format(counts=shown)


def _matching_report(service: Service) -> str:
    """The contingent's matching, as ``asiou-bridge match list`` shows it (keys and ids)."""
    with service.state_store() as state:
        found = state.matches()
    counts: dict[str, Counter[str]] = {}
    for m in found:
        counts.setdefault(m.entity, Counter())[m.status.value] += 1
    lines = [_("The contingent matched with the portal's (`asiou-bridge match list`):")]
    lines += [
        f"  {entity:<10}" + ", ".join(f"{s} {n}" for s, n in sorted(c.items()))
        for entity, c in counts.items()
    ]
    undecided = [m for m in found if not m.status.usable]
    lines += [
        "  "
        + _("waiting: {entity} {key} {status}").format(
            entity=m.entity, key=m.key, status=m.status.value
        )
        + (", " + _("candidates {ids}").format(ids=" ".join(m.candidates)) if m.candidates else "")
        + f" ({m.rule})"
        for m in undecided
    ]
    if undecided:
        lines.append("  " + _("nothing of these is sent until `asiou-bridge match confirm|reject`"))
    return "\n".join(lines)


def _write_dnevnik_config(folder: Path, school: Path, api_url: str, school_id: str) -> Path:
    path = folder / "bridge.toml"
    secret = folder / "dnevnik-token"
    secret.write_text(DEMO_TOKEN, encoding="utf-8")
    os.chmod(secret, 0o600)
    mappings = default_mappings()
    path.write_text(
        "# Written by `asiou-bridge demo --portal dnevnik`.\n"
        f'[source]\nurl = "sqlite:///{school}"\n\n'
        f'[state]\nurl = "sqlite:///{folder / "state.sqlite"}"\n\n'
        f'[mappings]\ndir = "{mappings}"\n\n'
        f'[portal]\nkind = "dnevnik"\nurl = "{api_url}"\nschool = "{school_id}"\n'
        f'secret_file = "{secret}"\nbatch_size = 20\nconcurrency = 4\n',
        encoding="utf-8",
    )
    os.chmod(path, 0o600)
    return path


def _write_demo_config(folder: Path, school: Path, portal_url: str) -> Path:
    path = folder / "bridge.toml"
    secret = folder / "portal-secret"
    secret.write_text(DEMO_CLIENT[1], encoding="utf-8")
    os.chmod(secret, 0o600)
    mappings = default_mappings()
    path.write_text(
        "# Written by `asiou-bridge demo`.\n"
        f'[source]\nurl = "sqlite:///{school}"\n\n'
        f'[state]\nurl = "sqlite:///{folder / "state.sqlite"}"\n\n'
        f'[mappings]\ndir = "{mappings}"\n\n'
        f'[portal]\nurl = "{portal_url}"\nschool = "demo"\nclient_id = "{DEMO_CLIENT[0]}"\n'
        f'secret_file = "{secret}"\n',
        encoding="utf-8",
    )
    os.chmod(path, 0o600)
    return path
