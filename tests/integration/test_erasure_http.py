"""Erasure end to end over HTTP against the reference portal: nothing of an erased pupil stays
readable on the portal (its API, its inspection endpoints, its SQLite file), their lone
guardians go in the same step, the act is printed in Russian with the portal's counts, and
``status`` lists withdrawn pupils with the 30-day deadline of 152-ФЗ."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import sqlalchemy as sa
import structlog

from bridge.adapters.source import SqlSource
from bridge.adapters.state import DELETED, open_state, record_state
from bridge.cli.main import main
from bridge.refportal.server import DEMO_CLIENT, ReferencePortal
from bridge.service import admin
from bridge.service.engine import RunOptions, run_sync
from tests.e2e import AS_OF, MAPPINGS, NO_GUARD, Bridge, make_school, running_portal, write_config

T0 = datetime(2026, 6, 1, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _default_logging() -> Iterator[None]:
    """The CLI configures structlog for the process (onto pytest's captured stderr): put the
    defaults back afterwards, so later tests do not log to a closed stream."""
    yield
    structlog.reset_defaults()


@pytest.fixture
def portal(tmp_path: Path) -> Iterator[ReferencePortal]:
    """A reference portal over HTTP with its SQLite file in tmp_path."""
    yield from running_portal(tmp_path)


def sync_at(bridge: Bridge, now: datetime, run_id: str) -> None:
    """A full sync whose state store's clock says ``now``."""
    engine = sa.create_engine(f"sqlite:///{bridge.school}")
    state = open_state(f"sqlite:///{bridge.state_path}", clock=lambda: now)
    client = bridge.client()
    try:
        result = run_sync(
            MAPPINGS,
            SqlSource(engine),
            state,
            client,
            RunOptions(as_of=AS_OF, thresholds=NO_GUARD),
            run_id=run_id,
        )
        assert result.exit_code == 0
    finally:
        client.close()
        state.close()
        engine.dispose()


def owned(state_path: Path, pupil: str) -> dict[tuple[str, str], str | None]:
    """(entity, key) → payload of every live state entry of the pupil (the pupil included)."""
    engine = sa.create_engine(f"sqlite:///{state_path}")
    query = sa.select(record_state.c.entity, record_state.c.key, record_state.c.payload).where(
        record_state.c.status != DELETED,
        sa.or_(
            record_state.c.pupil_key == pupil,
            sa.and_(record_state.c.entity == "pupil", record_state.c.key == pupil),
        ),
    )
    with engine.connect() as conn:
        found = {(e, k): p for e, k, p in conn.execute(query)}
    engine.dispose()
    return found


def guardian_payloads(state_path: Path) -> dict[str, dict[str, object]]:
    """Guardian key → payload of every live guardian in the state."""
    engine = sa.create_engine(f"sqlite:///{state_path}")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(record_state.c.key, record_state.c.payload).where(
                record_state.c.entity == "guardian", record_state.c.status != DELETED
            )
        ).all()
    engine.dispose()
    return {k: json.loads(p) for k, p in rows}


def pick_pupils(state_path: Path) -> tuple[str, str]:
    """Two delivered pupils with marks and guardians: one to erase, one to withdraw."""
    engine = sa.create_engine(f"sqlite:///{state_path}")
    query = (
        sa.select(record_state.c.pupil_key, sa.func.count())
        .where(
            record_state.c.entity.in_(["mark", "guardian_link"]), record_state.c.status != DELETED
        )
        .group_by(record_state.c.pupil_key)
        .order_by(sa.func.count().desc())
    )
    with engine.connect() as conn:
        keys = [str(k) for k, _ in conn.execute(query)]
    engine.dispose()
    with_guardians = [k for k in keys if any(e == "guardian_link" for e, _ in owned(state_path, k))]
    return with_guardians[0], with_guardians[1]


