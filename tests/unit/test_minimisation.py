"""Minimisation (§1.9): only what the diary needs leaves the school, and docs/rules.md lists
exactly the fields the shipped mappings export."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import sqlalchemy as sa

from bridge.adapters.source import SqlSource
from bridge.core.gate import DERIVED
from bridge.core.mapping import load_mappings
from bridge.core.model import Change
from bridge.service.engine import RunOptions, plan_run
from bridge.testing.fakes import MemoryStateStore
from tests import school

MAPPINGS = load_mappings(Path("mappings"))
NEVER_SENT = {("enrollment", "reason_out"), ("guardian", "phone"), ("guardian", "email")}
GATE_FIELDS = {"pupil": {"active"}}  # computed by the gate (bridge.core.gate.derive)
TABLE_ROW = re.compile(r"^\| (\w+) \| (\w+) \| [^|]+ \|$")


def _exported() -> set[tuple[str, str]]:
    """(entity, field) of every field the shipped mappings export, and the gate's own."""
    fields = {(m.entity, f.name) for m in MAPPINGS.mappings for f in m.fields if f.export}
    return fields | {(e, f) for e in DERIVED for f in GATE_FIELDS.get(e, set())}


def test_the_shipped_mappings_export_no_withdrawal_reason_or_contact_data(tmp_path: Path) -> None:
    """A full plan of a school whose rows hold withdrawal reasons and guardians' phones sends
    no payload with reason_out, phone or email, nor any of their values."""
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'school.sqlite'}")
    school.write_school(engine)
    sent: list[Change] = []
    plan_run(
        MAPPINGS,
        SqlSource(engine),
        MemoryStateStore(),
        RunOptions(as_of=date(2025, 12, 1)),
        sent.append,
    )
    with engine.connect() as conn:
        secrets = {
            str(v)
            for (v,) in conn.execute(
                sa.text(
                    "select reason_out from pupil_move union select phone from guardian "
                    "union select email from guardian"
                )
            )
            if v is not None
        }
    engine.dispose()
    assert {c.entity for c in sent} >= {"enrollment", "guardian"}
    assert secrets
    for change in sent:
        assert change.record is not None
        payload = change.record.payload
        assert not {(change.entity, name) for name in payload} & NEVER_SENT
        assert not secrets & {str(v) for v in payload.values()}


def test_the_docs_table_lists_exactly_the_exported_fields() -> None:
    """The "What leaves the school" table in docs/rules.md names every exported field of the
    shipped mappings and nothing else, so the two cannot drift."""
    text = Path("docs/rules.md").read_text(encoding="utf-8")
    section = text.split("## What leaves the school", 1)[1].split("\n## ", 1)[0]
    listed = [m.groups() for line in section.splitlines() if (m := TABLE_ROW.match(line))]
    rows = [(e, f) for e, f in listed if (e, f) != ("entity", "field")]
    assert len(rows) == len(set(rows))
    assert set(rows) == _exported()
    assert not set(rows) & NEVER_SENT
