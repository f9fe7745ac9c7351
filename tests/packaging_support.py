"""Reading packaging/bpfman.service from tests, so a test exercises exactly
what the unit says (its capability list) instead of a copy that can drift."""

from __future__ import annotations

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
