"""Attach raw tracepoint programs (BPF_RAW_TRACEPOINT_OPEN, which returns a
bpf_link since 5.7) and pin the link."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from bpfman.kernel import pins
from bpfman.kernel._sys import libbpf
from bpfman.kernel._sys.errors import kernel_errors
from bpfman.kernel.links import pin_new_link, require_program_type
from bpfman.model.errors import AttachTargetNotFound, InvalidArgument

_NAME = re.compile(r"^[A-Za-z0-9_]+$")


def attach_raw_tracepoint(program_pin: Path, name: str, link_pin: Path) -> int:
    """Attach the raw_tracepoint program pinned at `program_pin` to the raw
    tracepoint `name` (e.g. "sys_enter") and pin the link at `link_pin`.

    :return: the kernel link id.
    :raises AttachTargetNotFound: no raw tracepoint of that name.
    """
    if not _NAME.match(name):
        raise InvalidArgument(f"invalid raw tracepoint name {name!r}", field="name")
    missing = {errno.ENOENT: lambda _e: AttachTargetNotFound(
        f"no raw tracepoint {name}", raw_tracepoint=name)}
    with pins.open_pinned(program_pin, "prog") as prog_fd:
        require_program_type(
            prog_fd, ("raw_tracepoint", "raw_tracepoint_writable"), f"raw tracepoint {name}"
        )
        with kernel_errors("bpf_raw_tracepoint_open", missing, raw_tracepoint=name):
            link_fd = libbpf.bpf_raw_tracepoint_open(name.encode(), prog_fd)
        try:
            return pin_new_link(link_fd, Path(link_pin))
        finally:
            os.close(link_fd)
