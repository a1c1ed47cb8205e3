"""The state store's upsert on PostgreSQL goes through psycopg's COPY into a temporary table and
one INSERT … SELECT … ON CONFLICT (bridge/adapters/state/postgres.py): it stores exactly what the
SQLite path and SQLAlchemy's executemany store, in the acknowledgement's transaction, so a batch
that fails anywhere leaves nothing of itself, and its errors reach the caller as StateError."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bridge.adapters.state import (
    NO_CONSENT,
    SqlStateStore,
    consent_withdrawal,
    dead_letter,
    delivery_batch,
    open_state,
    postgres,
    record_state,
    schema_name,
)
from bridge.core.errors import StateError
from bridge.core.mapping import make_keys
from bridge.core.model import Change, Op, Record, Value
from bridge.ports import Delivered, Refusal

START = datetime(2025, 9, 1, 8, 0, 0, 123456, tzinfo=UTC)
SCHOOL = "school-1"
ODD_TEXT = 'tab\there, line\nbreak, back\\slash, "quotes", Ёжик, \\N, \x7f'


class Clock:
    """A clock that moves on a minute at every reading, so first and last times differ."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        self.now += timedelta(minutes=1)
        return self.now


def change(
    op: Op,
    key: Sequence[object],
    fingerprint: str = "f1",
    *,
    entity: str = "pupil",
    payload: Mapping[str, Value] | None = None,
    reason: str | None = None,
) -> Change:
    """A change of one record (a delete carries no record, as the planner makes it)."""
    text, sort_key = make_keys(list(key))
    record = (
        None
        if op == Op.DELETE
        else Record(entity, text, sort_key, dict(payload or {"n": text}), fingerprint)
    )
    return Change(op, entity, text, sort_key, record, reason=reason)


def acked(c: Change, **owners: Any) -> Delivered:
    """``c`` as the portal acknowledged it."""
    return Delivered(c, **owners)


def batches() -> list[tuple[list[Delivered], list[Refusal]]]:
    """Batches of acknowledged and refused changes: creates, updates of existing keys, a key
    twice in one batch, archives, deletes (one for lack of consent), revivals, refusals that
    become dead letters and later deliveries that clear only those, odd text in payloads."""
    refused = [
        Refusal(change(Op.CREATE, [6]), "invalid", "no class"),
        Refusal(change(Op.CREATE, [7]), None, "server said no"),
        Refusal(change(Op.UPDATE, ["m", 3], entity="mark"), "invalid", "bad value"),
    ]
    first = [
        *(acked(change(Op.CREATE, [k]), pupil_key=str(k), class_key="c1") for k in range(1, 6)),
        *(
            acked(change(Op.CREATE, ["m", k], entity="mark"), pupil_key="1", portal_id=f"p{k}")
            for k in range(1, 4)
        ),
    ]
    second = [
        acked(change(Op.UPDATE, [1], "f2", payload={"n": ODD_TEXT}), pupil_key="1"),
        acked(change(Op.ARCHIVE, [2], "f3"), pupil_key="2", class_key="c2"),
        acked(change(Op.DELETE, [3])),
        acked(change(Op.DELETE, [4], reason=NO_CONSENT)),
        acked(change(Op.UPDATE, [5], "first"), pupil_key="5"),
        acked(change(Op.UPDATE, [5], "last", payload={"v": [1, 2.5, None]}), mapping_version=2),
        acked(change(Op.CREATE, [6], "f6"), pupil_key="6"),
        acked(change(Op.DELETE, ["m", 9], entity="mark")),  # never delivered: changes nothing
        acked(change(Op.DELETE, ["m", 2], entity="mark")),
    ]
    third = [
        acked(change(Op.CREATE, [3], "back"), pupil_key="3"),
        acked(change(Op.CREATE, [4], "again"), pupil_key="4"),
        acked(change(Op.UPDATE, ["m", 3], "m3", entity="mark"), portal_id="p3b"),
        acked(change(Op.CREATE, [ODD_TEXT, 8], payload={ODD_TEXT: ODD_TEXT})),
        acked(change(Op.DELETE, [9], reason=NO_CONSENT)),  # noted, though never delivered
    ]
    fourth = [  # creates only, one of a key the state holds (a tombstone): the staged way
        acked(change(Op.CREATE, ["m", 4], entity="mark"), pupil_key="2"),
        acked(change(Op.CREATE, ["m", 2], "again", entity="mark"), pupil_key="2"),
    ]
    return [(first, refused), (second, refused[1:2]), (third, []), (fourth, [])]


