"""The messages for people in Russian (bridge/i18n.py): every marked message has a translation
with the same placeholders, the shipped .mo is the .po compiled, the language follows the setting
and the locale, and no human-facing text of the CLI escapes the catalog."""

from __future__ import annotations

import ast
import gettext
import re
import string
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

from bridge import i18n

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "bridge"
PO = PACKAGE / "locale" / "ru" / "LC_MESSAGES" / "bridge.po"
MO = PO.with_suffix(".mo")
MARKS = frozenset({"_", "ngettext", "pgettext", "N_"})
Message = str | tuple[str, str]


def extracted() -> dict[tuple[Message, str | None], list[str]]:
    """Every message marked in the package (with its context, if any), as Babel extracts it
    (scripts/i18n), with where."""
    found: dict[tuple[Message, str | None], list[str]] = {}
    method_map = [("**.py", "python")]
    for file, line, message, _comments, context in extract_from_dir(str(PACKAGE), method_map):
        key = message if isinstance(message, str) else (message[0], message[1])
        found.setdefault((key, context), []).append(f"{file}:{line}")
    return found


def russian() -> Catalog:
    with PO.open("rb") as file:
        return read_po(file, locale="ru")


def fields(text: str) -> set[str]:
    """The ``{name}`` placeholders of a message (what ``str.format`` fills)."""
    return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}


def test_every_marked_message_has_a_russian_translation() -> None:
    """A message marked in the code but missing, empty or fuzzy in the Russian catalog fails."""
    catalog = russian()
    untranslated = []
    for (message, context), where in extracted().items():
        msgid = message if isinstance(message, str) else message[0]
        entry = catalog.get(msgid, context=context)
        forms = [] if entry is None else entry.string
        forms = [forms] if isinstance(forms, str) else list(forms)
        if entry is None or entry.fuzzy or not forms or not all(forms):
            untranslated.append(f"{where[0]}: {msgid!r}")
    assert not untranslated, "not translated (scripts/i18n, then bridge.po):\n" + "\n".join(
        untranslated
    )


def test_the_catalog_has_three_russian_plural_forms() -> None:
    """Every plural message has the three Russian forms, chosen by the .po's Plural-Forms."""
    catalog = russian()
    assert catalog.num_plurals == 3
    plurals = [m for m in catalog if m.id and not isinstance(m.id, str)]
    assert plurals
    assert all(len(m.string) == 3 for m in plurals), [m.id for m in plurals]


def test_translations_keep_the_placeholders() -> None:
    """A translation that drops, renames or adds a ``{placeholder}`` fails (it would print a
    wrong fact or raise KeyError at run time)."""
    wrong = []
    for entry in russian():
        if not entry.id:
            continue
        ids = [entry.id] if isinstance(entry.id, str) else list(entry.id)
        expected = set().union(*(fields(i) for i in ids))
        forms = [entry.string] if isinstance(entry.string, str) else list(entry.string)
        wrong += [f"{ids[0]!r} -> {f!r}" for f in forms if f and fields(f) != expected]
    assert not wrong, "\n".join(wrong)


def test_the_catalog_has_no_message_the_code_lost() -> None:
    """An entry the code no longer marks is dropped (scripts/i18n), not kept as dead text."""
    marked = {(m if isinstance(m, str) else m[0], c) for m, c in extracted()}
    stale = [
        (m.id, m.context)
        for m in russian()
        if m.id and ((m.id if isinstance(m.id, str) else m.id[0]), m.context) not in marked
    ]
    assert not stale, stale


def test_the_shipped_mo_is_the_po_compiled() -> None:
    """The committed .mo (what a wheel and a clone carry) translates every message as the .po
    does: a .po edited without `scripts/i18n compile` fails."""
    with MO.open("rb") as file:
        compiled = gettext.GNUTranslations(file)
    differ = []
    for entry in russian():
        if not entry.id:
            continue
        if entry.context is not None:
            got = [compiled.pgettext(entry.context, str(entry.id))]
            want = [entry.string]
        elif isinstance(entry.id, str):
            got = [compiled.gettext(entry.id)]
            want = [entry.string]
        else:
            got = [compiled.ngettext(entry.id[0], entry.id[1], n) for n in (1, 2, 5)]
            want = list(entry.string)
        if got != want:
            differ.append(entry.id)
    assert not differ, differ


