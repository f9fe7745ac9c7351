"""Multi-prog dispatch: the mechanism shared by the XDP and TC plugins.

Several programs share one attach point (an interface's XDP hook, a TC
direction). They run in slot order; after each one the dispatcher tests the
program's return value against the slot's *proceed-on* set: if the value is
in the set the next slot runs, otherwise its value is the verdict. When every
slot proceeds, the dispatcher returns the chain's fall-through verdict
(XDP_PASS for XDP, TC_ACT_OK for TC). At most `MAX_SLOTS` programs.

Proceed-on sets are bit masks over return values (`ChainSemantics`):
XDP sets bit ``1 << action`` (libxdp), TC bit ``1 << (ret + 1)`` so that
TC_ACT_UNSPEC (-1) is bit 0 (bpfman's TC dispatcher). ``dispatcher_return``
is the value an empty libxdp/bpfman stub returns (31 for XDP, 30 for TC),
i.e. bit 31 in both.

Three ways to make the kernel run a chain (the plugin picks per attach point):

``libxdp``
    freplace (BPF_PROG_TYPE_EXT) programs attached to the stubs of a
    dispatcher program whose config is `LibxdpConfig` (libxdp's protocol).
    Needs a kernel that loads extension programs.
``static``
    For kernels that refuse extension programs (lockdown). Every component
    was loaded and verified standalone by libbpf (the program the user loaded,
    pinned as usual). To build the chain, each component's object is reopened
    with libbpf, its maps replaced by the *same* maps the loaded program uses
    (so state is shared and survives every rebuild), loaded again (a second
    standalone verification) and its relocated instructions are read with
    ``bpf_program__insns()``. `static_dispatcher_insns` puts a generated
    prologue in front that calls each component as a BPF-to-BPF subprogram
    (``r6 = ctx``; per slot ``r1 = r6; call slot; mask test on r0``) and the
    result is loaded as ONE program of the attach point's type, without BTF.
    The caller swaps it in atomically (netlink XDP_FLAGS_REPLACE, a cls_bpf
    NLM_F_REPLACE, or BPF_LINK_UPDATE). Components that cannot be spliced are
    refused with `InvalidArgument` (tail calls, callbacks such as bpf_loop,
    module kfuncs: see `check_spliceable`).
``single``
    One program attached directly: no dispatcher, no proceed-on.

How a TC plugin uses the static mode (the XDP plugin does the same)::

    from bpfman import dispatch
    slots = [dispatch.StaticSlot(program_pin=..., object_path=program.path,
                                 program_name=program.name,
                                 map_pin_dir=program.map_pin_dir,
                                 proceed_on=dispatch.TC.mask(["pipe", "dispatcher_return"]))
             for each link in the order the core gave]
    fd = dispatch.load_static_dispatcher(slots, dispatch.TC, name="tc_static")
    try:
        ...attach fd with NLM_F_REPLACE on the dispatcher filter, pin it...
    finally:
        os.close(fd)

or, to stay fd-free in a plugin, ``dispatch.pin_static_dispatcher(slots,
dispatch.TC, name=..., pin=PATH)`` returns the program id and leaves it
pinned at PATH, to attach from the pin (the XDP plugin does this).

The old chain keeps running until the swap; if loading fails (verifier,
unspliceable component) nothing has changed.
"""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import attrs

from bpfman.model.errors import Conflict, InvalidArgument, KernelFeatureMissing

MAX_SLOTS = 10
#: libxdp's ``XDP_DISPATCHER_RETVAL`` / bpfman's TC ``TC_DISPATCHER_RETVAL``
#: both land on bit 31 of a proceed-on mask.
DISPATCHER_RETURN_BIT = 31

# --- proceed-on semantics ------------------------------------------------------------