def replay(store: SqlStateStore) -> None:
    """Every batch of ``batches()`` opened and committed, as delivery does."""
    for number, (delivered, refused) in enumerate(batches()):
        store.open_batch("run", number, len(delivered) + len(refused))
        store.commit_batch("run", number, delivered, refused, 2)
    store.record([acked(change(Op.UPDATE, [2], "plain"), pupil_key="2")])


def dump(store: SqlStateStore) -> dict[str, list[tuple[object, ...]]]:
    """Every row the delivery writes, in key order, times as aware UTC date-times."""
    tables = {
        "record_state": (record_state, ("entity", "sort_key")),
        "dead_letter": (dead_letter, ("entity", "sort_key")),
        "consent_withdrawal": (consent_withdrawal, ("pupil_key",)),
        "delivery_batch": (delivery_batch, ("run_id", "batch")),
    }
    out = {}
    with store.engine.connect() as conn:
        for name, (table, key) in tables.items():
            rows = conn.execute(sa.select(table).order_by(*(table.c[k] for k in key)))
            out[name] = sorted((tuple(_plain(v) for v in row) for row in rows), key=repr)
    return out


def _plain(value: object) -> object:
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    return value


@pytest.fixture
def fast_path(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """Each call of the PostgreSQL fast path: the number of rows, and whether all are new."""
    calls: list[tuple[int, bool]] = []
    real = postgres.upsert

    def counted(conn: sa.Connection, rows: Sequence[tuple[object, ...]], *, new: bool) -> None:
        calls.append((len(rows), new))
        real(conn, rows, new=new)

    monkeypatch.setattr(postgres, "upsert", counted)
    return calls


@pytest.fixture
def pg_store(postgres_url: str) -> Iterator[SqlStateStore]:
    """A fresh state store on PostgreSQL, in a school's schema, with the moving clock."""
    store = open_state(postgres_url, Clock(), school=SCHOOL)
    try:
        yield store
    finally:
        store.close()


def test_postgres_stores_the_rows_sqlite_stores(
    tmp_path: Path, pg_store: SqlStateStore, fast_path: list[tuple[int, bool]]
) -> None:
    """The same batches leave the same rows in every table on PostgreSQL as on SQLite."""
    lite = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}", Clock())
    try:
        replay(lite)
        replay(pg_store)
        # Creates only (straight COPY; the fourth revives a tombstone), pupil 5 twice in the
        # second batch (two rows given, one stored), updates and creates, one update.
        assert fast_path == [(8, True), (5, False), (4, False), (2, True), (1, False)]
        assert dump(pg_store) == dump(lite)
    finally:
        lite.close()


def test_the_fast_path_stores_what_sqlalchemy_stored(
    postgres_url: str, pg_store: SqlStateStore, fast_path: list[tuple[int, bool]]
) -> None:
    """On PostgreSQL, the COPY path and SQLAlchemy's executemany store identical rows."""
    portable = open_state(postgres_url, Clock(), school="school-2")
    portable.portable_writes = True
    try:
        replay(portable)
        assert fast_path == []
        replay(pg_store)
        assert fast_path
        assert dump(pg_store) == dump(portable)
    finally:
        portable.close()


def test_updates_keep_the_first_delivery_time(pg_store: SqlStateStore) -> None:
    """An upserted key keeps first_delivered_at and takes the new updated_at and values."""
    replay(pg_store)
    rows = {r[1]: r for r in dump(pg_store)["record_state"] if r[0] == "pupil"}
    one = rows[make_keys([1])[1]]
    assert (one[3], json.loads(str(one[5]))) == ("f2", {"n": ODD_TEXT})
    assert one[10] < one[11]  # first delivered in batch 0, updated in batch 1
    five = rows[make_keys([5])[1]]
    assert (five[3], five[7], five[8]) == ("last", 2, None)


def _constraint(store: SqlStateStore, sql: str) -> None:
    """Add a constraint to the store's record_state (a failure the test can place)."""
    with store.engine.begin() as conn:
        conn.execute(sa.text(f'ALTER TABLE "{schema_name(SCHOOL)}".record_state ADD CHECK ({sql})'))


FAILURES: dict[str, tuple[Callable[[SqlStateStore], None], Change]] = {
    "in the COPY": (lambda _s: None, change(Op.CREATE, ["x" * 500])),  # longer than the column
    "in the INSERT … SELECT": (
        lambda s: _constraint(s, "key <> '66'"),
        change(Op.CREATE, [66]),
    ),
    "after the upsert (a tombstone)": (
        lambda s: _constraint(s, "NOT (status = 'deleted' AND key = '2')"),
        change(Op.DELETE, [2]),
    ),
}


