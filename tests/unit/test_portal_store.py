"""The reference portal without HTTP: the model's rules (values, references, grade 1, closed
memberships, text limits, dependents), its file, the in-memory adapter, and the fault plan."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.core.errors import ConfigError, FatalError, PortalFatalError
from bridge.ports import ENTITIES, Operation, OperationResult
from bridge.refportal.faults import KINDS, FaultPlan, FaultSettings, parse_faults, pick
from bridge.refportal.store import (
    MAX_BATCH,
    REFS,
    PortalFile,
    PortalModel,
    SchoolData,
    StoredRecord,
    tombstone,
)
from bridge.testing.portal import MemoryPortal

SCHOOL = "demo"


def put(entity: str, key: str, data: Mapping[str, Any], fingerprint: str = "") -> Operation:
    """A PUT of one record; the fingerprint defaults to one derived from the data."""
    return Operation(
        f"{entity}/{key}",
        "PUT",
        entity,
        key,
        fingerprint or f"fp-{sorted(data.items())!r}"[:40],
        dict(data),
    )


def delete(entity: str, key: str) -> Operation:
    """A DELETE of one record."""
    return Operation(f"del {entity}/{key}", "DELETE", entity, key)


def base_school() -> list[Operation]:
    """A small school: a grade-5 class and a grade-1 class, three pupils (p3 left 5A on
    2025-10-15), a lesson and a work in each class, a quarter ending 2025-10-31."""
    return [
        put("teacher", "t1", {"last_name": "Ivanova", "first_name": "Anna"}),
        put("subject", "s1", {"name": "Mathematics", "short_name": "Math"}),
        put(
            "period",
            "q1",
            {
                "kind": "quarter",
                "number": 1,
                "name": "Q1",
                "date_from": "2025-09-01",
                "date_to": "2025-10-31",
            },
        ),
        put("class", "c5", {"grade": 5, "letter": "A", "name": "5A", "form_teacher": "t1"}),
        put("class", "c1", {"grade": 1, "letter": "B", "name": "1B"}),
        *[
            put("pupil", p, {"last_name": "Petrov", "first_name": "Pyotr", "active": True})
            for p in ("p1", "p2", "p3")
        ],
        put(
            "enrollment",
            "e1",
            {"pupil": "p1", "class": "c5", "date_from": "2025-09-01", "date_to": None},
        ),
        put(
            "enrollment",
            "e2",
            {"pupil": "p2", "class": "c1", "date_from": "2025-09-01", "date_to": None},
        ),
        put(
            "enrollment",
            "e3",
            {"pupil": "p3", "class": "c5", "date_from": "2025-09-01", "date_to": "2025-10-15"},
        ),
        put(
            "lesson",
            "l5",
            {
                "class": "c5",
                "subject": "s1",
                "teacher": "t1",
                "date": "2025-10-20",
                "number": 2,
                "topic": "Fractions",
            },
        ),
        put(
            "lesson",
            "l1",
            {"class": "c1", "subject": "s1", "teacher": "t1", "date": "2025-10-01", "number": 1},
        ),
        put("work", "w5", {"lesson": "l5", "kind": "test", "weight": 2}),
        put("work", "w1", {"lesson": "l1", "kind": "oral", "weight": 1}),
    ]


@pytest.fixture
def model() -> PortalModel:
    """A model holding the base school, every setup operation accepted."""
    school = PortalModel()
    results = school.apply(SCHOOL, base_school()).results
    assert [r for r in results if not r.ok] == []
    return school


def one(model: PortalModel, op: Operation) -> OperationResult:
    """Apply one operation to the school and return its result."""
    return model.apply(SCHOOL, [op]).results[0]


def mark(key: str = "m1", value: str = "4", work: str = "w5", pupil: str = "p1") -> Operation:
    """A PUT of a mark."""
    return put("mark", key, {"work": work, "pupil": pupil, "value": value})


# --- writes -------------------------------------------------------------------------------


def test_put_creates_then_replaces_and_the_same_put_again_changes_nothing(
    model: PortalModel,
) -> None:
    """A first PUT answers 201, a changed PUT 200, and the same PUT again 200 with nothing
    to persist."""
    assert one(model, mark(value="4")).status == 201
    changed = model.apply(SCHOOL, [mark(value="5")])
    assert changed.results[0].status == 200
    assert list(changed.changed) == [("mark", "m1")]
    again = model.apply(SCHOOL, [mark(value="5")])
    assert again.results[0].status == 200
    assert again.changed == {}
    assert model.fingerprints(SCHOOL, "mark") == {"m1": mark(value="5").fingerprint}


def test_delete_tombstones_and_deleting_again_or_an_absent_record_is_a_no_op(
    model: PortalModel,
) -> None:
    """DELETE keeps a tombstone out of every live view and answers 204 again and again."""
    one(model, mark())
    first = model.apply(SCHOOL, [delete("mark", "m1")])
    assert first.results[0].status == 204
    assert not first.changed[("mark", "m1")].live
    assert one(model, delete("mark", "m1")).status == 204
    assert one(model, delete("mark", "never")).status == 204
    record = model.get(SCHOOL, "mark", "m1")
    assert record is not None
    assert record.status == "tobedeleted"
    assert model.fingerprints(SCHOOL, "mark") == {}


def test_a_delete_purges_the_record_to_its_key_and_deletion_time() -> None:
    """A deleted record keeps no data and no fingerprint of its content, only its key and the
    time of the delete (from the model's clock)."""
    model = PortalModel(clock=lambda: 1780308000.0)
    for op in base_school():
        one(model, op)
    one(model, mark())
    one(model, delete("mark", "m1"))
    record = model.get(SCHOOL, "mark", "m1")
    assert record is not None
    assert (record.data, record.fingerprint, record.deleted_at) == ({}, "", "2026-06-01T10:00:00Z")
    assert record.as_json() == {
        "sourcedId": "m1",
        "status": "tobedeleted",
        "deletedAt": "2026-06-01T10:00:00Z",
    }


def test_the_file_holds_no_byte_of_a_purged_record(tmp_path: Path) -> None:
    """After a delete, neither the portal's SQLite file nor its WAL contains the deleted
    record's data (freed cells are zeroed, the WAL is truncated)."""
    path = tmp_path / "portal.sqlite"
    file = PortalFile(path)
    name = "Уникальнова-Секретная"
    pupil = StoredRecord("pupil", "p9", "fp9", {"last_name": name, "birth_date": "2015-03-07"})
    file.save(SCHOOL, [pupil])
    file.save(SCHOOL, [tombstone("pupil", "p9", "2026-06-01T10:00:00Z")])
    found = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    file.close()
    assert name.encode() not in found
    assert b"2015-03-07" not in found
    assert b"fp9" not in found


def test_a_version_1_file_is_purged_on_open(tmp_path: Path) -> None:
    """A portal file of schema version 1 (tombstones with data) is migrated: its tombstones
    lose data and fingerprint, its live records stay."""
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE record (school TEXT NOT NULL, entity TEXT NOT NULL, sourced_id "
        "TEXT NOT NULL, fingerprint TEXT NOT NULL, data TEXT NOT NULL, live INTEGER "
        "NOT NULL, PRIMARY KEY (school, entity, sourced_id)) WITHOUT ROWID"
    )
    db.executemany(
        "INSERT INTO record VALUES (?, ?, ?, ?, ?, ?)",
        [
            (SCHOOL, "pupil", "p1", "fa", '{"last_name":"Старова"}', 0),
            (SCHOOL, "pupil", "p2", "fb", '{"last_name":"Живова"}', 1),
        ],
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    file = PortalFile(path)
    records = {r.sourced_id: r for _, r in file.records()}
    file.close()
    assert (records["p1"].live, records["p1"].data, records["p1"].fingerprint) == (False, {}, "")
    assert (records["p2"].live, records["p2"].data) == (True, {"last_name": "Живова"})
    assert "Старова".encode() not in path.read_bytes()


def test_a_put_after_a_delete_recreates_the_record(model: PortalModel) -> None:
    """PUT on a tombstone answers 201 and makes the record live again."""
    one(model, mark())
    one(model, delete("mark", "m1"))
    assert one(model, mark()).status == 201
    assert "m1" in model.fingerprints(SCHOOL, "mark")


def test_a_batch_goes_on_after_a_rejection_and_later_operations_see_earlier_ones(
    model: PortalModel,
) -> None:
    """One result per operation in order; a rejected one does not stop the rest, and a pupil
    created early in a batch can be referred to later in it."""
    ops = [
        mark("bad", value="7"),
        put("pupil", "p9", {"last_name": "New", "first_name": "Pupil"}),
        put("enrollment", "e9", {"pupil": "p9", "class": "c5", "date_from": "2025-09-01"}),
        mark("m9", pupil="p9"),
    ]
    results = model.apply(SCHOOL, ops).results
    assert [r.op_id for r in results] == [op.op_id for op in ops]
    assert [r.status for r in results] == [422, 201, 201, 201]


@pytest.mark.parametrize(
    ("op", "status", "kind"),
    [
        (Operation("x", "PATCH", "mark", "m1", "f", {}), 400, "badRequest"),
        (Operation("x", "PUT", "homework", "h1", "f", {}), 404, "unknownResource"),
        (Operation("x", "PUT", "mark", "", "f", {}), 400, "badRequest"),
        (Operation("x", "PUT", "mark", "m1", None, {"value": "5"}), 400, "badRequest"),
        (Operation("x", "PUT", "mark", "m1", "f", None), 400, "badRequest"),
    ],
)
def test_malformed_operations_are_refused_on_their_own(
    model: PortalModel, op: Operation, status: int, kind: str
) -> None:
    """A bad method, unknown entity, empty key, or a PUT without fingerprint or data is
    refused with 400 or 404."""
    result = one(model, op)
    assert (result.ok, result.status, result.type) == (False, status, kind)


# --- values and shapes ------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["5", "4", "3", "2", "1", "5+", "4-", "1+", "2-"])
def test_every_mark_value_is_accepted(model: PortalModel, value: str) -> None:
    """Marks 5 to 1 are accepted, with or without a + or - suffix."""
    assert one(model, mark(value=value)).status == 201


@pytest.mark.parametrize("value", ["7", "0", "5++", "+5", "4 ", "", "pass", "н"])
def test_a_mark_value_outside_the_scale_is_refused(model: PortalModel, value: str) -> None:
    """Any other mark value is 422 valueInvalid, and the reason does not quote the value."""
    result = one(model, mark(value=value))
    assert (result.status, result.type) == (422, "valueInvalid")
    assert result.description is not None
    assert "mark.value" in result.description
    if value.strip():
        assert f"'{value}'" not in result.description


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("5", True),
        ("not_attested", True),
        ("pass", True),
        ("fail", True),
        ("exempt", True),
        ("5-", False),
        ("absent", False),
    ],
)
def test_period_mark_values(model: PortalModel, value: str, ok: bool) -> None:
    """Period marks take 5 to 1 or not_attested, pass, fail, exempt."""
    op = put("period_mark", "pm1", {"pupil": "p1", "subject": "s1", "period": "q1", "value": value})
    result = one(model, op)
    assert result.ok is ok
    assert result.type == (None if ok else "valueInvalid")


