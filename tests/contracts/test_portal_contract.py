"""The Portal port's contract, run on every adapter: MemoryPortal, and the bridge's HTTP client
(``bridge.adapters.portal_client.PortalClient``) against the reference portal over real HTTP. Same
expectations for both."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bridge.adapters.portal_client import PortalClient, PortalSettings
from bridge.core.errors import PortalFatalError
from bridge.ports import ENTITIES, Operation, OperationResult, Portal
from bridge.refportal.server import DEMO_CLIENT, ReferencePortal
from bridge.refportal.store import MAX_BATCH
from bridge.testing.portal import MemoryPortal


@pytest.fixture(params=["memory", "http"])
def portal(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Portal]:
    """An empty portal of each kind: in memory, and the bridge's HTTP client talking to the
    reference portal over real HTTP."""
    if request.param == "memory":
        yield MemoryPortal()
        return
    server = ReferencePortal(data_path=tmp_path / "portal.sqlite").start()
    adapter = PortalClient(
        PortalSettings(
            base_url=server.url,
            school="demo",
            client_id=DEMO_CLIENT[0],
            client_secret=DEMO_CLIENT[1],
            max_attempts=2,
            backoff_initial=0.01,
            backoff_max=0.01,
        )
    )
    try:
        yield adapter
    finally:
        adapter.close()
        server.stop()


def put(entity: str, key: str, data: dict[str, Any], op_id: str = "") -> Operation:
    """A PUT with a fingerprint derived from the data."""
    fingerprint = hashlib.sha256(repr(sorted(data.items())).encode()).hexdigest()[:16]
    return Operation(op_id or f"put {entity} {key}", "PUT", entity, key, fingerprint, data)


def delete(entity: str, key: str) -> Operation:
    """A DELETE."""
    return Operation(f"delete {entity} {key}", "DELETE", entity, key)


def school() -> list[Operation]:
    """A teacher, a subject, a grade-3 class, a pupil in it, a lesson, a work."""
    return [
        put("teacher", "t1", {"last_name": "Ivanova", "first_name": "Anna"}),
        put("subject", "s1", {"name": "Reading"}),
        put("class", "c3", {"grade": 3, "letter": "A"}),
        put("pupil", "p1", {"last_name": "Petrov", "first_name": "Ivan", "active": True}),
        put(
            "enrollment",
            "e1",
            {"pupil": "p1", "class": "c3", "date_from": "2025-09-01", "date_to": None},
        ),
        put(
            "lesson",
            "l1",
            {
                "class": "c3",
                "subject": "s1",
                "teacher": "t1",
                "date": "2025-10-01",
                "number": 1,
                "topic": None,
            },
        ),
        put("work", "w1", {"lesson": "l1", "kind": "oral", "weight": 1}),
    ]


def mark(key: str, value: str = "5", pupil: str = "p1") -> Operation:
    """A PUT of a mark on work w1."""
    return put("mark", key, {"work": "w1", "pupil": pupil, "value": value})


def statuses(results: list[OperationResult]) -> list[int]:
    """The status of each result."""
    return [r.status for r in results]


def test_batch_size_fits_the_api(portal: Portal) -> None:
    """The adapter's batch size is between 1 and the API's maximum."""
    assert 1 <= portal.batch_size <= MAX_BATCH


def test_a_new_portal_holds_nothing(portal: Portal) -> None:
    """Every entity's reconciliation read is empty at first."""
    assert all(portal.fingerprints(e) == {} for e in ENTITIES)


def test_writes_answer_one_result_per_operation_in_order(portal: Portal) -> None:
    """Results come one per operation, in order, with the operation's id and created status."""
    ops = school()
    results = portal.send(ops)
    assert [r.op_id for r in results] == [op.op_id for op in ops]
    assert all(r.ok and r.type is None and r.description is None for r in results)
    assert statuses(results) == [201] * len(ops)


def test_puts_are_idempotent(portal: Portal) -> None:
    """The same PUT twice is ok twice and leaves one record with its fingerprint."""
    portal.send(school())
    first, again = portal.send([mark("m1")]), portal.send([mark("m1")])
    assert (statuses(first), statuses(again)) == ([201], [200])
    assert portal.fingerprints("mark") == {"m1": mark("m1").fingerprint}


def test_a_changed_put_replaces_the_fingerprint(portal: Portal) -> None:
    """A PUT with other data replaces the record; the reconciliation read shows the new
    fingerprint."""
    portal.send([*school(), mark("m1", "5")])
    assert statuses(portal.send([mark("m1", "4-")])) == [200]
    assert portal.fingerprints("mark") == {"m1": mark("m1", "4-").fingerprint}


