"""The `bpfman` CLI's human output against a real daemon and real kernel
objects: two XDP programs chained on a veth in namespaces the test creates
(never the machine's own interfaces), shown as a tree with their modes; the
link table with kernel link ids; the daemon's own dispatcher marked in
`list --all`; map values decoded; tables cut to a terminal's width only on a
terminal; event lines without ``None``."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bpfman import kernel
from bpfman.testing import DaemonProcess, VethPair, running_daemon, veth_pair

CLI = [sys.executable, "-m", "bpfman"]
# IFLA_XDP_ATTACHED as `ip -j link show` reports it
IP_XDP_MODES = {1: "native", 2: "generic", 3: "offload"}


@pytest.fixture(scope="module")
def setup(bpf_program: Callable[..., Path]) -> Iterator[dict[str, Any]]:
    """A daemon, a veth pair and two XDP programs chained on its B end:
    xdp_pass_only (priority 50, proceed-on drop) before xdp_counter (55)."""
    if os.geteuid() != 0:
        pytest.fail("needs root: a daemon, network namespaces and XDP")
    with running_daemon() as d, veth_pair("clitables") as veth:
        counter_obj, verdict_obj = bpf_program("xdp_counter"), bpf_program("xdp_verdict")
        counter = _json(d, "load", "file", "--path", str(counter_obj), "--programs",
                        "xdp:xdp_counter", "-m", *(f"label{i}=a-fairly-long-value-{i}"
                                                   for i in range(6)))["programs"][0]
        passer = _json(d, "load", "file", "--path", str(verdict_obj), "--programs",
                       "xdp:xdp_pass_only")["programs"][0]
        # The first attach through the CLI, in its human form.
        first = d.cli("attach", str(counter["program_id"]), "xdp", "--iface", veth.if_b,
                      "--priority", "55", "--netns", veth.netns_b).stdout
        second = d.client().call("program.attach", {
            "program_id": passer["program_id"],
            "params": {"iface": veth.if_b, "netns": veth.netns_b, "priority": 50,
                       "proceed_on": ["drop"]}})
        yield {"d": d, "veth": veth, "counter": counter, "passer": passer,
               "first_attach": first, "second": second}


def _json(d: DaemonProcess, *args: str) -> Any:
    return json.loads(d.cli("-o", "json", *args).stdout)


def _ip_xdp_mode(veth: VethPair) -> str:
    """The XDP mode of interface B as iproute2 reads it from the kernel."""
    out = subprocess.run(["ip", "-n", veth.ns_b, "-j", "link", "show", veth.if_b],
                         capture_output=True, text=True, check=True).stdout
    [link] = json.loads(out)
    return IP_XDP_MODES[link["xdp"]["mode"]]


def _links(d: DaemonProcess, program: dict[str, Any]) -> list[dict[str, Any]]:
    return [x for x in _json(d, "list", "links") if x["program_id"] == program["program_id"]]


def test_attach_and_link_get_show_the_modes(setup: dict[str, Any]) -> None:
    d, veth = setup["d"], setup["veth"]
    lines = setup["first_attach"].splitlines()
    assert "type: xdp" in lines and f"program_id: {setup['counter']['program_id']}" in lines
    assert "dispatch_mode: single" in lines  # alone on the interface when attached
    assert f"attach_mode: {_ip_xdp_mode(veth)}" in lines
    assert "  proceed-on: pass,dispatcher_return" in lines
    assert "proceed_on" not in setup["first_attach"]

    shown = d.cli("link", "get", str(setup["second"]["link_id"])).stdout.splitlines()
    assert "dispatch_mode: static" in shown  # two programs: a static chain on this kernel
    assert f"attach_mode: {_ip_xdp_mode(veth)}" in shown
    assert "  proceed-on: drop" in shown and "  priority: 50" in shown


def test_dispatchers_is_a_tree(setup: dict[str, Any]) -> None:
    d, veth = setup["d"], setup["veth"]
    [chain] = [x for x in _json(d, "dispatchers") if x["type"] == "xdp"]
    text = d.cli("dispatchers").stdout
    block = next(b for b in text.split("\n\n") if b.startswith("xdp "))
    header, *slots = block.splitlines()
    attached = veth.xdp_program_id()
    assert chain["program_id"] == attached
    assert header == (f"xdp {veth.if_b} in {veth.netns_b}  mode static, {_ip_xdp_mode(veth)}"
                      f"  dispatcher {attached}  revision {chain['revision']}")
    counter_link = _links(d, setup["counter"])[0]["link_id"]
    assert [s.split() for s in slots] == [
        ["priority", "50", "program", str(setup["passer"]["program_id"]), "xdp_pass_only",
         "link", str(setup["second"]["link_id"]), "proceed-on", "drop"],
        ["priority", "55", "program", str(setup["counter"]["program_id"]), "xdp_counter",
         "link", str(counter_link), "proceed-on", "pass,dispatcher_return"],
    ]
    assert all(s.startswith("  ") for s in slots)


def test_list_all_marks_the_daemons_dispatcher(setup: dict[str, Any]) -> None:
    d, veth = setup["d"], setup["veth"]
    rows = {int(line.split()[0]): line for line in d.cli("list", "--all").stdout.splitlines()[1:]}
    dispatcher = veth.xdp_program_id()
    assert rows[dispatcher].split()[1:5] == ["xdp_chain", "xdp", "daemon", "(xdp"]
    assert "daemon (xdp dispatcher)" in rows[dispatcher]
    for prog in (setup["counter"], setup["passer"]):
        assert rows[prog["program_id"]].split()[3] == "bpfman"
    for pid, row in rows.items():
        if pid not in (dispatcher, setup["counter"]["program_id"],
                       setup["passer"]["program_id"]):
            assert row.split()[3] in ("unmanaged", "daemon"), row
        assert "(" not in row.split()[2]  # kernel types are not wrapped any more
    [program] = [p for p in _json(d, "list", "--all") if p["program_id"] == dispatcher]
    assert program["owner"] == "daemon" and program["daemon_role"] == "xdp dispatcher"
    assert "owner: daemon (xdp dispatcher)" in d.cli("get", str(dispatcher)).stdout


def test_list_links_shows_kernel_link_ids(setup: dict[str, Any],
                                          bpf_program: Callable[..., Path]) -> None:
    d = setup["d"]
    [tp] = _json(d, "load", "file", "--path", str(bpf_program("tp_counter")), "--programs",
                 "tracepoint:count_getpid")["programs"]
    link = d.client().call("program.attach", {"program_id": tp["program_id"], "params": {
        "tracepoint": "syscalls/sys_enter_getpid"}})
    try:
        kernel_id = kernel.link_id_of_pin(link["pin_path"])
        assert link["kernel_link_id"] == kernel_id
        lines = d.cli("list", "links").stdout.splitlines()
        assert lines[0].split()[:5] == ["ID", "KERNEL", "ID", "PROGRAM", "TYPE"]
        rows = {int(line.split()[0]): line.split() for line in lines[1:]}
        assert rows[link["link_id"]][1:4] == [str(kernel_id), str(tp["program_id"]),
                                              "tracepoint"]
        # XDP through netlink: no kernel link
        assert rows[setup["second"]["link_id"]][1:4] == [
            "-", str(setup["passer"]["program_id"]), "xdp"]
    finally:
        d.cli("unload", str(tp["program_id"]))


def test_map_dump_decodes_values(setup: dict[str, Any]) -> None:
    d = setup["d"]
    pid = str(setup["counter"]["program_id"])
    lines = d.cli("map", "dump", pid, "xdp_counts").stdout.splitlines()
    assert lines[0].split() == ["HEX", "KEY", "KEY", "VALUE"]
    hex_key, key, value = re.split(r"\s{2,}", lines[1], maxsplit=2)
    assert hex_key == "00000000" and key == "0"
    counts = json.loads(value)  # struct counts {packets, bytes}, from the map's BTF
    raw = _json(d, "map", "get", pid, "xdp_counts", "00000000")["value"]
    packets, nbytes = struct.unpack("<QQ", bytes.fromhex(raw))
    # (the counter alone saw the kernel's own IPv6 neighbour discovery, if any)
    assert counts == {"packets": packets, "bytes": nbytes}
    assert json.loads(d.cli("map", "get", pid, "xdp_counts", "00000000").stdout) == counts


def _on_a_terminal(d: DaemonProcess, columns: int, *args: str) -> str:
    """The CLI's stdout when it is a terminal `columns` wide (a pty)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen([*CLI, "--socket", str(d.socket), *args], stdout=follower,
                            stderr=subprocess.PIPE, env=env)
    os.close(follower)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 30)
            if not ready:
                break
            try:
                data = os.read(leader, 65536)
            except OSError:  # EIO: the CLI closed the terminal
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(leader)
        assert proc.wait(30) == 0, proc.stderr.read() if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_tables_fit_a_terminal_and_never_cut_a_pipe(setup: dict[str, Any]) -> None:
    d = setup["d"]
    piped = d.cli("list").stdout
    assert "label5=a-fairly-long-value-5" in piped and "…" not in piped  # scripts grep it
    assert max(len(line) for line in piped.splitlines()) > 70
    shown = _on_a_terminal(d, 70, "list")
    lines = shown.splitlines()
    assert lines and all(len(line) <= 70 for line in lines), shown
    [row] = [x for x in lines if x.split()[0] == str(setup["counter"]["program_id"])]
    assert row.split()[:4] == [str(setup["counter"]["program_id"]), "xdp_counter", "xdp",
                               "bpfman"]
    assert row.endswith("…") and "label0=" in row
    links = _on_a_terminal(d, 60, "list", "links")
    assert all(len(line) <= 60 for line in links.splitlines()), links