@pytest.mark.parametrize(
    ("code", "ok"),
    [
        ("absent", True),
        ("ill", True),
        ("excused", True),
        ("late", True),
        ("н", False),
        ("truant", False),
    ],
)
def test_absence_codes(model: PortalModel, code: str, ok: bool) -> None:
    """Absences take absent, ill, excused or late."""
    result = one(model, put("absence", "a1", {"lesson": "l5", "pupil": "p1", "code": code}))
    assert (result.ok, result.type) == (ok, None if ok else "valueInvalid")


@pytest.mark.parametrize(
    ("entity", "name", "limit"),
    [
        ("lesson", "topic", 500),
        ("lesson", "homework", 2000),
        ("pupil", "last_name", 60),
        ("teacher", "first_name", 60),
        ("group", "name", 60),
    ],
)
def test_text_longer_than_its_limit_is_refused(
    model: PortalModel, entity: str, name: str, limit: int
) -> None:
    """Text at its limit passes; one character more is 422 textTooLong."""
    data: dict[str, Any] = {
        "lesson": {"class": "c5", "subject": "s1", "teacher": "t1", "date": "2025-10-02"},
        "pupil": {"last_name": "A", "first_name": "B"},
        "teacher": {"last_name": "A", "first_name": "B"},
        "group": {"class": "c5", "subject": "s1", "name": "G"},
    }[entity]
    assert one(model, put(entity, "x1", {**data, name: "я" * limit})).ok
    result = one(model, put(entity, "x2", {**data, name: "я" * (limit + 1)}))
    assert (result.status, result.type) == (422, "textTooLong")
    assert result.description is not None
    assert "я" not in result.description


