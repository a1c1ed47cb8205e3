"""A mapping from keys to a few distinct values that holds whole-number keys in four bytes each.

The gate's index of lessons and works (``bridge.core.gate``) maps every lesson and work of the
journal to its (day, class) pair: tens of thousands of keys a year, a few thousand distinct
values. A dict keeps a key string, a slot and a value pointer per key (~170 bytes); this keeps
a key that is the canonical text of a whole number (``str(int)``, no sign, no leading zero:
what the builder gives ASIOU's integer ids) as an offset from the lowest such key into an
``array('I')`` of value numbers (0: no value), each distinct value once in a table, and any
other key (text, a leading zero, one too far from the rest) in a plain dict. Two indexes may
share one table of values (``DenseIndex(sharing=...)``): the gate's lessons and works do, so a
work's lesson's pair is one number in both; ``keep`` may replace each new distinct value by the
one to keep (the gate's interns the texts of a (day, class) pair).

Finding a key's value takes more than a dict's lookup (the text is checked and parsed), so
the keys found last are remembered with their value's number in ``recent`` (at most
``RECENT`` of them, forgotten all at once when it is full, and each when its key is set or
deleted): the gate's hot path, which looks up the same work for a few dozen marks in a row,
reads ``table[recent.get(key) or index.find(key)]``, a dict's lookup and a list's, and calls
``find`` only for a key not seen lately. The fields are shared with such readers and changed
only in place.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Iterator, MutableMapping
from typing import TypeVar, cast

V = TypeVar("V")

SLACK = 65_536
"""Offsets a key may lie beyond the array (besides twice its length) and still be kept in it."""

RECENT = 1024
"""Keys found lately that an index remembers (``DenseIndex.recent``)."""


def is_canonical(key: str) -> bool:
    """True when ``key`` is the canonical text of a positive whole number (``str(int)``)."""
    return key.isdigit() and key.isascii() and key[0] != "0"


class DenseIndex(MutableMapping[str, V]):
    """A ``MutableMapping[str, V]`` that stores canonical whole-number keys densely (see the
    module docstring); it behaves as a dict but for the order of iteration."""

    __slots__ = ("count", "keep", "low", "numbers", "other", "recent", "slots", "table")

    def __init__(
        self,
        items: Iterable[tuple[str, V]] = (),
        *,
        sharing: DenseIndex[V] | None = None,
        keep: Callable[[V], V] | None = None,
    ) -> None:
        self.keep: Callable[[V], V] | None = keep if sharing is None else sharing.keep
        """Gives the value to keep for a new distinct value (None: the value itself)."""
        self.low = 0
        """The key at offset 0 of ``slots``."""
        self.slots = array("I")
        """Value numbers by offset from ``low``; 0: no value."""
        self.table: list[V] = cast("list[V]", [None]) if sharing is None else sharing.table
        """Each distinct value once, the first one given (number 0 is no value); it only grows,
        and may be shared with other indexes."""
        self.numbers: dict[V, int] = {} if sharing is None else sharing.numbers
        """Value → its number in ``table``."""
        self.other: dict[str, V] = {}
        """Every key not kept in ``slots``."""
        self.count = 0
        """How many keys ``slots`` holds."""
        self.recent: dict[str, int] = {}
        """Keys found lately → their value's number (see the module docstring)."""
        self.update(items)

    # --- reading --------------------------------------------------------------------------

    def _number(self, key: str) -> int:
        """The value number of a key kept in ``slots`` (0 if it is not)."""
        if not is_canonical(key):
            return 0
        at = int(key) - self.low
        return self.slots[at] if 0 <= at < len(self.slots) else 0

    def find(self, key: str) -> int:
        """The number of ``key``'s value in ``table``, 0 if it has none; a key found is
        remembered in ``recent``."""
        other = self.other
        if other and key in other:
            number = self.numbers[other[key]]
        elif key.__class__ is str and key.isdigit() and key.isascii() and key[0] != "0":
            at, slots = int(key) - self.low, self.slots  # is_canonical and _number, inline
            number = slots[at] if 0 <= at < len(slots) else 0
            if not number:
                return 0
        else:
            return 0
        recent = self.recent
        if len(recent) >= RECENT:
            recent.clear()
        recent[key] = number
        return number

    def __getitem__(self, key: str) -> V:
        number = self.recent.get(key) or self.find(key)
        if not number:
            raise KeyError(key)
        return self.table[number]

    def __contains__(self, key: object) -> bool:
        if key in self.other:
            return True
        return isinstance(key, str) and self._number(key) != 0

    def __iter__(self) -> Iterator[str]:
        yield from list(self.other)
        low = self.low
        for at, number in enumerate(self.slots):
            if number:
                yield str(low + at)

    def __len__(self) -> int:
        return self.count + len(self.other)

    def __repr__(self) -> str:
        return f"DenseIndex({dict(self.items())!r})"

    # --- writing --------------------------------------------------------------------------

    def _value_number(self, value: V) -> int:
        number = self.numbers.get(value)
        if number is None:
            kept = value if self.keep is None else self.keep(value)  # equal to it, to be kept
            number = self.numbers[kept] = len(self.table)
            self.table.append(kept)
        return number

    def __setitem__(self, key: str, value: V) -> None:
        # Run once per lesson and work learnt: the usual case (the next key up, or one within
        # the array, of a value seen before) takes no other call.
        if self.recent:
            self.recent.pop(key, None)
        number = self.numbers.get(value) or self._value_number(value)
        other, slots = self.other, self.slots
        if (other and key in other) or not (key.isdigit() and key.isascii() and key[0] != "0"):
            other[key] = self.table[number]  # (is_canonical, inline)
            return
        at = int(key) - self.low
        if at == len(slots) and self.count:
            slots.append(0)
        elif not 0 <= at < len(slots):
            if not self._reach(int(key)):
                other[key] = self.table[number]
                return
            at = int(key) - self.low
        if not slots[at]:
            self.count += 1
        slots[at] = number

    def _reach(self, number: int) -> bool:
        """Make room in ``slots`` for ``number`` if it is near enough; False if it is not."""
        slots = self.slots
        room = 2 * len(slots) + SLACK
        if not self.count:  # empty (or emptied): start afresh at this key
            del slots[:]
            self.low = number
        at = number - self.low
        if at < 0:
            if -at > room:
                return False
            grow = max(-at, len(slots) // 2)  # room below too, so keys coming down cost little
            slots[0:0] = array("I", bytes(4 * grow))
            self.low -= grow
        elif at >= len(slots):
            if at - len(slots) > room:
                return False
            slots.frombytes(bytes(4 * (at + 1 - len(slots))))
        return True

    def __delitem__(self, key: str) -> None:
        self.recent.pop(key, None)
        if key in self.other:
            del self.other[key]
            return
        if not self._number(key):
            raise KeyError(key)
        self.slots[int(key) - self.low] = 0
        self.count -= 1

    def clear(self) -> None:
        """Remove every key (in place: readers holding the fields see it); the table of values
        stays (it may be shared, and holds each distinct value once)."""
        del self.slots[:]
        self.other.clear()
        self.recent.clear()
        self.count = self.low = 0

    def copy(self) -> DenseIndex[V]:
        """A shallow copy with a table of its own (the values themselves are shared)."""
        copied: DenseIndex[V] = DenseIndex()
        copied.low, copied.count, copied.keep = self.low, self.count, self.keep
        copied.slots = array("I", self.slots)
        copied.table = list(self.table)
        copied.numbers = dict(self.numbers)
        copied.other = dict(self.other)
        return copied

    # --- pickling (to and from planning workers): the arrays as bytes, no key strings -------

    def __getstate__(self) -> tuple[int, bytes, list[V], dict[str, V]]:
        return self.low, self.slots.tobytes(), self.table[1:], self.other

    def __setstate__(self, state: tuple[int, bytes, list[V], dict[str, V]]) -> None:
        low, slots, values, other = state
        self.low, self.other, self.recent, self.keep = low, other, {}, None
        self.slots = array("I")
        self.slots.frombytes(slots)
        self.table = cast("list[V]", [None, *values])
        self.numbers = {v: n for n, v in enumerate(self.table) if n}
        self.count = len(self.slots) - self.slots.count(0)
