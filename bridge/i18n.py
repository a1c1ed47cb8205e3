"""Messages for people in their language: gettext catalogs, English the fallback.

Every text the CLI prints for a person is an English message id marked ``_("…")`` (or
``ngettext`` for a count, ``pgettext`` for a word that means two things, ``N_`` for a
module-level constant translated where it is used); the
Russian catalog is ``bridge/locale/ru/LC_MESSAGES/bridge.po``, compiled to the ``.mo`` next to it
(both committed, so a fresh clone and a wheel carry them; ``scripts/i18n`` extracts, updates and
compiles, ``tests/unit/test_i18n.py`` fails on a message without a translation or a stale ``.mo``).

The language is chosen once per process, on first use (``activate`` chooses it again): the
setting ``$ASIOU_BRIDGE_LANG`` (``ru``, ``en``), then the locale variables in gettext's order
(``LANGUAGE``, ``LC_ALL``, ``LC_MESSAGES``, ``LANG``): the first one set decides, and a language
without a catalog (``C``, ``de_DE``) is English. Log event names, log fields and JSON keys are
never translated: they are for tools.
"""

from __future__ import annotations

import gettext
import os
from collections.abc import Mapping
from pathlib import Path

DOMAIN = "bridge"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
LANGUAGES = ("en", "ru")
"""The languages the bridge speaks: English (the message ids) and those with a catalog."""
SETTING = "ASIOU_BRIDGE_LANG"
LOCALE_VARIABLES = ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG")

_active: list[gettext.NullTranslations] = []


def choose_language(environ: Mapping[str, str]) -> str:
    """The language ``environ`` asks for: the setting, else the first locale variable set
    (``LANGUAGE`` may list several, ``ru:en``); English when none names a language we have."""
    setting = environ.get(SETTING, "").strip()
    if setting:
        return _known(setting.split(":"))
    for variable in LOCALE_VARIABLES:
        value = environ.get(variable, "").strip()
        if value:
            return _known(value.split(":"))
    return "en"


def _known(names: list[str]) -> str:
    """The first of ``names`` (``ru_RU.UTF-8``, ``ru``, ``C``) that is a language we speak."""
    for name in names:
        language = name.split(".")[0].split("@")[0].split("_")[0].lower()
        if language in LANGUAGES:
            return language
    return "en"


def activate(language: str | None = None) -> str:
    """Speak ``language`` (default: what the environment asks for) from now on; returns it."""
    chosen = _known([language]) if language else choose_language(os.environ)
    catalog = gettext.translation(DOMAIN, LOCALE_DIR, languages=[chosen], fallback=True)
    _active[:] = [catalog]
    return chosen


def _catalog() -> gettext.NullTranslations:
    if not _active:
        activate()
    return _active[0]


def _(message: str) -> str:
    """``message`` (an English message id) in the active language."""
    return _catalog().gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    """The form of a message for the count ``n`` (Russian has three: 1 запись, 2 записи,
    5 записей; the catalog's Plural-Forms decides)."""
    return _catalog().ngettext(singular, plural, n)


def pgettext(context: str, message: str) -> str:
    """``message`` in the active language, where the same English word means something else
    elsewhere (``context`` tells them apart: a "held" plan, a "held" back record)."""
    return _catalog().pgettext(context, message)


def N_(message: str) -> str:  # noqa: N802 - gettext's name for a deferred mark
    """Mark ``message`` for the catalog without translating it now (a module-level constant):
    it is translated with ``_`` where it is printed, in the language active then."""
    return message
