"""Links: one module per attach mechanism (perf_event.py covers tracepoints
and kprobes, raw_tracepoint.py raw tracepoints). Each `attach_<kind>` takes
the program's pin and the link's pin (from `bpfman.kernel.bpffs`), validates
before any syscall, and returns the kernel link id. A link lives as long as
its pin: unpinning it (`pins.remove_pin`) detaches. On failure nothing is
pinned and every fd is closed.

This module holds what every mechanism shares.
"""

from __future__ import annotations

from pathlib import Path

from bpfman.kernel import pins
from bpfman.kernel._sys import libbpf
from bpfman.kernel._sys.structs import BpfProgInfo
from bpfman.model.errors import InvalidArgument


def program_type(prog_fd: int) -> str:
    """libbpf's name of the type of the program behind `prog_fd`."""
    info = BpfProgInfo()
    pins.object_info(prog_fd, info, "bpf_obj_get_info_by_fd(program)")
    return libbpf.prog_type_name(info.type)


def require_program_type(prog_fd: int, allowed: tuple[str, ...], target: str) -> None:
    """Refuse, before any syscall, a program the kernel would reject with a
    bare EINVAL (an xdp program on a tracepoint, say)."""
    found = program_type(prog_fd)
    if found not in allowed:
        raise InvalidArgument(
            f"program of type {found} cannot attach to {target}"
            f" (needs type {' or '.join(allowed)})",
            field="program",
            program_type=found,
        )


def pin_new_link(link_fd: int, link_pin: Path) -> int:
    """Pin a freshly created link and return its kernel id. The id is read
    first, so a failure leaves no pin; the caller closes `link_fd`, which
    destroys an unpinned link."""
    kernel_link_id = pins.link_id_of_fd(link_fd)
    pins.pin_fd(link_fd, link_pin)
    return kernel_link_id
