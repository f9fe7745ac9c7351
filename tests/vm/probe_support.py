"""Shared helpers of the VM probe tests (test_vm_probes.py through the daemon,
test_vm_kernel.py through the kernel layer): tests/programs/kernel_probes.bpf.c's
slots, the function it probes, and the calls that drive it."""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

from bpfman import kernel

# do_unlinkat is in BTF, kallsyms and the ftrace list of any kernel with BTF; the
# syscall wrappers such as __x64_sys_getppid have no BTF function to fentry.
FUNCTION = "do_unlinkat"
KPROBE, KRETPROBE, KPROBE_OFFSET, FENTRY, FEXIT = SLOTS = range(5)  # kernel_probes.bpf.c


def unlink_files(n: int) -> None:
    """Exactly `n` calls of do_unlinkat by this process."""
    with tempfile.TemporaryDirectory(prefix="unlink") as tmp:
        paths = [Path(tmp) / str(i) for i in range(n)]
        for path in paths:
            path.touch()
        for path in paths:
            os.unlink(path)


def counts(maps_dir: Path) -> list[int]:
    """Every slot of the `counts` map of a loaded kernel_probes object."""
    out = []
    for slot in SLOTS:
        raw = kernel.map_lookup(maps_dir / "counts", struct.pack("<I", slot))
        assert raw is not None
        out.append(struct.unpack("<Q", raw[:8])[0])
    return out
