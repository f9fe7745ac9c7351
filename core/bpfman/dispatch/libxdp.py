"""libxdp's dispatcher protocol, spoken so that libxdp/xdp-loader and the
daemon see and change the same chain: its config struct and the libxdp
mode's rebuild.

A rebuild, under libxdp's lock (flock on ``<libxdp bpffs>/xdp``):
1. read what the interface runs: nothing, or a libxdp dispatcher (any
   other program is refused: "unload it first", as libxdp does). Slots of
   the old dispatcher whose extension is not one of ours (``slot_<link>``
   pins of our revisions) belong to someone else (xdp-loader) and are kept
   with their priority and chain actions;
2. merge our links (priority, then attach order) with those, stable-sorted
   by priority; at most 10;
3. load the project's dispatcher (same version as the attached one, else
   the configured default, 2) with the config, pin it in our revision
   directory, attach every extension to its slot (``prog<N>``, or
   ``xdp_dispatcher`` itself when it is alone) with pins in
   ``dispatch-<ifindex>-<id>/prog<N>-{prog,link}``;
4. swap it in with netlink REPLACE conditional on the old dispatcher, then
   remove the old pins (held open until the call commits, for undo).
Each of our links is loaded once as an extension (pinned at the link's pin
path); rebuilds attach that same extension to the new dispatcher.
"""

from __future__ import annotations

import struct
from pathlib import Path

import attrs

from bpfman import kernel
from bpfman.context import HookContext
from bpfman.dispatch.freplace import build_dispatcher_object, ensure_extension
from bpfman.dispatch.revisions import Revisions
from bpfman.dispatch.semantics import DISPATCHER_RETURN_BIT, MAX_SLOTS, XDP, check_slot_count
from bpfman.kernel.netns import NetNs
from bpfman.model.errors import Conflict
from bpfman.model.records import AttachPoint, DispatcherRecord, LinkRecord

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







SOURCE = Path(__file__).with_name("xdp_dispatcher.bpf.c")
SUPPORTED_VERSIONS = (2, 3)


def dispatcher_object(version: int) -> Path:
    """Our dispatcher object for `version`, compiled at first use
    (`build_dispatcher_object`)."""
    return build_dispatcher_object(
        SOURCE, feature="libxdp_dispatcher", what="XDP dispatcher",
        defines={"DISPATCHER_VERSION": str(version)})


@attrs.frozen
class _Slot:
    priority: int
    actions: int  # proceed-on mask, bit 31 excluded
    ext_pin: Path  # where the extension program is pinned now
    link: LinkRecord | None = None  # ours; None for someone else's
    flags: int = 0


