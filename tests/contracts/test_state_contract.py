"""The state store contract, run on every adapter: MemoryStateStore, SqlStateStore on a SQLite
file and SqlStateStore on PostgreSQL (skipped without a server, failed on CI)."""

from __future__ import annotations

import gc
import os
import random
import stat
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.adapters.state import LOOKUP_CHUNK, SCHEMA_VERSION, SqlStateStore, meta, open_state
from bridge.core.errors import FatalError, UnknownPlan
from bridge.core.mapping import key_from_sort_key, make_keys, sort_key_part
from bridge.core.model import Change, Op, Record, StateEntry, Value
from bridge.ports import Approval, Delivered, GateCacheState, HeldPlan, StateStore
from bridge.testing.fakes import MemoryStateStore

NOW = datetime(2025, 9, 1, 8, 0, tzinfo=UTC)


def clock() -> datetime:
    """A fixed clock: the contract never depends on the time of day."""
    return NOW


def delivery(
    op: Op,
    key: object,
    fingerprint: str = "f1",
    *,
    entity: str = "pupil",
    payload: Mapping[str, Value] | None = None,
    pupil: str | None = None,
    class_key: str | None = None,
    sort_key: str | None = None,
) -> Delivered:
    """An acknowledged change of one record (deletes carry no record, as the planner makes)."""
    text, sorted_key = make_keys([key])
    sorted_key = sort_key if sort_key is not None else sorted_key
    record = (
        None
        if op == Op.DELETE
        else Record(entity, text, sorted_key, dict(payload or {"n": text}), fingerprint)
    )
    change = Change(op, entity, text, sorted_key, record, class_key=class_key)
    return Delivered(change, pupil_key=pupil, class_key=class_key)


def keys_of(store: StateStore, entity: str = "pupil") -> list[str]:
    """The keys of the live entries of ``entity``, in the order ``entries`` gives them."""
    return [key_from_sort_key(e[0]) for e in store.entries(entity)]


def sort_keys(*keys: object) -> list[str]:
    """The sort keys of single-part keys."""
    return [make_keys([k])[1] for k in keys]


ADAPTERS = ["memory", "sqlite", "postgresql"]
APPROVAL_VALID = timedelta(hours=72)


