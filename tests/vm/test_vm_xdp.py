"""XDP chains in libxdp mode, inside Debian's 6.12 kernel (extension programs
load there), and interoperability with xdp-loader (libxdp 1.3.1, dispatcher
protocol v2) in both directions.

xdp-loader runs with `nsenter --net` (not `ip netns exec`, which remounts
/sys and would hide the bpffs at /sys/fs/bpf where libxdp keeps its pins).
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from xdp_support import FRAME, XDP_PASS, attach, counts, dispatchers, load

from bpfman import kernel
from bpfman.client import RpcError
from bpfman.testing import DaemonProcess, VethPair

LIBXDP_XDP_DIR = Path("/sys/fs/bpf/xdp")


@pytest.fixture
def objs(bpf_program: Callable[..., Path]) -> dict[str, Path]:
    return {"counter": bpf_program("xdp_counter"), "verdict": bpf_program("xdp_verdict")}


def xdp_loader(pair: VethPair, *args: str, check: bool = True) -> str:
    proc = subprocess.run(["nsenter", f"--net={pair.netns_b}", "xdp-loader", *args],
                          capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"xdp-loader {' '.join(args)}: {proc.returncode}\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc.stdout + proc.stderr


def status_rows(pair: VethPair) -> list[tuple[str, int, str]]:
    """(name, priority, chain actions) of each program xdp-loader lists under
    the interface's dispatcher, in order (rows: "=> PRIO NAME ID TAG ACTIONS")."""
    out = xdp_loader(pair, "status", pair.if_b)
    rows = []
    for line in out.splitlines():
        m = re.match(r"\s*=>\s+(\d+)\s+(\S+)\s+(\d+)\s+\S+\s+(.*)$", line)
        if m:
            rows.append((m.group(2), int(m.group(1)), m.group(4).strip()))
    return rows


def test_libxdp_demo_and_xdp_loader_status(daemon: DaemonProcess, objs: dict[str, Path],
                                           veth: VethPair) -> None:
    counter = load(daemon, objs["counter"], "xdp_counter")
    attach(daemon, counter, veth, priority=55)
    [disp] = dispatchers(daemon)
    assert disp["mode"] == "libxdp"
    assert veth.ping(3) == 3 and counts(counter)[0] >= 3

    passer = load(daemon, objs["verdict"], "xdp_pass_only")
    link = attach(daemon, passer, veth, priority=50, proceed_on=["drop"])
    [disp] = dispatchers(daemon)
    assert disp["mode"] == "libxdp" and disp["links"][0] == link["link_id"]
    dispatcher_id = veth.xdp_program_id()
    assert disp["program_id"] == dispatcher_id
    pins = LIBXDP_XDP_DIR / f"dispatch-{attached_ifindex(veth)}-{dispatcher_id}"
    assert sorted(p.name for p in pins.iterdir()) == [
        "prog0-link", "prog0-prog", "prog1-link", "prog1-prog"]
    info = kernel.program_info(dispatcher_id)
    assert info.name == "xdp_dispatcher" and len(info.map_ids) == 1

    rows = status_rows(veth)
    assert [(name, prio) for name, prio, _a in rows] == [("xdp_pass_only", 50),
                                                          ("xdp_counter", 55)]
    assert "XDP_DROP" in rows[0][2] and "XDP_PASS" not in rows[0][2]
    assert "XDP_PASS" in rows[1][2]

    before = counts(counter)[0]
    assert veth.ping(3) == 3 and counts(counter)[0] == before  # chain stops at PASS
    assert kernel.test_run(dispatcher_id, FRAME).retval == XDP_PASS

    result: dict[str, int] = {}
    flood = threading.Thread(target=lambda: result.setdefault("got", veth.ping(300)))
    flood.start()
    time.sleep(1.0)
    daemon.client().call("link.update", {"link_id": link["link_id"], "params": {"priority": 60}})
    flood.join(60)
    assert result["got"] == 300
    assert counts(counter)[0] > before
    rows = status_rows(veth)
    assert [(name, prio) for name, prio, _a in rows] == [("xdp_counter", 55),
                                                          ("xdp_pass_only", 60)]

    daemon.client().call("program.unload", {"program_id": passer["program_id"]})
    daemon.client().call("program.unload", {"program_id": counter["program_id"]})
    assert veth.xdp_program_id() == 0 and dispatchers(daemon) == []
    assert not any(LIBXDP_XDP_DIR.glob(f"dispatch-{attached_ifindex(veth)}-*"))