@pytest.mark.parametrize(
    "data",
    [
        {"work": 5, "pupil": "p1", "value": "5"},
        {"pupil": "p1", "value": "5"},
        {"work": "w5", "pupil": "p1"},
        {"work": "w5", "pupil": "p1", "value": "5", "note": {"nested": True}},
    ],
)
def test_data_of_the_wrong_shape_is_refused(model: PortalModel, data: dict[str, Any]) -> None:
    """A reference that is not a key string, a missing required field or a nested value is
    422 validationFailed."""
    result = one(model, put("mark", "m1", data, "f"))
    assert (result.status, result.type) == (422, "validationFailed")


@pytest.mark.parametrize("day", ["2025-13-01", "01.10.2025", "20251001", 20251001])
def test_a_date_that_is_not_an_iso_day_is_refused(model: PortalModel, day: object) -> None:
    """Dates travel as ISO YYYY-MM-DD strings naming a real day."""
    data = {"class": "c5", "subject": "s1", "teacher": "t1", "date": day}
    result = one(model, put("lesson", "lx", data, "f"))
    assert (result.status, result.type) == (422, "validationFailed")


# --- references and dependents ---------------------------------------------------------------


def test_a_reference_to_a_missing_or_deleted_record_is_refused(model: PortalModel) -> None:
    """References must name a live record; the reason says which one and why."""
    missing = one(model, mark(work="w404"))
    assert (missing.status, missing.type) == (422, "referenceMissing")
    assert missing.description == "mark.work refers to work w404, which does not exist"
    one(model, put("teacher", "t2", {"last_name": "A", "first_name": "B"}))
    one(model, delete("teacher", "t2"))
    lesson = put(
        "lesson", "l9", {"class": "c5", "subject": "s1", "teacher": "t2", "date": "2025-10-02"}
    )
    deleted = one(model, lesson)
    assert deleted.type == "referenceMissing"
    assert "which is deleted" in str(deleted.description)


