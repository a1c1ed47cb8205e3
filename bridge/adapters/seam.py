"""Translation at the database seam: a driver's exception becomes the project's own
(``bridge.core.errors``), described in one line without SQL text or parameters (they may hold
names or marks), so nothing above the adapters ever branches on SQLAlchemy's types."""

from __future__ import annotations

import functools
import inspect
import os
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import sqlalchemy as sa

from bridge.core.errors import StateError

T = TypeVar("T")
DRIVER_ERRORS = (sa.exc.SQLAlchemyError, sqlite3.Error)
_TRANSLATED: weakref.WeakSet[Callable[..., Any]] = weakref.WeakSet()
"""The methods ``state_errors`` made, so a subclass does not wrap them twice."""


def describe(exc: BaseException) -> str:
    """A driver error as one line, without the SQL text or parameters."""
    orig = getattr(exc, "orig", None)
    text = str(orig) if orig is not None else str(exc).split("\n", 1)[0]
    return f"{type(orig or exc).__name__}: {text.splitlines()[0] if text else ''}"


FORK_SAFE = threading.Lock()
"""Held by a background thread while it is inside the database driver (the lock heartbeat,
the delivery recorder): a fork waits for it, so no forked child (range planning's workers)
inherits a driver's mutex held by a thread the child does not have."""


@functools.cache
def _guard_forks() -> None:
    os.register_at_fork(
        before=FORK_SAFE.acquire,
        after_in_parent=FORK_SAFE.release,
        after_in_child=FORK_SAFE.release,
    )


@contextmanager
def no_fork_meanwhile() -> Iterator[None]:
    """Hold off forks for the block (registered on first use, not at import)."""
    _guard_forks()
    with FORK_SAFE:
        yield


def state_errors(cls: type[T]) -> type[T]:
    """Make every public method of ``cls`` raise StateError where the driver failed (a
    generator's failure mid-iteration too), the methods it inherits from its bases (mixins)
    included, each named as a method of ``cls``; private helpers are left alone, and so is a
    method a decorated base already translates."""
    seen: set[str] = set()
    for klass in cls.__mro__[:-1]:  # all but object
        for name, member in list(vars(klass).items()):
            if name in seen:  # a class nearer in the MRO overrides it
                continue
            seen.add(name)
            if name.startswith("_") or not inspect.isfunction(member) or member in _TRANSLATED:
                continue
            setattr(cls, name, _translating(f"{cls.__name__}.{name}", member))
    return cls


def _translating(operation: str, method: Callable[..., Any]) -> Callable[..., Any]:
    translated = _translator(f"running {operation}", method)
    _TRANSLATED.add(translated)
    return translated


def _translator(words: str, method: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def streaming(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from method(*args, **kwargs)
            except DRIVER_ERRORS as exc:
                raise StateError(words, describe(exc)) from exc

        return streaming

    @functools.wraps(method)
    def calling(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except DRIVER_ERRORS as exc:
            raise StateError(words, describe(exc)) from exc

    return calling