def test_the_wheel_ships_the_compiled_catalogs() -> None:
    """The package data of pyproject.toml includes every .mo under bridge/locale."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["bridge"]
    catalogs = [p.relative_to(PACKAGE).as_posix() for p in PACKAGE.glob("locale/*/*/*.mo")]
    assert catalogs
    assert all(any(fnmatch(c, p) for p in patterns) for c in catalogs), catalogs


@pytest.mark.parametrize(
    ("environ", "language"),
    [
        ({}, "en"),
        ({"LANG": "ru_RU.UTF-8"}, "ru"),
        ({"LANG": "C.UTF-8"}, "en"),
        ({"LANG": "de_DE.UTF-8"}, "en"),
        ({"LANG": "en_US.UTF-8", "LC_MESSAGES": "ru_RU.UTF-8"}, "ru"),
        ({"LC_MESSAGES": "ru_RU.UTF-8", "LC_ALL": "C"}, "en"),
        ({"LC_ALL": "C", "LANGUAGE": "ru:en"}, "ru"),
        ({"LANGUAGE": "de:ru"}, "ru"),
        ({"LANG": "ru_RU.UTF-8", "ASIOU_BRIDGE_LANG": "en"}, "en"),
        ({"LANG": "C", "ASIOU_BRIDGE_LANG": "ru"}, "ru"),
        ({"LANG": "ru_RU.UTF-8", "ASIOU_BRIDGE_LANG": ""}, "ru"),
    ],
)
def test_the_language_follows_the_setting_then_the_locale(
    environ: dict[str, str], language: str
) -> None:
    """$ASIOU_BRIDGE_LANG first, then LANGUAGE, LC_ALL, LC_MESSAGES, LANG (the first set wins);
    a language without a catalog is English."""
    assert i18n.choose_language(environ) == language


@pytest.fixture
def in_russian() -> Iterator[None]:
    i18n.activate("ru")
    yield
    i18n.activate("en")


@pytest.mark.usefixtures("in_russian")
@pytest.mark.parametrize(
    ("n", "text"),
    [
        (1, "1 строка"),
        (2, "2 строки"),
        (4, "4 строки"),
        (5, "5 строк"),
        (11, "11 строк"),
        (12, "12 строк"),
        (21, "21 строка"),
        (22, "22 строки"),
        (25, "25 строк"),
        (111, "111 строк"),
    ],
)
def test_counts_take_the_russian_plural_form(n: int, text: str) -> None:
    """1 строка, 2 строки, 5 строк, 11 строк, 21 строка: Russian's three forms."""
    assert i18n.ngettext("{n} row", "{n} rows", n).format(n=n) == text


def test_english_is_the_message_id_and_the_fallback() -> None:
    """In English (and for a message without a translation) the message id is printed."""
    i18n.activate("en")
    assert i18n._("Held back (never exported):") == "Held back (never exported):"
    assert i18n.ngettext("{n} row", "{n} rows", 1) == "{n} row"
    assert i18n._("not a message of the catalog") == "not a message of the catalog"


@pytest.mark.usefixtures("in_russian")
def test_a_module_constant_is_translated_where_printed() -> None:
    """``N_`` leaves the constant English; it is translated in the language active when printed."""
    from bridge.cli.render.explain import HOLD_WORDS, hold_words

    assert HOLD_WORDS["no_consent"].startswith("no written consent")
    assert hold_words("no_consent").startswith("нет письменного согласия на публикацию")
    i18n.activate("en")
    assert hold_words("no_consent") == HOLD_WORDS["no_consent"]


# --- human-facing text that escapes the catalog ---------------------------------------------

WORD = re.compile(r"[A-Za-zА-Яа-яЁё]{2,}")
COMMAND_LINE = re.compile(
    r"^((asiou-bridge|sudo|curl|mariadb|journalctl|systemctl)\b.*|\(docs/[\w./-]+\))$"
)
"""A line of a shell command to type (or a docs reference), not words to translate."""
ALLOWED = {
    # The config files the demo writes for the program (TOML), not for a person to read.
    ("bridge/cli/demo.py", "_write_demo_config"),
    ("bridge/cli/demo.py", "_write_dnevnik_config"),
    # The erasure act is a school's document under 152-ФЗ: Russian whatever the CLI speaks.
    ("bridge/cli/render/erasure.py", "erasure_act_text"),
    ("bridge/cli/render/erasure.py", "ENTITY_WORDS"),
    ("bridge/cli/render/erasure.py", "_moment"),
}
"""(module, function or constant) whose string literals are not language for the catalog."""
PENDING: set[str] = set()
"""CLI modules not yet marked (none: every module under bridge/cli is scanned)."""


