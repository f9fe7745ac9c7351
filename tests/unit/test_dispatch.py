"""Pure multi-prog logic: proceed-on masks, ordering, the generated static
dispatcher, the splice checks and libxdp's config struct layout."""

from __future__ import annotations

import ctypes
import struct

import attrs
import pytest

from bpfman import Conflict, InvalidArgument, KernelFeatureMissing
from bpfman.dispatch import (
    MAX_SLOTS,
    TC,
    XDP,
    check_slot_count,
    check_spliceable,
    static_dispatcher_insns,
)
from bpfman.dispatch.libxdp import LibxdpConfig
from bpfman.dispatch.static import decode, insn
from bpfman.dispatch.xdp import Target, attach_point_key
from bpfman.kernel._sys.progload import BpfInsn, BpfLinkCreateOpts, BpfTestRunOpts
from bpfman.model.records import LinkRecord
from bpfman.plugins import default_order
from bpfman_xdp.params import XdpConfig, XdpParams
from bpfman_xdp.plugin import choose_mode

EXIT = insn(0x95)
RET_PASS = insn(0xB7, imm=2) + EXIT


# --- masks ----------------------------------------------------------------------------


def test_xdp_masks_are_one_bit_per_action() -> None:
    assert XDP.mask(["aborted"]) == 1
    assert XDP.mask(["drop"]) == 2
    assert XDP.mask(["pass", "dispatcher_return"]) == (1 << 2) | (1 << 31)
    assert XDP.mask(["tx", "redirect"]) == (1 << 3) | (1 << 4)
    assert XDP.mask([]) == 0
    assert XDP.names(XDP.mask(["drop", "pass"])) == ["drop", "pass"]


def test_tc_masks_are_shifted_by_one() -> None:
    assert TC.mask(["unspec"]) == 1  # TC_ACT_UNSPEC (-1) is bit 0
    assert TC.mask(["ok"]) == 2
    assert TC.mask(["pipe"]) == 1 << 4
    assert TC.mask(["dispatcher_return"]) == 1 << 31  # the stub's 30
    assert TC.proceeds(TC.mask(["unspec"]), -1)
    assert not TC.proceeds(TC.mask(["unspec"]), 0)


def test_unknown_action_is_refused() -> None:
    with pytest.raises(InvalidArgument) as err:
        XDP.mask(["maybe"])
    assert err.value.details["field"] == "proceed_on"


def test_proceeds_masks_shift_like_the_dispatcher() -> None:
    mask = XDP.mask(["pass"])
    assert XDP.proceeds(mask, 2) and not XDP.proceeds(mask, 1)
    assert XDP.proceeds(mask, 34)  # shift amounts are taken modulo 32


def test_slot_limit() -> None:
    check_slot_count(MAX_SLOTS)
    with pytest.raises(Conflict):
        check_slot_count(MAX_SLOTS + 1)


# --- ordering -------------------------------------------------------------------------


def _link(link_id: int, priority: int, seq: int) -> LinkRecord:
    return LinkRecord(link_id=link_id, program_id=link_id, type="xdp",
                      params={"priority": priority}, attach_point="xdp:0:eth0", seq=seq,
                      pin_path="")


def test_order_is_priority_then_attach_sequence() -> None:
    links = [_link(1, 50, 3), _link(2, 10, 4), _link(3, 50, 1), _link(4, 60, 2)]
    assert [ln.link_id for ln in default_order(links)] == [2, 3, 1, 4]


# --- the generated static dispatcher ---------------------------------------------------


