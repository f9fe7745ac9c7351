"""Human output of the CLI (bpfman.cli.render), fed with replies shaped as
the daemon sends them: width-aware tables, owners, chains as trees, XDP
modes, decoded map values, kernel link ids and event lines."""

from __future__ import annotations

import fcntl
import io
import os
import struct
import termios
from typing import Any

import pytest

from bpfman.cli import render as r
from bpfman.cli.render import format_event, render, terminal_width

LONG_META = {f"key{i}": f"some-long-value-{i}" for i in range(8)}

MANAGED = {"program_id": 41, "name": "xdp_counter", "type": "xdp", "managed": True,
           "owner": "bpfman", "daemon_role": None, "path": "/srv/counter.bpf.o",
           "metadata": LONG_META, "global_data": {}, "links": [7, 8], "map_owner_id": None,
           "kernel": {"program_id": 41, "kernel_type": "xdp", "tag": "ab12"}}
DISPATCHER = {"program_id": 57, "name": "xdp_chain", "type": None, "managed": False,
              "owner": "daemon", "daemon_role": "xdp dispatcher", "links": [], "metadata": {},
              "kernel": {"program_id": 57, "kernel_type": "xdp"}}
EXTENSION = {"program_id": 58, "name": "xdp_counter", "type": None, "managed": False,
             "owner": "daemon", "daemon_role": "extension of 41", "links": [], "metadata": {},
             "kernel": {"program_id": 58, "kernel_type": "ext"}}
FOREIGN = {"program_id": 3, "name": "sd_devices", "type": None, "managed": False,
           "owner": "unmanaged", "daemon_role": None, "links": [], "metadata": {},
           "kernel": {"program_id": 3, "kernel_type": "cgroup_device"}}
OLD_DAEMON_FOREIGN = {"program_id": 4, "name": "x", "type": None, "managed": False,
                      "links": [], "metadata": {}, "kernel": {"kernel_type": "kprobe"}}

XDP_LINK = {"link_id": 7, "program_id": 41, "type": "xdp",
            "params": {"iface": "vb12", "priority": 50, "proceed_on": ["pass", "dispatcher_return"],
                       "netns": "/var/run/netns/blue"},
            "metadata": {"app": "counter"}, "kernel_link_id": None,
            "pin_path": "/run/bpfman/fs/links/7", "created_at": "2026-12-04T06:00:00+00:00",
            "summary": "xdp vb12 in /var/run/netns/blue priority 50 proceed-on"
                       " pass,dispatcher_return",
            "dispatch_mode": "static", "attach_mode": "generic"}
TP_LINK = {"link_id": 9, "program_id": 12, "type": "tracepoint",
           "params": {"tracepoint": "syscalls/sys_enter_getpid"}, "metadata": LONG_META,
           "kernel_link_id": 131, "pin_path": "/run/bpfman/fs/links/9",
           "created_at": "2026-12-04T06:00:00+00:00", "summary": "syscalls/sys_enter_getpid",
           "dispatch_mode": None, "attach_mode": None}

CHAINS = [
    {"attach_point": "xdp:4026532890:vb12@/var/run/netns/blue", "type": "xdp",
     "mode": "static", "attach_mode": "generic", "program_id": 57, "revision": 3,
     "pin_dir": "/run/bpfman/fs/dispatchers/xdp/x/rev_3", "links": [8, 7],
     "slots": [{"link_id": 8, "program_id": 42, "priority": 10, "proceed_on": ["drop"],
                "name": "xdp_pass_only"},
               {"link_id": 7, "program_id": 41, "priority": 50,
                "proceed_on": ["pass", "dispatcher_return"], "name": "xdp_counter"}]},
    {"attach_point": "tcx:0:eth9/ingress", "type": "tcx", "mode": "tcx", "attach_mode": None,
     "program_id": None, "revision": 12, "pin_dir": None, "links": [20],
     "slots": [{"link_id": 20, "program_id": 60, "priority": 100, "proceed_on": None,
                "name": "tcx_counter"}]},
]


def fits(text: str, width: int) -> None:
    for line in text.splitlines():
        assert len(line) <= width, (len(line), line)


# -- width ----------------------------------------------------------------------


