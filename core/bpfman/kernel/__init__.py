"""The kernel facade: how the daemon and plugins reach bpf(2), bpffs,
tracefs and netlink. The daemon's core and `bpfman.dispatch` also import the
facade's submodules for their own types; plugins import only this module.

All functions block (plain `def`) and are called from the daemon's kernel
lane, never from the trio thread. Errors are `bpfman.model.errors` exceptions:
missing things are `*NotFound`/`StateDrift`, refused inputs
`InvalidArgument(field=...)`, missing kernel support `KernelFeatureMissing`,
and everything else `KernelError(op, errno)`. `bpfman.kernel._sys` (ctypes)
is private to this package.

The names below load on first use (module `__getattr__`): a plugin that
imports `NetNs` does not pay for libbpf, pyroute2 and every link type, and
the CLI imports plugins to build `attach` options.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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

#: facade name -> (module, name in it)
_NAMES = {
    "map_decoders": ("bpfman.kernel.btfvalue", "map_decoders"),
    "KernelFeatures": ("bpfman.kernel.features", "KernelFeatures"),
    "probe_features": ("bpfman.kernel.features", "probe_features"),
    "HeldPins": ("bpfman.kernel.freplace", "HeldPins"),
    "attach_extension": ("bpfman.kernel.freplace", "attach_extension"),
    "libxdp_lock": ("bpfman.kernel.freplace", "libxdp_lock"),
    "load_dispatcher": ("bpfman.kernel.freplace", "load_dispatcher"),
    "load_extension": ("bpfman.kernel.freplace", "load_extension"),
    "read_dispatcher_config": ("bpfman.kernel.freplace", "read_dispatcher_config"),
    "KernelLinkInfo": ("bpfman.kernel.info", "KernelLinkInfo"),
    "KernelMapInfo": ("bpfman.kernel.info", "KernelMapInfo"),
    "iter_programs": ("bpfman.kernel.info", "iter_programs"),
    "link_info": ("bpfman.kernel.info", "link_info"),
    "map_info": ("bpfman.kernel.info", "map_info"),
    "map_info_of_pin": ("bpfman.kernel.info", "map_info_of_pin"),
    "program_ids": ("bpfman.kernel.info", "program_ids"),
    "program_info": ("bpfman.kernel.info", "program_info"),
    "programs_info": ("bpfman.kernel.info", "programs_info"),
    "wait_program_gone": ("bpfman.kernel.info", "wait_program_gone"),
    "detach_link": ("bpfman.kernel.links.detach", "detach_link"),
    "CGROUP_HOOKS": ("bpfman.kernel.links.fd_target", "CGROUP_HOOKS"),
    "NF_FAMILIES": ("bpfman.kernel.links.fd_target", "NF_FAMILIES"),
    "NF_HOOKS": ("bpfman.kernel.links.fd_target", "NF_HOOKS"),
    "Anchor": ("bpfman.kernel.links.fd_target", "Anchor"),
    "Chain": ("bpfman.kernel.links.fd_target", "Chain"),
    "FdLinkInfo": ("bpfman.kernel.links.fd_target", "FdLinkInfo"),
    "attach_cgroup": ("bpfman.kernel.links.fd_target", "attach_cgroup"),
    "attach_netfilter": ("bpfman.kernel.links.fd_target", "attach_netfilter"),
    "attach_netns": ("bpfman.kernel.links.fd_target", "attach_netns"),
    "cgroup_id": ("bpfman.kernel.links.fd_target", "cgroup_id"),
    "detach_pinned_link": ("bpfman.kernel.links.fd_target", "detach_pinned_link"),
    "fd_link_info": ("bpfman.kernel.links.fd_target", "fd_link_info"),
    "query_cgroup": ("bpfman.kernel.links.fd_target", "query_cgroup"),
    "attach_kprobe": ("bpfman.kernel.links.perf_event", "attach_kprobe"),
    "attach_perf_event": ("bpfman.kernel.links.perf_event", "attach_perf_event"),
    "attach_tracepoint": ("bpfman.kernel.links.perf_event", "attach_tracepoint"),
    "attach_uprobe": ("bpfman.kernel.links.perf_event", "attach_uprobe"),
    "online_cpus": ("bpfman.kernel.links.perf_event", "online_cpus"),
    "attach_raw_tracepoint": ("bpfman.kernel.links.raw_tracepoint", "attach_raw_tracepoint"),
    "TcxAnchor": ("bpfman.kernel.links.tcx", "Anchor"),
    "TcxChain": ("bpfman.kernel.links.tcx", "TcxChain"),
    "TcxEntry": ("bpfman.kernel.links.tcx", "TcxEntry"),
    "TcxLinkInfo": ("bpfman.kernel.links.tcx", "TcxLinkInfo"),
    "attach_tcx": ("bpfman.kernel.links.tcx", "attach_tcx"),
    "detach_tcx": ("bpfman.kernel.links.tcx", "detach_tcx"),
    "query_tcx": ("bpfman.kernel.links.tcx", "query_tcx"),
    "tcx_link_info": ("bpfman.kernel.links.tcx", "tcx_link_info"),
    "update_tcx_link": ("bpfman.kernel.links.tcx", "update_tcx_link"),
    "attach_tracing": ("bpfman.kernel.links.tracing", "attach_tracing"),
    "XdpSwap": ("bpfman.kernel.links.xdp", "XdpSwap"),
    "attached_xdp_program": ("bpfman.kernel.links.xdp", "attached_xdp_program"),
    "remove_xdp": ("bpfman.kernel.links.xdp", "remove_xdp"),
    "swap_xdp": ("bpfman.kernel.links.xdp", "swap_xdp"),
    "map_delete": ("bpfman.kernel.maps", "map_delete"),
    "map_keys": ("bpfman.kernel.maps", "map_keys"),
    "map_lookup": ("bpfman.kernel.maps", "map_lookup"),
    "map_update": ("bpfman.kernel.maps", "map_update"),
    "interface_index": ("bpfman.kernel.netlink", "interface_index"),
    "NetNs": ("bpfman.kernel.netns", "NetNs"),
    "GlobalVar": ("bpfman.kernel.objects", "GlobalVar"),
    "LoadedObject": ("bpfman.kernel.objects", "LoadedObject"),
    "LoadOptions": ("bpfman.kernel.objects", "LoadOptions"),
    "MapSpec": ("bpfman.kernel.objects", "MapSpec"),
    "ObjectSpec": ("bpfman.kernel.objects", "ObjectSpec"),
    "ProgramLoad": ("bpfman.kernel.objects", "ProgramLoad"),
    "ProgramSpec": ("bpfman.kernel.objects", "ProgramSpec"),
    "inspect_object": ("bpfman.kernel.objects", "inspect_object"),
    "load_object": ("bpfman.kernel.objects", "load_object"),
    "map_pin_name": ("bpfman.kernel.objects", "map_pin_name"),
    "repin_maps": ("bpfman.kernel.objects", "repin_maps"),
    "link_id_of_pin": ("bpfman.kernel.pins", "link_id_of_pin"),
    "open_pinned": ("bpfman.kernel.pins", "open_pinned"),
    "pin_exists": ("bpfman.kernel.pins", "pin_exists"),
    "pin_fd": ("bpfman.kernel.pins", "pin_fd"),
    "program_id_of_pin": ("bpfman.kernel.pins", "program_id_of_pin"),
    "remove_pin": ("bpfman.kernel.pins", "remove_pin"),
    "remove_pin_dir": ("bpfman.kernel.pins", "remove_pin_dir"),
    "repin": ("bpfman.kernel.pins", "repin"),
    "RelocatedProgram": ("bpfman.kernel.splice", "RelocatedProgram"),
    "TestRunResult": ("bpfman.kernel.splice", "TestRunResult"),
    "load_program_insns": ("bpfman.kernel.splice", "load_program_insns"),
    "relocated_program": ("bpfman.kernel.splice", "relocated_program"),
    "test_run": ("bpfman.kernel.splice", "test_run"),
    "check_kernel_function": ("bpfman.kernel.symbols", "check_kernel_function"),
    "check_process": ("bpfman.kernel.symbols", "check_process"),
    "process_root": ("bpfman.kernel.symbols", "process_root"),
    "resolve_user_target": ("bpfman.kernel.symbols", "resolve_user_target"),
    "user_function_offset": ("bpfman.kernel.symbols", "user_function_offset"),
    "enable_bpf_stats": ("bpfman.kernel.system", "enable_bpf_stats"),
    "ensure_bpffs": ("bpfman.kernel.system", "ensure_bpffs"),
    "ensure_tracefs": ("bpfman.kernel.system", "ensure_tracefs"),
    "kernel_release": ("bpfman.kernel.system", "kernel_release"),
    "raise_memlock": ("bpfman.kernel.system", "raise_memlock"),
    "TcFilter": ("bpfman.kernel.tc", "TcFilter"),
    "attach_bpf_filter": ("bpfman.kernel.tc", "attach_bpf_filter"),
    "detach_filter": ("bpfman.kernel.tc", "detach_filter"),
    "ensure_clsact": ("bpfman.kernel.tc", "ensure_clsact"),
    "list_filters": ("bpfman.kernel.tc", "list_filters"),
    "qdisc_kinds": ("bpfman.kernel.tc", "qdisc_kinds"),
    "remove_clsact": ("bpfman.kernel.tc", "remove_clsact"),
}


def __getattr__(name: str) -> Any:
    where = _NAMES.get(name)
    if where is None:
        try:  # a submodule, e.g. `kernel.pins`
            return importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise  # a submodule failing to import is that, not a missing name
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(where[0]), where[1])
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


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