def test_static_dispatcher_layout_xdp() -> None:
    blocks = [RET_PASS, insn(0xB7, imm=1) + EXIT + EXIT]
    masks = [XDP.mask(["pass"]), XDP.mask(["drop", "dispatcher_return"])]
    code = decode(static_dispatcher_insns(blocks, masks, XDP))
    prologue = 1 + 7 * 2 + 2
    assert len(code) == prologue + 2 + 3
    assert code[0] == (0xBF, 6, 1, 0, 0)  # r6 = r1
    # slot 0: call lands on the first block, slot 1 on the second
    call0, call1 = 2, 2 + 7
    assert code[call0][:3] == (0x85, 0, 1) and call0 + 1 + code[call0][4] == prologue
    assert call1 + 1 + code[call1][4] == prologue + 2
    # mask test: ALU32 AND with the mask as the s32 it is, then JEQ to the exit
    assert code[call0 + 4] == (0x54, 2, 0, 0, 1 << 2)
    assert code[call1 + 4][4] == struct.unpack("<i", struct.pack("<I", masks[1]))[0]
    jeq = call0 + 5
    assert code[jeq][0] == 0x16 and jeq + 1 + code[jeq][3] == prologue - 1
    assert code[prologue - 2] == (0xB7, 0, 0, 0, XDP.fallthrough)
    assert code[prologue - 1][0] == 0x95


def test_static_dispatcher_tc_adds_the_offset() -> None:
    code = decode(static_dispatcher_insns([RET_PASS], [TC.mask(["unspec"])], TC))
    assert (0x04, 3, 0, 0, 1) in code  # w3 += 1
    assert code[1 + 8] == (0xB7, 0, 0, 0, TC.fallthrough)


def test_static_dispatcher_refuses_bad_input() -> None:
    with pytest.raises(ValueError):
        static_dispatcher_insns([], [], XDP)
    with pytest.raises(ValueError):
        static_dispatcher_insns([b"\x00" * 7], [0], XDP)
    with pytest.raises(Conflict):
        static_dispatcher_insns([RET_PASS] * 11, [0] * 11, XDP)


def test_spliceable_checks() -> None:
    check_spliceable("ok", RET_PASS + insn(0x18, src=1, imm=5) + insn(0) + EXIT)
    with pytest.raises(InvalidArgument, match="tail call"):
        check_spliceable("t", insn(0x85, imm=12) + RET_PASS)
    with pytest.raises(InvalidArgument, match="callback"):
        check_spliceable("c", insn(0x18, src=4, imm=3) + insn(0) + RET_PASS)
    with pytest.raises(InvalidArgument, match="module"):
        check_spliceable("k", insn(0x85, src=2, off=1, imm=77) + RET_PASS)
    # the second half of an ld_imm64 is not an instruction of its own
    check_spliceable("ld", insn(0x18, imm=1) + insn(0x85, imm=12) + RET_PASS)


def test_insn_struct_matches_encoding() -> None:
    raw = insn(0xBF, dst=6, src=1, off=-2, imm=-5)
    parsed = BpfInsn.from_buffer_copy(raw)
    assert ctypes.sizeof(BpfInsn) == 8
    assert (parsed.code, parsed.regs, parsed.off, parsed.imm) == (0xBF, 0x16, -2, -5)
    assert ctypes.sizeof(BpfTestRunOpts) == 80


def test_link_create_opts_layout() -> None:
    # libbpf 1.1 <bpf/bpf.h>: sz, flags, iter_info, iter_info_len, target_btf_id, union
    assert BpfLinkCreateOpts.flags.offset == 8
    assert BpfLinkCreateOpts.iter_info.offset == 16
    assert BpfLinkCreateOpts.iter_info_len.offset == 24
    assert BpfLinkCreateOpts.target_btf_id.offset == 28
    assert ctypes.sizeof(BpfLinkCreateOpts) == 64


# --- libxdp's config ------------------------------------------------------------------


class _XdpDispatcherConfigV2(ctypes.Structure):
    """struct xdp_dispatcher_config as the C compiler lays it out (v2)."""

    _fields_ = (("magic", ctypes.c_uint8), ("dispatcher_version", ctypes.c_uint8),
                ("num_progs_enabled", ctypes.c_uint8), ("is_xdp_frags", ctypes.c_uint8),
                ("chain_call_actions", ctypes.c_uint32 * 10),
                ("run_prios", ctypes.c_uint32 * 10),
                ("program_flags", ctypes.c_uint32 * 10))


