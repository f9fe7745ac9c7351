"""Attach tracing programs (fentry/fexit) to the kernel function they were
loaded for, and LSM programs to the LSM hook they were loaded for, through a
BPF trampoline: bpf_link_create(prog, 0, BPF_TRACE_FENTRY|BPF_TRACE_FEXIT|
BPF_LSM_MAC), then pin the link.

The target is fixed at load time (its BTF id is in the program), so attach
takes no target. The kernel attaches with the program's own expected attach
type whatever the request says, so the link's type is checked before it is
pinned: a fexit program requested as fentry is refused, not silently run.
"""

from __future__ import annotations

import os
from pathlib import Path

from bpfman.kernel import pins
from bpfman.kernel._sys import libbpf
from bpfman.kernel._sys.errors import kernel_errors
from bpfman.kernel._sys.structs import BPF_LSM_MAC, BPF_TRACE_FENTRY, BpfLinkInfo
from bpfman.kernel.links import pin_new_link, require_program_type
from bpfman.model.errors import InvalidArgument

# UAPI enum bpf_attach_type: BPF_TRACE_FEXIT follows BPF_TRACE_FENTRY.
TRACING_ATTACH_TYPES = {"fentry": BPF_TRACE_FENTRY, "fexit": BPF_TRACE_FENTRY + 1,
                        "lsm": BPF_LSM_MAC}
# libbpf's program type name each attach type needs.
_PROGRAM_TYPE = {"fentry": "tracing", "fexit": "tracing", "lsm": "lsm"}


def attach_tracing(program_pin: Path, attach: str, link_pin: Path) -> int:
    """Attach the tracing program pinned at `program_pin` as `attach`
    ("fentry" or "fexit"; "lsm" for an LSM program) and pin the link at
    `link_pin`.

    :return: the kernel link id.
    :raises InvalidArgument: not a tracing program, or one loaded for the
        other attach type (e.g. a ``SEC("fexit/...")`` program as fentry).
    """
    attach_type = TRACING_ATTACH_TYPES.get(attach)
    if attach_type is None:
        raise InvalidArgument(f"unknown tracing attach type {attach!r}", field="type")
    with pins.open_pinned(Path(program_pin), "prog") as prog_fd:
        require_program_type(prog_fd, (_PROGRAM_TYPE[attach],), attach)
        with kernel_errors("bpf_link_create", attach=attach):
            link_fd = libbpf.bpf_link_create(prog_fd, 0, attach_type, None)
        try:
            actual = _tracing_attach_type(link_fd)
            if actual != attach_type:
                names = {v: k for k, v in TRACING_ATTACH_TYPES.items()}
                raise InvalidArgument(
                    f"the program was loaded as {names.get(actual, actual)}, not {attach}"
                    " (its ELF section decides)", field="type",
                )
            return pin_new_link(link_fd, Path(link_pin))
        finally:
            os.close(link_fd)  # an unpinned link dies with its fd


def _tracing_attach_type(link_fd: int) -> int:
    info = BpfLinkInfo()
    pins.object_info(link_fd, info, "bpf_obj_get_info_by_fd(link)")
    # union bpf_link_info.tracing starts with __u32 attach_type.
    return int.from_bytes(bytes(info.union[:4]), "little")

