"""The tc/tcx plugins' pure parts: registration, attach points, link
descriptions and the dispatcher mode choice (no kernel)."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from types import SimpleNamespace

from bpfman import kernel
from bpfman.context import HookContext
from bpfman.dispatch import tc as tc_dispatcher
from bpfman.kernel.bpffs import Bpffs
from bpfman.model.records import LinkRecord, ProgramRecord
from bpfman_tc import tc, tcx
from bpfman_tc.params import TcParams, TcxParams

PROGRAM = ProgramRecord(program_id=1, name="p", type="tc", path="/x.o", pin_path="/fs/prog_1",
                        map_owner_id=1, map_pin_dir="/fs/maps/1")


def ctx(ext: bool, config: dict[str, str] | None = None) -> HookContext:
    return HookContext(kernel=kernel, bpffs=Bpffs("/fs"), undo=ExitStack(),
                       features=SimpleNamespace(ext_programs=ext),
                       plugin_config=config or {}, log=logging.getLogger("t"))


def test_kinds() -> None:
    [tc_kind] = tc.bpfman_register_kinds()
    [tcx_kind] = tcx.bpfman_register_kinds()
    assert (tc_kind.name, tc_kind.kernel_prog_type, tc_kind.multiprog) == ("tc", "sched_cls", True)
    assert (tcx_kind.name, tcx_kind.required_features) == ("tcx", ("tcx",))
    assert tcx_kind.params_type is TcxParams and tc_kind.params_type is TcParams


def test_attach_points_per_interface_and_direction() -> None:
    a = tc.bpfman_attach_point(PROGRAM, TcParams(iface="eth0", direction="ingress"))
    b = tcx.bpfman_attach_point(PROGRAM, TcxParams(iface="eth0", direction="ingress"))
    c = tc.bpfman_attach_point(PROGRAM, TcParams(iface="eth0", direction="egress"))
    assert a.lock_key() == "tc:0:eth0/ingress" and b.lock_key() == "tcx:0:eth0/ingress"
    assert len({a.lock_key(), b.lock_key(), c.lock_key()}) == 3


def test_mode_follows_the_kernel_unless_forced() -> None:
    assert tc._mode(ctx(ext=True)) == "freplace"
    assert tc._mode(ctx(ext=False)) == "static"
    assert tc._mode(ctx(ext=True, config={"mode": "static"})) == "static"


def test_descriptions() -> None:
    link = LinkRecord(link_id=1, program_id=1, type="tc", attach_point="tc:0:eth0/egress",
                      seq=1, pin_path="/fs/links/1",
                      params={"iface": "eth0", "direction": "egress", "priority": 5,
                              "proceed_on": [], "netns": None})
    assert tc.bpfman_describe_link(link) == (
        "tc eth0 egress priority 5 proceed-on pipe,dispatcher_return")
    link = LinkRecord(link_id=2, program_id=1, type="tcx", attach_point="tcx:7:v/ingress",
                      seq=2, pin_path="/fs/links/2",
                      params={"iface": "v", "direction": "ingress", "priority": 1,
                              "netns": "/run/netns/x"})
    assert tcx.bpfman_describe_link(link) == "tcx v in /run/netns/x ingress priority 1"


def test_netns_path_of_own_namespace_is_none() -> None:
    assert tc_dispatcher._netns_path(0) is None
    assert tc_dispatcher._netns_path(1) is None  # no namespace has inode 1
