"""The kernel facade: the only way the daemon and plugins reach bpf(2),
bpffs and tracefs.

All functions block (plain `def`) and are called from the daemon's kernel
lane, never from the trio thread. Errors are `bpfman.errors` exceptions:
missing things are `*NotFound`/`StateDrift`, refused inputs
`InvalidArgument(field=...)`, missing kernel support `KernelFeatureMissing`,
and everything else `KernelError(op, errno)`. `bpfman.kernel._sys` (ctypes)
is private to this package.
"""

from __future__ import annotations

from bpfman.kernel.features import KernelFeatures, probe_features
from bpfman.kernel.info import (
    KernelLinkInfo,
    KernelMapInfo,
    iter_programs,
    link_info,
    map_info,
    map_info_of_pin,
    program_info,
    wait_program_gone,
)
from bpfman.kernel.links.perf_event import attach_kprobe, attach_tracepoint
from bpfman.kernel.links.raw_tracepoint import attach_raw_tracepoint
from bpfman.kernel.maps import map_delete, map_keys, map_lookup, map_update
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
)
from bpfman.kernel.pins import (
    link_id_of_pin,
    open_pinned,
    pin_exists,
    pin_fd,
    program_id_of_pin,
    remove_pin,
    remove_pin_dir,
)
from bpfman.kernel.system import ensure_bpffs, ensure_tracefs, kernel_release, raise_memlock

__all__ = [
    "GlobalVar",
    "KernelFeatures",
    "KernelLinkInfo",
    "KernelMapInfo",
    "LoadOptions",
    "LoadedObject",
    "MapSpec",
    "ObjectSpec",
    "ProgramLoad",
    "ProgramSpec",
    "attach_kprobe",
    "attach_raw_tracepoint",
    "attach_tracepoint",
    "ensure_bpffs",
    "ensure_tracefs",
    "inspect_object",
    "iter_programs",
    "kernel_release",
    "link_id_of_pin",
    "link_info",
    "load_object",
    "map_delete",
    "map_info",
    "map_info_of_pin",
    "map_keys",
    "map_lookup",
    "map_pin_name",
    "map_update",
    "open_pinned",
    "pin_exists",
    "pin_fd",
    "probe_features",
    "program_id_of_pin",
    "program_info",
    "raise_memlock",
    "remove_pin",
    "remove_pin_dir",
    "wait_program_gone",
]
