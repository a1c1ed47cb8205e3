"""The shipped systemd units: systemd accepts them, every line is explained, and they are hardened.

``systemd-analyze verify`` runs on copies whose ``ExecStart=`` names this virtualenv's real
``asiou-bridge`` (verify insists that the command exists). Without ``systemd-analyze`` the test
skips, except under ``CI=true`` where it fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.core.errors import ExitCode
from tests.conftest import unavailable

ROOT = Path(__file__).resolve().parents[2]
SINGLE = ROOT / "systemd" / "asiou-bridge.service"
TEMPLATE = ROOT / "systemd" / "asiou-bridge@.service"
UNITS = [SINGLE, TEMPLATE]
SHIPPED_EXEC = "ExecStart=/usr/bin/asiou-bridge "

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "SystemCallFilter": "@system-service",
    "SystemCallArchitectures": "native",
    "CapabilityBoundingSet": "",
    "UMask": "0077",
}
# Settings that name the instance, so they differ between the single unit and the template.
PER_INSTANCE = {"Description", "Environment", "StateDirectory", "LoadCredential"}


def directives(unit: Path) -> dict[str, list[str]]:
    """Every ``Key=value`` setting of ``unit``, each key with its values in order."""
    found: dict[str, list[str]] = {}
    for line in unit.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def verify(unit: Path, name: str, folder: Path) -> subprocess.CompletedProcess[str]:
    """``systemd-analyze verify`` on a copy of ``unit`` named ``name`` running this venv's CLI."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        unavailable("systemd-analyze is not installed (package systemd), cannot verify the units")
    executable = Path(sys.executable).parent / "asiou-bridge"
    text = unit.read_text(encoding="utf-8")
    assert text.count(SHIPPED_EXEC) == 1, f"{unit.name}: expected one {SHIPPED_EXEC!r} line"
    copy = folder / name
    copy.write_text(text.replace(SHIPPED_EXEC, f"ExecStart={executable} "), encoding="utf-8")
    return subprocess.run(
        [analyze, "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize(
    ("unit", "name"),
    [
        (SINGLE, "asiou-bridge.service"),
        (TEMPLATE, "asiou-bridge@demo.service"),
    ],
    ids=["single", "template"],
)
def test_systemd_analyze_verify_accepts_unit(unit: Path, name: str, tmp_path: Path) -> None:
    """systemd-analyze verify passes each unit with no warning about any of its lines."""
    result = verify(unit, name, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    for complaint in ("Unknown key", "Unknown lvalue", "Unknown section", "Failed to parse"):
        assert complaint not in output, output
    assert not re.search(rf"{re.escape(name)}:\d+:", output), output


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_every_line_has_a_comment_beside_it(unit: Path) -> None:
    """Each setting and section line sits right below or right above a comment line."""
    lines = unit.read_text(encoding="utf-8").splitlines()

    def is_comment(index: int) -> bool:
        return 0 <= index < len(lines) and lines[index].lstrip().startswith(("#", ";"))

    bare = [
        f"{unit.name}:{number + 1}: {line}"
        for number, line in enumerate(lines)
        if line.strip()
        and not is_comment(number)
        and not (is_comment(number - 1) or is_comment(number + 1))
    ]
    assert bare == []


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_unit_is_a_hardened_notify_service(unit: Path) -> None:
    """The unit is Type=notify with a watchdog, credentials and every required hardening setting."""
    found = directives(unit)
    assert found["Type"] == ["notify"]
    assert found["NotifyAccess"] == ["main"]
    assert found["WatchdogSec"] == ["120"]
    assert found["Restart"] == ["on-failure"]
    assert "RestartSec" in found
    assert "TimeoutStopSec" in found
    assert str(ExitCode.CONFIG) in found["RestartPreventExitStatus"][0].split()
    assert found["ExecStart"][0].split()[1:] == ["run"]
    assert [value.split(":")[0] for value in found["LoadCredential"]] == [
        "db-password",
        "portal-secret",
    ]
    assert found["User"] == ["asiou-bridge"]
    assert found["ConfigurationDirectory"] == ["asiou-bridge"]
    missing = {key: value for key, value in HARDENING.items() if value not in found.get(key, [])}
    assert missing == {}


def test_single_unit_paths() -> None:
    """The single unit reads /etc/asiou-bridge/bridge.toml and keeps its state in one directory."""
    found = directives(SINGLE)
    assert "ASIOU_BRIDGE_CONFIG=/etc/asiou-bridge/bridge.toml" in found["Environment"]
    assert found["StateDirectory"] == ["asiou-bridge"]
    assert found["LoadCredential"] == [
        "db-password:/etc/asiou-bridge/credentials/db-password",
        "portal-secret:/etc/asiou-bridge/credentials/portal-secret",
    ]


def test_template_paths_follow_the_instance() -> None:
    """The template's configuration, state directory and credentials are chosen by %i."""
    found = directives(TEMPLATE)
    assert "ASIOU_BRIDGE_CONFIG=/etc/asiou-bridge/%i.toml" in found["Environment"]
    assert found["StateDirectory"] == ["asiou-bridge/%i"]
    assert found["LoadCredential"] == [
        "db-password:/etc/asiou-bridge/credentials/%i/db-password",
        "portal-secret:/etc/asiou-bridge/credentials/%i/portal-secret",
    ]


def test_template_is_hardened_like_the_single_unit() -> None:
    """Apart from the per-instance paths, the template's settings equal the single unit's."""
    single, template = directives(SINGLE), directives(TEMPLATE)
    for key in PER_INSTANCE:
        single.pop(key, None)
        template.pop(key, None)
    assert template == single
