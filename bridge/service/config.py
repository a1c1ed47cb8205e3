"""Configuration: one TOML file, validated at start-up, every problem reported at once.

Lookup order: ``--config FILE``, ``$ASIOU_BRIDGE_CONFIG``, ``/etc/asiou-bridge/bridge.toml``.
``config/bridge.toml`` is the commented example; the sections of ``bridge.service.settings`` are
the one description of every key (type, default, meaning); validation checks a file against them
and builds them.

Secrets never live in the file. The source database password comes from
``$ASIOU_BRIDGE_DB_PASSWORD``, a file named by ``source.password_file``, or the systemd credential
``db-password`` (``$CREDENTIALS_DIRECTORY``); the portal secret likewise from
``$ASIOU_BRIDGE_PORTAL_SECRET``, ``portal.secret_file`` or the credential ``portal-secret``.
A password written inline in a database URL is refused. Relative file names (SQLite paths,
the secret files, the tables file, the mappings folder) are relative to the config file. A secret
file the configuration names must be there. The schedule is refused unless the scheduler can
build its triggers (``bridge.service.schedule``).
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bridge.adapters.portal_client.settings import MAX_CONCURRENCY
from bridge.core.errors import ConfigError, Problem
from bridge.core.guard import Thresholds
from bridge.service.schedule import build_triggers
from bridge.service.settings import (
    CLOCK,
    DAYS,
    EVERY,
    HOURS,
    DeliverySettings,
    GuardSettings,
    MappingsSettings,
    MetricsSettings,
    PortalSection,
    Schedule,
    SourceSettings,
    StateSettings,
    SyncSettings,
    every_seconds,
    reconcile_when,
    schema,
)

SYSTEM_CONFIG = Path("/etc/asiou-bridge/bridge.toml")
PORTAL_KINDS = ("reference", "dnevnik")
CONFIG_ENV = "ASIOU_BRIDGE_CONFIG"
DB_PASSWORD_ENV = "ASIOU_BRIDGE_DB_PASSWORD"  # noqa: S105 - a variable name, not a secret
PORTAL_SECRET_ENV = "ASIOU_BRIDGE_PORTAL_SECRET"  # noqa: S105 - a variable name
SCHEMA = schema()
"""section → key → (TOML types, default (None: required), meaning)."""


@dataclass(frozen=True)
class Config:
    """Validated configuration, one typed object per section. Secrets are never in it: they
    are read when needed (``source_url_with_password``, ``portal_secret``)."""

    file: str
    source: SourceSettings
    state: StateSettings
    mappings: MappingsSettings
    portal: PortalSection
    schedule: Schedule
    metrics: MetricsSettings
    delivery: DeliverySettings
    sync: SyncSettings
    guard: GuardSettings

    @property
    def thresholds(self) -> Thresholds:
        """The guard's thresholds (``[guard]``)."""
        return self.guard.thresholds

    @property
    def mappings_dir(self) -> Path:
        """The directory of the mapping files (anchored at the config file's folder)."""
        return Path(self.mappings.dir)

    def source_url_with_password(self, env: Mapping[str, str] = os.environ) -> sa.URL:
        """The source URL with the password from the environment or a credential file."""
        url = sa.make_url(self.source.url)
        password = read_secret(DB_PASSWORD_ENV, self.source.password_file, "db-password", env)
        return url if password is None else url.set(password=password)

    def portal_secret(self, env: Mapping[str, str] = os.environ) -> str | None:
        """The portal's client secret from the environment or a credential file."""
        return read_secret(PORTAL_SECRET_ENV, self.portal.secret_file, "portal-secret", env)


def read_secret(variable: str, file: str, credential: str, env: Mapping[str, str]) -> str | None:
    """A secret from ``$variable``, else ``file``, else ``$CREDENTIALS_DIRECTORY/credential``."""
    if env.get(variable):
        return env[variable]
    if file and not Path(file).is_file():
        raise ConfigError(
            [
                Problem(
                    file,
                    "",
                    "secret file not found (named in the configuration); create it, "
                    f"or set ${variable} or the systemd credential {credential} instead",
                )
            ]
        )
    candidates = [Path(file)] if file else []
    if env.get("CREDENTIALS_DIRECTORY"):
        candidates.append(Path(env["CREDENTIALS_DIRECTORY"]) / credential)
    for path in candidates:
        if path.is_file():
            try:
                return path.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    [
                        Problem(
                            str(path),
                            "",
                            f"cannot read this secret file: "
                            f"{exc.strerror}; give the service user read access "
                            "or use a systemd credential",
                        )
                    ]
                ) from exc
    return None


def find_config(explicit: str | None, env: Mapping[str, str] = os.environ) -> Path:
    """The config file to use, by the documented lookup order."""
    if explicit:
        return Path(explicit)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    if SYSTEM_CONFIG.exists():
        return SYSTEM_CONFIG
    raise ConfigError(
        [
            Problem(
                "(no file)",
                "",
                "no configuration found: pass --config FILE, set "
                f"${CONFIG_ENV}, or create {SYSTEM_CONFIG} (example: "
                "config/bridge.toml); `asiou-bridge demo` needs none",
            )
        ]
    )


