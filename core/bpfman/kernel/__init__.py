"""The kernel facade: how the daemon and plugins reach bpf(2), bpffs,
tracefs and netlink. The daemon's core and `bpfman.dispatch` also import the
facade's submodules for their own types; plugins import only this module.

All functions block (plain `def`) and are called from the daemon's kernel
lane, never from the trio thread. Errors are `bpfman.model.errors` exceptions:
missing things are `*NotFound`/`StateDrift`, refused inputs
`InvalidArgument(field=...)`, missing kernel support `KernelFeatureMissing`,
and everything else `KernelError(op, errno)`. `bpfman.kernel._sys` (ctypes)
is private to this package.
"""

from __future__ import annotations

from bpfman.kernel.btfvalue import map_decoders
from bpfman.kernel.features import KernelFeatures, probe_features
from bpfman.kernel.freplace import (
    HeldPins,
    attach_extension,
    libxdp_lock,
    load_dispatcher,
    load_extension,
    read_dispatcher_config,
)
from bpfman.kernel.info import (
    KernelLinkInfo,
    KernelMapInfo,
    iter_programs,
    link_info,
    map_info,
    map_info_of_pin,
    program_ids,
    program_info,
    programs_info,
    wait_program_gone,
)
from bpfman.kernel.links.detach import detach_link
from bpfman.kernel.links.fd_target import (
    CGROUP_HOOKS,
    NF_FAMILIES,
    NF_HOOKS,
    Anchor,
    Chain,
    FdLinkInfo,
    attach_cgroup,
    attach_netfilter,
    attach_netns,
    cgroup_id,
    detach_pinned_link,
    fd_link_info,
    query_cgroup,
)
from bpfman.kernel.links.perf_event import (
    attach_kprobe,
    attach_perf_event,
    attach_tracepoint,
    attach_uprobe,
    online_cpus,
)
from bpfman.kernel.links.raw_tracepoint import attach_raw_tracepoint
from bpfman.kernel.links.tcx import Anchor as TcxAnchor
from bpfman.kernel.links.tcx import (
    TcxChain,
    TcxEntry,
    TcxLinkInfo,
    attach_tcx,
    detach_tcx,
    query_tcx,
    tcx_link_info,
    update_tcx_link,
)
from bpfman.kernel.links.tracing import attach_tracing
from bpfman.kernel.links.xdp import XdpSwap, attached_xdp_program, remove_xdp, swap_xdp
from bpfman.kernel.maps import map_delete, map_keys, map_lookup, map_update
from bpfman.kernel.netlink import interface_index
from bpfman.kernel.netns import NetNs
from bpfman.kernel.objects import (
    GlobalVar,
    LoadedObject,
    LoadOptions,
    MapSpec,
    ObjectSpec,
    ProgramLoad,
    ProgramSpec,
    inspect_object,
    load_object,
    map_pin_name,
    repin_maps,
)
from bpfman.kernel.pins import (
    link_id_of_pin,
    open_pinned,
    pin_exists,
    pin_fd,
    program_id_of_pin,
    remove_pin,
    remove_pin_dir,
    repin,
)
from bpfman.kernel.splice import (
    RelocatedProgram,
    TestRunResult,
    load_program_insns,
    relocated_program,
    test_run,
)
from bpfman.kernel.symbols import (
    check_kernel_function,
    check_process,
    process_root,
    resolve_user_target,
    user_function_offset,
)
from bpfman.kernel.system import (
    enable_bpf_stats,
    ensure_bpffs,
    ensure_tracefs,
    kernel_release,
    raise_memlock,
)
from bpfman.kernel.tc import (
    TcFilter,
    attach_bpf_filter,
    detach_filter,
    ensure_clsact,
    list_filters,
    qdisc_kinds,
    remove_clsact,
)

__all__ = [
    "CGROUP_HOOKS",
    "NF_FAMILIES",
    "NF_HOOKS",
    "Anchor",
    "Chain",
    "FdLinkInfo",
    "GlobalVar",
    "HeldPins",
    "KernelFeatures",
    "KernelLinkInfo",
    "KernelMapInfo",
    "LoadOptions",
    "LoadedObject",
    "MapSpec",
    "NetNs",
    "ObjectSpec",
    "ProgramLoad",
    "ProgramSpec",
    "RelocatedProgram",
    "TcFilter",
    "TcxAnchor",
    "TcxChain",
    "TcxEntry",
    "TcxLinkInfo",
    "TestRunResult",
    "XdpSwap",
    "attach_bpf_filter",
    "attach_cgroup",
    "attach_extension",
    "attach_kprobe",
    "attach_netfilter",
    "attach_netns",
    "attach_perf_event",
    "attach_raw_tracepoint",
    "attach_tcx",
    "attach_tracepoint",
    "attach_tracing",
    "attach_uprobe",
    "attached_xdp_program",
    "cgroup_id",
    "check_kernel_function",
    "check_process",
    "detach_filter",
    "detach_link",
    "detach_pinned_link",
    "detach_tcx",
    "enable_bpf_stats",
    "ensure_bpffs",
    "ensure_clsact",
    "ensure_tracefs",
    "fd_link_info",
    "inspect_object",
    "interface_index",
    "iter_programs",
    "kernel_release",
    "libxdp_lock",
    "link_id_of_pin",
    "link_info",
    "list_filters",
    "load_dispatcher",
    "load_extension",
    "load_object",
    "load_program_insns",
    "map_decoders",
    "map_delete",
    "map_info",
    "map_info_of_pin",
    "map_keys",
    "map_lookup",
    "map_pin_name",
    "map_update",
    "online_cpus",
    "open_pinned",
    "pin_exists",
    "pin_fd",
    "probe_features",
    "process_root",
    "program_id_of_pin",
    "program_ids",
    "program_info",
    "programs_info",
    "qdisc_kinds",
    "query_cgroup",
    "query_tcx",
    "raise_memlock",
    "read_dispatcher_config",
    "relocated_program",
    "remove_clsact",
    "remove_pin",
    "remove_pin_dir",
    "remove_xdp",
    "repin",
    "repin_maps",
    "resolve_user_target",
    "swap_xdp",
    "tcx_link_info",
    "test_run",
    "update_tcx_link",
    "user_function_offset",
    "wait_program_gone",
]