def test_event_lines_have_no_none(setup: dict[str, Any],
                                  bpf_program: Callable[..., Path]) -> None:
    d = setup["d"]
    proc = subprocess.Popen([*CLI, "--socket", str(d.socket), "events"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = ""
        deadline = time.monotonic() + 30
        while not line and time.monotonic() < deadline:  # until subscribed
            [tp] = _json(d, "load", "file", "--path", str(bpf_program("tp_counter")),
                         "--programs", "tracepoint:count_getpid")["programs"]
            d.cli("unload", str(tp["program_id"]))
            assert proc.stdout is not None
            if select.select([proc.stdout], [], [], 1)[0]:
                line = proc.stdout.readline()
        assert re.search(r"\b(loaded|unloaded)\s+program=\d+ link=- tracepoint", line), line
        assert "None" not in line
    finally:
        proc.terminate()
        proc.wait(10)


def test_tc_chain_header_names_the_namespace_by_path(setup: dict[str, Any],
                                                    bpf_program: Callable[..., Path]) -> None:
    """The tc attach point holds the namespace's inode only: the header shows
    the path the links were attached with."""
    d, veth = setup["d"], setup["veth"]
    ids = [_json(d, "load", "file", "--path", str(bpf_program("tc_chain")), "--programs",
                 "tc:tc_chain")["programs"][0]["program_id"] for _ in range(2)]
    try:
        for pid, priority in zip(ids, (20, 10), strict=True):
            d.client().call("program.attach", {"program_id": pid, "params": {
                "iface": veth.if_b, "netns": veth.netns_b, "direction": "ingress",
                "priority": priority, "proceed_on": ["pipe", "dispatcher_return"]}})
        [chain] = [x for x in _json(d, "dispatchers") if x["type"] == "tc"]
        block = next(b for b in d.cli("dispatchers").stdout.split("\n\n")
                     if b.startswith("tc "))
        header, *slots = block.splitlines()
        assert header.startswith(f"tc {veth.if_b}/ingress in {veth.netns_b}  mode "
                                 f"{chain['mode']}  dispatcher {chain['program_id']}")
        assert [s.split()[:5] for s in slots] == [
            ["priority", "10", "program", str(ids[1]), "tc_chain"],
            ["priority", "20", "program", str(ids[0]), "tc_chain"]]
        assert all(s.endswith("proceed-on pipe,dispatcher_return") for s in slots)
        rows = {int(x.split()[0]): x for x in d.cli("list", "--all").stdout.splitlines()[1:]}
        assert "daemon (tc dispatcher)" in rows[chain["program_id"]]
    finally:
        for pid in ids:
            d.cli("unload", str(pid))
