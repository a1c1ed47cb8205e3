"""What a portal receives (``Portal.support``), and the ids a portal gives the records.

A portal that takes a mark but not its correction, and has no place for period marks or
guardians, receives none of those; the plan counts each with the reason, nothing of them is
recorded, and the next run counts them again. Ids the portal gives are kept beside the source
key, through updates, in SQLite and PostgreSQL alike."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.adapters.state import open_state
from bridge.adapters.state.schema import record_state
from bridge.core.errors import ExitCode
from bridge.core.mapping import load_mappings
from bridge.core.model import Op
from bridge.core.support import Capability, EntitySupport, full_support
from bridge.demo import schema
from bridge.ports import ENTITIES, Operation, OperationResult
from bridge.service.engine import RunOptions, run_sync
from bridge.testing.portal import MemoryPortal
from tests import school

MAPPINGS = load_mappings(Path("mappings"))
AS_OF = date(2025, 12, 31)
CORRECTIONS = "the diary takes a mark once"


def narrow_support() -> dict[str, EntitySupport]:
    """Marks created only; absences not supported; guardians not declared at all."""
    support = full_support(e for e in ENTITIES if e not in {"guardian", "guardian_link"})
    support["mark"] = EntitySupport(Capability.WRITE, frozenset({Op.CREATE}), CORRECTIONS)
    support["absence"] = EntitySupport(Capability.UNSUPPORTED, frozenset(), "no attendance")
    return support


class NumberingPortal(MemoryPortal):
    """The reference rules, and an id of its own for every record it takes (as a diary that
    assigns ids does); the same record keeps its id."""

    def __init__(self) -> None:
        super().__init__(batch_size=7)
        self.ids: dict[tuple[str, str], str] = {}

    def send(self, operations: Sequence[Operation]) -> list[OperationResult]:
        results = super().send(operations)
        numbered = []
        for op, result in zip(operations, results, strict=True):
            given = None
            if result.ok and op.method == "PUT" and (op.entity, op.sourced_id) not in self.ids:
                given = self.ids[(op.entity, op.sourced_id)] = str(2**60 + len(self.ids))
            numbered.append(result._replace(portal_id=given))
        return numbered


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'asiou.sqlite'}")
    school.write_school(engine)
    yield engine
    engine.dispose()


def _edit_every_mark(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        return conn.execute(
            schema.mark.update().values(
                mark_value=sa.case((schema.mark.c.mark_value == "5", "4"), else_="5"),
                modified_at=datetime(2025, 12, 30, 12, 0),
            )
        ).rowcount


def test_a_portal_receives_only_what_it_takes_and_the_plan_says_why(
    engine: sa.Engine, tmp_path: Path
) -> None:
    portal = MemoryPortal(batch_size=7, support=narrow_support())
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        first = run_sync(
            MAPPINGS, SqlSource(engine), state, portal, RunOptions(as_of=AS_OF), run_id="r1"
        )
        not_supported = first.plan.plan.not_supported
        assert first.exit_code == ExitCode.OK
        assert set(not_supported) == {"absence", "guardian", "guardian_link"}
        assert sum(not_supported["absence"].values()) > 0
        assert set(not_supported["absence"]) == {"not supported by this portal: no attendance"}
        assert set(not_supported["guardian"]) == {
            "not supported by this portal: not declared by the adapter"
        }
        for entity in not_supported:
            assert portal.fingerprints(entity) == {}, entity
            assert state.count(entity) == 0, entity
            assert entity not in first.delivery.delivered
        marks = len(portal.fingerprints("mark"))
        assert marks == state.count("mark") > 0

        edited = _edit_every_mark(engine)
        again = run_sync(
            MAPPINGS,
            SqlSource(engine),
            state,
            portal,
            RunOptions(as_of=AS_OF, incremental=True),
            run_id="r2",
        )
        refused = again.plan.plan.not_supported["mark"]
        assert refused == {f"cannot update on this portal: {CORRECTIONS}": marks}
        assert marks <= edited
        assert "mark" not in again.delivery.delivered
        before = portal.fingerprints("mark")
        third = run_sync(
            MAPPINGS, SqlSource(engine), state, portal, RunOptions(as_of=AS_OF), run_id="r3"
        )
    finally:
        state.close()
    # Not recorded, so planned and counted again: never silently dropped.
    assert third.plan.plan.not_supported["mark"] == refused
    assert portal.fingerprints("mark") == before


def test_a_retraction_the_portal_cannot_make_is_counted_not_sent(
    engine: sa.Engine, tmp_path: Path
) -> None:
    portal = MemoryPortal(batch_size=7, support=narrow_support())
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        run_sync(MAPPINGS, SqlSource(engine), state, portal, RunOptions(as_of=AS_OF), run_id="r1")
        marks = state.count("mark")
        with engine.begin() as conn:
            school.withdraw_consent_of_pupil_1(conn)
        after = run_sync(
            MAPPINGS, SqlSource(engine), state, portal, RunOptions(as_of=AS_OF), run_id="r2"
        )
    finally:
        state.close()
    retracted = after.plan.plan.not_supported["mark"]
    assert list(retracted) == [f"cannot retract on this portal: {CORRECTIONS}"]
    assert 0 < retracted[f"cannot retract on this portal: {CORRECTIONS}"] < marks
    assert not [c for c in after.plan.plan.deletes if c.entity == "mark"]
    # The marks stay on the portal, so it refuses to delete the pupil they belong to: the run
    # says so (partial), nothing is recorded as gone.
    assert after.delivery.refused["pupil"] == 1
    assert after.exit_code == ExitCode.PARTIAL


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_the_portals_ids_are_kept_beside_the_source_keys(
    engine: sa.Engine, tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'state.sqlite'}"
        if store == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    portal = NumberingPortal()
    state = open_state(url)
    try:
        run_sync(MAPPINGS, SqlSource(engine), state, portal, RunOptions(as_of=AS_OF), run_id="r1")
        keys = sorted(k for (e, k) in portal.ids if e == "mark")
        given = {k: portal.ids[("mark", k)] for k in keys}
        assert state.portal_ids("mark", keys) == given
        _edit_every_mark(engine)
        updated = run_sync(
            MAPPINGS,
            SqlSource(engine),
            state,
            portal,
            RunOptions(as_of=AS_OF, incremental=True),
            run_id="r2",
        )
        assert updated.delivery.delivered["mark"][Op.UPDATE.value] == len(keys)
        # The update's acknowledgement gives no id: the one the portal gave first stays.
        assert state.portal_ids("mark", keys) == given
        assert state.portal_ids("mark", ["no-such-key"]) == {}
        with state.engine.connect() as conn:
            numbered = conn.execute(
                sa.select(sa.func.count()).where(
                    record_state.c.entity == "mark", record_state.c.portal_id.is_not(None)
                )
            ).scalar_one()
        assert numbered == len(keys)
    finally:
        state.close()


def test_every_change_of_the_shipped_mappings_goes_to_the_reference_portal() -> None:
    """For every entity of the shipped mappings and every operation, the reference client's
    support lets the plan send the change (nothing is counted as not taken), and the operation
    sent is one the reference API accepts (docs/portal-api.yaml: its entities and methods)."""
    import yaml

    from bridge.adapters.portal_client import PortalClient, PortalSettings
    from bridge.core.model import Change, Record
    from bridge.core.plan import Plan
    from bridge.core.support import refuser
    from bridge.service.engine.deliver import to_operation

    api = yaml.safe_load(Path("docs/portal-api.yaml").read_text(encoding="utf-8"))
    schemas = api["components"]["schemas"]
    entities = set(schemas["Entity"]["enum"])
    methods = set(schemas["Operation"]["properties"]["method"]["enum"])
    settings = PortalSettings(
        base_url="http://127.0.0.1:1/", school="s", client_id="c", client_secret="x"
    )
    with PortalClient(settings) as client:
        support = client.support
    plan, sent = Plan(), []
    for entity in MAPPINGS.entities:
        for op in Op:
            record = None if op is Op.DELETE else Record(entity, "1", "1", {"v": 1}, "f")
            change = Change(op, entity, "1", "1", record)
            if not plan.note(entity, change, refuses=refuser(support, entity)):
                sent.append(to_operation(len(sent), change))
    assert plan.not_supported == {}
    assert {(o.entity, o.method) for o in sent} == {
        (e, m) for e in MAPPINGS.entities for m in methods
    }
    assert set(MAPPINGS.entities) <= entities


def test_plan_sync_and_status_tell_the_admin_what_the_portal_did_not_take(
    engine: sa.Engine, tmp_path: Path
) -> None:
    from bridge.cli.render.plans import plan_json, plan_text, sync_text
    from bridge.cli.render.status import status_text
    from bridge.service.admin import Status
    from bridge.service.runs import RunRecord

    portal = MemoryPortal(batch_size=7, support=narrow_support())
    state = open_state(f"sqlite:///{tmp_path / 'state.sqlite'}")
    try:
        done = run_sync(
            MAPPINGS, SqlSource(engine), state, portal, RunOptions(as_of=AS_OF), run_id="r1"
        )
    finally:
        state.close()
    absences = sum(done.plan.plan.not_supported["absence"].values())
    shown = f"absence       not supported by this portal: no attendance {absences}"
    assert shown in plan_text(done.plan, MAPPINGS.entities)
    assert shown in sync_text(done, MAPPINGS.entities)
    assert json.loads(plan_json(done.plan))["not_supported"]["absence"] == {
        "not supported by this portal: no attendance": absences
    }
    at = datetime(2025, 12, 31, 7, 0)
    summary = {"not_supported": {"mark": {"cannot retract on this portal": 3}}}
    run = RunRecord("r1", "schedule", None, "sync", "full", at, at, "ok", 0, summary)
    text = status_text(Status([run], {}, [], 0, None))
    assert "Not sent by the last sync: this portal does not take them" in text
    assert "mark          cannot retract on this portal 3" in text
    quiet = dataclasses.replace(run, summary={})
    assert "Not sent" not in status_text(Status([quiet], {}, [], 0, None))
