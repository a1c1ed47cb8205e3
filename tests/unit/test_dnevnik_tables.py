"""The school's dnevnik.ru tables: the shipped example loads to the adapter's defaults, and a
bad file is refused naming the file and the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.adapters.dnevnik.settings import LOG_STATUSES, WORK_TYPES
from bridge.core.errors import ConfigError
from bridge.service.config import parse_config
from bridge.service.wiring import dnevnik_settings, load_tables


def test_the_shipped_tables_are_the_defaults() -> None:
    tables = load_tables("config/dnevnik-tables.toml")
    assert tables.log_status == dict(LOG_STATUSES)
    assert tables.work_type == dict(WORK_TYPES)
    assert tables.names == {"subject": {}, "period": {}, "class": {}}


def test_a_bad_tables_file_names_every_problem(tmp_path: Path) -> None:
    bad = tmp_path / "tables.toml"
    bad.write_text('[log_status]\nabsent = 1\n[colours]\nx = "y"\n[names]\nsubject = 3\n')
    with pytest.raises(ConfigError) as raised:
        load_tables(str(bad))
    text = str(raised.value)
    assert "log_status" in text
    assert "colours" in text
    assert "names.subject" in text


def test_the_settings_take_the_schools_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "t.toml").write_text(
        '[log_status]\nabsent = "Absent"\n[names.subject]\n"Русский язык" = "Русский"\n'
    )
    (tmp_path / "token").write_text("tok")
    config = parse_config(
        {
            "source": {"url": "sqlite:///asiou.sqlite"},
            "portal": {
                "kind": "dnevnik",
                "url": "https://api.example.test/v2/",
                "school": "7",
                "secret_file": str(tmp_path / "token"),
                "tables_file": "t.toml",
            },
        },
        tmp_path / "bridge.toml",
    )
    monkeypatch.delenv("ASIOU_BRIDGE_PORTAL_SECRET", raising=False)
    settings = dnevnik_settings(config)
    assert settings.statuses == {"absent": "Absent"}
    assert settings.work_types == WORK_TYPES  # not given: the defaults
    assert settings.names == {"subject": {"Русский язык": "Русский"}}
    assert settings.token == "tok"
    assert settings.base_url == "https://api.example.test/v2"


def test_an_unknown_portal_kind_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"portal\.kind"):
        parse_config(
            {"source": {"url": "sqlite:///a.sqlite"}, "portal": {"kind": "eljur"}},
            tmp_path / "bridge.toml",
        )
