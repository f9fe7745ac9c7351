"""The fd-target link layer's fixed facts: the bpf_attr layouts it sends
(kernel UAPI offsets) and the hook tables the plugins validate against."""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path

from bpfman import kernel
from bpfman.kernel._sys import bpfcmd
from bpfman.kernel.links.fd_target import Anchor, FdLinkInfo


def test_netfilter_link_create_layout() -> None:
    attr = bpfcmd.NetfilterLinkCreateAttr
    assert ctypes.sizeof(attr) == 32
    assert [getattr(attr, f).offset for f in ("pf", "hooknum", "priority", "nf_flags")] == [
        16, 20, 24, 28]


def test_cgroup_hooks_name_program_types() -> None:
    types = {h.program_type for h in kernel.CGROUP_HOOKS.values()}
    assert types == {"cgroup_skb", "cgroup_sock", "cgroup_sock_addr"}
    assert kernel.CGROUP_HOOKS["connect4"].attach_type == 10
    assert kernel.CGROUP_HOOKS["egress"].attach_type == 1
    assert kernel.NF_HOOKS["input"] == 1 and kernel.NF_FAMILIES["ipv6"] == 10


def test_anchor_flags_and_defunct() -> None:
    assert Anchor.append().flags == 0
    assert Anchor.before_link(7).flags == (bpfcmd.BPF_F_BEFORE | bpfcmd.BPF_F_ID
                                           | bpfcmd.BPF_F_LINK)
    assert FdLinkInfo(1, 2, "cgroup", 1, 0).defunct
    assert not FdLinkInfo(1, 2, "netfilter", 45, 0).defunct


def test_netfilter_section_is_typed_although_libbpf_does_not_know_it(
        bpf_program: Callable[..., Path]) -> None:
    # libbpf 1.1 leaves SEC("netfilter") untyped; the loader types it.
    [prog] = kernel.inspect_object(bpf_program("nf_count")).programs
    assert (prog.section, prog.kernel_type) == ("netfilter", "netfilter")
