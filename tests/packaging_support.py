"""Reading packaging/bpfman.service from tests, so a test exercises exactly
what the unit says (its capability list) instead of a copy that can drift."""

from __future__ import annotations

import subprocess
from pathlib import Path

UNIT = Path(__file__).resolve().parents[1] / "packaging" / "bpfman.service"
SOCKET_UNIT = UNIT.with_name("bpfman.socket")


def unit_values(key: str, unit: Path = UNIT) -> list[str]:
    """Every value of `key` in the unit, in order (systemd allows repeats)."""
    values = []
    for line in unit.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith(("#", ";")) and name.strip() == key:
            values.append(value.strip())
    return values


def unit_capabilities(unit: Path = UNIT) -> list[str]:
    """CapabilityBoundingSet as lower-case names without CAP_ (setpriv's
    spelling): ``["bpf", "perfmon", ...]``."""
    caps: list[str] = []
    for value in unit_values("CapabilityBoundingSet", unit):
        if value.startswith("~"):
            raise ValueError("a deny-list CapabilityBoundingSet cannot be approximated")
        caps += [c.removeprefix("CAP_").lower() for c in value.split()]
    return caps


def _syscall_groups() -> dict[str, list[str]]:
    """systemd's syscall groups (``@name`` -> members, nested groups included),
    as this machine's systemd defines them."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"], check=True,
                         capture_output=True, text=True, timeout=60).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#") and line.startswith(" "):
            current.append(line.strip())
    return groups


def unit_syscalls(unit: Path = UNIT) -> set[str]:
    """The syscalls the unit's SystemCallFilter= lines allow: the first line
    an allow list, each ``~`` line removing from it (systemd's semantics)."""
    groups = _syscall_groups()

    def expand(names: list[str]) -> set[str]:
        found: set[str] = set()
        for name in names:
            found |= expand(groups[name]) if name.startswith("@") else {name}
        return found

    lines = unit_values("SystemCallFilter", unit)
    if not lines or lines[0].startswith("~"):
        raise ValueError("expected an allow-list SystemCallFilter= first")
    allowed: set[str] = set()
    for value in lines:
        if value.startswith("~"):
            allowed -= expand(value[1:].split())
        else:
            allowed |= expand(value.split())
    return allowed
