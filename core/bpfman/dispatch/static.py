"""The static mode: a chain spliced into one program, for kernels that refuse
extension programs (see the package doc). Instruction encoding, the checks
that a component can be spliced, the generated prologue, and loading.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path

import attrs

from bpfman.dispatch.semantics import MAX_SLOTS, ChainSemantics, check_slot_count
from bpfman.model.errors import InvalidArgument

BPF_LD_IMM64 = 0x18
BPF_CALL = 0x85


BPF_EXIT = 0x95


BPF_PSEUDO_MAP_FD = 1


BPF_PSEUDO_MAP_VALUE = 2


BPF_PSEUDO_BTF_ID = 3


BPF_PSEUDO_FUNC = 4


BPF_PSEUDO_MAP_IDX = 5


BPF_PSEUDO_MAP_IDX_VALUE = 6


BPF_PSEUDO_CALL = 1


BPF_PSEUDO_KFUNC_CALL = 2
BPF_FUNC_tail_call = 12


_INSN = struct.Struct("<BBhi")


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One struct bpf_insn (little endian: dst_reg in the low nibble)."""
    if imm >= 1 << 31:
        imm -= 1 << 32  # a u32 mask with bit 31 set, as the s32 the ALU32 op reads
    return _INSN.pack(code, (src << 4) | dst, off, imm)


def decode(insns: bytes) -> list[tuple[int, int, int, int, int]]:
    """(code, dst, src, off, imm) of each 8-byte instruction."""
    out = []
    for i in range(0, len(insns), 8):
        code, regs, off, imm = _INSN.unpack_from(insns, i)
        out.append((code, regs & 0xF, regs >> 4, off, imm))
    return out


def check_spliceable(name: str, insns: bytes) -> None:
    """Refuse a component whose meaning would change or that cannot load
    without BTF once spliced into a static dispatcher.

    :raises InvalidArgument: tail calls (they would leave the whole chain),
        callbacks (bpf_loop, timers, for_each: need func_info BTF), kfuncs
        from module BTF and map-index loads (need an fd_array).
    """
    decoded = decode(insns)
    skip = False
    for pc, (code, _dst, src, off, imm) in enumerate(decoded):
        if skip:
            skip = False
            continue
        why = None
        if code == BPF_LD_IMM64:
            skip = True
            if src == BPF_PSEUDO_FUNC:
                why = "passes a callback function (bpf_loop, timers, for_each...)"
            elif src in (BPF_PSEUDO_MAP_IDX, BPF_PSEUDO_MAP_IDX_VALUE):
                why = "references maps by fd_array index"
        elif code == BPF_CALL and src == 0 and imm == BPF_FUNC_tail_call:
            why = ("makes a tail call, which would leave the whole chain instead of"
                   " returning to it")
        elif code == BPF_CALL and src == BPF_PSEUDO_KFUNC_CALL and off != 0:
            why = "calls a kfunc from a kernel module's BTF"
        if why:
            raise InvalidArgument(
                f"program {name!r} cannot run in a static dispatcher: it {why}"
                f" (instruction {pc}); attach it alone, or on a kernel that loads"
                " extension programs (libxdp mode)",
                field="program", program=name, instruction=pc)


