"""The reference portal's fault plan: which fault, if any, the next ``/api`` request suffers.

Pure logic: settings are parsed and validated once (every problem reported at once), then a
:class:`FaultPlan` answers :meth:`FaultPlan.next_fault` once per ``/api`` request. A scripted
sequence is consumed first, one entry per request (``"ok"`` means no fault); after it, every
request draws one number from a seeded RNG and the configured rates decide. The same settings
and seed give the same faults in the same order, so a failing run can be replayed.

Settings JSON (the ``--faults`` file, and ``POST /_portal/faults``)::

    {"rates": {"429": 0.1, "500": 0.05}, "retry_after": 1, "slow_seconds": 5,
     "script": ["429", "ok", "lost"], "seed": 7}

Every key is optional; ``{}`` means no faults.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from bridge.core.errors import ConfigError, Problem

KINDS = ("429", "429-date", "500", "502", "503", "html", "slow", "reset", "lost", "token-expired")
"""Every fault kind, in the order rates are laid out on the unit interval."""

NO_FAULT = "ok"
"""The script entry meaning "answer this request normally"."""

KEYS = ("rates", "script", "retry_after", "slow_seconds", "seed")


@dataclass(frozen=True, slots=True)
class FaultSettings:
    """Validated fault settings: rate per kind, script, Retry-After and slow-answer seconds."""

    rates: Mapping[str, float] = field(default_factory=dict)
    script: tuple[str, ...] = ()
    retry_after: float = 1.0
    slow_seconds: float = 5.0
    seed: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The settings as the JSON object that :func:`parse_faults` reads back."""
        return {
            "rates": dict(self.rates),
            "script": list(self.script),
            "retry_after": self.retry_after,
            "slow_seconds": self.slow_seconds,
            "seed": self.seed,
        }


def parse_faults(raw: object, source: str = "faults") -> FaultSettings:
    """Validate ``raw`` (decoded JSON) into settings; raises ConfigError with every problem,
    each located in ``source`` (a file name, or the endpoint)."""
    if not isinstance(raw, Mapping):
        raise ConfigError([Problem(source, "", "must be a JSON object")])
    problems = [
        Problem(source, str(k), f"unknown key (known: {', '.join(KEYS)})")
        for k in raw
        if k not in KEYS
    ]
    rates = _rates(raw.get("rates", {}), source, problems)
    script = _script(raw.get("script", []), source, problems)
    retry_after = _seconds(raw.get("retry_after", 1.0), "retry_after", source, problems)
    slow = _seconds(raw.get("slow_seconds", 5.0), "slow_seconds", source, problems)
    seed = raw.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        problems.append(Problem(source, "seed", "must be an integer"))
    if problems:
        raise ConfigError(problems)
    return FaultSettings(rates, script, retry_after, slow, seed)


def _rates(raw: object, source: str, problems: list[Problem]) -> dict[str, float]:
    if not isinstance(raw, Mapping):
        problems.append(Problem(source, "rates", "must be an object of kind → rate"))
        return {}
    rates: dict[str, float] = {}
    for kind, rate in raw.items():
        where = f"rates.{kind}"
        if kind not in KINDS:
            problems.append(Problem(source, where, f"unknown fault kind (known: {_known()})"))
        elif not _is_number(rate) or not 0 <= rate <= 1:
            problems.append(Problem(source, where, "must be a number from 0 to 1"))
        else:
            rates[kind] = float(rate)
    if sum(rates.values()) > 1:
        problems.append(Problem(source, "rates", "the rates add up to more than 1"))
    return rates


def _script(raw: object, source: str, problems: list[Problem]) -> tuple[str, ...]:
    if not isinstance(raw, Sequence) or isinstance(raw, str):
        problems.append(Problem(source, "script", 'must be a list of fault kinds or "ok"'))
        return ()
    for index, kind in enumerate(raw):
        if kind != NO_FAULT and kind not in KINDS:
            problems.append(
                Problem(source, f"script[{index}]", f"unknown fault kind (known: ok, {_known()})")
            )
    return tuple(str(k) for k in raw)


def _seconds(raw: object, name: str, source: str, problems: list[Problem]) -> float:
    if not _is_number(raw) or raw < 0:
        problems.append(Problem(source, name, "must be a number of seconds, 0 or more"))
        return 0.0
    return float(raw)


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _known() -> str:
    return ", ".join(KINDS)


class FaultPlan:
    """Decides the fault of each ``/api`` request: script entries first, then seeded rates.
    Not thread-safe: the server calls it under its lock."""

    def __init__(self, settings: FaultSettings | None = None, seed: int = 0) -> None:
        self.settings = settings or FaultSettings()
        chosen = self.settings.seed if self.settings.seed is not None else seed
        self._random = random.Random(chosen)
        self._script: deque[str] = deque(self.settings.script)

    @property
    def remaining_script(self) -> list[str]:
        """The script entries not yet consumed."""
        return list(self._script)

    def next_fault(self, fresh_token: bool = False) -> str | None:
        """The fault kind for the next request, or None to answer it normally. A drawn (not
        scripted) ``token-expired`` spares a ``fresh_token`` (one never used before): a token
        just issued does not expire at once, so a client that refreshes always recovers."""
        if self._script:
            kind = self._script.popleft()
            return None if kind == NO_FAULT else kind
        if not self.settings.rates:
            return None
        drawn = pick(self.settings.rates, self._random.random())
        return None if drawn == "token-expired" and fresh_token else drawn

    def retry_after_seconds(self) -> int:
        """Retry-After as whole seconds (HTTP allows no fractions), rounded up."""
        return -int(-self.settings.retry_after // 1)


def pick(rates: Mapping[str, float], draw: float) -> str | None:
    """The kind whose slice of [0, 1) holds ``draw`` (kinds laid out in ``KINDS`` order), or
    None when ``draw`` falls past the sum of the rates."""
    edge = 0.0
    for kind in KINDS:
        edge += rates.get(kind, 0.0)
        if draw < edge:
            return kind
    return None