@attrs.frozen
class ChainSemantics:
    """How one program type's return values map to proceed-on bits.

    :param offset: bit of return value ``r`` is ``1 << (r + offset)``.
    :param actions: proceed-on names -> return value.
    :param fallthrough: verdict when every slot proceeded.
    :param prog_type: kernel program type number of the dispatcher.
    """

    name: str
    offset: int
    actions: dict[str, int]
    fallthrough: int
    prog_type: int
    default_proceed_on: tuple[str, ...]

    def bit(self, action: str) -> int:
        try:
            return 1 << (self.actions[action] + self.offset)
        except KeyError:
            known = ", ".join(self.actions)
            raise InvalidArgument(f"unknown {self.name} proceed-on action {action!r}"
                                  f" (known: {known})", field="proceed_on") from None

    def mask(self, proceed_on: Iterable[str]) -> int:
        """Bit mask of a proceed-on set (names as in `actions`)."""
        mask = 0
        for action in proceed_on:
            mask |= self.bit(action)
        return mask

    def names(self, mask: int) -> list[str]:
        """The proceed-on names of a mask (inverse of `mask`)."""
        return [a for a, v in self.actions.items() if mask & (1 << (v + self.offset))]

    def proceeds(self, mask: int, retval: int) -> bool:
        """Whether a slot with `mask` proceeds after returning `retval`: the
        dispatcher shifts in 32 bits, so the amount is taken modulo 32."""
        return bool(mask & (1 << ((retval + self.offset) & 31)))


XDP = ChainSemantics(
    name="xdp", offset=0,
    actions={"aborted": 0, "drop": 1, "pass": 2, "tx": 3, "redirect": 4,
             "dispatcher_return": 31},
    fallthrough=2, prog_type=6, default_proceed_on=("pass", "dispatcher_return"),
)
TC = ChainSemantics(
    name="tc", offset=1,
    actions={"unspec": -1, "ok": 0, "reclassify": 1, "shot": 2, "pipe": 3, "stolen": 4,
             "queued": 5, "repeat": 6, "redirect": 7, "trap": 8, "dispatcher_return": 30},
    fallthrough=0, prog_type=3, default_proceed_on=("pipe", "dispatcher_return"),
)


def check_slot_count(count: int, where: str = "this attach point") -> None:
    if count > MAX_SLOTS:
        raise Conflict(f"{where} already runs {MAX_SLOTS} programs, the most one dispatcher"
                       " can chain; detach one first", max_programs=MAX_SLOTS)


# --- instruction encoding --------------------------------------------------------------

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


# --- the static mode, end to end ------------------------------------------------------


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
                                      f" a {semantics.name} dispatcher needs"
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


# --- libxdp's dispatcher config ------------------------------------------------------

LIBXDP_MAGIC = 236  # 'X' + 'D' + 'P'
LIBXDP_CONFIG_SIZE = {2: 124, 3: 128}


@attrs.frozen
class LibxdpConfig:
    """``struct xdp_dispatcher_config`` of libxdp (versions 2 and 3).

    Layout: u8 magic (236) @0, u8 dispatcher_version @1, u8
    num_progs_enabled @2, u8 is_xdp_frags @3, u32 chain_call_actions[10] @4,
    u32 run_prios[10] @44, u32 program_flags[10] @84, (v3) u8
    is_xdp_devbound @124, padded to 128. libxdp always sets bit 31 of every
    used slot's chain_call_actions and strips it when reading.
    """

    version: int
    chain_call_actions: tuple[int, ...]
    run_prios: tuple[int, ...]
    program_flags: tuple[int, ...] = ()
    is_xdp_frags: bool = False
    is_xdp_devbound: bool = False

    @property
    def num_progs_enabled(self) -> int:
        return len(self.chain_call_actions)

    def pack(self) -> bytes:
        n = self.num_progs_enabled
        if self.version not in LIBXDP_CONFIG_SIZE:
            raise ValueError(f"unsupported libxdp dispatcher version {self.version}")
        if n > MAX_SLOTS or len(self.run_prios) != n:
            raise ValueError("one priority per slot, at most 10 slots")
        flags = list(self.program_flags) or [0] * n
        actions = [(a | (1 << DISPATCHER_RETURN_BIT)) & 0xFFFFFFFF
                   for a in self.chain_call_actions]
        pad = [0] * (MAX_SLOTS - n)
        raw = struct.pack("<BBBB10I10I10I", LIBXDP_MAGIC, self.version, n,
                          int(self.is_xdp_frags), *actions, *pad, *self.run_prios, *pad,
                          *flags, *pad)
        if self.version >= 3:
            raw += struct.pack("<B3x", int(self.is_xdp_devbound))
        assert len(raw) == LIBXDP_CONFIG_SIZE[self.version]
        return raw

    @classmethod
    def unpack(cls, raw: bytes) -> LibxdpConfig:
        if len(raw) < 124 or raw[0] != LIBXDP_MAGIC:
            raise ValueError("not a libxdp v2+ dispatcher config")
        version, n, frags = raw[1], raw[2], raw[3]
        if n > MAX_SLOTS:
            raise ValueError(f"config claims {n} programs")
        values = struct.unpack_from("<30I", raw, 4)
        actions = tuple(a & ~(1 << DISPATCHER_RETURN_BIT) for a in values[0:n])
        return cls(version=version, chain_call_actions=actions,
                   run_prios=tuple(values[10:10 + n]),
                   program_flags=tuple(values[20:20 + n]), is_xdp_frags=bool(frags),
                   is_xdp_devbound=bool(version >= 3 and len(raw) > 124 and raw[124]))




