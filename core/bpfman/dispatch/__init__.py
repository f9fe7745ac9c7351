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

Modules: `semantics` (proceed-on masks, slot limit), `static` (splicing and
loading a static chain), `freplace` (dispatcher objects, extensions),
`libxdp` (libxdp's config and its multi-prog protocol), `revisions`
(an attach point's pin directories, one per rebuild), `xdp` and `tc` (making
an interface run a chain: the plugins call ``build`` with what they decided).

A plugin decides (defaults, mode, validation) and this package carries it
out; e.g. the XDP plugin's `bpfman_build_dispatcher` is one call to
`bpfman.dispatch.xdp.build` with its per-interface policy.

The old chain keeps running until the swap; if loading fails (verifier,
unspliceable component) nothing has changed.
"""

from __future__ import annotations

from bpfman.dispatch.freplace import build_dispatcher_object, ensure_extension
from bpfman.dispatch.revisions import Revisions
from bpfman.dispatch.semantics import (
    DISPATCHER_RETURN_BIT,
    MAX_SLOTS,
    TC,
    XDP,
    ChainSemantics,
    check_slot_count,
)
from bpfman.dispatch.static import (
    StaticSlot,
    check_spliceable,
    load_static_dispatcher,
    pin_static_dispatcher,
    static_dispatcher_insns,
)

__all__ = [
    "DISPATCHER_RETURN_BIT",
    "MAX_SLOTS",
    "TC",
    "XDP",
    "ChainSemantics",
    "Revisions",
    "StaticSlot",
    "build_dispatcher_object",
    "check_slot_count",
    "check_spliceable",
    "ensure_extension",
    "load_static_dispatcher",
    "pin_static_dispatcher",
    "static_dispatcher_insns",
]