def build(ctx: HookContext, attach_point: AttachPoint, iface: str, netns: NetNs, ifindex: int,
          revs: Revisions, ordered: list[LinkRecord], *, libxdp_bpffs: Path,
          dispatcher_version: int, attach_mode: str) -> DispatcherRecord | None:
    """Rebuild the chain at `attach_point` (interface `iface`, `ifindex` in
    `netns`) in libxdp mode, with our revision pins under `revs`; libxdp's
    pins under `libxdp_bpffs`, a new dispatcher of `dispatcher_version`
    unless one is attached, XDP attach mode `attach_mode`."""
    kernel.ensure_bpffs(libxdp_bpffs)
    xdp_dir = libxdp_bpffs / "xdp"
    root = revs.root
    revisions = revs.existing()
    with kernel.libxdp_lock(xdp_dir):
        attached, _mode = kernel.attached_xdp_program(ifindex, netns)
        ours = _our_extensions(ctx, revisions)
        version = dispatcher_version
        foreign: list[_Slot] = []
        old_dir = xdp_dir / f"dispatch-{ifindex}-{attached}"
        if attached:
            raw = kernel.read_dispatcher_config(attached)
            if raw is None or not old_dir.is_dir():
                raise Conflict(f"interface {iface} runs XDP program {attached}, which"
                               " is not a libxdp dispatcher (or its pins are missing); unload"
                               " it first", iface=iface, attached=attached)
            try:
                conf = LibxdpConfig.unpack(raw)
            except ValueError as exc:
                raise Conflict(f"interface {iface} runs a libxdp dispatcher of an"
                               f" older protocol (v1): unload it first ({exc})") from exc
            if conf.version not in SUPPORTED_VERSIONS:
                raise Conflict(f"libxdp dispatcher version {conf.version} on"
                               f" {iface} is not supported here")
            version = conf.version
            for i in range(conf.num_progs_enabled):
                pin = old_dir / f"prog{i}-prog"
                if ctx.kernel.program_id_of_pin(pin) in ours:
                    continue
                foreign.append(_Slot(conf.run_prios[i], conf.chain_call_actions[i], pin,
                                     flags=conf.program_flags[i]))
        mine = [_Slot(ln.params.get("priority", 50),
                      XDP.mask(ln.params.get("proceed_on", [])), Path(ln.pin_path),
                      link=ln) for ln in ordered]
        slots = sorted(mine + foreign, key=lambda s: s.priority)
        check_slot_count(len(slots), f"interface {iface}")
        if not slots:
            if attached:
                swap = kernel.remove_xdp(ifindex, netns=netns, expected_id=attached)
                if swap is not None:
                    ctx.undo.callback(swap.undo)
                _drop_old(ctx, old_dir)
            ctx.kernel.remove_pin_dir(root)
            return None

        rev = (revisions[-1][0] if revisions else 0) + 1
        new_rev = root / f"rev_{rev}"
        ctx.undo.callback(ctx.kernel.remove_pin_dir, new_rev)
        config = LibxdpConfig(
            version=version, chain_call_actions=tuple(s.actions for s in slots),
            run_prios=tuple(s.priority for s in slots),
            program_flags=tuple(s.flags for s in slots))
        disp_pin = new_rev / "attached"
        program_id = kernel.load_dispatcher(dispatcher_object(version), config.pack(), disp_pin)
        new_dir = xdp_dir / f"dispatch-{ifindex}-{program_id}"
        new_dir.mkdir(mode=0o700, exist_ok=True)
        ctx.undo.callback(ctx.kernel.remove_pin_dir, new_dir)
        for i, slot in enumerate(slots):
            func = "xdp_dispatcher" if len(slots) == 1 else f"prog{i}"
            ext_pin = slot.ext_pin
            if slot.link is not None:
                ensure_extension(ctx, slot.link, disp_pin, func,
                                           slot.link.details["object_path"])
                with ctx.kernel.open_pinned(ext_pin, "prog") as fd:
                    ctx.kernel.pin_fd(fd, new_rev / f"slot_{slot.link.link_id}")
            with ctx.kernel.open_pinned(ext_pin, "prog") as fd:
                ctx.kernel.pin_fd(fd, new_dir / f"prog{i}-prog")
            kernel.attach_extension(ext_pin, disp_pin, func, new_dir / f"prog{i}-link")
        swap = kernel.swap_xdp(ifindex, disp_pin, netns=netns,
                                  mode=attach_mode,
                                  expected_id=attached or None)
        ctx.undo.callback(swap.undo)
        if attached:
            _drop_old(ctx, old_dir)
        for _n, old in revisions:
            ctx.kernel.remove_pin_dir(old)
    ctx.log.info("xdp %s: libxdp v%d dispatcher %d with %d program(s) (%d not ours),"
                 " revision %d", attach_point, version, program_id, len(slots), len(foreign),
                 rev)
    return DispatcherRecord(attach_point=attach_point, type="xdp", mode="libxdp",
                            program_id=program_id, revision=rev, pin_dir=str(new_dir),
                            attach_mode=swap.mode)


def _our_extensions(ctx: HookContext, revisions: list[tuple[int, Path]]) -> set[int]:
    ids = set()
    for _n, rev_dir in revisions:
        for pin in rev_dir.glob("slot_*"):
            try:
                ids.add(ctx.kernel.program_id_of_pin(pin))
            except Exception as exc:
                ctx.log.warning("xdp: unreadable pin %s: %s", pin, exc)
    return ids


def _drop_old(ctx: HookContext, old_dir: Path) -> None:
    """Remove the old dispatcher's pins (its freplace links go with them),
    keeping them restorable until the call commits."""
    held = kernel.HeldPins(old_dir)
    ctx.kernel.remove_pin_dir(old_dir)
    ctx.undo.callback(held.restore)
