"""The CLI speaks Russian under a Russian locale and English under ``LANG=C``: the same commands
as an admin types them, in subprocesses with only the locale changed; the JSON is the same in
both (keys and values are for tools)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.core.errors import ExitCode
from tests.school import write_local_config

LOCALE_VARIABLES = ("ASIOU_BRIDGE_LANG", "LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")


def run(
    *args: str, locale: dict[str, str], cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``asiou-bridge ARGS`` with the locale variables ``locale`` (and no other)."""
    env = {k: v for k, v in os.environ.items() if k not in LOCALE_VARIABLES}
    env.update(locale)
    return subprocess.run(
        [sys.executable, "-m", "bridge", *args],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env=env,
        cwd=cwd,
    )


RUSSIAN = {"LANG": "ru_RU.UTF-8"}
ENGLISH = {"LANG": "C"}


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_local_config(tmp_path)


@pytest.mark.slow
def test_the_demo_speaks_russian_under_a_russian_locale(tmp_path: Path) -> None:
    """``LANG=ru_RU.UTF-8 asiou-bridge demo`` prints its steps, the sync reports and the verdict
    in Russian; ``LANG=C`` in English; both deliver the same."""
    args = ("demo", "--pupils", "30", "--days", "5")
    ru = run(*args, "--dir", str(tmp_path / "ru"), locale=RUSSIAN)
    en = run(*args, "--dir", str(tmp_path / "en"), locale=ENGLISH)
    assert (ru.returncode, en.returncode) == (ExitCode.OK, ExitCode.OK), ru.stderr + en.stderr
    for phrase in (
        "Создаётся демо-школа на 30 учеников",
        "3. Полная синхронизация",
        "Синхронизация (полный запуск): доставлено",
        "Синхронизация (инкрементальный запуск): доставлено",
        "Отложено (не выгружается):",
        "ученик 1 выбыл",
        "ГОТОВО: все запланированные изменения доставлены.",
    ):
        assert phrase in ru.stdout, phrase
    for phrase in (
        "Generating a demo school of 30 pupils",
        "3. Full sync",
        "Sync (full run):",
        "Held back (never exported):",
        "OK: every planned change was delivered.",
    ):
        assert phrase in en.stdout, phrase
    assert "Sync (" not in ru.stdout
    assert "Синхронизация" not in en.stdout
    delivered = [
        json.loads(line)["delivered_total"]
        for out in (ru.stdout, en.stdout)
        for line in out.splitlines()
        if line.startswith("{")
    ]
    assert delivered[:2] == delivered[2:]


def test_plan_speaks_russian_and_its_json_is_the_same(config: Path) -> None:
    """`plan` under a Russian locale prints the Russian plan (headings, columns, holds); `plan
    --json` prints the very same JSON in Russian and in English."""
    base = ("--config", str(config), "plan", "--as-of", "2025-12-01")
    text = run(*base, locale=RUSSIAN)
    assert text.returncode == ExitCode.OK, text.stderr
    assert "План полного запуска (предпросмотр: ничего не отправлено и не записано)" in text.stdout
    assert "прочитано" in text.stdout.splitlines()[2]
    assert "Отложено (не выгружается):" in text.stdout
    assert "нет согласия (no_consent) 12" in text.stdout
    assert "nothing was sent" not in text.stdout
    ru = run(*base, "--json", locale=RUSSIAN)
    en = run(*base, "--json", locale=ENGLISH)
    assert ru.stdout == en.stdout
    assert json.loads(ru.stdout)["counts"]["mark"] == {"create": 28}


def test_the_setting_overrides_the_locale(config: Path) -> None:
    """$ASIOU_BRIDGE_LANG=en keeps a Russian workstation's bridge in English, and =ru makes a
    server with LANG=C speak Russian."""
    base = ("--config", str(config), "plan", "--as-of", "2025-12-01")
    english = run(*base, locale={**RUSSIAN, "ASIOU_BRIDGE_LANG": "en"})
    russian = run(*base, locale={**ENGLISH, "ASIOU_BRIDGE_LANG": "ru"})
    assert "Plan of a full run" in english.stdout
    assert "План полного запуска" in russian.stdout


