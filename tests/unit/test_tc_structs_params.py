"""TC/TCX pieces that need no kernel: the bpf_attr layouts in
bpfman.kernel._sys.bpfcmd (offsets from the UAPI, checked on 6.18), TCX
anchors, and the tc/tcx attach params."""

from __future__ import annotations

import ctypes

import attrs
import pytest

from bpfman.kernel import TcxAnchor
from bpfman.kernel._sys import bpfcmd
from bpfman.model import convert
from bpfman_tc.params import DEFAULT_PROCEED_ON, TC_ACTIONS, TcParams, TcxParams

LAYOUTS = {
    bpfcmd.TcxLinkCreateAttr: (32, {"prog_fd": 0, "target_ifindex": 4, "attach_type": 8,
                                    "flags": 12, "relative_id": 16, "expected_revision": 24}),
    bpfcmd.ProgQueryAttr: (64, {"target_ifindex": 0, "attach_type": 4, "query_flags": 8,
                                "attach_flags": 12, "prog_ids": 16, "count": 24,
                                "prog_attach_flags": 32, "link_ids": 40,
                                "link_attach_flags": 48, "revision": 56}),
    bpfcmd.LinkUpdateAttr: (16, {"link_fd": 0, "new_prog_fd": 4, "flags": 8, "old_prog_fd": 12}),
}


@pytest.mark.parametrize("struct", list(LAYOUTS), ids=lambda s: s.__name__)
def test_attr_layouts(struct: type[ctypes.Structure]) -> None:
    size, offsets = LAYOUTS[struct]
    assert ctypes.sizeof(struct) == size
    for name, offset in offsets.items():
        assert getattr(struct, name).offset == offset, name


def test_constants() -> None:
    assert (bpfcmd.BPF_PROG_QUERY, bpfcmd.BPF_LINK_CREATE, bpfcmd.BPF_LINK_UPDATE,
            bpfcmd.BPF_LINK_DETACH) == (16, 28, 29, 34)
    assert (bpfcmd.BPF_TCX_INGRESS, bpfcmd.BPF_TCX_EGRESS, bpfcmd.BPF_LINK_TYPE_TCX) == (46, 47, 11)
    assert (bpfcmd.BPF_F_BEFORE, bpfcmd.BPF_F_AFTER, bpfcmd.BPF_F_ID, bpfcmd.BPF_F_LINK) == (
        8, 16, 32, 8192)


def test_anchors_are_values() -> None:
    assert TcxAnchor.append().flags == 0
    assert TcxAnchor.head() == TcxAnchor.head()
    assert TcxAnchor.before(7) == TcxAnchor(bpfcmd.BPF_F_BEFORE | bpfcmd.BPF_F_ID, 7,
                                            "before program 7")
    assert TcxAnchor.after_link(9).flags == (bpfcmd.BPF_F_AFTER | bpfcmd.BPF_F_ID
                                             | bpfcmd.BPF_F_LINK)
    assert str(TcxAnchor.tail()) == "tail"


def test_tcx_params_defaults_and_checks() -> None:
    p = convert.structure({"iface": "eth0", "direction": "egress"}, TcxParams)
    assert (p.priority, p.netns) == (1000, None)
    for bad in ({"iface": "eth0", "direction": "up"},
                {"iface": "a/b", "direction": "ingress"},
                {"iface": "eth0", "direction": "ingress", "priority": -1},
                {"iface": "eth0", "direction": "ingress", "priority": 1001},
                {"iface": "eth0", "direction": "ingress", "netns": "relative/ns"},
                {"iface": "eth0", "direction": "ingress", "proceed_on": ["pipe"]}):
        with pytest.raises(Exception):  # noqa: B017 - cattrs wraps the cause
            convert.structure(bad, TcxParams)


def test_tc_params_proceed_on() -> None:
    p = convert.structure({"iface": "eth0", "direction": "ingress"}, TcParams)
    assert tuple(p.proceed_on) == DEFAULT_PROCEED_ON == ("pipe", "dispatcher_return")
    p = convert.structure({"iface": "eth0", "direction": "ingress",
                           "proceed_on": ["ok", "shot", "unspec"]}, TcParams)
    assert p.proceed_on == ["ok", "shot", "unspec"]
    with pytest.raises(Exception) as err:
        convert.structure({"iface": "eth0", "direction": "ingress",
                           "proceed_on": ["bogus"]}, TcParams)
    assert "bogus" in " ".join(convert.describe_errors(err.value, prefix="$"))
    assert TC_ACTIONS["unspec"] == -1 and TC_ACTIONS["dispatcher_return"] == 30
    assert attrs.asdict(p)["direction"] == "ingress"


def test_freplace_dispatcher_config_layout() -> None:
    """struct tc_dispatcher_config: u8 count (padded to 4), u32
    chain_call_actions[10] at 4, u32 run_prios[10] at 44; 84 bytes."""
    import struct

    from bpfman import dispatch
    from bpfman.dispatch import tc as freplace

    masks = [dispatch.TC.mask(["pipe", "dispatcher_return"]), dispatch.TC.mask(["unspec"])]
    raw = freplace.config(masks, [10, 20])
    assert len(raw) == 84 == freplace.CONFIG.size
    assert raw[0] == 2
    assert struct.unpack_from("<2I", raw, 4) == (1 << 4 | 1 << 31, 1)
    assert struct.unpack_from("<2I", raw, 44) == (10, 20)
    assert raw[52:] == bytes(32)
    with pytest.raises(Exception, match="10 programs"):
        freplace.config([0] * 11, [0] * 11)