@pytest.mark.parametrize("where", list(FAILURES))
def test_a_batch_that_fails_anywhere_leaves_nothing_of_itself(
    pg_store: SqlStateStore, fast_path: list[tuple[int, bool]], where: str
) -> None:
    """A failure at any step of commit_batch rolls back the upsert, the dead letters and the
    acknowledgement together; the store raises StateError and records the next batch."""
    arm, poison = FAILURES[where]
    pg_store.open_batch("run", 0, 3)
    pg_store.commit_batch(
        "run",
        0,
        [acked(change(Op.CREATE, [k])) for k in (1, 2)],
        [Refusal(change(Op.CREATE, [3]), None, "no")],
        5,
    )
    before = dump(pg_store)
    arm(pg_store)
    pg_store.open_batch("run", 1, 3)
    failing = [acked(change(Op.UPDATE, [1], "lost")), acked(change(Op.CREATE, [3])), acked(poison)]
    with pytest.raises(StateError, match=r"SqlStateStore\.commit_batch") as raised:
        pg_store.commit_batch("run", 1, failing, [], 5)
    assert isinstance(raised.value.__cause__, sa.exc.DBAPIError)
    after = dump(pg_store)
    assert after["delivery_batch"][1][3] == "sent"
    after["delivery_batch"].pop(1)
    assert after == before
    assert fast_path[-1] == (2 if where.startswith("after") else 3, False)
    pg_store.commit_batch("run", 1, failing[:2], [], 5)
    assert [r[3] for r in dump(pg_store)["record_state"]] == ["lost", "f1", "f1"]
    assert dump(pg_store)["dead_letter"] == []


@pytest.mark.parametrize("trap", ["", "key <> '4'"])
def test_a_batch_of_creates_that_fails_leaves_nothing_of_itself(
    pg_store: SqlStateStore, fast_path: list[tuple[int, bool]], trap: str
) -> None:
    """Creates COPYed straight into record_state roll back with the batch: a key too long for
    the column, or a row a constraint refuses, fails it whole, dead letters and all."""
    pg_store.open_batch("run", 0, 2)
    pg_store.commit_batch(
        "run", 0, [acked(change(Op.CREATE, [1]))], [Refusal(change(Op.CREATE, [3]), None, "no")], 5
    )
    if trap:
        _constraint(pg_store, trap)
    before = dump(pg_store)
    poison = change(Op.CREATE, [4] if trap else ["x" * 500])
    failing = [acked(change(Op.CREATE, [3])), acked(change(Op.CREATE, [2])), acked(poison)]
    with pytest.raises(StateError, match=r"SqlStateStore\.commit_batch"):
        pg_store.commit_batch("run", 0, failing, [], 5)
    assert fast_path[-1] == (3, True)
    assert dump(pg_store) == before
    pg_store.commit_batch("run", 0, failing[:2], [], 5)
    assert [r[2] for r in dump(pg_store)["record_state"]] == ["1", "2", "3"]
    assert dump(pg_store)["dead_letter"] == []


def test_two_batches_in_one_transaction_do_not_mix(pg_store: SqlStateStore) -> None:
    """A second upsert in the same transaction sees only its own rows in the temporary table."""
    with pg_store.engine.begin() as conn:
        pg_store._record(conn, [acked(change(Op.UPDATE, [1]))], START)
        pg_store._record(conn, [acked(change(Op.UPDATE, [1], "f2"))], START)
    assert [r[3] for r in dump(pg_store)["record_state"]] == ["f2"]


def test_a_connection_lost_in_the_fast_path_is_replaced(
    postgres_url: str, pg_store: SqlStateStore
) -> None:
    """A server that dropped the store's connection fails one batch with StateError; the
    connection is invalidated, so the next batch records on a fresh one."""
    pg_store.record([acked(change(Op.CREATE, [1]))])
    killer = sa.create_engine(postgres_url, poolclass=sa.NullPool)
    with killer.connect() as conn:
        killed = conn.execute(
            sa.text(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ).scalar()
    killer.dispose()
    assert killed == 1
    with pytest.raises(StateError, match=r"SqlStateStore\.record: AdminShutdown") as raised:
        pg_store.record([acked(change(Op.CREATE, [2]))])
    cause = raised.value.__cause__
    assert isinstance(cause, sa.exc.OperationalError)
    assert cause.connection_invalidated
    pg_store.record([acked(change(Op.CREATE, [3]))])
    assert [r[2] for r in dump(pg_store)["record_state"]] == ["1", "3"]
