"""Policy properties over random schools: what may leave, and only that, in every plan.

Hypothesis draws small schools (pupils with or without consent, one or two stays each with
withdrawals and re-admissions, a grade-1 or grade-5 class, lessons on random days, marks and
absences on random pupil-lessons) and an oracle written independently of the gate says which
records may leave. The portal is simulated by applying each plan to a dict.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.adapters.source import SqlSource
from bridge.adapters.state import open_state
from bridge.core.guard import Thresholds
from bridge.core.mapping import MappingSet, load_mappings
from bridge.core.model import Change, Op
from bridge.demo import schema
from bridge.service.engine import PlanResult, RunOptions, delivered, plan_run

DAY0 = date(2025, 9, 1)
T0 = datetime(2025, 9, 1, 8)
MAPPINGS: MappingSet = load_mappings(Path("mappings"))
NO_GUARD = Thresholds(max_delete_fraction=1.0, min_deletes=10**9, hold_whole_class=False)


@dataclass(frozen=True)
class Pupil:
    """A drawn pupil: consent and stays as (first day, last day or None) offsets from DAY0."""

    pid: int
    consent: bool
    stays: tuple[tuple[int, int | None], ...]


@st.composite
def pupils(draw: st.DrawFn, pid: int) -> Pupil:
    start = draw(st.integers(0, 20))
    end = draw(st.none() | st.integers(start, 40))
    stays: list[tuple[int, int | None]] = [(start, end)]
    if end is not None and draw(st.booleans()):
        back = draw(st.integers(end + 1, 55))
        stays.append((back, draw(st.none() | st.integers(back, 60))))
    return Pupil(pid, draw(st.booleans()), tuple(stays))


@st.composite
def schools(draw: st.DrawFn) -> dict[str, Any]:
    count = draw(st.integers(1, 5))
    drawn = [draw(pupils(pid)) for pid in range(1, count + 1)]
    days = sorted(draw(st.sets(st.integers(0, 60), min_size=1, max_size=8)))
    marks = draw(st.sets(st.tuples(st.sampled_from(days), st.integers(1, count)), max_size=30))
    absences = draw(st.sets(st.tuples(st.sampled_from(days), st.integers(1, count)), max_size=10))
    return {
        "grade": draw(st.sampled_from([1, 5])),
        "pupils": drawn,
        "days": days,
        "marks": sorted(marks),
        "absences": sorted(absences),
    }


def _rows(s: dict[str, Any]) -> dict[sa.Table, list[dict[str, Any]]]:
    def day(offset: int) -> date:
        return DAY0 + timedelta(days=offset)

    moves = [
        {
            "id": p.pid * 10 + i,
            "pupil_id": p.pid,
            "class_id": 1,
            "date_in": day(a),
            "date_out": None if b is None else day(b),
            "modified_at": T0,
        }
        for p in s["pupils"]
        for i, (a, b) in enumerate(p.stays)
    ]
    return {
        schema.subject: [{"id": 1, "name": "Математика", "modified_at": T0}],
        schema.teacher: [{"id": 1, "last_name": "Т", "first_name": "Т", "modified_at": T0}],
        schema.class_unit: [
            {"id": 1, "year_id": 1, "grade": s["grade"], "letter": "А", "modified_at": T0}
        ],
        schema.pupil: [
            {
                "id": p.pid,
                "last_name": "Ф",
                "first_name": "И",
                "pd_consent": int(p.consent),
                "modified_at": T0,
            }
            for p in s["pupils"]
        ],
        schema.pupil_move: moves,
        schema.lesson: [
            {
                "id": d + 1,
                "class_id": 1,
                "subject_id": 1,
                "teacher_id": 1,
                "lesson_date": day(d),
                "lesson_num": 1,
                "modified_at": T0,
            }
            for d in s["days"]
        ],
        schema.lesson_work: [
            {"id": d + 1, "lesson_id": d + 1, "work_kind": "УО", "weight": 1, "modified_at": T0}
            for d in s["days"]
        ],
        schema.mark: [
            {"id": n + 1, "work_id": d + 1, "pupil_id": p, "mark_value": "4", "modified_at": T0}
            for n, (d, p) in enumerate(s["marks"])
        ],
        schema.absence: [
            {"lesson_id": d + 1, "pupil_id": p, "code": "н", "modified_at": T0}
            for d, p in s["absences"]
        ],
    }


def _present(p: Pupil, offset: int) -> bool:
    return any(a <= offset and (b is None or offset <= b) for a, b in p.stays)


def oracle(s: dict[str, Any]) -> dict[str, set[str]]:
    """The records that may be on the portal, by the regulation, computed from scratch."""
    by_id = {p.pid: p for p in s["pupils"]}
    ok = {pid for pid, p in by_id.items() if p.consent}
    marks = {
        str(n + 1)
        for n, (d, p) in enumerate(s["marks"])
        if p in ok and s["grade"] != 1 and _present(by_id[p], d)
    }
    absences = {f"{d + 1}-{p}" for d, p in s["absences"] if p in ok and _present(by_id[p], d)}
    stays = {str(p.pid * 10 + i) for p in s["pupils"] if p.consent for i in range(len(p.stays))}
    return {"pupil": {str(p) for p in ok}, "mark": marks, "absence": absences, "enrollment": stays}


class Portal:
    """The portal as the plans describe it: applying changes to a set of keys per entity."""

    def __init__(self) -> None:
        self.records: dict[str, set[str]] = {}

    def apply(self, changes: list[Change]) -> None:
        for c in changes:
            held = self.records.setdefault(c.entity, set())
            if c.op == Op.DELETE:
                held.discard(c.key)
            else:
                held.add(c.key)


def _sync(engine: sa.Engine, state_url: str, portal: Portal) -> PlanResult:
    state = open_state(state_url)
    sent: list[Change] = []
    result = plan_run(
        MAPPINGS,
        SqlSource(engine),
        state,
        RunOptions(as_of=date(2025, 12, 31), thresholds=NO_GUARD),
        sent.append,
    )
    changes = sent + result.plan.destructive()
    portal.apply(changes)
    state.record([delivered(c, MAPPINGS) for c in changes])
    state.close()
    return result


def _write(engine: sa.Engine, rows: dict[sa.Table, list[dict[str, Any]]]) -> None:
    schema.metadata.drop_all(engine)
    schema.metadata.create_all(engine)
    with engine.begin() as conn:
        for table, values in rows.items():
            if values:
                conn.execute(table.insert(), values)


def _assert_allowed(portal: Portal, s: dict[str, Any]) -> None:
    expected = oracle(s)
    for entity, keys in expected.items():
        assert portal.records.get(entity, set()) == keys, entity


EXAMPLES = int(os.environ.get("ASIOU_BRIDGE_PROPERTY_EXAMPLES", "15"))
"""Schools drawn per run: 15 in CI (about 30 s); the long form in docs/reliability.md, 100."""


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(first=schools(), second=schools())
def test_portal_holds_exactly_the_allowed_export_across_journal_changes(
    first: dict[str, Any], second: dict[str, Any]
) -> None:
    """After any school and then any rewrite of it, the portal holds exactly what may leave:
    never a no-consent pupil's record, never one dated outside a stay, never a grade-1 mark."""
    with tempfile.TemporaryDirectory() as folder:
        engine = sa.create_engine(f"sqlite:///{folder}/asiou.sqlite")
        portal, state_url = Portal(), f"sqlite:///{folder}/state.sqlite"
        for drawn in (first, second):
            _write(engine, _rows(drawn))
            result = _sync(engine, state_url, portal)
            assert result.error is None
            _assert_allowed(portal, drawn)
        again = _sync(engine, state_url, portal)
        assert again.plan.is_empty
        engine.dispose()
