"""The `tc` dispatcher in freplace mode, for kernels that load extension
programs: `tc_dispatcher.bpf.c` with its config (slot count, proceed-on
masks, priorities) in .rodata, and each program loaded once as an extension
(pinned at its link's pin path, sharing the maps of the program as loaded)
and attached to stub ``prog<N>`` of every new dispatcher revision.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from pathlib import Path

from bpfman import dispatch
from bpfman.context import HookContext
from bpfman.kernel import libxdp as kx
from bpfman.model.records import LinkRecord

SOURCE = Path(__file__).with_name("tc_dispatcher.bpf.c")
PROGRAM = "tc_dispatcher"
CONFIG = struct.Struct("<B3x10I10I")  # struct tc_dispatcher_config, 84 bytes


def config(masks: Sequence[int], priorities: Sequence[int]) -> bytes:
    n = len(masks)
    dispatch.check_slot_count(n)
    pad = [0] * (dispatch.MAX_SLOTS - n)
    return CONFIG.pack(n, *(m & 0xFFFFFFFF for m in masks), *pad, *priorities, *pad)


def dispatcher_object() -> Path:
    """The dispatcher object, compiled at first use (`dispatch.build_dispatcher_object`)."""
    return dispatch.build_dispatcher_object(SOURCE, feature="tc_dispatcher",
                                            what="TC dispatcher")


def load(ctx: HookContext, ordered: list[LinkRecord], masks: Sequence[int],
         rev_dir: Path) -> tuple[int, Path]:
    """Load a dispatcher revision in `rev_dir` with every link's extension
    attached to its slot; returns (program id, pin of the dispatcher)."""
    pin = rev_dir / "dispatcher"
    cfg = config(masks, [ln.params.get("priority", 0) for ln in ordered])
    program_id = kx.load_dispatcher(dispatcher_object(), cfg, pin, program=PROGRAM)
    for i, ln in enumerate(ordered):
        dispatch.ensure_extension(ctx, ln, pin, f"prog{i}", ln.details["object"])
        kx.attach_extension(ln.pin_path, pin, f"prog{i}", rev_dir / f"link_{i}")
    return program_id, pin