def test_optional_references_may_be_absent_but_must_resolve_when_given(model: PortalModel) -> None:
    """lesson.group and class.form_teacher are optional; when set they must exist."""
    assert one(model, put("class", "c7", {"grade": 7, "letter": "V"})).ok
    bad = one(model, put("class", "c8", {"grade": 8, "letter": "G", "form_teacher": "t404"}))
    assert bad.type == "referenceMissing"
    lesson = {"class": "c5", "subject": "s1", "teacher": "t1", "date": "2025-10-02"}
    assert one(model, put("lesson", "l7", {**lesson, "group": None})).ok
    assert one(model, put("lesson", "l8", {**lesson, "group": "g404"})).type == "referenceMissing"


def test_deleting_a_record_that_live_records_refer_to_is_a_conflict(model: PortalModel) -> None:
    """DELETE of a referred-to record is 409 hasDependents naming the live referrers; once
    the children are gone (children first) it goes through."""
    one(model, mark())
    one(model, put("absence", "a1", {"lesson": "l5", "pupil": "p1", "code": "ill"}))
    refused = one(model, delete("lesson", "l5"))
    assert (refused.status, refused.type) == (409, "hasDependents")
    assert refused.description == (
        "lesson l5 is still referred to by live records: 1 work, 1 absence"
    )
    results = model.apply(
        SCHOOL,
        [
            delete("mark", "m1"),
            delete("absence", "a1"),
            delete("work", "w5"),
            delete("lesson", "l5"),
        ],
    ).results
    assert [r.status for r in results] == [204, 204, 204, 204]


def test_a_replaced_record_stops_holding_its_old_references(model: PortalModel) -> None:
    """When a mark moves to another pupil, the first pupil is no longer a dependent's target."""
    one(model, put("pupil", "p4", {"last_name": "A", "first_name": "B"}))
    one(model, mark(pupil="p4"))
    assert one(model, delete("pupil", "p4")).status == 409
    one(model, mark(pupil="p1"))
    assert one(model, delete("pupil", "p4")).status == 204


