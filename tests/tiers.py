"""The two test tiers: the fast tier every submission runs, and the long trials.

``.venv/bin/python -m pytest`` runs the fast tier: pyproject's ``addopts`` deselect the tests
marked ``long``. A long trial repeats, with more draws, concurrencies or kill points, what the
fast tier already covers at least once, so the fast tier keeps every behaviour and the long
tier only adds cases:

    .venv/bin/python -m pytest -m long               # the long trials alone
    .venv/bin/python -m pytest -m "long or not long" # both tiers

The functions here build ``pytest.mark.parametrize`` values whose first or rotating cases stay
in the fast tier and whose others are marked ``long``; docs/reliability.md lists them with
their figures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest

LONG = pytest.mark.long


def first_fast(values: Iterable[Any], fast: int) -> list[Any]:
    """``values`` as parameters: the first ``fast`` in the fast tier, the rest marked long."""
    return [v if i < fast else pytest.param(v, marks=LONG) for i, v in enumerate(values)]


def one_fast_each(kinds: Sequence[Any], variants: Sequence[Any]) -> list[Any]:
    """Every ``(kind, variant)`` pair as parameters. Each kind runs once in the fast tier, with
    the variants taken in turn (the first kind with the first variant, the second with the
    second, …), so the fast tier still meets every kind and every variant; the other pairs are
    marked long."""
    pairs: list[Any] = []
    for i, kind in enumerate(kinds):
        for j, variant in enumerate(variants):
            fast = j == i % len(variants)
            pairs.append((kind, variant) if fast else pytest.param(kind, variant, marks=LONG))
    return pairs


def only_long(items: Iterable[pytest.Item]) -> list[str]:
    """The test functions all of whose cases are marked long, as ``path::name``: such a test
    would never run in the fast tier, which must meet every behaviour at least once."""
    fast: set[str] = set()
    every: set[str] = set()
    for item in items:
        name = item.nodeid.split("[", 1)[0]
        every.add(name)
        if item.get_closest_marker("long") is None:
            fast.add(name)
    return sorted(every - fast)
