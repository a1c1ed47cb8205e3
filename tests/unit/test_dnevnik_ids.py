"""The dnevnik.ru adapter's id book: a portal record is taken for one record of the bridge
only, even by batches in flight together, and never from a record that holds it."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from bridge.adapters.dnevnik.ids import IdBook


def slow_holders(recorded: dict[str, str]) -> object:
    """The state's holders, slow enough that two threads meet between test and take."""

    def holders(_entity: str, portal_ids: Sequence[str]) -> dict[str, str]:
        time.sleep(0.05)
        return {p: recorded[p] for p in portal_ids if p in recorded}

    return holders


def test_two_batches_claiming_one_portal_record_get_it_once() -> None:
    book = IdBook(lambda _e, _k: {}, slow_holders({}))  # type: ignore[arg-type]
    start = threading.Barrier(8)

    def claim(key: str) -> bool:
        start.wait()
        return book.claim("work", "501", key)

    with ThreadPoolExecutor(8) as pool:
        won = list(pool.map(claim, [f"w{n}" for n in range(8)]))
    assert won.count(True) == 1
    winner = f"w{won.index(True)}"
    assert not book.claim("work", "501", "someone else")
    assert book.get("work", winner) == "501"
    assert book.claim("work", "501", winner)  # the holder may claim it again


def test_a_record_held_in_the_state_store_is_not_claimed_by_another() -> None:
    book = IdBook(lambda _e, _k: {}, slow_holders({"501": "w1"}))  # type: ignore[arg-type]
    assert not book.claim("work", "501", "w2")
    assert book.claim("work", "501", "w1")
    assert book.claim("work", "502", "w2")