def load_config(path: Path) -> Config:
    """Read and validate ``path``; raise ConfigError listing every problem."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(path), "", f"cannot read: {exc}")]) from exc
    return parse_config(data, path)


def parse_config(data: Mapping[str, Any], path: Path) -> Config:
    """Validate parsed TOML against SCHEMA and build a Config."""
    problems: list[Problem] = []
    values = _validate(data, str(path), problems)
    _check_urls(values, str(path), problems)
    if not any(p.path.startswith("schedule") for p in problems):
        problems += _trigger_problems(Schedule(**values["schedule"]), str(path))
    if problems:
        raise ConfigError(problems)
    base = path.parent
    portal = {**values["portal"], "url": values["portal"]["url"].rstrip("/")}
    for key in ("tables_file", "secret_file"):
        portal[key] = _anchor_file(portal[key], base)
    source = {**values["source"], "url": _anchor(values["source"]["url"], base)}
    source["password_file"] = _anchor_file(source["password_file"], base)
    return Config(
        file=str(path),
        source=SourceSettings(**source),
        state=StateSettings(**{**values["state"], "url": _anchor(values["state"]["url"], base)}),
        mappings=MappingsSettings(dir=str((base / values["mappings"]["dir"]).resolve())),
        portal=PortalSection(**portal),
        schedule=Schedule(**values["schedule"]),
        metrics=MetricsSettings(**values["metrics"]),
        delivery=DeliverySettings(**values["delivery"]),
        sync=SyncSettings(**values["sync"]),
        guard=GuardSettings(**values["guard"]),
    )


def _validate(data: Mapping[str, Any], file: str, problems: list[Problem]) -> dict[str, Any]:
    for section in sorted(set(data) - set(SCHEMA)):
        problems.append(Problem(file, section, f"unknown section; known: {', '.join(SCHEMA)}"))
    values: dict[str, dict[str, Any]] = {}
    for section, keys in SCHEMA.items():
        given = data.get(section, {})
        if not isinstance(given, dict):
            problems.append(Problem(file, section, "must be a table"))
            given = {}
        for key in sorted(set(given) - set(keys)):
            problems.append(Problem(file, f"{section}.{key}", "unknown key"))
        values[section] = {
            k: _value(given, section, k, spec, file, problems) for k, spec in keys.items()
        }
    return values


def _value(  # noqa: PLR0917 - private helper of _validate
    given: Mapping[str, Any],
    section: str,
    key: str,
    spec: tuple[type | tuple[type, ...], Any, str],
    file: str,
    problems: list[Problem],
) -> Any:
    kind, default, meaning = spec
    if key not in given:
        if default is None:
            problems.append(Problem(file, f"{section}.{key}", f"missing: {meaning}"))
        return default
    value = given[key]
    wrong_bool = isinstance(value, bool) and kind is not bool
    if wrong_bool or not isinstance(value, kind):
        problems.append(Problem(file, f"{section}.{key}", f"must be {_type_name(kind)}"))
        return default
    return value


def _type_name(kind: type | tuple[type, ...]) -> str:
    names = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _check_urls(values: dict[str, Any], file: str, problems: list[Problem]) -> None:
    for section in ("source", "state"):
        url = values[section]["url"]
        if not isinstance(url, str):
            continue
        try:
            parsed = sa.make_url(url)
        except (sa.exc.ArgumentError, ValueError):
            problems.append(
                Problem(
                    file,
                    f"{section}.url",
                    "is not a valid SQLAlchemy URL (dialect+driver://user@host:port/database)",
                )
            )
            continue
        if parsed.password:
            problems.append(
                Problem(
                    file,
                    f"{section}.url",
                    "holds a password: remove it and set "
                    f"${DB_PASSWORD_ENV} or a credential file instead",
                )
            )
    guard = values["guard"]
    if not 0 <= float(guard["max_delete_fraction"]) <= 1:
        problems.append(Problem(file, "guard.max_delete_fraction", "must be between 0 and 1"))
    if not 0 < float(guard["approval_valid_hours"]) <= 24 * 366:
        problems.append(
            Problem(
                file,
                "guard.approval_valid_hours",
                "must be greater than 0 and at most 8784 (a year)",
            )
        )
    if float(values["sync"]["run_deadline_minutes"]) < 0:
        problems.append(Problem(file, "sync.run_deadline_minutes", "must be 0 (no limit) or more"))
    if values["sync"]["plan_workers"] < 0:
        problems.append(Problem(file, "sync.plan_workers", "must be 0 (one per CPU core) or more"))
    _check_limits(values, file, problems)
    if values["portal"]["kind"] not in PORTAL_KINDS:
        kinds = " or ".join(PORTAL_KINDS)
        problems.append(Problem(file, "portal.kind", f"must be {kinds}"))
    if not 1 <= values["portal"]["concurrency"] <= MAX_CONCURRENCY:
        problems.append(Problem(file, "portal.concurrency", f"must be from 1 to {MAX_CONCURRENCY}"))
    _check_schedule(values["schedule"], file, problems)
    _check_metrics(values["metrics"], file, problems)
    positive = [
        ("portal", "batch_size"),
        ("portal", "retries"),
        ("portal", "connect_timeout"),
        ("portal", "read_timeout"),
        ("portal", "request_deadline"),
        ("portal", "max_retry_after"),
        ("portal", "max_batch_wait"),
        ("delivery", "dead_letter_after"),
    ]
    for section, key in positive:
        value = values[section][key]
        if isinstance(value, int | float) and value <= 0:
            problems.append(Problem(file, f"{section}.{key}", "must be greater than 0"))


def _check_limits(values: dict[str, Any], file: str, problems: list[Problem]) -> None:
    """The region's settings: the nightly spread, the state connections, the query timeout."""
    if not 0 <= values["schedule"]["spread_minutes"] <= 720:
        problems.append(Problem(file, "schedule.spread_minutes", "must be from 0 to 720"))
    if values["state"]["max_connections"] < 2:
        problems.append(Problem(file, "state.max_connections", "must be at least 2"))
    if float(values["source"]["query_timeout"]) < 0:
        problems.append(Problem(file, "source.query_timeout", "must be 0 (no limit) or more"))


