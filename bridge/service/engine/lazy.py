"""Incremental runs that read only what changed of the big entities the gate needs (lessons and
works: a mark is gated by its work's lesson's day and class), instead of every row.

Two things make the full read of such an entity unnecessary:

* **The gate's facts by key.** A later entity's rows (marks, absences) are gated only against
  the lessons and works they name: before a chunk of its rows is gated, the rows of the keys it
  names that this run has not seen are read by key and mapped and gated as a full read would
  (``Lazy.wrap``). A key with no row is missing, one whose row is rejected is rejected: the
  gate decides exactly as with the full read, nothing is assumed.
* **A snapshot of the last read** (``Snapshot``, in the state store), for what the plan reports
  of the rows not read: the keys read, which of them were not records (rejected, or referring
  to a missing or rejected record) and the highest watermark. An incremental run reads the
  rows changed since the snapshot's watermark, the rows it says were rejected (they are noted
  again, as a full read notes every rejection), and the rows without a key.

The snapshot is trusted only when nothing it cannot see has happened; otherwise the entity is
read whole, as before, and the snapshot written again (fail closed):

* the mapping, and the keys and rejected keys of the entities it refers to, are those it was
  taken with (``digest``); for a lazily read parent (a work's lesson): the parent's snapshot
  it was taken with is the one this run started from, and no parent key stopped being a record
  this run (``lost``: its children may have become rejections without changing);
* the table's count and sum of keys are those of the snapshot plus the keys read (no row gone,
  none added with an old watermark), and no row lacks a watermark;
* every key is a whole number, and few enough rows changed or were rejected.
"""

from __future__ import annotations

import base64
import hashlib
import json
import zlib
from array import array
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import accumulate, islice

from bridge.core import gate
from bridge.core.fields import whole_number
from bridge.core.gate import Context
from bridge.core.mapping import CompiledMapping
from bridge.ports import GateCacheState, KeyedSource, Rescan, Row, Source, StateStore
from bridge.service.engine.options import LAZY, MAX_RESCAN
from bridge.service.engine.reading import _as_datetime, _raw_key, to_items

CHUNK = 500
"""Keys read at a time (one IN list), and rows gated after each lookup."""

MAX_CHANGED = 50_000
"""Rows a lazy read holds before it is checked; with more changed, the entity is read whole."""

DECODED_KEPT = 8
"""Decoded snapshots a process keeps, by their text (``Snapshot.decode``)."""

_DECODED: dict[str, Snapshot] = {}


@dataclass(frozen=True, eq=True)
class Snapshot:
    """What the last read of an entity taught the gate (see the module docstring). Immutable:
    a decoded one may serve several runs of one process (``decode``)."""

    digest: str
    mark: str
    keys: frozenset[int]
    rejected: frozenset[int]
    parents: Mapping[str, str] = field(default_factory=dict)
    """Lazily read parent entity → the generation of its snapshot this one was taken with."""

    def encode(self) -> str:
        """The snapshot as text (keys delta-encoded and compressed)."""
        ordered = sorted(self.keys)
        deltas = array("q", (b - a for a, b in zip([0, *ordered], ordered, strict=False)))
        packed = base64.b64encode(zlib.compress(deltas.tobytes())).decode()
        return json.dumps(
            {
                "v": 1,
                "digest": self.digest,
                "mark": self.mark,
                "keys": packed,
                "rejected": sorted(self.rejected),
                "parents": self.parents,
            }
        )

    @staticmethod
    def decode(text: str | None) -> Snapshot | None:
        """The snapshot ``encode`` wrote; None for nothing or anything else. A process that
        reads the same text again (the daemon, run after run) gets the snapshot decoded the
        first time (decoding tens of thousands of keys takes milliseconds)."""
        if text is None:
            return None
        found = _DECODED.get(text)
        if found is None:
            found = Snapshot._decode(text)
            if len(_DECODED) >= DECODED_KEPT:
                _DECODED.clear()
            if found is not None:
                _DECODED[text] = found
        return found

    @staticmethod
    def _decode(text: str) -> Snapshot | None:
        try:
            found = json.loads(text)
            deltas = array("q")
            deltas.frombytes(zlib.decompress(base64.b64decode(found["keys"])))
            return Snapshot(
                str(found["digest"]),
                str(found["mark"]),
                frozenset(accumulate(deltas)),
                frozenset(int(k) for k in found["rejected"]),
                {str(k): str(v) for k, v in found["parents"].items()},
            )
        except (ValueError, KeyError, TypeError, AttributeError, zlib.error):
            return None


def whole_key(raw: object) -> int | None:
    """A key column's raw value as a whole number; None for text (text keys sort as text in
    the source, so a snapshot of whole numbers cannot stand for them) and for anything else."""
    return None if raw is None or isinstance(raw, str | bytes) else whole_number(raw)