# --- domain rules ----------------------------------------------------------------------------


def test_no_marks_in_grade_1(model: PortalModel) -> None:
    """A mark on a work of a grade-1 lesson is 422 grade1Mark."""
    result = one(model, mark(work="w1", pupil="p2"))
    assert (result.status, result.type) == (422, "grade1Mark")


def test_no_period_marks_for_a_pupil_in_grade_1_at_the_end_of_the_period(
    model: PortalModel,
) -> None:
    """A period mark is refused when the pupil's enrolment on the period's last day is in a
    grade-1 class, and accepted when the pupil moved to grade 2 before that day."""
    data = {"pupil": "p2", "subject": "s1", "period": "q1", "value": "pass"}
    assert one(model, put("period_mark", "pm2", data)).type == "grade1Mark"
    model.apply(
        SCHOOL,
        [
            put("class", "c2", {"grade": 2, "letter": "B"}),
            put(
                "enrollment",
                "e2",
                {"pupil": "p2", "class": "c1", "date_from": "2025-09-01", "date_to": "2025-10-10"},
            ),
            put("enrollment", "e4", {"pupil": "p2", "class": "c2", "date_from": "2025-10-11"}),
        ],
    )
    assert one(model, put("period_mark", "pm2", data)).status == 201


def test_no_marks_or_absences_after_the_membership_closed(model: PortalModel) -> None:
    """p3 left 5A on 2025-10-15: a mark or absence on the 2025-10-20 lesson is 422
    membershipClosed; re-enrolment opens the class to them again."""
    assert one(model, mark(pupil="p3")).type == "membershipClosed"
    absence = put("absence", "a3", {"lesson": "l5", "pupil": "p3", "code": "absent"})
    assert one(model, absence).type == "membershipClosed"
    one(model, put("enrollment", "e5", {"pupil": "p3", "class": "c5", "date_from": "2025-10-18"}))
    assert one(model, mark(pupil="p3")).ok
    assert one(model, absence).ok


def test_a_lesson_on_the_last_day_of_a_stay_still_counts(model: PortalModel) -> None:
    """A stay's last day is inside it; a pupil never enrolled in the class is not refused."""
    model.apply(
        SCHOOL,
        [
            put(
                "lesson",
                "l6",
                {"class": "c5", "subject": "s1", "teacher": "t1", "date": "2025-10-15"},
            ),
            put("work", "w6", {"lesson": "l6", "kind": "oral"}),
        ],
    )
    assert one(model, mark("m3", work="w6", pupil="p3")).ok
    one(model, put("pupil", "p8", {"last_name": "A", "first_name": "B"}))
    assert one(model, mark("m8", pupil="p8")).ok


# --- views, file, adapter ---------------------------------------------------------------------


def test_duplicates_are_live_records_sharing_a_natural_identity(model: PortalModel) -> None:
    """Two live marks of one pupil on one work are reported; a deleted one is not."""
    model.apply(SCHOOL, [mark("m1"), mark("m2"), mark("m3", pupil="p3", work="w5")])
    found = model.duplicates()
    assert found == [
        {
            "school": SCHOOL,
            "entity": "mark",
            "identity": {"work": "w5", "pupil": "p1"},
            "sourcedIds": ["m1", "m2"],
        }
    ]
    one(model, delete("mark", "m2"))
    assert model.duplicates() == []


def test_counts_are_live_records_per_entity(model: PortalModel) -> None:
    """Counts leave tombstones out."""
    one(model, mark())
    one(model, delete("work", "w1"))
    counts = model.counts()[SCHOOL]
    assert (counts["mark"], counts["work"], counts["pupil"]) == (1, 1, 3)


