"""Why a row was rejected, in the active language.

The core words each rejection once, in English, with its facts inline ("text is 312 characters
long, over the limit of 255"); the plan groups them with numbers as ``N`` and values as ``'…'``
(``bridge.core.plan.rejection_group``). Each wording is recognised here by its pattern and said
again from the same facts; in English that gives back the core's text exactly, and a wording
no pattern knows is printed as it is. The JSON keeps the core's text.
"""

from __future__ import annotations

import re

from bridge.i18n import N_, _

REASONS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"missing value"), N_("missing value")),
    (re.compile(r"text is not valid UTF-8"), N_("text is not valid UTF-8")),
    (re.compile(r"text contains control characters"), N_("text contains control characters")),
    (
        re.compile(r"text is (?P<length>\S+) characters long, over the limit of (?P<limit>\S+)"),
        N_("text is {length} characters long, over the limit of {limit}"),
    ),
    (re.compile(r"not a whole number:(?P<value>.*)"), N_("not a whole number:{value}")),
    (re.compile(r"not a yes/no value:(?P<value>.*)"), N_("not a yes/no value:{value}")),
    (re.compile(r"not a valid date(?P<value>.*)"), N_("not a valid date{value}")),
    (
        re.compile(r"value not in the value map of the mapping(?P<value>(:.*)?)"),
        N_("value not in the value map of the mapping{value}"),
    ),
    (re.compile(r"empty key"), N_("empty key")),
    (re.compile(r"key contains control characters"), N_("key contains control characters")),
    (re.compile(r"could not be converted"), N_("could not be converted")),
    (
        re.compile(r"missing key \(NULL in a key column\)"),
        N_("missing key (NULL in a key column)"),
    ),
    (
        re.compile(r"refers to (?P<entity>\S+) (?P<key>\S+), which was rejected"),
        N_("refers to {entity} {key}, which was rejected"),
    ),
    (
        re.compile(r"refers to (?P<entity>\S+) (?P<key>\S+), which is missing from the source"),
        N_("refers to {entity} {key}, which is missing from the source"),
    ),
    (
        re.compile(r"(?P<end>\S+) is before (?P<start>\S+): the interval ends before it begins"),
        N_("{end} is before {start}: the interval ends before it begins"),
    ),
    (
        re.compile(r"duplicate key: an earlier row has the same key and was kept"),
        N_("duplicate key: an earlier row has the same key and was kept"),
    ),
    (
        re.compile(r"(?P<value>.+) is outside (?P<low>\S+)\.\.(?P<high>\S+)"),
        N_("{value} is outside {low}..{high}"),
    ),
]
"""Each wording of a rejection the core gives (``bridge.core.fields``, ``builder``, ``gate``,
``mapping``, the engine's reading), its facts as named groups, and its message."""


def rejection_words(reason: str) -> str:
    """``reason`` (the core's English wording of a rejection) in the active language."""
    for pattern, message in REASONS:
        found = pattern.fullmatch(reason)
        if found is not None:
            return _(message).format(**found.groupdict())
    return reason