def _trigger_problems(schedule: Schedule, file: str) -> list[Problem]:
    """What keeps the scheduler from running ``schedule`` (the daemon builds the same
    triggers before it is ready)."""
    try:
        build_triggers(schedule, file)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def _anchor_file(file: str, base: Path) -> str:
    """A relative file name is relative to the config file's folder ("" stays unset)."""
    return str((base / file).resolve()) if file else ""


def _anchor(url: str, base: Path) -> str:
    """A relative SQLite path is relative to the config file, not to the working directory."""
    parsed = sa.make_url(url)
    database = parsed.database
    if parsed.get_backend_name() != "sqlite" or not database or database == ":memory:":
        return url
    if Path(database).is_absolute():
        return url
    return parsed.set(database=str((base / database).resolve())).render_as_string(False)


def _check_schedule(schedule: dict[str, Any], file: str, problems: list[Problem]) -> None:
    checks = [
        ("incremental_every", EVERY, "a period like 30s, 15m or 1h"),
        ("full_at", CLOCK, "a time like 02:30"),
        ("dead_letters_at", CLOCK, "a time"),
        ("days", DAYS, "days like mon-fri or mon,wed,fri"),
    ]
    for key, pattern, meaning in checks:
        if isinstance(schedule[key], str) and not pattern.fullmatch(schedule[key].strip()):
            problems.append(Problem(file, f"schedule.{key}", f"must be {meaning}"))
    _check_reconcile_at(schedule["reconcile_at"], file, problems)
    hours = schedule["hours"]
    if (
        isinstance(hours, str)
        and hours
        and (
            not HOURS.fullmatch(hours.strip())
            or any(int(h) > 23 for h in re.findall(r"\d+", hours))
        )
    ):
        problems.append(Problem(file, "schedule.hours", "must be hours 0-23 like 7-19 or 8,12"))
    every = schedule["incremental_every"]
    windowed = bool(hours) or schedule["days"] != "mon-sun"
    if (
        windowed
        and isinstance(every, str)
        and EVERY.fullmatch(every.strip())
        and (every_seconds(every) % 60 or 60 % max(1, every_seconds(every) // 60))
    ):
        problems.append(
            Problem(
                file,
                "schedule.incremental_every",
                "with hours or days set, "
                "must be whole minutes that divide an hour (5m, 10m, 15m, 30m)",
            )
        )
    if (
        isinstance(schedule["incremental_every"], str)
        and EVERY.fullmatch(schedule["incremental_every"].strip())
        and every_seconds(schedule["incremental_every"]) < 1
    ):
        problems.append(Problem(file, "schedule.incremental_every", "must be at least 1s"))


def _check_reconcile_at(value: object, file: str, problems: list[Problem]) -> None:
    if not isinstance(value, str):
        return
    try:
        reconcile_when(value)
    except ValueError:
        problems.append(
            Problem(
                file,
                "schedule.reconcile_at",
                "must be days and a time like "
                "'sun 03:00' or 'mon-fri 03:00', or empty (only on demand)",
            )
        )


def _host_port(text: str) -> bool:
    """Whether ``text`` is HOST:PORT (HOST may be empty) with a port from 1 to 65535."""
    found = re.fullmatch(r"[^\s:]*:(\d{1,5})", text)
    return found is not None and 1 <= int(found[1]) <= 65535


def _check_metrics(metrics: dict[str, Any], file: str, problems: list[Problem]) -> None:
    textfile, listen = metrics["textfile"], metrics["listen"]
    if isinstance(textfile, str) and textfile and not textfile.endswith(".prom"):
        problems.append(
            Problem(file, "metrics.textfile", "must end in .prom (node_exporter reads only those)")
        )
    if isinstance(listen, str) and listen and not _host_port(listen):
        problems.append(
            Problem(
                file,
                "metrics.listen",
                "must be HOST:PORT (a port from 1 to 65535), like 127.0.0.1:9464",
            )
        )