def attached_ifindex(pair: VethPair) -> int:
    out = subprocess.run(["ip", "-n", pair.ns_b, "-o", "link", "show", pair.if_b],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split(":")[0])


def test_xdp_loader_program_joins_and_daemon_adds_next(daemon: DaemonProcess,
                                                       objs: dict[str, Path],
                                                       veth: VethPair) -> None:
    counter = load(daemon, objs["counter"], "xdp_counter")
    attach(daemon, counter, veth, priority=30)
    # xdp-loader adds its own program into the daemon's dispatcher...
    xdp_loader(veth, "load", "-m", "native", "-n", "xdp_dropper", "-P", "40", veth.if_b,
               str(objs["verdict"]))
    rows = status_rows(veth)
    assert [(n, p) for n, p, _a in rows] == [("xdp_counter", 30), ("xdp_dropper", 40)]
    assert veth.ping(2) == 0  # the dropper runs after the counter
    foreign_ids = [p.program_id for p in kernel.iter_programs() if p.name == "xdp_dropper"]
    assert foreign_ids
    listed = daemon.client().call("program.list", {"all": True})
    assert any(p["name"] == "xdp_dropper" and not p["managed"] for p in listed)

    # ...and the daemon adds its next program into that chain, keeping it.
    passer = load(daemon, objs["verdict"], "xdp_pass_only")
    attach(daemon, passer, veth, priority=35, proceed_on=[])
    rows = status_rows(veth)
    assert [(n, p) for n, p, _a in rows] == [
        ("xdp_counter", 30), ("xdp_pass_only", 35), ("xdp_dropper", 40)]
    assert veth.ping(2) == 2  # pass-only's PASS is final: the dropper no longer runs
    [disp] = dispatchers(daemon)
    assert disp["mode"] == "libxdp" and disp["program_id"] == veth.xdp_program_id()
    # Who loaded what: the dispatcher and our extension copies are the
    # daemon's, xdp-loader's program is unmanaged (as list --all marks them).
    owners = {p["program_id"]: (p["owner"], p["daemon_role"])
              for p in daemon.client().call("program.list", {"all": True})}
    assert owners[disp["program_id"]] == ("daemon", "xdp dispatcher")
    roles = sorted(role for owner, role in owners.values() if owner == "daemon")
    assert roles == sorted(["xdp dispatcher", f"extension of {counter['program_id']}",
                            f"extension of {passer['program_id']}"])
    assert all(owners[i] == ("unmanaged", None) for i in foreign_ids if i in owners)
    table = daemon.cli("list", "--all").stdout
    assert f"daemon (extension of {counter['program_id']})" in table
    header = daemon.cli("dispatchers").stdout.splitlines()[0]
    assert header.startswith(f"xdp {veth.if_b} in {veth.netns_b}  mode libxdp, native")

    # Detaching ours keeps xdp-loader's program running.
    daemon.client().call("program.unload", {"program_id": passer["program_id"]})
    daemon.client().call("program.unload", {"program_id": counter["program_id"]})
    rows = status_rows(veth)
    assert [n for n, _p, _a in rows] == ["xdp_dropper"]
    assert veth.ping(2) == 0
    xdp_loader(veth, "unload", "--all", veth.if_b)
    assert veth.xdp_program_id() == 0 and veth.ping(2) == 2