class MovingClock:
    """A clock the test moves on by hand (the store reads it at each call)."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@contextmanager
def open_store(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path, at: Callable[[], datetime] = clock
) -> Iterator[StateStore]:
    """An empty state store of one kind, closed afterwards."""
    if kind == "memory":
        yield MemoryStateStore(at)
        return
    url = (
        f"sqlite:///{tmp_path / 'state.db'}"
        if kind == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    sql = open_state(url, at)
    try:
        yield sql
    finally:
        sql.close()


@pytest.fixture(params=ADAPTERS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    """Every state store adapter, empty."""
    with open_store(request.param, request, tmp_path) as opened:
        yield opened


class TestStateStoreContract:
    """What every StateStore adapter must do."""

    def test_entries_of_an_empty_store_are_empty(self, store: StateStore) -> None:
        """A new store has no entries, counts, watermarks or approvals."""
        assert keys_of(store) == []
        assert store.count("pupil") == 0
        assert store.count_by_class("enrollment") == {}
        assert store.watermark("pupil") is None
        assert not store.is_approved("abc")

    def test_the_portals_ids_are_kept_and_found_both_ways(self, store: StateStore) -> None:
        """An acknowledgement's portal id is kept beside the key, through an update that gives
        none; found by key and by id, for live entries only."""
        first = [delivery(Op.CREATE, k, entity="mark") for k in (1, 2, 3)]
        store.record([d._replace(portal_id=f"P{k}") for k, d in zip((1, 2, 3), first, strict=True)])
        store.record([delivery(Op.UPDATE, 1, "f2", entity="mark")])  # no id: P1 stays
        store.record([delivery(Op.DELETE, 3, entity="mark")])
        assert store.portal_ids("mark", ["1", "2", "3", "9"]) == {"1": "P1", "2": "P2"}
        assert store.holders("mark", ["P1", "P2", "P3", "P9"]) == {"P1": "1", "P2": "2"}
        assert store.portal_ids("pupil", ["1"]) == {}
        store.record([delivery(Op.UPDATE, 2, "f3", entity="mark")._replace(portal_id="Q2")])
        assert store.portal_ids("mark", ["2"]) == {"2": "Q2"}

    def test_regate_marks_stay_until_a_complete_run_clears_them(self, store: StateStore) -> None:
        """Re-gating marks are kept until cleared (some, or all after a full run), and the
        day the last complete run gated for is remembered."""
        assert store.regate_marks() == set()
        assert store.last_as_of() is None
        store.mark_regate(["7", "8"])
        store.mark_regate(["8", "9"])
        assert store.regate_marks() == {"7", "8", "9"}
        store.finish_regate(["7"], "2025-12-01")
        assert store.regate_marks() == {"8", "9"}
        assert store.last_as_of() == "2025-12-01"
        store.finish_regate(None, "2025-12-02")
        assert store.regate_marks() == set()
        assert store.last_as_of() == "2025-12-02"

    def test_gate_cache_keeps_the_last_snapshot_per_entity(self, store: StateStore) -> None:
        """A gate snapshot is kept per entity, the last written replacing the one before."""
        assert isinstance(store, GateCacheState)
        assert store.gate_cache("lesson") is None
        store.set_gate_cache("lesson", "one")
        store.set_gate_cache("work", "x" * 100_000)
        store.set_gate_cache("lesson", "two")
        assert store.gate_cache("lesson") == "two"
        assert store.gate_cache("work") == "x" * 100_000

    def test_record_creates_entries_in_sort_order(self, store: StateStore) -> None:
        """Created records come back from entries() in sort-key order, not in recording order."""
        store.record([delivery(Op.CREATE, k, pupil=str(k), class_key="c1") for k in (10, 2, 33, 1)])
        assert keys_of(store) == ["1", "2", "10", "33"]
        first, *_ = store.entries("pupil")
        assert tuple(first) == (make_keys([1])[1], "f1", "delivered")
        full = store.lookup("pupil", [first[0]])[first[0]]
        assert full == StateEntry(
            "pupil", "1", make_keys([1])[1], "f1", "delivered", None, "1", "c1"
        )

    def test_entries_between_sort_keys_are_that_range_in_order(self, store: StateStore) -> None:
        """entries(start, stop) gives the live entries with start <= sort key < stop, in order;
        ranges that meet give every entry once."""
        store.record([delivery(Op.CREATE, k) for k in (5, 1, 40, 12, 7, 30)])
        store.record([delivery(Op.DELETE, 12)])
        start, stop = sort_key_part(7), sort_key_part(31)
        middle = [key_from_sort_key(e[0]) for e in store.entries_between("pupil", start, stop)]
        assert middle == ["7", "30"]
        below = [e[0] for e in store.entries_between("pupil", None, start)]
        above = [e[0] for e in store.entries_between("pupil", stop, None)]
        joined = [*below, sort_key_part(7), sort_key_part(30), *above]
        assert (
            [key_from_sort_key(k) for k in joined] == keys_of(store) == ["1", "5", "7", "30", "40"]
        )

    def test_entries_are_per_entity(self, store: StateStore) -> None:
        """Entries, lookups and counts of one entity never include another entity's records."""
        store.record(
            [
                delivery(Op.CREATE, 1),
                delivery(Op.CREATE, 1, entity="teacher"),
                delivery(Op.CREATE, 2, entity="teacher"),
            ]
        )
        assert keys_of(store) == ["1"]
        assert keys_of(store, "teacher") == ["1", "2"]
        assert store.count("teacher") == 2
        assert list(store.lookup("pupil", sort_keys(1, 2))) == sort_keys(1)

    def test_update_replaces_fingerprint(self, store: StateStore) -> None:
        """An update replaces the fingerprint and payload of the entry it names, and only it."""
        store.record(
            [delivery(Op.CREATE, 1, "old", payload={"v": 1}), delivery(Op.CREATE, 2, "other")]
        )
        store.record([delivery(Op.UPDATE, 1, "new", payload={"v": 2})])
        found = store.lookup("pupil", sort_keys(1, 2))
        assert [found[k].fingerprint for k in sort_keys(1, 2)] == ["new", "other"]
        assert store.payloads("pupil", sort_keys(1)) == {sort_keys(1)[0]: {"v": 2}}
        assert store.count("pupil") == 2

    def test_delete_tombstones(self, store: StateStore) -> None:
        """A deleted entry is gone from entries, lookup, payloads and count."""
        store.record([delivery(Op.CREATE, k) for k in (1, 2, 3)])
        store.record([delivery(Op.DELETE, 2)])
        assert keys_of(store) == ["1", "3"]
        assert set(store.lookup("pupil", sort_keys(1, 2, 3))) == set(sort_keys(1, 3))
        assert set(store.payloads("pupil", sort_keys(1, 2, 3))) == set(sort_keys(1, 3))
        assert store.count("pupil") == 2

    def test_a_pupil_deleted_for_lack_of_consent_is_remembered_once(
        self, store: StateStore
    ) -> None:
        """The first acknowledged delete of a pupil for lack of consent is remembered with
        its time (a later one keeps the first time); a delete for another reason is not, and
        delivering the pupil again forgets it."""
        store.record([delivery(Op.CREATE, k) for k in (1, 2, 3)])
        gone = [delivery(Op.DELETE, 1), delivery(Op.DELETE, 2)]
        gone[0].change.reason = "no_consent"
        gone[1].change.reason = "erased (152-FZ)"
        store.commit_batch("r", 1, gone, [], 3)
        assert store.withdrawals() == {"1": clock()}
        store.record([delivery(Op.CREATE, 3)])
        assert set(store.withdrawals()) == {"1"}
        store.record([delivery(Op.CREATE, 1)])
        assert store.withdrawals() == {}

    def test_create_after_delete_revives_the_entry(self, store: StateStore) -> None:
        """A record created again after its delete is live again with its new fingerprint."""
        store.record([delivery(Op.CREATE, 1, "first")])
        store.record([delivery(Op.DELETE, 1)])
        store.record([delivery(Op.CREATE, 1, "second")])
        assert [(key_from_sort_key(e[0]), e[1], e[2]) for e in store.entries("pupil")] == [
            ("1", "second", "delivered")
        ]

    def test_delete_of_an_unknown_key_changes_nothing(self, store: StateStore) -> None:
        """Deleting a record the store never held leaves every entry as it was."""
        store.record([delivery(Op.CREATE, 1)])
        store.record([delivery(Op.DELETE, 99)])
        assert keys_of(store) == ["1"]
        assert store.lookup("pupil", sort_keys(99)) == {}

    def test_archive_sets_status_archived(self, store: StateStore) -> None:
        """An archived entry stays live with status "archived"; an update makes it delivered."""
        store.record([delivery(Op.CREATE, 1, "a"), delivery(Op.CREATE, 2, "a")])
        store.record([delivery(Op.ARCHIVE, 1, "b")])
        entry = store.lookup("pupil", sort_keys(1))[sort_keys(1)[0]]
        assert (entry.status, entry.fingerprint) == ("archived", "b")
        assert store.count("pupil") == 2
        assert keys_of(store) == ["1", "2"]
        store.record([delivery(Op.UPDATE, 1, "c")])
        assert store.lookup("pupil", sort_keys(1))[sort_keys(1)[0]].status == "delivered"

    def test_one_batch_mixes_operations(self, store: StateStore) -> None:
        """One record() call applies creates, updates, archives and deletes together."""
        store.record([delivery(Op.CREATE, k) for k in (1, 2, 3)])
        store.record(
            [
                delivery(Op.CREATE, 4),
                delivery(Op.UPDATE, 1, "u"),
                delivery(Op.ARCHIVE, 2, "x"),
                delivery(Op.DELETE, 3),
            ]
        )
        assert [(key_from_sort_key(e[0]), e[1], e[2]) for e in store.entries("pupil")] == [
            ("1", "u", "delivered"),
            ("2", "x", "archived"),
            ("4", "f1", "delivered"),
        ]

    def test_record_is_all_or_nothing(self, store: StateStore) -> None:
        """A batch with one payload that cannot be stored raises and records none of the batch."""
        store.record([delivery(Op.CREATE, 1, "kept")])
        batch = [
            delivery(Op.UPDATE, 1, "lost"),
            delivery(Op.CREATE, 2),
            delivery(Op.CREATE, 3, payload={"bad": {1, 2}}),
        ]
        with pytest.raises(TypeError):
            store.record(batch)
        assert [(key_from_sort_key(e[0]), e[1]) for e in store.entries("pupil")] == [("1", "kept")]

    def test_lookup_crosses_the_chunk_size(self, store: StateStore) -> None:
        """Lookups and payloads of more keys than one chunk find every live entry asked for."""
        total = 2 * LOOKUP_CHUNK + 200
        store.record([delivery(Op.CREATE, k, str(k)) for k in range(total)])
        wanted = sort_keys(*range(100, total + 100))  # the last 100 were never recorded
        assert len(wanted) > LOOKUP_CHUNK * 2
        found = store.lookup("pupil", wanted)
        assert set(found) == set(sort_keys(*range(100, total)))
        assert all(e.fingerprint == e.key for e in found.values())
        assert len(store.payloads("pupil", wanted)) == total - 100

    def test_tombstones_name_the_deleted_entries_by_key(self, store: StateStore) -> None:
        """Tombstones give key → sort key of the deleted entries among the keys asked for,
        neither live entries nor keys never recorded."""
        store.record([delivery(Op.CREATE, k) for k in (1, 2, 3)])
        store.record([delivery(Op.DELETE, 2), delivery(Op.DELETE, 3)])
        assert store.tombstones("pupil", ["1", "2", "9"]) == {"2": sort_keys(2)[0]}
        assert store.tombstones("mark", ["2"]) == {}

    def test_lookup_of_no_keys_is_empty(self, store: StateStore) -> None:
        """Looking up an empty list of keys finds nothing and does not fail."""
        store.record([delivery(Op.CREATE, 1)])
        assert store.lookup("pupil", []) == {}
        assert store.payloads("pupil", []) == {}

    def test_payloads_round_trip_json(self, store: StateStore) -> None:
        """Payloads come back equal, with Cyrillic text, None, ints and bools of the right type."""
        payload: dict[str, Value] = {
            "last_name": "Ёлкина-Щукина",
            "middle_name": None,
            "grade": 5,
            "zero": 0,
            "active": True,
            "consent": False,
            "date": "2025-09-01",
            "emoji": "📚",
        }
        store.record([delivery(Op.CREATE, 1, payload=payload)])
        (back,) = store.payloads("pupil", sort_keys(1)).values()
        assert back == payload
        assert [type(back[k]) for k in payload] == [type(v) for v in payload.values()]

    def test_payloads_are_copies(self, store: StateStore) -> None:
        """Changing a payload the store returned does not change what the store holds."""
        store.record([delivery(Op.CREATE, 1, payload={"v": 1})])
        back = store.payloads("pupil", sort_keys(1))[sort_keys(1)[0]]
        assert isinstance(back, dict)
        back["v"] = 2
        assert store.payloads("pupil", sort_keys(1)) == {sort_keys(1)[0]: {"v": 1}}

    def test_count_and_count_by_class(self, store: StateStore) -> None:
        """Counts include archived entries, exclude deleted ones, and group by owner class."""
        store.record(
            [
                delivery(Op.CREATE, 1, entity="enrollment", class_key="5А"),
                delivery(Op.CREATE, 2, entity="enrollment", class_key="5А"),
                delivery(Op.CREATE, 3, entity="enrollment", class_key="1А"),
                delivery(Op.CREATE, 4, entity="enrollment"),
                delivery(Op.CREATE, 5, entity="mark", class_key="5А"),
            ]
        )
        store.record(
            [
                delivery(Op.DELETE, 2, entity="enrollment"),
                delivery(Op.ARCHIVE, 3, entity="enrollment", class_key="1А"),
            ]
        )
        assert store.count("enrollment") == 3
        assert store.count_by_class("enrollment") == {"5А": 1, "1А": 1}
        assert store.count("mark") == 1

    def test_watermarks_set_get_and_overwrite(self, store: StateStore) -> None:
        """Watermarks are kept per entity; setting one again replaces it and leaves others."""
        store.set_watermarks({"mark": "2025-09-01 08:00:00", "pupil": "2025-09-02 09:30:00"})
        store.set_watermarks({"mark": "2025-10-01 10:00:00.123456"})
        assert store.watermark("mark") == "2025-10-01 10:00:00.123456"
        assert store.watermark("pupil") == "2025-09-02 09:30:00"
        assert store.watermark("lesson") is None

    def test_approve_is_idempotent(self, store: StateStore) -> None:
        """Approving a held plan twice is harmless, keeps the latest approver, and approves
        that plan only."""
        store.hold_plan("0a1b2c3d4e5f", "would delete 30 of 40 mark records (75.0 %)")
        store.hold_plan("ffffffffffff", "would archive 26 of 40 pupil records (65.0 %)")
        store.approve("0a1b2c3d4e5f", "admin")
        store.approve("0a1b2c3d4e5f", "deputy")
        assert store.is_approved("0a1b2c3d4e5f")
        assert store.approval("0a1b2c3d4e5f") == Approval("deputy", NOW)
        assert not store.is_approved("ffffffffffff")

    def test_approving_an_unknown_plan_is_refused_and_stores_nothing(
        self, store: StateStore
    ) -> None:
        """approve() of an id no guard held raises UnknownPlan naming it; nothing is stored."""
        store.hold_plan("0a1b2c3d4e5f", "would delete 30 of 40 mark records (75.0 %)")
        with pytest.raises(UnknownPlan) as caught:
            store.approve("deadbeef0000", "admin")
        assert caught.value.plan_id == "deadbeef0000"
        assert store.approval("deadbeef0000") is None
        assert not store.is_approved("deadbeef0000")
        assert store.held_plan("deadbeef0000") is None

    def test_a_held_plan_is_remembered_with_its_first_time(self, store: StateStore) -> None:
        """hold_plan() keeps the id, the time first held and the latest summary."""
        assert store.held_plan("0a1b2c3d4e5f") is None
        store.hold_plan("0a1b2c3d4e5f", "would delete 30 of 40 mark records (75.0 %)")
        store.hold_plan("0a1b2c3d4e5f", "would delete 31 of 40 mark records (77.5 %)")
        assert store.held_plan("0a1b2c3d4e5f") == HeldPlan(
            "0a1b2c3d4e5f", NOW, "would delete 31 of 40 mark records (77.5 %)"
        )

    def test_count_open_by_class_counts_memberships_without_an_end(self, store: StateStore) -> None:
        """count_open_by_class() counts live entries per class whose payload has no date_to."""
        store.record(
            [
                delivery(
                    Op.CREATE, 1, entity="enrollment", class_key="5А", payload={"date_to": None}
                ),
                delivery(
                    Op.CREATE,
                    2,
                    entity="enrollment",
                    class_key="5А",
                    payload={"date_to": "2025-10-01"},
                ),
                delivery(Op.CREATE, 3, entity="enrollment", class_key="5А", payload={}),
                delivery(
                    Op.CREATE, 4, entity="enrollment", class_key="1А", payload={"date_to": None}
                ),
                delivery(Op.CREATE, 5, entity="enrollment", payload={"date_to": None}),
            ]
        )
        store.record([delivery(Op.DELETE, 4, entity="enrollment")])
        assert store.count_open_by_class("enrollment") == {"5А": 2}

    def test_sort_order_is_code_point_order(self, store: StateStore) -> None:
        """Entries of text keys with mixed case, digits and Cyrillic come in code-point order."""
        texts = [
            "Zebra",
            "apple",
            "Apple",
            "яблоко",
            "Яблоко",
            "ёж",
            "Ёж",
            "ежевика",
            "_x",
            "10",
            "9",
            "a b",
            "a-b",
            "ab",
            "Ä",
            "z",
        ]
        shuffled = random.Random(7).sample(texts, len(texts))
        store.record([delivery(Op.CREATE, t) for t in shuffled])
        got = [e[0] for e in store.entries("pupil")]
        assert got == sorted(sort_keys(*texts))
        assert keys_of(store) == sorted(texts)

    def test_composite_sort_keys_order_like_tuples(self, store: StateStore) -> None:
        """Composite sort keys (ints and text joined by the separator) come in tuple order."""
        parts = [(2, "b"), (10, "a"), (2, "a"), (1, "Я"), (1, "z"), (2, "ab")]
        store.record([delivery(Op.CREATE, 0, sort_key=make_keys(p)[1]) for p in parts])
        got = [e[0] for e in store.entries("pupil")]
        assert got == [make_keys(p)[1] for p in sorted(parts)]