def is_prose(text: str) -> bool:
    """Words for a person: two words or more with a space between (identifiers, JSON keys and
    log event names are single tokens), and not only command lines (examples to type)."""
    if len(WORD.findall(text)) < 2 or " " not in text.strip():
        return False
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return not all(COMMAND_LINE.match(line) for line in lines)


def literal(node: ast.AST) -> str | None:
    """The text a string literal or an f-string writes itself (its fixed parts)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value for v in node.values if isinstance(v, ast.Constant))
    return None


def unmarked(source: str, module: str) -> list[str]:
    """Human-facing literals of ``source`` outside ``_()``/``ngettext()``/``N_()``, and marks of
    a literal inside an f-string (Babel cannot extract those), as ``module:line: text``."""
    tree = ast.parse(source)
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = []
    for node in ast.walk(tree):
        if marks_literal(node) and any(
            isinstance(a, ast.JoinedStr) for a in ancestors(node, parents)
        ):
            found.append(f"{module}:{node.lineno}: a mark inside an f-string is not extracted")
        text = literal(node)
        if text is None or not is_prose(text) or isinstance(parents.get(node), ast.JoinedStr):
            continue
        line = ancestors(node, parents)
        if isinstance(line[0], ast.Expr) or any(is_mark(a) or is_pattern(a) for a in line):
            continue  # a docstring, marked, or a regular expression
        if any((module, owner) in ALLOWED for owner in owners(line)):
            continue
        found.append(f"{module}:{node.lineno}: {text[:70]!r}")
    return found


def is_mark(node: ast.AST) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in MARKS


def is_pattern(node: ast.AST) -> bool:
    """A call of the ``re`` module: its literals are regular expressions, not language."""
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "re"
    )


def marks_literal(node: ast.AST) -> bool:
    """A mark of a literal message (``_("…")``; ``_(WORDS[x])`` translates text marked
    elsewhere)."""
    return isinstance(node, ast.Call) and is_mark(node) and any(literal(a) for a in node.args)


def ancestors(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> list[ast.AST]:
    line = []
    while node in parents:
        node = parents[node]
        line.append(node)
    return line


def owners(line: list[ast.AST]) -> Iterator[str]:
    """The functions and assigned constants a node is inside."""
    for node in line:
        if isinstance(node, ast.FunctionDef):
            yield node.name
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            yield from (t.id for t in targets if isinstance(t, ast.Name))


def test_every_human_facing_text_of_the_cli_is_marked() -> None:
    """A print, message, help text or error of bridge/cli/** written as a plain literal (not in
    ``_()``) fails, naming the file and line; JSON keys, log events and commands pass."""
    found = []
    for path in sorted((PACKAGE / "cli").rglob("*.py")):
        module = path.relative_to(ROOT).as_posix()
        if module not in PENDING:
            found += unmarked(path.read_text(encoding="utf-8"), module)
    assert not found, "mark these with _() (bridge/i18n.py):\n" + "\n".join(found)


def test_the_scan_finds_an_unmarked_message() -> None:
    """The scan flags a plain f-string, a plain help text and a mark inside an f-string, and
    passes marked text, docstrings, JSON keys and command examples."""
    source = (
        'def f(n):\n    """A docstring of several words."""\n'
        '    print(f"{n} rows were read")\n'
        '    cmd.add_argument("--x", help="what it does")\n'
        "    print(f\"{_('entity'):<9}\")\n"
        '    print(_("{n} rows were read").format(n=n), {"plan_id": n})\n'
        '    print("asiou-bridge approve 1234")\n'
        '    words = [(re.compile(r"refers to (?P<k>\\S+), which was"), N_("refers to {k}"))]\n'
    )
    assert sorted(unmarked(source, "m.py")) == [
        "m.py:3: ' rows were read'",
        "m.py:4: 'what it does'",
        "m.py:5: a mark inside an f-string is not extracted",
    ]
