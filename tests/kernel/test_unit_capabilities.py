"""The daemon works with exactly the capabilities its systemd unit leaves it.

systemd does not run here, so the unit itself cannot be started; what the
unit takes away that could break the daemon is mostly capabilities, and
those are reproduced exactly: the daemon runs as root under
``setpriv --bounding-set`` with the unit's CapabilityBoundingSet (read from
packaging/bpfman.service, so the two cannot diverge) and does its everyday
work: XDP in a test namespace (setns), a tracepoint, maps, and a load by an
unprivileged caller (the object read as the caller: setfsuid/setgroups).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

from bpfman.kernel._sys.caps import capability_names
from bpfman.testing import VethPair, call_as, running_daemon

UNIT = Path(__file__).parents[2] / "packaging" / "bpfman.service"


def unit_capabilities() -> list[str]:
    [line] = [ln for ln in UNIT.read_text().splitlines()
              if ln.startswith("CapabilityBoundingSet=")]
    return line.split("=", 1)[1].split()


def effective_capabilities(pid: int) -> set[str]:
    status = Path(f"/proc/{pid}/status").read_text()
    mask = int(next(ln for ln in status.splitlines() if ln.startswith("CapEff:")).split()[1], 16)
    return capability_names(mask)


def test_the_units_capabilities_are_enough(veth: VethPair, bpf_program: Callable[..., Path],
                                           public_tmp_path: Path) -> None:
    caps = unit_capabilities()
    bounding = "-all," + ",".join("+" + c.removeprefix("CAP_").lower() for c in caps)
    config = ('[daemon]\nsocket_mode = "0666"\n\n[[authorization.rules]]\nuids = [65534]\n'
              'scope = "own"\nmethods = ["program.load", "program.unload"]\n')
    with running_daemon(config, prefix=["setpriv", f"--bounding-set={bounding}"]) as d:
        assert d.proc is not None
        # (This machine's root may itself lack some, e.g. CAP_SYS_RESOURCE.)
        assert effective_capabilities(d.proc.pid) == set(caps) & effective_capabilities(
            os.getpid())
        os.chmod(d.root, 0o755)
        c = d.client()
        [xdp] = c.call("program.load", {"path": str(bpf_program("xdp_counter")),
                                        "programs": [{"name": "xdp_counter", "type": "xdp"}]}
                       )["programs"]
        c.call("program.attach", {"program_id": xdp["program_id"],
                                  "params": {"iface": veth.if_b, "netns": veth.netns_b}})
        assert veth.ping(3) == 3
        counted = c.call("map.get", {"program_id": xdp["program_id"], "map": "xdp_counts",
                                     "key": "00000000"})["value"]
        assert int.from_bytes(bytes.fromhex(counted)[:8], "little") >= 3
        [tp] = c.call("program.load", {"path": str(bpf_program("tp_counter")), "programs": [
            {"name": "count_getpid", "type": "tracepoint"}]})["programs"]
        c.call("program.attach", {"program_id": tp["program_id"],
                                  "params": {"tracepoint": "syscalls/sys_enter_getpid"}})
        obj = Path(shutil.copy(bpf_program("xdp_counter"), public_tmp_path))
        mine = call_as(d, "program.load", {"path": str(obj), "programs": [
            {"name": "xdp_counter", "type": "xdp"}]})
        assert "result" in mine, mine
        for prog in (xdp, tp, mine["result"]["programs"][0]):
            c.call("program.unload", {"program_id": prog["program_id"]})