# --- the SQL adapter's own promises -----------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty SQL state store on each supported database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'state.db'}"
    return str(request.getfixturevalue("postgres_url"))


def set_schema_version(store: SqlStateStore, version: int) -> None:
    """Pretend a newer (or older) asiou-bridge wrote this store."""
    with store.engine.begin() as conn:
        conn.execute(
            meta.update().where(meta.c.name == "schema_version").values(value=str(version))
        )


@pytest.mark.parametrize("kind", ADAPTERS)
def test_an_approval_expires_and_approving_again_renews_it(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """is_approved(valid_for) holds until valid_for has passed since the approval, then not
    (the approval is still there, expired); approving again renews it."""
    moving = MovingClock()
    with open_store(kind, request, tmp_path, moving) as store:
        store.hold_plan("0a1b2c3d4e5f", "would close 26 enrollment records of class 5")
        store.approve("0a1b2c3d4e5f", "admin")
        moving.now = NOW + APPROVAL_VALID - timedelta(minutes=1)
        assert store.is_approved("0a1b2c3d4e5f", APPROVAL_VALID)
        moving.now = NOW + APPROVAL_VALID
        assert not store.is_approved("0a1b2c3d4e5f", APPROVAL_VALID)
        assert store.is_approved("0a1b2c3d4e5f")  # no validity given: never expires
        assert store.approval("0a1b2c3d4e5f") == Approval("admin", NOW)
        store.approve("0a1b2c3d4e5f", "admin")
        assert store.is_approved("0a1b2c3d4e5f", APPROVAL_VALID)


class TestSqlStateStore:
    """What SqlStateStore promises beyond the port: a private file, a versioned schema."""

    def test_sqlite_file_is_private(self, tmp_path: Path) -> None:
        """open_state creates the SQLite file (and its folder) readable by its owner only."""
        path = tmp_path / "var" / "state.db"
        old = os.umask(0o022)
        try:
            store = open_state(f"sqlite:///{path}", clock)
        finally:
            os.umask(old)
        store.record([delivery(Op.CREATE, 1)])
        store.close()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_schema_version_is_recorded(self, sql_url: str) -> None:
        """A new store records the schema version this asiou-bridge writes."""
        store = open_state(sql_url, clock)
        try:
            assert store.schema_version() == SCHEMA_VERSION
        finally:
            store.close()

    def test_reopening_keeps_entries(self, sql_url: str) -> None:
        """Opening an existing store again migrates nothing away: its entries are still there."""
        store = open_state(sql_url, clock)
        store.record([delivery(Op.CREATE, 1, "kept")])
        store.close()
        again = open_state(sql_url, clock)
        try:
            assert [(key_from_sort_key(e[0]), e[1]) for e in again.entries("pupil")] == [
                ("1", "kept")
            ]
            assert again.schema_version() == SCHEMA_VERSION
        finally:
            again.close()

    def test_newer_schema_version_is_refused(self, sql_url: str) -> None:
        """A store written by a newer schema version is refused with FatalError."""
        store = open_state(sql_url, clock)
        set_schema_version(store, SCHEMA_VERSION + 1)
        store.close()
        with pytest.raises(FatalError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
            open_state(sql_url, clock)

    def test_version_1_store_is_migrated_and_loses_its_unbound_approvals(
        self, sql_url: str
    ) -> None:
        """A version 1 store is brought to the current version: it gains held plans and drops
        its approvals, which named any id (an admin approves the held plan again)."""
        store = open_state(sql_url, clock)
        store.record([delivery(Op.CREATE, 1, "kept")])
        with store.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE held_plan"))
            conn.execute(
                sa.text("INSERT INTO approval VALUES ('deadbeef0000', 'x', :at)"), {"at": NOW}
            )
        set_schema_version(store, 1)
        store.close()
        again = open_state(sql_url, clock)
        try:
            assert again.schema_version() == SCHEMA_VERSION
            assert not again.is_approved("deadbeef0000")
            assert again.held_plan("deadbeef0000") is None
            assert keys_of(again) == ["1"]
        finally:
            again.close()

    def test_version_3_store_gains_the_index_of_portal_ids(self, sql_url: str) -> None:
        """A version 3 store gets the partial index of the portal's ids; its records stay."""
        store = open_state(sql_url, clock)
        store.record([delivery(Op.CREATE, 1, "kept")])
        with store.engine.begin() as conn:
            conn.execute(sa.text("DROP INDEX ix_record_state_portal_id"))
        set_schema_version(store, 3)
        store.close()
        again = open_state(sql_url, clock)
        try:
            assert again.schema_version() == SCHEMA_VERSION
            names = {i["name"] for i in sa.inspect(again.engine).get_indexes("record_state")}
            assert "ix_record_state_portal_id" in names
            assert keys_of(again) == ["1"]
        finally:
            again.close()

    def test_unusable_sqlite_path_is_fatal(self, tmp_path: Path) -> None:
        """A SQLite state path that cannot be created is a FatalError naming the store."""
        blocker = tmp_path / "file"
        blocker.write_text("not a folder")
        with pytest.raises(FatalError, match="state store"):
            open_state(f"sqlite:///{blocker}/sub/state.db", clock)


class TestMemoryStateStore:
    """Where the fake shows more than the port, it shows what the SQL store holds."""

    def test_memory_store_keeps_the_latest_approval(self) -> None:
        """The fake keeps who approved last, as the SQL store keeps one approval row, renewed."""
        fake = MemoryStateStore(clock)
        fake.hold_plan("p", "held")
        fake.approve("p", "admin")
        fake.approve("p", "deputy")
        assert fake.approvals["p"].by == "deputy"
        engine_store = SqlStateStore(sa.create_engine("sqlite://"), clock)
        engine_store.migrate()
        engine_store.hold_plan("p", "held")
        engine_store.approve("p", "admin")
        engine_store.approve("p", "deputy")
        with engine_store.engine.connect() as conn:
            by = conn.execute(sa.text("SELECT approved_by FROM approval")).scalars().all()
        engine_store.close()
        assert by == ["deputy"]


# --- early stops -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind",
    [
        "memory",
        "sqlite",
        "postgresql",
    ],
)
def test_abandoned_entries_close_cleanly(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Dropping an entries() iterator halfway releases its cursor without a ResourceWarning."""
    unraisable: list[str] = []
    with open_store(kind, request, tmp_path) as store:
        store.record([delivery(Op.CREATE, k) for k in range(3)])
        hook = sys.unraisablehook
        sys.unraisablehook = lambda args: unraisable.append(repr(args.exc_value))
        try:
            entries = store.entries("pupil")
            assert key_from_sort_key(next(entries)[0]) == "0"
            del entries
            gc.collect()
        finally:
            sys.unraisablehook = hook
    assert unraisable == []