def test_libxdp_config_v2_layout() -> None:
    assert ctypes.sizeof(_XdpDispatcherConfigV2) == 124
    assert _XdpDispatcherConfigV2.chain_call_actions.offset == 4
    assert _XdpDispatcherConfigV2.run_prios.offset == 44
    assert _XdpDispatcherConfigV2.program_flags.offset == 84
    cfg = LibxdpConfig(version=2, chain_call_actions=(XDP.mask(["pass"]), XDP.mask(["drop"])),
                       run_prios=(10, 20), program_flags=(32, 0))
    raw = cfg.pack()
    c = _XdpDispatcherConfigV2.from_buffer_copy(raw)
    assert (c.magic, c.dispatcher_version, c.num_progs_enabled) == (236, 2, 2)
    assert c.chain_call_actions[0] == (1 << 2) | (1 << 31)  # bit 31 always set
    assert c.chain_call_actions[1] == (1 << 1) | (1 << 31)
    assert list(c.run_prios)[:3] == [10, 20, 0] and c.program_flags[0] == 32
    back = LibxdpConfig.unpack(raw)
    assert back == cfg  # bit 31 stripped on read, as libxdp does


def test_libxdp_config_v3_is_128_bytes() -> None:
    cfg = LibxdpConfig(version=3, chain_call_actions=(4,), run_prios=(50,),
                       is_xdp_devbound=True)
    raw = cfg.pack()
    assert len(raw) == 128 and raw[124] == 1 and raw[1] == 3
    assert LibxdpConfig.unpack(raw).is_xdp_devbound
    with pytest.raises(ValueError):
        LibxdpConfig.unpack(b"\x00" * 124)


# --- the xdp plugin's pure parts --------------------------------------------------------


@attrs.frozen
class _Features:
    ext_programs: bool
    notes: dict[str, str] = attrs.field(factory=dict)


def test_mode_choice() -> None:
    auto = XdpConfig.parse({})
    assert choose_mode(auto, _Features(True), "eth0", 1) == "libxdp"
    assert choose_mode(auto, _Features(False), "eth0", 2) == "static"
    assert choose_mode(auto, _Features(False), "eth0", 1) == "single"
    single = XdpConfig.parse({"dispatcher": "single"})
    assert choose_mode(single, _Features(True), "eth0", 1) == "single"
    with pytest.raises(Conflict):
        choose_mode(single, _Features(True), "eth0", 2)
    with pytest.raises(KernelFeatureMissing):
        choose_mode(XdpConfig.parse({"dispatcher": "libxdp"}), _Features(False), "eth0", 2)
    per_iface = XdpConfig.parse({"interfaces": {"eth1": {"dispatcher": "static",
                                                         "xdp_mode": "generic"}}})
    assert choose_mode(per_iface, _Features(True), "eth1", 2) == "static"
    assert per_iface.xdp_mode_for("eth1") == "generic" and per_iface.xdp_mode_for("x") == "auto"


def test_config_errors() -> None:
    with pytest.raises(InvalidArgument):
        XdpConfig.parse({"dispatcher": "fast"})
    with pytest.raises(InvalidArgument):
        XdpConfig.parse({"bogus": 1})
    with pytest.raises(InvalidArgument):
        XdpConfig.parse({"interfaces": {"eth0": {"xdp_mode": "turbo"}}})


def test_params_defaults_and_ranges() -> None:
    p = XdpParams(iface="eth0")
    assert p.priority == 50 and p.proceed_on == ["pass", "dispatcher_return"]
    for bad in ({"priority": -1}, {"priority": 1001}, {"proceed_on": ["x"]},
                {"proceed_on": ["pass", "pass"]}, {"netns": "relative"}, {"iface": ""}):
        with pytest.raises(ValueError):
            XdpParams(iface=bad.pop("iface", "eth0"), **bad)  # type: ignore[arg-type]


def test_attach_point_key_round_trip() -> None:
    key = attach_point_key("eth0", "/var/run/netns/blue")
    t = Target.parse(f"xdp:4026532000:{key}")
    assert (t.iface, t.netns_path, t.netns_id) == ("eth0", "/var/run/netns/blue", 4026532000)
    t = Target.parse("xdp:0:eth0")
    assert (t.iface, t.netns_path, t.why_gone()) == ("eth0", None, None)