def test_the_file_keeps_records_and_tombstones_and_a_restored_model_keeps_the_rules(
    tmp_path: Path, model: PortalModel
) -> None:
    """Records written to the file come back as they were, and the restored model still
    refuses to delete a referred-to record."""
    one(model, mark())
    one(model, delete("work", "w1"))
    path = tmp_path / "portal.sqlite"
    file = PortalFile(path)
    file.save(SCHOOL, [r for e in model.schools[SCHOOL].records.values() for r in e.values()])
    file.close()
    again, restored = PortalFile(path), PortalModel()
    for school, record in again.records():
        restored.restore(school, record)
    again.close()
    assert restored.counts() == model.counts()
    kept = restored.get(SCHOOL, "work", "w1")
    assert kept == model.get(SCHOOL, "work", "w1")
    assert kept is not None
    assert (kept.live, kept.data, kept.fingerprint) == (False, {}, "")
    assert one(restored, delete("work", "w5")).status == 409
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_the_file_keeps_token_digests(tmp_path: Path) -> None:
    """Issued tokens are remembered by digest and expiry."""
    file = PortalFile(tmp_path / "p.sqlite")
    file.save_token("abc", "asiou-bridge", 12.5)
    assert list(file.tokens()) == [("abc", "asiou-bridge", 12.5)]
    file.close()


def test_a_file_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    """A file written by a newer portal is not read."""
    path = tmp_path / "p.sqlite"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(FatalError, match="schema version 99"):
        PortalFile(path)


def test_memory_portal_refuses_oversized_batches_and_unknown_entities() -> None:
    """MemoryPortal raises PortalFatalError where the server answers 413 or 404."""
    portal = MemoryPortal()
    with pytest.raises(PortalFatalError) as too_many:
        portal.send([delete("mark", str(i)) for i in range(MAX_BATCH + 1)])
    assert too_many.value.status == 413
    with pytest.raises(PortalFatalError) as unknown:
        portal.fingerprints("homework")
    assert unknown.value.status == 404
    with pytest.raises(ValueError, match="batch_size"):
        MemoryPortal(batch_size=MAX_BATCH + 1)


# --- a property: references stay whole --------------------------------------------------------

KEYS = ("1", "2")
OPS = st.builds(
    lambda method, entity, key, refs: Operation(
        "x",
        method,
        entity,
        key,
        "f",
        {
            **{r.field: refs[i] for i, r in enumerate(REFS.get(entity, ()))},
            "value": "5",
            "code": "ill",
            "grade": 5,
            "date": "2025-10-01",
            "date_from": "2025-09-01",
            "date_to": "2025-12-31",
            "last_name": "A",
        },
    ),
    st.sampled_from(["PUT", "PUT", "DELETE"]),
    st.sampled_from(
        [
            "period",
            "subject",
            "teacher",
            "class",
            "pupil",
            "enrollment",
            "lesson",
            "work",
            "mark",
            "absence",
        ]
    ),
    st.sampled_from(KEYS),
    st.lists(st.sampled_from(KEYS), min_size=4, max_size=4),
)


def recount(school: SchoolData) -> dict[tuple[str, str, str], int]:
    """The reference index recomputed from scratch over live records."""
    counts: dict[tuple[str, str, str], int] = {}
    for entity, records in school.records.items():
        for record in records.values():
            for ref in REFS.get(entity, ()) if record.live else ():
                target = record.data.get(ref.field)
                if isinstance(target, str):
                    slot = (ref.target, target, entity)
                    counts[slot] = counts.get(slot, 0) + 1
    return counts


@settings(max_examples=150, deadline=None)
@given(st.lists(OPS, max_size=60))
def test_no_sequence_of_operations_leaves_a_live_record_pointing_at_a_dead_one(
    ops: list[Operation],
) -> None:
    """Whatever is applied, every reference of a live record resolves to a live record, and
    the reference index equals a recount."""
    model = PortalModel()
    model.apply(SCHOOL, ops)
    school = model.school(SCHOOL)
    for entity, records in school.records.items():
        for record in (r for r in records.values() if r.live):
            for ref in REFS.get(entity, ()):
                target = record.data.get(ref.field)
                assert target is None or school.live(ref.target, target) is not None
    assert {k: v for k, v in school.references.items() if v} == recount(school)


# --- the fault plan ---------------------------------------------------------------------------


def test_fault_settings_report_every_problem_at_once() -> None:
    """Unknown keys and kinds, bad rates, rates over 1 and bad seconds are all reported."""
    with pytest.raises(ConfigError) as caught:
        parse_faults(
            {
                "rates": {"429": 0.7, "500": 0.6, "teapot": 0.1, "502": -1},
                "script": ["ok", "boom"],
                "retry_after": "soon",
                "slow_seconds": -1,
                "seed": 1.5,
                "colour": "red",
            },
            "faults.json",
        )
    paths = sorted(p.path for p in caught.value.problems)
    assert paths == sorted(
        [
            "colour",
            "rates.teapot",
            "rates.502",
            "rates",
            "script[1]",
            "retry_after",
            "slow_seconds",
            "seed",
        ]
    )
    assert all(p.file == "faults.json" for p in caught.value.problems)


