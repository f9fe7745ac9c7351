"""packaging/: the systemd units are valid and the service stays sandboxed
(docs/security.md, "The systemd unit").

`systemd-analyze` works offline (no running systemd needed): `security
--offline=yes` rates the unit file itself, `verify` loads it as systemd would.
tests/kernel/test_unit_capabilities.py checks the daemon works inside it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from packaging_support import SOCKET_UNIT, UNIT, unit_capabilities, unit_values

#: issue 14: "systemd-analyze security at 4.0 or better" (it was 9.6 UNSAFE).
MAX_EXPOSURE = 4.0


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is part of Debian's systemd package (setup.sh)"
    return subprocess.run([analyze, *args], capture_output=True, text=True, timeout=60)


def test_the_unit_rates_4_or_better() -> None:
    out = _analyze("security", "--offline=yes", "--no-pager", str(UNIT)).stdout
    match = re.search(r"Overall exposure level for bpfman\.service: ([0-9.]+)", out)
    assert match, out
    assert float(match.group(1)) <= MAX_EXPOSURE, out


def test_units_verify_clean(tmp_path: Path) -> None:
    # verify insists that ExecStart exists: point it at this environment's
    # entry point, everything else as shipped.
    bpfman = Path(sys.executable).with_name("bpfman")
    assert bpfman.exists(), bpfman
    text = UNIT.read_text()
    assert "/opt/pybpfman/venv/bin/bpfman" in text
    (tmp_path / UNIT.name).write_text(text.replace("/opt/pybpfman/venv/bin/bpfman", str(bpfman)))
    shutil.copy(SOCKET_UNIT, tmp_path / SOCKET_UNIT.name)
    proc = _analyze("verify", "--man=no", str(tmp_path / UNIT.name),
                    str(tmp_path / SOCKET_UNIT.name))
    # Unknown or misspelt keys are only warnings: refuse them too.
    assert proc.returncode == 0 and not proc.stderr.strip(), proc.stderr


def test_the_bpffs_is_mounted_outside_the_sandbox() -> None:
    """Mounted inside the service's mount namespace, the bpffs (and every pin
    in it) would vanish when the service stops."""
    text = UNIT.read_text()
    assert re.search(r"^ExecStartPre=\+.*mount -t bpf (-o \S+ )?bpffs /run/bpfman/fs", text, re.M)


def test_capabilities_are_the_documented_set() -> None:
    # Adding a capability is a security decision: it must be made here and
    # in the unit's comment, not slip in.
    assert sorted(unit_capabilities()) == sorted([
        "bpf", "perfmon", "sys_admin", "net_admin", "sys_resource", "dac_read_search",
        "setuid", "setgid", "sys_ptrace"])
    comments = UNIT.read_text().split("CapabilityBoundingSet=")[0]
    for cap in unit_capabilities():
        assert f"CAP_{cap.upper()}" in comments, f"CAP_{cap.upper()} is not explained"


def test_sandbox_keeps_what_the_daemon_needs() -> None:
    # Each of these would break the daemon (see the unit's comments).
    assert unit_values("PrivateNetwork") in ([], ["no"])
    assert unit_values("PrivateUsers") in ([], ["no"])
    assert unit_values("PrivateTmp") in ([], ["no"])
    assert unit_values("ProtectHome") in ([], ["read-only"])
    assert unit_values("ProcSubset") in ([], ["all"])
    assert "net" in unit_values("RestrictNamespaces")[0].split()
    assert unit_values("SystemCallErrorNumber") == ["EPERM"]
    assert {"/run/bpfman", "/sys/fs/bpf"} <= set(unit_values("ReadWritePaths")[0].split())