def test_daemon_joins_xdp_loader_chain(daemon: DaemonProcess, objs: dict[str, Path],
                                       veth: VethPair) -> None:
    xdp_loader(veth, "load", "-m", "native", "-n", "xdp_pass_only", "-P", "10",
               "-A", "XDP_PASS", veth.if_b, str(objs["verdict"]))
    counter = load(daemon, objs["counter"], "xdp_counter")
    attach(daemon, counter, veth, priority=20)
    rows = status_rows(veth)
    assert [(n, p) for n, p, _a in rows] == [("xdp_pass_only", 10), ("xdp_counter", 20)]
    before = counts(counter)[0]
    assert veth.ping(3) == 3 and counts(counter)[0] >= before + 3
    # xdp-loader can remove its own program from the daemon's chain.
    out = xdp_loader(veth, "status", veth.if_b)
    prog_id = int(re.search(r"xdp_pass_only\s+(\d+)", out).group(1))  # type: ignore[union-attr]
    xdp_loader(veth, "unload", "-i", str(prog_id), veth.if_b)
    rows = status_rows(veth)
    assert [n for n, _p, _a in rows] == ["xdp_counter"]
    assert veth.ping(2) == 2 and counts(counter)[0] >= before + 5


def test_eleventh_program_is_refused(daemon: DaemonProcess, objs: dict[str, Path],
                                     veth: VethPair) -> None:
    for i in range(10):
        attach(daemon, load(daemon, objs["verdict"], "xdp_pass_only"), veth, priority=i)
    with pytest.raises(RpcError) as err:
        attach(daemon, load(daemon, objs["verdict"], "xdp_pass_only"), veth, priority=5)
    assert err.value.code == 1200
    assert len(status_rows(veth)) == 10


def test_removing_first_program_keeps_proceed_on_aligned(daemon: DaemonProcess,
                                                         objs: dict[str, Path],
                                                         veth: VethPair) -> None:
    """Upstream #791 in libxdp mode: each program keeps its own chain actions
    when the one before it goes."""
    first = attach(daemon, load(daemon, objs["verdict"], "xdp_pass_only"), veth, priority=5,
                   proceed_on=["pass"])
    attach(daemon, load(daemon, objs["verdict"], "xdp_dropper"), veth, priority=10,
           proceed_on=["drop"])
    counter = load(daemon, objs["counter"], "xdp_counter")
    attach(daemon, counter, veth, priority=15, proceed_on=[])
    assert kernel.test_run(veth.xdp_program_id(), FRAME).retval == XDP_PASS
    daemon.client().call("program.detach", {"link_id": first["link_id"]})
    c0 = counts(counter)[0]
    assert kernel.test_run(veth.xdp_program_id(), FRAME).retval == XDP_PASS
    assert counts(counter)[0] >= c0 + 1
    rows = status_rows(veth)
    assert [(n, p) for n, p, _a in rows] == [("xdp_dropper", 10), ("xdp_counter", 15)]
    assert "XDP_DROP" in rows[0][2]


def test_packet_modifying_program_is_accepted(daemon: DaemonProcess, objs: dict[str, Path],
                                              veth: VethPair) -> None:
    """The stubs' no-op bpf_xdp_adjust_tail lets an extension that changes
    packet data replace them on 6.12.107+ (libxdp 1.3.1's stubs would not)."""
    changer = load(daemon, objs["verdict"], "xdp_pkt_changer")
    attach(daemon, changer, veth, priority=10)  # alone: replaces xdp_dispatcher itself
    assert veth.ping(2) == 2
    counter = load(daemon, objs["counter"], "xdp_counter")
    attach(daemon, counter, veth, priority=20)  # chained: replaces prog0
    assert veth.ping(2) == 2 and counts(counter)[0] >= 2
    assert [n for n, _p, _a in status_rows(veth)] == ["xdp_pkt_changer", "xdp_counter"]