def generation(text: str) -> str:
    """A short id of one written snapshot."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def digest(mapping: CompiledMapping, ctx: Context) -> str:
    """The mapping, and the keys and rejected keys of the entities it refers to (but for lazily
    read ones): what the gate's verdict on a row depends on besides the row."""
    h = hashlib.blake2b(digest_size=16)
    identity = (
        mapping.version,
        mapping.table,
        mapping.schema,
        mapping.key_columns,
        mapping.columns,
        mapping.filters,
        mapping.watermark,
        mapping.key_collation,
        mapping.fields,
    )
    h.update(repr(identity).encode())
    for target in sorted(set(mapping.refs.values()) - LAZY):
        for keys in (ctx.keys.get(target, set()), ctx.rejected.get(target, set())):
            h.update(("\x1e".join(sorted(keys)) + "\x1d").encode())
    return h.hexdigest()


def may_be_lazy(mapping: CompiledMapping) -> bool:
    """True for an entity read lazily when it can be: a big entity the gate holds nothing of by
    pupil (no pupil reference, no rule of its own), with one key column and a watermark."""
    return (
        mapping.entity in LAZY
        and len(mapping.key_columns) == 1
        and mapping.watermark is not None
        and "pupil" not in mapping.refs.values()
        and mapping.entity not in gate.RULES
        and mapping.entity not in gate.COMPILED_RULES
        and mapping.entity not in gate.DERIVED
    )


@dataclass
class _Pass:
    """One entity's read in this run, until ``Lazy.finish``."""

    digest: str
    before: Snapshot | None
    keys: set[int] | None = field(default_factory=set)  # None: a key not a whole number
    lazy: bool = False


