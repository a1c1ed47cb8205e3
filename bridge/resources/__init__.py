"""The files the bridge ships beside its code, found where the package is installed.

In the repository these are links to the top-level files and folders people edit and read
(``mappings/``, ``config/``, ``systemd/``, ``CHANGELOG.md``); a built wheel holds copies of them,
so an installed bridge finds its default mappings and the example configuration without the
repository:

    mappings/*.toml               the default mappings (``[mappings] dir`` when not set)
    config/bridge.toml            the commented example configuration
    config/dnevnik-tables.toml    the example tables of a dnevnik.ru school
    systemd/*.service             the systemd units
    CHANGELOG.md                  what changed in each release, with upgrade notes

``asiou-bridge files`` prints where they are, so an admin can copy them to ``/etc``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SHIPPED: dict[str, str] = {
    "mappings": "mappings",
    "config": "config/bridge.toml",
    "dnevnik-tables": "config/dnevnik-tables.toml",
    "unit": "systemd/asiou-bridge.service",
    "unit-template": "systemd/asiou-bridge@.service",
    "changelog": "CHANGELOG.md",
}
"""A shipped file's name (as ``asiou-bridge files NAME`` takes it) → its place in here."""


def shipped(name: str) -> Path:
    """The installed path of the shipped file or folder ``name`` (a key of ``SHIPPED``).

    The bridge is installed as files (a wheel or an editable install), never run from a zip, so
    the resource is a real path that configuration can name."""
    return Path(str(resources.files(__name__) / SHIPPED[name]))


def default_mappings() -> Path:
    """The folder of the default mappings."""
    return shipped("mappings")
