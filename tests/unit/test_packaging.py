"""The systemd unit is hardened (docs/security.md, "The systemd unit")."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

UNIT = Path(__file__).parents[2] / "packaging" / "bpfman.service"


def test_the_unit_rates_4_or_better() -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is part of Debian's systemd package (setup.sh)"
    out = subprocess.run([analyze, "security", "--offline=yes", str(UNIT)], capture_output=True,
                         text=True, check=False).stdout
    match = re.search(r"Overall exposure level for bpfman\.service: ([0-9.]+)", out)
    assert match, out
    assert float(match.group(1)) <= 4.0, out


def unit_capabilities() -> list[str]:
    [line] = [ln for ln in UNIT.read_text().splitlines()
              if ln.startswith("CapabilityBoundingSet=")]
    return line.split("=", 1)[1].split()


def test_the_bpffs_is_mounted_outside_the_sandbox() -> None:
    """Mounted inside the service's mount namespace, the bpffs (and every pin
    in it) would vanish when the service stops."""
    text = UNIT.read_text()
    assert re.search(r"^ExecStartPre=\+.*mount -t bpf bpffs /run/bpfman/fs", text, re.M)
    assert "CAP_SETUID" in unit_capabilities() and "CAP_SETGID" in unit_capabilities()