def test_tables_cut_free_text_to_the_width_with_an_ellipsis() -> None:
    text = render("program.list", {}, [MANAGED, FOREIGN], "table", width=80)
    fits(text, 80)
    header, row, foreign = text.splitlines()
    assert header.split() == ["ID", "NAME", "TYPE", "OWNER", "LINKS", "METADATA"]
    assert row.split()[:5] == ["41", "xdp_counter", "xdp", "bpfman", "7,8"]
    assert row.endswith("…") and "key0=some-long-value-0" in row
    assert foreign.split() == ["3", "sd_devices", "cgroup_device", "unmanaged", "-", "-"]


def test_no_width_no_cut() -> None:
    """Into a pipe or a file (no width) whole values are printed, for grep."""
    text = render("program.list", {}, [MANAGED], "table")
    assert "key7=some-long-value-7" in text and "…" not in text


def test_the_widest_free_column_is_cut_first_ids_never() -> None:
    text = render("link.list", {}, [XDP_LINK, TP_LINK], "table", width=90)
    fits(text, 90)
    lines = text.splitlines()
    assert lines[0].split()[:5] == ["ID", "KERNEL", "ID", "PROGRAM", "TYPE"]
    assert lines[1].split()[:4] == ["7", "-", "41", "xdp"]
    assert lines[2].split()[:4] == ["9", "131", "12", "tracepoint"]  # kernel link id shown
    # METADATA (widest) was cut; ATTACHED TO keeps more than its minimum
    assert "xdp vb12 in" in lines[1]
    assert lines[2].rstrip().endswith("…")


def test_a_table_too_narrow_to_fit_still_shows_every_column() -> None:
    text = render("link.list", {}, [TP_LINK], "table", width=20)
    assert text.splitlines()[1].split()[:4] == ["9", "131", "12", "tracepoint"]


def test_terminal_width_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "72")
    monkeypatch.setattr("sys.stdout", io.StringIO())  # not a terminal: no cut
    assert terminal_width() is None
    leader, follower = os.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as tty:
            monkeypatch.setattr("sys.stdout", tty)
            assert terminal_width() == 72  # COLUMNS wins
            monkeypatch.setenv("COLUMNS", "not a number")  # then the terminal's own size
            fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 101, 0, 0))
            assert terminal_width() == 101
    finally:
        os.close(leader)
        os.close(follower)


def test_clip_ascii_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdout", io.TextIOWrapper(io.BytesIO(), encoding="ascii"))
    assert r.clip("abcdefghij", 6) == "abc..."
    assert r.clip("abc", 6) == "abc"


# -- owners -----------------------------------------------------------------------


def test_list_all_marks_daemon_owned_and_unmanaged_programs() -> None:
    text = render("program.list", {}, [FOREIGN, OLD_DAEMON_FOREIGN, MANAGED, DISPATCHER,
                                       EXTENSION], "table")
    rows = {int(line.split()[0]): line for line in text.splitlines()[1:]}
    assert "unmanaged" in rows[3] and "unmanaged" in rows[4]
    assert "bpfman" in rows[41]
    assert "daemon (xdp dispatcher)" in rows[57]
    assert "daemon (extension of 41)" in rows[58]
    assert "(" not in rows[3]  # the kernel type is not wrapped in parentheses
    assert rows[58].split()[2] == "ext"


def test_get_program_says_who_owns_it() -> None:
    assert "owner: daemon (xdp dispatcher)" in render("program.get", {}, DISPATCHER, "table")
    text = render("program.get", {}, MANAGED, "table")
    assert text.splitlines()[:4] == ["program_id: 41", "name: xdp_counter", "type: xdp",
                                     "owner: bpfman"]


# -- links and chains -------------------------------------------------------------


def test_link_shows_modes_and_option_spelling() -> None:
    text = render("link.get", {}, XDP_LINK, "table")
    lines = text.splitlines()
    assert "dispatch_mode: static" in lines and "attach_mode: generic" in lines
    assert "  proceed-on: pass,dispatcher_return" in lines
    assert "proceed_on" not in text
    assert "kernel_link_id: -" in lines
    # the same for the reply of attach
    assert render("program.attach", {}, XDP_LINK, "table") == text
    tp = render("link.get", {}, TP_LINK, "table")
    assert "kernel_link_id: 131" in tp and "dispatch_mode" not in tp


