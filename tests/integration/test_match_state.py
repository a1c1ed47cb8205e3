"""The state store keeps the last matching and the admin's decisions; ``match`` shows and
settles them (keys and portal ids only)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bridge.adapters.state import open_state
from bridge.cli import match as cli_match
from bridge.core.matching import Match, MatchStatus, Settled
from bridge.ports import MatchState
from tests.school import write_local_config

FOUND = [
    Match("pupil", "1", MatchStatus.MATCHED, "1000000000000000001", ("1000000000000000001",), "r"),
    Match("pupil", "2", MatchStatus.AMBIGUOUS, None, ("11", "12"), "name and birth date in class"),
    Match("pupil", "3", MatchStatus.MISSING, None, (), "name and birth date in class"),
    Match("class", "5", MatchStatus.MATCHED, "77", ("77",), "class name"),
]


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_matches_and_decisions_are_kept(
    tmp_path: Path, store: str, request: pytest.FixtureRequest
) -> None:
    url = (
        f"sqlite:///{tmp_path / 'state.sqlite'}"
        if store == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    state = open_state(url)
    try:
        assert isinstance(state, MatchState)
        state.record_matches("pupil", [m for m in FOUND if m.entity == "pupil"])
        state.record_matches("class", [m for m in FOUND if m.entity == "class"])
        assert state.matches() == sorted(FOUND, key=lambda m: (m.entity, m.key))
        # A new matching of one entity replaces that entity's only.
        state.record_matches("pupil", FOUND[:1])
        assert [m.key for m in state.matches()] == ["5", "1"]
        assert state.matches("pupil") == FOUND[:1]

        state.settle(Settled("pupil", "2", MatchStatus.CONFIRMED, "12"), "admin")
        state.settle(Settled("pupil", "3", MatchStatus.REJECTED), "admin")
        state.settle(Settled("pupil", "3", MatchStatus.CONFIRMED, "13"), "admin")  # changed mind
        assert state.settlements("pupil") == {
            "2": Settled("pupil", "2", MatchStatus.CONFIRMED, "12"),
            "3": Settled("pupil", "3", MatchStatus.CONFIRMED, "13"),
        }
        assert state.settlements("class") == {}
        with pytest.raises(ValueError, match="names the portal's id"):
            state.settle(Settled("pupil", "4", MatchStatus.CONFIRMED), "admin")
        with pytest.raises(ValueError, match="confirms or rejects"):
            state.settle(Settled("pupil", "4", MatchStatus.MATCHED, "1"), "admin")
    finally:
        state.close()


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_local_config(tmp_path, with_school=False)


def _args(config: Path, *words: str, **flags: object) -> argparse.Namespace:
    action, *rest = words
    names = {"list": [], "confirm": ["entity", "key", "portal_id"], "reject": ["entity", "key"]}
    given = dict(zip(names[action], rest, strict=True))
    return argparse.Namespace(config=str(config), action=action, **given, **flags)


def test_match_lists_the_undecided_and_settles_them(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The reference portal matches nothing: a decision about a pupil is refused.
    assert cli_match.cmd_match(_args(config, "reject", "pupil", "3")) == 2
    assert "does not match pupil" in capsys.readouterr().err

    monkeypatch.setattr(cli_match, "matched_entities", lambda _: frozenset({"pupil", "class"}))
    state = open_state(f"sqlite:///{config.parent / 'state.sqlite'}")
    try:
        state.record_matches("pupil", [m for m in FOUND if m.entity == "pupil"])
    finally:
        state.close()
    assert cli_match.cmd_match(_args(config, "list", entity=None, all=False, json=False)) == 0
    text = capsys.readouterr().out
    assert "ambiguous" in text
    assert "11 12" in text
    assert "missing" in text
    assert "1000000000000000001" not in text  # a match waits for nothing: not listed
    assert "2 waiting for a decision" in text
    assert cli_match.cmd_match(_args(config, "confirm", "pupil", "2", "12")) == 0
    assert "pupil 2: confirmed as portal record 12" in capsys.readouterr().err
    assert cli_match.cmd_match(_args(config, "list", entity="pupil", all=True, json=True)) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [m["key"] for m in listed] == ["1", "2", "3"]
    assert listed[1]["candidates"] == ["11", "12"]
    state = open_state(f"sqlite:///{config.parent / 'state.sqlite'}")
    try:
        assert state.settlements("pupil")["2"].portal_id == "12"
    finally:
        state.close()
