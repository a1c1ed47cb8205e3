"""One school's state is never taken for another's (instances starting together:
``test_concurrent_start.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from bridge.adapters.state import legacy_schema_name, open_state, schema_name
from bridge.core.errors import FatalError
from bridge.core.model import Change, Op, Record
from bridge.ports import Delivered

LOOK_ALIKE = [("school-9", "school_9"), ("school-9", "School-9"), ("школа-7", "лицей-7")]


def _deliver(url: str, school: str, key: str) -> None:
    store = open_state(url, school=school)
    try:
        record = Record("pupil", key, f"i{key}", {"x": 1}, "f")
        store.record([Delivered(Change(Op.CREATE, "pupil", key, f"i{key}", record))])
    finally:
        store.close()


def _count(url: str, school: str) -> int:
    store = open_state(url, school=school)
    try:
        return store.count("pupil")
    finally:
        store.close()


@pytest.mark.parametrize(("one", "other"), LOOK_ALIKE)
def test_ids_that_once_shared_a_schema_keep_separate_states(
    postgres_url: str, one: str, other: str
) -> None:
    """Ids that differ only in case, punctuation or Cyrillic letters get schemas of their own."""
    assert schema_name(one) != schema_name(other)
    _deliver(postgres_url, one, "17")
    assert _count(postgres_url, one) == 1
    assert _count(postgres_url, other) == 0


def test_a_long_id_gets_a_schema_name_within_the_limit(postgres_url: str) -> None:
    """A 200-character id works, its schema name within PostgreSQL's 63 bytes."""
    school = "школа-" + "x" * 194
    assert len(schema_name(school).encode()) <= 63
    _deliver(postgres_url, school, "1")
    assert _count(postgres_url, school) == 1
    assert _count(postgres_url, school[:-1]) == 0


def test_a_state_kept_for_another_school_is_refused(tmp_path: Path) -> None:
    """Opening a state that records another school's id fails with both ids named."""
    url = f"sqlite:///{tmp_path / 'state.sqlite'}"
    open_state(url, school="school-9").close()
    with pytest.raises(FatalError) as refused:
        open_state(url, school="school_9")
    assert "'school-9'" in str(refused.value)
    assert "'school_9'" in str(refused.value)


def test_an_old_named_schema_is_adopted_by_its_school(postgres_url: str) -> None:
    """A schema named the old way, with no school id, is renamed and kept by the school."""
    school = "gymnasium-1"
    engine = sa.create_engine(postgres_url)
    legacy = legacy_schema_name(school)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{legacy}"'))
    engine.dispose()
    _deliver(postgres_url, school, "5")
    engine = sa.create_engine(postgres_url)
    with engine.connect() as conn:
        names = set(conn.execute(sa.text("SELECT nspname FROM pg_namespace")).scalars())
    engine.dispose()
    assert schema_name(school) in names
    assert legacy not in names
    assert _count(postgres_url, school) == 1
