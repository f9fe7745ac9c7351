"""The `tc` dispatcher: one program that runs a TC direction's chain.

``freplace`` mode, for kernels that load extension programs:
`tc_dispatcher.bpf.c` with its config (slot count, proceed-on masks,
priorities) in .rodata, and each program loaded once as an extension (pinned
at its link's pin path, sharing the maps of the program as loaded) and
attached to stub ``prog<N>`` of every new dispatcher revision. ``static``
mode splices the chain into one program (`bpfman.dispatch.static`). Either
way the result is pinned in the revision directory, for the TC plugin to put
on its cls_bpf filter.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

from bpfman import kernel
from bpfman.context import HookContext
from bpfman.dispatch.freplace import build_dispatcher_object, ensure_extension
from bpfman.dispatch.semantics import MAX_SLOTS, TC, check_slot_count
from bpfman.dispatch.static import StaticSlot, pin_static_dispatcher
from bpfman.model.records import LinkRecord

SOURCE = Path(__file__).with_name("tc_dispatcher.bpf.c")
PROGRAM = "tc_dispatcher"
CONFIG = struct.Struct("<B3x10I10I")  # struct tc_dispatcher_config, 84 bytes


def config(masks: Sequence[int], priorities: Sequence[int]) -> bytes:
    n = len(masks)
    check_slot_count(n)
    pad = [0] * (MAX_SLOTS - n)
    return CONFIG.pack(n, *(m & 0xFFFFFFFF for m in masks), *pad, *priorities, *pad)


def dispatcher_object() -> Path:
    """The dispatcher object, compiled at first use (`build_dispatcher_object`)."""
    return build_dispatcher_object(SOURCE, feature="tc_dispatcher",
                                            what="TC dispatcher")


def load(ctx: HookContext, mode: str, ordered: list[LinkRecord], masks: Sequence[int],
         rev_dir: Path) -> tuple[int, Path]:
    """Load the chain `ordered` (proceed-on `masks`) as a dispatcher pinned in
    `rev_dir`, in `mode` ("freplace" or "static"); returns (program id, pin)."""
    if mode == "static":
        pin = rev_dir / "dispatcher"
        slots = [StaticSlot(
            program_pin=ctx.bpffs.program_pin(ln.program_id), object_path=ln.details["object"],
            program_name=ln.details["program_name"], proceed_on=mask,
            map_pin_dir=ln.details.get("map_pin_dir")) for ln, mask in zip(ordered, masks,
                                                                           strict=True)]
        return pin_static_dispatcher(slots, TC, name=PROGRAM, pin=pin), pin
    return _load_freplace(ctx, ordered, masks, rev_dir)


def _load_freplace(ctx: HookContext, ordered: list[LinkRecord], masks: Sequence[int],
                   rev_dir: Path) -> tuple[int, Path]:
    pin = rev_dir / "dispatcher"
    cfg = config(masks, [ln.params.get("priority", 0) for ln in ordered])
    program_id = kernel.load_dispatcher(dispatcher_object(), cfg, pin, program=PROGRAM)
    for i, ln in enumerate(ordered):
        ensure_extension(ctx, ln, pin, f"prog{i}", ln.details["object"])
        kernel.attach_extension(ln.pin_path, pin, f"prog{i}", rev_dir / f"link_{i}")
    return program_id, pin