def api_get(url: str, path: str) -> requests.Response:
    """GET one record from the portal API with a fresh token."""
    token = requests.post(
        f"{url}/oauth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": DEMO_CLIENT[0],
            "client_secret": DEMO_CLIENT[1],
        },
        timeout=10,
    ).json()["access_token"]
    return requests.get(
        f"{url}/api/v1/schools/demo/{path}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def test_an_erased_pupil_leaves_nothing_readable_and_the_act_and_deadlines_are_kept(
    tmp_path: Path, portal: ReferencePortal, capsys: pytest.CaptureFixture[str]
) -> None:
    """After sync and erase, the pupil and each of their records answer 410 with key and time
    only, the portal's records and file hold none of their names, birth date, guardians'
    contacts or mark values, lone guardians and links are gone, shared guardians stay, the act
    counts what the portal acknowledged, and status shows the deadline of a withdrawn pupil."""
    school = make_school(tmp_path)
    bridge = Bridge(school, tmp_path / "state.sqlite", portal.url)
    sync_at(bridge, T0, "first")
    erased, withdrawn = pick_pupils(bridge.state_path)
    before = owned(bridge.state_path, erased)
    links = [json.loads(p or "{}") for (e, _), p in before.items() if e == "guardian_link"]
    mine = {str(link["guardian"]) for link in links}
    guardians = guardian_payloads(bridge.state_path)
    shared = {
        g
        for (e, k), p in _all_links(bridge.state_path).items()
        for g in [str(json.loads(p)["guardian"])]
        if g in mine and k != erased
    }
    lone = mine - shared
    assert lone, "the generated school gives the picked pupil a guardian of their own"
    assert Counter(e for e, _ in before)["mark"] > 0

    source = sa.create_engine(f"sqlite:///{school}")
    with source.begin() as conn:
        conn.execute(sa.text("UPDATE pupil SET pd_consent = 0 WHERE id = :k"), {"k": withdrawn})
    source.dispose()
    sync_at(bridge, T0, "second")

    config = write_config(tmp_path, school, portal.url)
    assert main(["--config", str(config), "erase", "pupil", erased]) == 0
    capsys.readouterr()

    personal = [
        json.dumps(json.loads(p), ensure_ascii=False, separators=(",", ":"))
        for (e, _), p in before.items()
        if e == "pupil" and p
    ]
    personal += [
        str(v) for g in lone for n, v in guardians[g].items() if n in ("phone", "email") and v
    ]
    personal += [json.dumps(guardians[g], ensure_ascii=False, separators=(",", ":")) for g in lone]
    for entity, key in [*before, *(("guardian", g) for g in lone)]:
        answer = api_get(portal.url, f"{entity}/{key}")
        assert answer.status_code == 410, (entity, key)
        assert {k for k in answer.json() if k not in ("type", "description")} == {
            "sourcedId",
            "status",
            "deletedAt",
        }
    for entity in ("pupil", "mark", "guardian", "guardian_link"):
        shown = requests.get(
            f"{portal.url}/_portal/records", params={"school": "demo", "entity": entity}, timeout=30
        ).json()
        gone = {k for e, k in before if e == entity} | (lone if entity == "guardian" else set())
        assert all(
            set(r) == {"sourcedId", "status", "deletedAt"}
            for r in shown["records"]
            if r["sourcedId"] in gone
        )
    live_guardians = {
        r["sourcedId"]
        for r in requests.get(
            f"{portal.url}/_portal/records",
            params={"school": "demo", "entity": "guardian"},
            timeout=30,
        ).json()["records"]
        if r["status"] == "active"
    }
    assert not lone & live_guardians
    assert shared <= live_guardians

    files = b"".join(p.read_bytes() for p in tmp_path.glob("portal.sqlite*"))
    assert all(text.encode() not in files for text in personal)
    db = sa.create_engine(f"sqlite:///{tmp_path / 'portal.sqlite'}")
    with db.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT entity, sourced_id, fingerprint, data, live FROM record")
        ).all()
    db.dispose()
    kept = {(e, k): (f, d, live) for e, k, f, d, live in rows}
    assert all(kept[key] == ("", "{}", 0) for key in before)

    assert main(["--config", str(config), "erase", "act", erased]) == 0
    act = capsys.readouterr().out
    expected = Counter(e for e, _ in before) + Counter({"guardian": len(lone)})
    assert "АКТ" in act
    assert "отзыв согласия на обработку персональных данных" in act
    for entity, count in expected.items():
        row = next(line for line in act.splitlines() if f"({entity})" in line)
        assert row.split()[-4:-2] == [str(count), str(count)], row
    assert f"подтверждено порталом: {sum(expected.values())} из {sum(expected.values())}" in act
    assert not any(text in act for text in personal)

    state = open_state(f"sqlite:///{bridge.state_path}", clock=lambda: T0 + timedelta(days=20))
    due = admin.status(state, {}).erasures_due
    assert [
        (d.pupil, d.withdrawn.isoformat(), d.deadline.isoformat(), d.days_left, d.is_overdue)
        for d in due
    ] == [(withdrawn, "2026-06-01", "2026-07-01", 10, False)]
    state.clock = lambda: T0 + timedelta(days=33)
    assert [(d.days_left, d.is_overdue) for d in admin.status(state, {}).erasures_due] == [
        (-3, True)
    ]
    state.close()
    assert main(["--config", str(config), "status", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["erasures_due"]
    assert [(d["pupil"], d["deadline"]) for d in listed] == [(withdrawn, "2026-07-01")]
    assert main(["--config", str(config), "status"]) == 0
    assert f"pupil {withdrawn}: withdrawn 2026-06-01, deadline 2026-07-01" in (
        capsys.readouterr().out
    )


def _all_links(state_path: Path) -> dict[tuple[str, str], str]:
    """(link key, owner pupil) → payload of every live guardian link."""
    engine = sa.create_engine(f"sqlite:///{state_path}")
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(record_state.c.key, record_state.c.pupil_key, record_state.c.payload).where(
                record_state.c.entity == "guardian_link", record_state.c.status != DELETED
            )
        ).all()
    engine.dispose()
    return {(k, str(p)): str(d) for k, p, d in rows}