def test_deletes_are_idempotent_and_leave_the_reconciliation_read(portal: Portal) -> None:
    """DELETE answers 204 whether or not the record exists, and the record leaves the read."""
    portal.send([*school(), mark("m1")])
    results = portal.send([delete("mark", "m1"), delete("mark", "m1"), delete("mark", "zz")])
    assert statuses(results) == [204, 204, 204]
    assert all(r.ok for r in results)
    assert portal.fingerprints("mark") == {}


def test_a_refused_operation_does_not_stop_the_batch(portal: Portal) -> None:
    """A refusal is ok=False with status, type and a description; the next operations still
    apply, and they see the effects of earlier ones."""
    results = portal.send([mark("m0"), *school(), mark("m1")])
    assert (results[0].ok, results[0].status, results[0].type) == (False, 422, "referenceMissing")
    assert results[0].description
    assert all(r.ok for r in results[1:])
    assert set(portal.fingerprints("mark")) == {"m1"}


@pytest.mark.parametrize(
    ("op", "kind"),
    [
        (mark("m1", "7"), "valueInvalid"),
        (mark("m1", pupil="p404"), "referenceMissing"),
        (
            put(
                "lesson",
                "l2",
                {
                    "class": "c3",
                    "subject": "s1",
                    "teacher": "t1",
                    "date": "2025-10-02",
                    "homework": "x" * 2001,
                },
            ),
            "textTooLong",
        ),
        (put("absence", "a1", {"lesson": "l1", "pupil": "p1", "code": "sick"}), "valueInvalid"),
    ],
)
def test_invalid_records_are_refused_with_their_type(
    portal: Portal, op: Operation, kind: str
) -> None:
    """What a real diary checks is refused per operation with 422 and a machine type."""
    portal.send(school())
    result = portal.send([op])[0]
    assert (result.ok, result.status, result.type) == (False, 422, kind)


def test_marks_in_grade_1_and_after_leaving_are_refused(portal: Portal) -> None:
    """A grade-1 mark is grade1Mark; a mark after the pupil left the class is
    membershipClosed."""
    portal.send(school())
    portal.send(
        [
            put(
                "enrollment",
                "e1",
                {"pupil": "p1", "class": "c3", "date_from": "2025-09-01", "date_to": "2025-09-30"},
            )
        ]
    )
    assert portal.send([mark("m1")])[0].type == "membershipClosed"
    portal.send([put("class", "c3", {"grade": 1, "letter": "A"})])
    portal.send(
        [
            put(
                "enrollment",
                "e1",
                {"pupil": "p1", "class": "c3", "date_from": "2025-09-01", "date_to": None},
            )
        ]
    )
    assert portal.send([mark("m1")])[0].type == "grade1Mark"


def test_deleting_a_parent_before_its_children_is_a_conflict(portal: Portal) -> None:
    """DELETE of a record live records refer to is 409 hasDependents; children first works."""
    portal.send([*school(), mark("m1")])
    refused = portal.send([delete("work", "w1")])[0]
    assert (refused.ok, refused.status, refused.type) == (False, 409, "hasDependents")
    assert statuses(portal.send([delete("mark", "m1"), delete("work", "w1")])) == [204, 204]


def test_malformed_operations_are_refused_one_by_one() -> None:
    """An unknown entity is 404 unknownResource and a bad method 400, per operation (the HTTP
    client refuses to send such operations at all; the server's answers are in
    tests/integration/test_portal_server.py)."""
    portal = MemoryPortal()
    results = portal.send(
        [put("homework", "h1", {}), Operation("bad", "POST", "mark", "m1"), *school()]
    )
    assert [(r.status, r.type) for r in results[:2]] == [
        (404, "unknownResource"),
        (400, "badRequest"),
    ]
    assert all(r.ok for r in results[2:])


def test_a_batch_over_the_maximum_is_refused_whole() -> None:
    """More than MAX_BATCH operations raise PortalFatalError with status 413; nothing is
    applied (the HTTP client never sends more than its batch size)."""
    portal = MemoryPortal()
    ops = [put("subject", str(i), {"name": "S"}) for i in range(MAX_BATCH + 1)]
    with pytest.raises(PortalFatalError) as caught:
        portal.send(ops)
    assert caught.value.status == 413
    assert portal.fingerprints("subject") == {}


def test_an_unknown_entity_cannot_be_read(portal: Portal) -> None:
    """The reconciliation read of an unknown entity raises PortalFatalError 404."""
    with pytest.raises(PortalFatalError) as caught:
        portal.fingerprints("homework")
    assert caught.value.status == 404


def test_rejection_descriptions_quote_no_personal_value(portal: Portal) -> None:
    """Descriptions name fields and keys, never the mark value or the name they refused."""
    portal.send(school())
    results = portal.send(
        [mark("m1", "9+"), put("pupil", "p2", {"last_name": "Щ" * 61, "first_name": "Z"})]
    )
    assert [r.type for r in results] == ["valueInvalid", "textTooLong"]
    assert all("9+" not in str(r.description) and "Щ" not in str(r.description) for r in results)
