"""The portal's ids of the bridge's records, as a run needs them at send time: the ids the
portal gave in this run (an answer not yet recorded), the matches of the contingent, and the
state store's (``StateStore.portal_ids``), looked up once per key and kept."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from bridge.core.matching import Matches

Lookup = Callable[[str, Sequence[str]], dict[str, str]]
"""(entity, keys) → key → portal id (``StateStore.portal_ids``)."""
Holders = Callable[[str, Sequence[str]], dict[str, str]]
"""(entity, portal ids) → portal id → the key holding it (``StateStore.holders``)."""


class IdBook:
    """Source key ↔ portal id for one run, shared by the sending threads."""

    def __init__(self, lookup: Lookup, holders: Holders) -> None:
        self._lookup, self._holders = lookup, holders
        self._ids: dict[tuple[str, str], str | None] = {}
        self._taken: dict[tuple[str, str], str] = {}  # (entity, portal id) → key, this run
        self._matches = Matches()
        self._lock = threading.Lock()

    def use_matches(self, matches: Matches) -> None:
        """The run's matches of the contingent (pupils, classes, subjects, periods)."""
        with self._lock:
            self._matches = matches

    def matched(self, entity: str, key: str) -> str | None:
        """The portal's id of a matched record (None: no usable match)."""
        with self._lock:
            return self._matches.portal_id(entity, key)

    def get(self, entity: str, key: str) -> str | None:
        """The portal's id of a record the bridge wrote (this run, or recorded before)."""
        with self._lock:
            if (entity, key) in self._ids:
                return self._ids[(entity, key)]
        found = self._lookup(entity, [key]).get(key)
        with self._lock:
            return self._ids.setdefault((entity, key), found)

    def prefetch(self, entity: str, keys: Sequence[str]) -> None:
        """Look up, at once, the ids of ``keys`` not known yet (one query a batch)."""
        with self._lock:
            wanted = sorted({k for k in keys if (entity, k) not in self._ids})
        if not wanted:
            return
        found = self._lookup(entity, wanted)
        with self._lock:
            for key in wanted:
                self._ids.setdefault((entity, key), found.get(key))

    def note(self, entity: str, key: str, portal_id: str | None) -> None:
        """The portal gave (or took back) ``key``'s id in this run."""
        with self._lock:
            self._ids[(entity, key)] = portal_id
            if portal_id is not None:
                self._taken[(entity, portal_id)] = key

    def claim(self, entity: str, portal_id: str, key: str) -> bool:
        """Take ``portal_id`` for ``key`` unless another record holds it (this run, or
        recorded): True if taken. The test and the taking are one step under the lock, so two
        batches in flight never both take one portal record."""
        recorded = self._holders(entity, [portal_id]).get(portal_id)  # read before locking
        with self._lock:
            taken = self._taken.get((entity, portal_id))
            holder = taken if taken is not None else recorded
            if holder is not None and holder != key:
                return False
            self._taken[(entity, portal_id)] = key
            self._ids[(entity, key)] = portal_id
            return True