class Lazy:
    """The lazily read entities of one incremental run (see the module docstring)."""

    def __init__(
        self,
        source: KeyedSource,
        state: GateCacheState,
        ctx: Context,
        *,
        writes: bool,
        overlap: timedelta,
        read: Counter[str],
    ) -> None:
        self.source, self.state, self.ctx = source, state, ctx
        self.writes, self.overlap, self.read = writes, overlap, read
        self.active: dict[str, CompiledMapping] = {}
        self.resolved: dict[str, set[str]] = {}
        self.lost: dict[str, set[int] | None] = {}
        self.started: dict[str, str | None] = {}  # entity → generation of its snapshot at start
        self.current: dict[str, str | None] = {}  # entity → generation after this run's read
        self.passes: dict[str, _Pass] = {}

    @staticmethod
    def for_run(
        source: Source,
        state: StateStore,
        ctx: Context,
        *,
        writes: bool,
        overlap: timedelta,
        read: Counter[str],
    ) -> Lazy | None:
        """A ``Lazy`` when the adapters can read by key and keep snapshots, else None."""
        if isinstance(source, KeyedSource) and isinstance(state, GateCacheState):
            return Lazy(source, state, ctx, writes=writes, overlap=overlap, read=read)
        return None

    # --- one entity's own read ----------------------------------------------------------------

    def begin(self, mapping: CompiledMapping) -> None:
        """Note the snapshot the entity's read starts from (before anything is read)."""
        text = self.state.gate_cache(mapping.entity)
        self.started[mapping.entity] = None if text is None else generation(text)
        self.passes[mapping.entity] = _Pass(digest(mapping, self.ctx), Snapshot.decode(text))

    def changed_rows(self, mapping: CompiledMapping, since: datetime) -> list[Row] | None:
        """The rows a lazy read of the entity reads (the rows without a key, then the rows
        changed since the snapshot's watermark or ``since`` and the rows it says were rejected,
        in key order), or None when the entity must be read whole."""
        run = self.passes[mapping.entity]
        snapshot = run.before
        if snapshot is None or not self._trusts(mapping, snapshot, run.digest):
            return None
        mark = _as_datetime(snapshot.mark)
        if mark is None or len(snapshot.rejected) > MAX_RESCAN:
            return None
        start = min(since, mark - self.overlap)
        rejected = Rescan(mapping.key_columns[0], [str(k) for k in sorted(snapshot.rejected)])
        at = mapping.columns.index(mapping.key_columns[0])
        read = self.source.read(mapping, start, rejected)
        rows = [r for r in islice(read, MAX_CHANGED + 1) if r[at] is not None]
        if len(rows) > MAX_CHANGED:
            return None
        keys = {whole_key(r[at]) for r in rows}
        if None in keys:
            return None
        run.keys = {k for k in keys if k is not None}
        seen = snapshot.keys | run.keys
        if self.source.key_totals(mapping) != (len(seen), sum(seen), 0):
            return None  # a row gone, or added unseen, or one without a watermark
        run.lazy = True
        return [*self.source.read_keyless(mapping), *rows]

    def _trusts(self, mapping: CompiledMapping, snapshot: Snapshot, now: str) -> bool:
        if snapshot.digest != now:
            return False
        for target in sorted(set(mapping.refs.values()) & LAZY):
            if target not in self.current or self.lost.get(target) != set():
                return False  # its parent was not read lazily, or lost records this run
            if snapshot.parents.get(target) != self.started.get(target):
                return False
        return True

    def observe(self, mapping: CompiledMapping, rows: Iterable[Row]) -> Iterator[Row]:
        """The rows of a whole read, their keys noted for the snapshot."""
        run = self.passes[mapping.entity]
        at = mapping.columns.index(mapping.key_columns[0])
        for row in rows:
            raw = row[at]
            if raw is not None and run.keys is not None:
                key = whole_key(raw)
                if key is None:
                    run.keys = None
                else:
                    run.keys.add(key)
            yield row

    def finish(self, mapping: CompiledMapping, mark: str | None) -> str | None:
        """After the entity's read (``mark``: the highest watermark it saw): what it lost, its
        new snapshot (written unless this run is a preview), and, if it was read lazily, its
        facts looked up by key from now on. Returns the entity's watermark reached (a lazy
        read's is the snapshot's where no row read is newer)."""
        entity, run = mapping.entity, self.passes.pop(mapping.entity)
        known, before = self.ctx.known(entity), run.before
        if run.lazy:
            assert before is not None
            assert run.keys is not None
            self.active[entity] = mapping
            self.resolved[entity] = {str(k) for k in run.keys}
            ok_before = {k for k in run.keys if k in before.keys and k not in before.rejected}
            keys = before.keys | run.keys
            rejected = (before.rejected - run.keys) | {k for k in run.keys if str(k) not in known}
            marks = [m for m in (before.mark, mark) if _as_datetime(m) is not None]
            mark = max(marks, key=lambda m: _as_datetime(m) or datetime.min)
        else:
            if run.keys is None:
                self.lost[entity], self.current[entity] = None, None
                return mark
            keys = frozenset(run.keys)
            rejected = frozenset(k for k in run.keys if str(k) not in known)
            ok_before = set() if before is None else set(before.keys - before.rejected)
        self.lost[entity] = (
            None if before is None else {k for k in ok_before if str(k) not in known}
        )
        if mark is None:
            self.current[entity] = None
            return mark
        parents = {t: self.current.get(t) for t in sorted(set(mapping.refs.values()) & LAZY)}
        found = {t: g for t, g in parents.items() if g is not None}
        self._keep(entity, Snapshot(run.digest, mark, keys, rejected, found), before)
        return mark

    def _keep(self, entity: str, snapshot: Snapshot, before: Snapshot | None) -> None:
        """Write the snapshot if it changed (and this run is not a preview)."""
        if snapshot == before and self.started.get(entity) is not None:
            self.current[entity] = self.started[entity]
            return
        if not self.writes:  # a preview keeps nothing, and writes no child's snapshot either
            self.current[entity] = "unwritten"
            return
        try:
            text = snapshot.encode()
        except OverflowError:  # a key beyond 64 bits: no snapshot
            self.current[entity] = None
            return
        self.current[entity] = generation(text)
        self.state.set_gate_cache(entity, text)

    # --- the facts other entities need --------------------------------------------------------

    def complete(self, mapping: CompiledMapping) -> None:
        """Before ``mapping``'s rows are read whole: read every row of the lazily read
        entities it refers to (every one of its rows may name any of them)."""
        for target in sorted(set(mapping.refs.values()) & set(self.active)):
            lazy = self.active.pop(target)
            self.complete(lazy)
            for _ in to_items(lazy, self.source.read(lazy), self.ctx, read=self.read):
                pass

    def wrap(self, mapping: CompiledMapping, rows: Iterable[Row]) -> Iterable[Row]:
        """``rows`` of ``mapping``, each chunk given only after the facts of the lazily read
        records it names are known (read by key)."""
        named = [
            (mapping.columns.index(spec.columns[0]), spec.ref)
            for spec in mapping.fields
            if spec.ref is not None and spec.ref in self.active
        ]
        return self._resolving(rows, named) if named else rows

    def _resolving(self, rows: Iterable[Row], named: list[tuple[int, str]]) -> Iterator[Row]:
        stream = iter(rows)
        while chunk := list(islice(stream, CHUNK * 4)):
            for at, target in named:
                self._resolve(target, {k for k in (_raw_key(r, at) for r in chunk) if k})
            yield from chunk

    def _resolve(self, entity: str, keys: set[str]) -> None:
        """Read, map and gate the rows of ``keys`` of ``entity`` not seen yet in this run."""
        seen, mapping = self.resolved[entity], self.active.get(entity)
        missing = sorted(keys - seen)
        if mapping is None or not missing:
            return
        seen.update(missing)
        for start in range(0, len(missing), CHUNK):
            rows = self.wrap(
                mapping, self.source.read_keys(mapping, missing[start : start + CHUNK])
            )
            for _ in to_items(mapping, rows, self.ctx, read=self.read):
                pass