def build_dispatcher_object(source: Path, *, feature: str, what: str,
                            defines: dict[str, str] | None = None) -> Path:
    """The object of a plugin's dispatcher C `source` (with `defines`), compiled
    with clang at first use into a cache directory owned by us
    (``$BPFMAN_CACHE_DIR`` or /var/cache/bpfman, else a private one under the
    system temp dir), named by a hash of the source and defines.

    :param feature: reported by `KernelFeatureMissing` ("tc_dispatcher", ...).
    :param what: its name for people ("TC dispatcher", ...).
    """
    flags = [f"-D{k}={v}" for k, v in sorted((defines or {}).items())]
    key = hashlib.sha256(source.read_bytes() + " ".join(flags).encode()).hexdigest()[:16]
    stem = source.name.removesuffix(".c").removesuffix(".bpf")
    name = f"{stem}-{key}.bpf.o"  # the key covers the defines
    subdir = stem.removesuffix("_dispatcher")  # "tc", "xdp"
    candidates = [Path(os.environ.get("BPFMAN_CACHE_DIR", "/var/cache/bpfman")) / subdir,
                  Path(tempfile.gettempdir()) / f"bpfman-cache-{os.geteuid()}" / subdir]
    for cache in candidates:
        out = cache / name
        try:
            cache.mkdir(mode=0o700, parents=True, exist_ok=True)
            if cache.stat().st_uid != os.geteuid():
                continue  # someone else's directory: never trust its objects
            if out.exists():
                return out
            tmp = out.with_suffix(f".{os.getpid()}.tmp")
            cmd = [os.environ.get("BPFMAN_CLANG", "clang"), "-O2", "-g", "-target", "bpf",
                   f"-I/usr/include/{os.uname().machine}-linux-gnu", *flags,
                   "-c", str(source), "-o", str(tmp)]
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=120)
            tmp.rename(out)
            return out
        except FileNotFoundError as exc:
            raise KernelFeatureMissing(feature, f"clang is needed to build the {what}"
                                       " (apt-get install clang)") from exc
        except subprocess.CalledProcessError as exc:
            raise KernelFeatureMissing(feature, f"building the {what} failed:"
                                       f" {exc.stderr.strip()[-500:]}") from exc
        except OSError:
            continue
    raise KernelFeatureMissing(feature, f"no writable cache directory to build the {what}"
                               " in (set BPFMAN_CACHE_DIR)")


def ensure_extension(ctx: Any, link: Any, target_pin: Path, func: str, object_path: str) -> None:
    """Make the link's pin hold the extension (freplace) form of its program,
    replacing `func` of the dispatcher pinned at `target_pin`; loaded the
    first time, with the maps of the program as loaded. Shared by the XDP
    (libxdp) and TC (freplace) dispatchers."""
    from bpfman.kernel import libxdp as kx

    pin = Path(link.pin_path)
    if ctx.kernel.program_info(ctx.kernel.program_id_of_pin(pin)).kernel_type == "ext":
        return
    program_pin = ctx.bpffs.program_pin(link.program_id)
    tmp = pin.with_name(f"{pin.name}_ext")
    kx.load_extension(object_path, link.details["program_name"], program_pin,
                      link.details.get("map_pin_dir"), target_pin, func, tmp)
    ctx.undo.callback(ctx.kernel.remove_pin, tmp)
    ctx.undo.callback(ctx.kernel.repin, program_pin, pin)
    ctx.kernel.repin(tmp, pin)
    ctx.kernel.remove_pin(tmp)