def test_chains_are_trees() -> None:
    text = render("dispatcher.list", {}, CHAINS, "table")
    xdp, tcx = text.split("\n\n")
    lines = xdp.splitlines()
    assert lines[0] == ("xdp vb12 in /var/run/netns/blue  mode static, generic  dispatcher 57"
                        "  revision 3")
    assert lines[1].split() == ["priority", "10", "program", "42", "xdp_pass_only", "link", "8",
                                "proceed-on", "drop"]
    assert lines[2].split() == ["priority", "50", "program", "41", "xdp_counter", "link", "7",
                                "proceed-on", "pass,dispatcher_return"]
    assert lines[1].startswith("  ") and lines[1].index("link") == lines[2].index("link")
    assert tcx.splitlines() == ["tcx eth9/ingress  mode tcx  dispatcher -  revision 12",
                                "  priority 100  program 60  tcx_counter  link 20"]


def test_chain_in_an_unnamed_namespace_and_fitting() -> None:
    chain = dict(CHAINS[0], attach_point="xdp:4026532890:vb12")
    assert render("dispatcher.list", {}, [chain], "table").startswith(
        "xdp vb12 in netns 4026532890  mode static, generic")
    tc = dict(CHAINS[0], type="tc", attach_point="tc:4026532890:vb12/ingress",
              netns="/var/run/netns/red")  # the path the links were attached with
    assert render("dispatcher.list", {}, [tc], "table").startswith(
        "tc vb12/ingress in /var/run/netns/red  mode static")
    text = render("dispatcher.list", {}, CHAINS, "table", width=62)
    fits(text, 62)
    assert text.splitlines()[2].endswith("proceed-on …")  # the long set is cut


# -- maps -------------------------------------------------------------------------

FLOW_KEY = {"addr": 16777343, "port": 8080, "proto": 6, "pad": 0}
FLOW_VALUE = {"packets": 42, "delta": -3, "color": "GREEN", "hist": [1, 2, 3], "label": "web",
              "pair": {"a": 7, "b": 9}}


def test_map_values_decoded_when_the_map_has_btf() -> None:
    got = {"key": "7f00000190" + "1f0600", "value": "2a00", "decoded_key": FLOW_KEY,
           "decoded_value": FLOW_VALUE}
    assert render("map.get", {}, got, "table") == (
        '{"packets": 42, "delta": -3, "color": "GREEN", "hist": [1, 2, 3], "label": "web",'
        ' "pair": {"a": 7, "b": 9}}')
    assert render("map.get", {}, {"key": "00", "value": "0700", "decoded_key": 0,
                                  "decoded_value": 7}, "table") == "7"
    no_btf = {"key": "00000000", "value": "63000000", "decoded_key": None, "decoded_value": None}
    assert render("map.get", {}, no_btf, "table") == "63000000"
    missing = {"key": "00000000", "value": None, "decoded_key": None, "decoded_value": None}
    assert "no such key" in render("map.get", {}, missing, "table")


def test_map_dump_decoded_with_the_hex_key_kept() -> None:
    dump = {"entries": [{"key": "7f000001901f0600", "value": "2a", "decoded_key": FLOW_KEY,
                         "decoded_value": FLOW_VALUE}], "next": None}
    lines = render("map.dump", {}, dump, "table").splitlines()
    assert lines[0].split() == ["HEX", "KEY", "KEY", "VALUE"]
    assert lines[1].startswith("7f000001901f0600  {\"addr\": 16777343")
    assert '"label": "web"' in lines[1]
    fits(render("map.dump", {}, dump, "table", width=70), 70)
    plain = {"entries": [{"key": "00000000", "value": "0500000000000000"}], "next": None}
    assert render("map.dump", {}, plain, "table").splitlines() == [
        "KEY       VALUE", "00000000  0500000000000000"]


# -- events -----------------------------------------------------------------------


@pytest.mark.parametrize("event, expected", [
    ({"seq": 1, "time": "06:00:00", "kind": "loaded", "program_id": 42, "link_id": None,
      "type": "xdp", "detail": "xdp_counter"},
     "06:00:00  loaded    program=42 link=- xdp xdp_counter"),
    ({"seq": 2, "time": "06:00:01", "kind": "overflow", "program_id": None, "link_id": None,
      "type": None, "detail": ""},
     "06:00:01  overflow  program=- link=-"),
    ({"seq": 3, "time": "06:00:02", "kind": "attached", "program_id": 42, "link_id": 7,
      "type": "xdp", "detail": "xdp:0:vb12"},
     "06:00:02  attached  program=42 link=7 xdp xdp:0:vb12"),
])
def test_event_lines(event: dict[str, Any], expected: str) -> None:
    assert format_event(event) == expected
    assert "None" not in format_event(event)