def test_the_script_comes_first_then_the_rates() -> None:
    """Scripted entries apply to the next requests in order ("ok" is none), then rates."""
    plan = FaultPlan(parse_faults({"script": ["429", "ok", "lost"], "rates": {"503": 1.0}}))
    assert [plan.next_fault() for _ in range(5)] == ["429", None, "lost", "503", "503"]
    assert plan.remaining_script == []


def test_the_same_seed_gives_the_same_faults() -> None:
    """Two plans with one seed draw the same faults; another seed draws others."""
    settings_ = FaultSettings(rates={"429": 0.2, "500": 0.2, "reset": 0.2})
    plans = [FaultPlan(settings_, seed) for seed in (1, 1, 2)]
    draws = [[plan.next_fault() for _ in range(50)] for plan in plans]
    assert draws[0] == draws[1] != draws[2]
    assert {"429", "500", "reset", None} == set(draws[0])


def test_a_seed_in_the_settings_wins_over_the_portal_seed() -> None:
    """Settings that carry a seed replay the same whatever seed the portal started with."""
    settings_ = parse_faults({"rates": {"500": 0.5}, "seed": 7})
    one_, two = FaultPlan(settings_, 1), FaultPlan(settings_, 2)
    assert [one_.next_fault() for _ in range(30)] == [two.next_fault() for _ in range(30)]


@pytest.mark.parametrize(
    ("draw", "kind"),
    [(0.0, "429"), (0.0999, "429"), (0.1, "500"), (0.2999, "500"), (0.3001, None), (0.99, None)],
)
def test_rates_are_consecutive_slices_of_the_unit_interval(draw: float, kind: str | None) -> None:
    """Kinds take slices in KINDS order; past the sum of the rates there is no fault."""
    assert pick({"500": 0.2, "429": 0.1}, draw) == kind


def test_a_fresh_token_is_spared_a_drawn_expiry_but_not_a_scripted_one() -> None:
    """Drawn token-expired faults skip a token that was never used; scripted ones do not."""
    drawn = FaultPlan(FaultSettings(rates={"token-expired": 1.0}))
    assert drawn.next_fault(fresh_token=True) is None
    assert drawn.next_fault(fresh_token=False) == "token-expired"
    scripted = FaultPlan(FaultSettings(script=("token-expired",)))
    assert scripted.next_fault(fresh_token=True) == "token-expired"


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    """HTTP's Retry-After has no fractions: 0.2 s becomes 1, 2 stays 2, 0 stays 0."""
    assert [FaultPlan(FaultSettings(retry_after=s)).retry_after_seconds() for s in (0.2, 2, 0)] == [
        1,
        2,
        0,
    ]


def test_settings_round_trip_through_their_json() -> None:
    """as_json gives back what parse_faults reads, for every kind."""
    original = parse_faults(
        {
            "rates": dict.fromkeys(KINDS, 0.05),
            "script": list(KINDS),
            "retry_after": 2,
            "slow_seconds": 0.5,
            "seed": 3,
        }
    )
    assert parse_faults(original.as_json()) == original


# --- the documented contract ------------------------------------------------------------------


def test_the_openapi_document_lists_the_entities_faults_and_rejections_the_code_has() -> None:
    """docs/portal-api.yaml names exactly the code's entities and fault kinds, and every
    rejection type the model answers."""
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(Path("docs/portal-api.yaml").read_text(encoding="utf-8"))
    schemas = doc["components"]["schemas"]
    assert schemas["Entity"]["enum"] == list(ENTITIES)
    assert schemas["FaultKind"]["enum"] == list(KINDS)
    assert set(schemas["ValidationType"]["enum"]) == {
        "validationFailed",
        "valueInvalid",
        "textTooLong",
        "referenceMissing",
        "grade1Mark",
        "membershipClosed",
        "hasDependents",
    }
