"""The gate fails closed, through read → map → gate → plan on a real SQLite school: the hold
reasons name the real cause, a rejected row's published record goes, links before guardians."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from bridge.core.guard import Thresholds
from bridge.core.model import Change, Op
from bridge.demo import schema
from bridge.service.engine import PlanResult
from tests.engine_bench import Bench, make_bench

LOOSE = Thresholds(min_deletes=1000)


def synced(bench: Bench, incremental: bool = False) -> tuple[PlanResult, list[Change]]:
    """Plan and record one run; every change it delivers, in delivery order."""
    result, sent = bench.sync(incremental=incremental, thresholds=LOOSE)
    return result, sent + result.plan.destructive()


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    yield from make_bench(tmp_path)


def _deletes(changes: list[Change]) -> list[tuple[str, str, str | None]]:
    return [(c.entity, c.key, c.reason) for c in changes if c.op is Op.DELETE]


def _of_pupil_1(changes: list[Change]) -> dict[str, str | None]:
    """Reason of each delete of pupil 1's records, by entity (one reason per entity)."""
    wanted = {"pupil", "enrollment", "guardian_link", "guardian", "mark", "absence"}
    return {e: r for e, _, r in _deletes(changes) if e in wanted}


@pytest.mark.parametrize("incremental", [False, True], ids=["full", "incremental"])
@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"table": "pupil", "id": 1, "values": {"pd_consent": "отозвано"}}, "consent_unclear"),
        ({"table": "pupil", "id": 1, "values": {"first_name": "Имя\x1f"}}, "pupil_row_rejected"),
        (
            {"table": "pupil_move", "id": 1, "values": {"date_out": date(2025, 8, 1)}},
            "enrollment_row_rejected",
        ),
        (
            {"table": "pupil_guardian", "id": 1, "values": {"relation": "мать\x07"}},
            "guardian_link_row_rejected",
        ),
    ],
    ids=["consent", "pupil", "enrollment", "guardian_link"],
)
def test_each_cause_deletes_the_pupil_with_its_own_reason(
    bench: Bench, change: dict[str, object], reason: str, incremental: bool
) -> None:
    """Unclear consent or a rejected pupil, enrolment or link row deletes pupil 1, their
    enrolment, link, sole guardian, marks and absences, each for that cause."""
    synced(bench)
    table = {
        "pupil": schema.pupil,
        "pupil_move": schema.pupil_move,
        "pupil_guardian": schema.pupil_guardian,
    }[str(change["table"])]
    bench.update(table, int(str(change["id"])), **change["values"])  # type: ignore[arg-type]
    _, changes = synced(bench, incremental)
    assert _of_pupil_1(changes) == dict.fromkeys(
        ("pupil", "enrollment", "guardian_link", "guardian", "mark", "absence"), reason
    )
    order = [e for e, _, _ in _deletes(changes)]
    assert order.index("guardian_link") < order.index("guardian") < order.index("pupil")
    _, again = synced(bench, incremental)
    assert _deletes(again) == []


def test_an_enrolment_ending_before_it_begins_is_rejected(bench: Bench) -> None:
    """An enrolment whose date_out is before its date_in is a rejection with table, key, field
    and reason, and its pupil's records are held for it (nothing of the pupil is created)."""
    bench.update(schema.pupil_move, 1, date_out=date(2025, 8, 1))
    result, changes = synced(bench)
    rejected = [r for r in result.plan.rejections if r.entity == "enrollment"]  # type: ignore[attr-defined]
    assert [(r.table, r.key, r.field) for r in rejected] == [("pupil_move", "1", "date_to")]
    assert "before" in rejected[0].reason
    holds = result.plan.holds  # type: ignore[attr-defined]
    assert holds["pupil"]["enrollment_row_rejected"] == 1
    assert holds["mark"]["enrollment_row_rejected"] == 12
    assert not [
        c
        for c in changes
        if c.record is not None
        and ((c.key == "1" and c.entity == "pupil") or c.record.payload.get("pupil") == "1")
    ]


def test_a_link_whose_pupil_cannot_be_read_closes_the_pupil_it_was_delivered_for(
    bench: Bench,
) -> None:
    """A delivered guardian link whose pupil column becomes unreadable (blank) closes the pupil
    the state recorded for it: what was published under it goes."""
    synced(bench)
    bench.update(schema.pupil_guardian, 1, pupil_id="  ")
    _, changes = synced(bench)
    gone = {(e, k) for e, k, _ in _deletes(changes)}
    assert {("pupil", "1"), ("guardian_link", "1"), ("guardian", "1")} <= gone