def test_explain_and_status_speak_russian_with_the_same_json(config: Path) -> None:
    """`explain` of a key ASIOU lacks and `status` before any run are Russian under a Russian
    locale; their JSON is identical in both languages."""
    explain = ("--config", str(config), "explain", "mark", "999999")
    found = run(*explain, locale=RUSSIAN)
    assert "источник: не найдено в АСИОУ" in found.stdout, found.stderr
    assert "доставка: ни разу" in found.stdout
    ru_json = run(*explain, "--json", locale=RUSSIAN)
    assert ru_json.stdout == run(*explain, "--json", locale=ENGLISH).stdout
    status = ("--config", str(config), "status")
    shown = run(*status, locale=RUSSIAN)
    assert "Последние запуски (сначала новые; время" in shown.stdout, shown.stderr
    assert "пока не было" in shown.stdout
    ru_status = json.loads(run(*status, "--json", locale=RUSSIAN).stdout)
    en_status = json.loads(run(*status, "--json", locale=ENGLISH).stdout)
    assert shape(ru_status) == shape(en_status)  # the next runs' times move between the two
    assert ru_status["next_runs"].keys() == {"incremental", "full", "dead_letters", "reconcile"}


def shape(data: object) -> object:
    """The keys of a JSON document all the way down, its values replaced by their types."""
    if isinstance(data, dict):
        return {k: shape(v) for k, v in data.items()}
    if isinstance(data, list):
        return [shape(v) for v in data]
    return type(data).__name__


def test_an_error_and_its_advice_are_russian(tmp_path: Path) -> None:
    """A broken configuration is reported in Russian with the problems listed (exit 3)."""
    path = tmp_path / "bridge.toml"
    path.write_text('[source]\nurl = 5\n[guard]\nmin_deletes = "x"\n', encoding="utf-8")
    result = run("--config", str(path), "plan", locale=RUSSIAN)
    assert result.returncode == ExitCode.CONFIG
    assert "Ошибки в настройках (ничего не сделано):" in result.stderr
    assert "source.url" in result.stderr


def test_every_rejection_of_the_demo_school_is_worded_in_russian(tmp_path: Path) -> None:
    """The demo school's journal mistakes (every kind the generator makes) give rejections the
    CLI recognises, so a Russian plan says each of them in Russian, grouped or row by row."""
    from bridge.cli.render.rejections import REASONS

    english = {"LANG": "C"}
    school_file = tmp_path / "school.sqlite"
    made = run(
        "demo-db", "--out", str(school_file), "--pupils", "40", "--days", "10", locale=english
    )
    assert made.returncode == ExitCode.OK, made.stderr
    path = tmp_path / "bridge.toml"
    path.write_text(
        f'[source]\nurl = "sqlite:///{school_file}"\n[state]\nurl = "sqlite:///state.sqlite"\n'
        f'[mappings]\ndir = "{Path("mappings").resolve()}"\n',
        encoding="utf-8",
    )
    plan = run("--config", str(path), "plan", "--json", "--detail", locale=english)
    reasons = {r["reason"] for r in json.loads(plan.stdout)["rejections"]["sample"]}
    assert len(reasons) >= 5
    unknown = [r for r in reasons if not any(p.fullmatch(r) for p, _ in REASONS)]
    assert not unknown
    text = run("--config", str(path), "plan", locale=RUSSIAN).stdout
    rejected = text[text.index("Отклонённые строки") :].splitlines()[1:]
    assert rejected
    assert not [line for line in rejected if "missing" in line or "refers to" in line]


def test_check_speaks_russian(config: Path) -> None:
    """`check` under a Russian locale gives each verdict in Russian, and the portal's failure
    (no secret configured: exit 3) with the Russian heading of a configuration error."""
    result = run("--config", str(config), "check", locale=RUSSIAN)
    assert result.stdout.startswith("настройки: в порядке ("), result.stdout + result.stderr
    assert "сопоставления: в порядке (видов данных:" in result.stdout
    assert "источник (АСИОУ): в порядке (подключено; все таблицы из сопоставлений на месте)" in (
        result.stdout
    )
    assert "портал: ОШИБКА\nОшибка в настройках (ничего не сделано):" in result.stdout
    assert result.returncode == ExitCode.CONFIG