def static_dispatcher_insns(blocks: Sequence[bytes], masks: Sequence[int],
                            semantics: ChainSemantics) -> bytes:
    """The static dispatcher: a generated prologue followed by `blocks`
    (each component's relocated instructions, entry first), one slot each.

    Prologue, with ``off`` = `semantics.offset`::

        r6 = r1
        slot i:  r1 = r6
                 call block_i              (BPF_PSEUDO_CALL, pc-relative)
                 w2 = 1; w3 = w0; [w3 += off]; w2 <<= w3
                 w2 &= mask_i
                 if w2 == 0 goto out       (verdict: the slot's r0)
        r0 = fallthrough
        out: exit

    32-bit ALU for the mask test: a mask with bit 31 set does not fit a
    sign-extended 64-bit immediate.
    """
    if len(blocks) != len(masks):
        raise ValueError("one mask per block")
    if not blocks:
        raise ValueError("a dispatcher needs at least one slot")
    if len(blocks) > MAX_SLOTS:
        check_slot_count(len(blocks))
    for b in blocks:
        if not b or len(b) % 8:
            raise ValueError("a block is a non-empty multiple of 8 bytes")
    per_slot = 8 if semantics.offset else 7
    prologue_len = 1 + per_slot * len(blocks) + 2
    exit_pc = prologue_len - 1
    out = [insn(0xBF, dst=6, src=1)]  # r6 = r1
    start = prologue_len
    for block, mask in zip(blocks, masks, strict=True):
        out.append(insn(0xBF, dst=1, src=6))  # r1 = r6
        call_pc = len(out)
        out.append(insn(BPF_CALL, src=BPF_PSEUDO_CALL, imm=start - (call_pc + 1)))
        out.append(insn(0xB4, dst=2, imm=1))  # w2 = 1
        out.append(insn(0xBC, dst=3, src=0))  # w3 = w0
        if semantics.offset:
            out.append(insn(0x04, dst=3, imm=semantics.offset))  # w3 += off
        out.append(insn(0x6C, dst=2, src=3))  # w2 <<= w3
        out.append(insn(0x54, dst=2, imm=mask & 0xFFFFFFFF))  # w2 &= mask
        jeq_pc = len(out)
        out.append(insn(0x16, dst=2, imm=0, off=exit_pc - (jeq_pc + 1)))  # if w2 == 0
        start += len(block) // 8
    out.append(insn(0xB7, dst=0, imm=semantics.fallthrough))  # r0 = fallthrough
    out.append(insn(BPF_EXIT))
    assert len(out) == prologue_len
    return b"".join(out) + b"".join(blocks)


@attrs.frozen
class StaticSlot:
    """One component of a static dispatcher.

    :param program_pin: pin of the program as loaded (its maps are reused).
    :param object_path: the ELF object it was loaded from.
    :param program_name: its name in that object.
    :param proceed_on: the slot's proceed-on mask (`ChainSemantics.mask`).
    :param map_pin_dir: where its maps are pinned, if anywhere.
    """

    program_pin: Path = attrs.field(converter=Path)
    object_path: Path = attrs.field(converter=Path)
    program_name: str
    proceed_on: int
    map_pin_dir: Path | None = None


def load_static_dispatcher(slots: Sequence[StaticSlot], semantics: ChainSemantics, *,
                           name: str) -> int:
    """Relocate every component, splice them behind a generated prologue and
    load the result as one program of `semantics.prog_type`.

    :return: the new program's fd, owned by the caller (attach, pin, close).
    :raises InvalidArgument: a component cannot be spliced (names which).
    :raises VerifierRejected: the kernel refused the combined program.
    :raises Conflict: more than `MAX_SLOTS` slots.
    """
    from bpfman import kernel

    check_slot_count(len(slots))
    with ExitStack() as stack:
        relocated = [
            stack.enter_context(kernel.relocated_program(
                s.object_path, s.program_name, s.program_pin, s.map_pin_dir))
            for s in slots
        ]
        for r in relocated:
            if r.prog_type != semantics.prog_type:
                raise InvalidArgument(f"program {r.name!r} has kernel type {r.prog_type},"
                                      f" the {semantics.name} dispatcher needs"
                                      f" {semantics.prog_type}", field="program")
            check_spliceable(r.name, r.insns)
        code = static_dispatcher_insns([r.insns for r in relocated],
                                       [s.proceed_on for s in slots], semantics)
        # Load flags every component asks for (XDP frags) go on the whole
        # only when all agree; a GPL-only helper needs every part GPL.
        flags = relocated[0].prog_flags
        for r in relocated[1:]:
            flags &= r.prog_flags
        license = "GPL" if all(r.gpl_compatible for r in relocated) else "Proprietary"
        return kernel.load_program_insns(
            semantics.prog_type, name, code, license=license, prog_flags=flags,
            expected_attach_type=relocated[0].expected_attach_type,
        )


def pin_static_dispatcher(slots: Sequence[StaticSlot], semantics: ChainSemantics, *,
                          name: str, pin: Path | str) -> int:
    """`load_static_dispatcher`, then pin the program at `pin` and close it.

    :return: the new program's kernel id.
    """
    from bpfman import kernel
    from bpfman.kernel import pins

    fd = load_static_dispatcher(slots, semantics, name=name)
    try:
        kernel.pin_fd(fd, pin)
        return pins.program_id_of_fd(fd)
    finally:
        os.close(fd)
