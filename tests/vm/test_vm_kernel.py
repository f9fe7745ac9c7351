"""Kernel features the CI host kernel refuses (no kprobes; fentry/fexit and extension
programs fail under lockdown), tested inside Debian's 6.12 kernel.

Every test here runs inside the VM (see bpfman_vm_harness.py), through the kernel layer
(`bpfman.kernel`) with a private bpffs per test. Only attaching an extension program (not
in the kernel layer yet) is a direct ctypes call into libbpf.
"""

from __future__ import annotations

import ctypes
import os
import struct
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from bpfman import kernel
from bpfman.bpffs import Bpffs
from bpfman.errors import LinkNotFound
from bpfman.testing import VethPair, compile_bpf

PROGRAMS = Path(__file__).parent / "programs"
N_CALLS = 50
# One call per os.getppid() (glibc does not cache getppid). kprobes take the syscall
# wrapper's name; fentry_counter.bpf.c uses __do_sys_getppid, because in 6.12 the
# wrapper is only an alias of it (same address) and only it is in BTF.
GETPPID = "__x64_sys_getppid"
XDP_DROP, XDP_PASS = 1, 2


# --- the one libbpf call the kernel layer does not offer (yet) --------------------------

_libbpf = ctypes.CDLL("libbpf.so.1", use_errno=True)
_libbpf.bpf_raw_tracepoint_open.argtypes = (ctypes.c_char_p, ctypes.c_int)


@contextmanager
def extension_link(program_pin: Path) -> Iterator[int]:
    """Attach an extension (freplace) program to the function it was loaded for
    (BPF_RAW_TRACEPOINT_OPEN with no name); closing the link fd detaches it."""
    with kernel.open_pinned(program_pin, "prog") as prog_fd:
        link_fd = _libbpf.bpf_raw_tracepoint_open(None, prog_fd)
    if link_fd < 0:  # libbpf 1.x returns -errno
        raise OSError(-link_fd, f"attaching {program_pin}: {os.strerror(-link_fd)}")
    try:
        yield link_fd
    finally:
        os.close(link_fd)


def xdp_verdict(program_pin: Path) -> int:
    """The XDP program's verdict on one 64-byte packet (BPF_PROG_TEST_RUN)."""
    return kernel.test_run(program_pin, bytes(64)).retval


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vm_program(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Compile ``tests/vm/programs/<name>.bpf.c`` with optional -D defines (inside the
    VM the checkout is read-only: the objects go to a temp dir)."""
    out = tmp_path_factory.mktemp("vm_bpf")

    def build(name: str, **defines: str) -> Path:
        return compile_bpf(PROGRAMS / f"{name}.bpf.c", out, defines=defines)

    return build


@pytest.fixture
def bpffs(tmp_path: Path) -> Iterator[Bpffs]:
    """A private bpffs: unmounting it drops every pin, so nothing outlives the test."""
    root = tmp_path / "bpffs"  # no dots in the path: libbpf rewrites them in pins
    kernel.ensure_bpffs(root)
    try:
        fs = Bpffs(root)
        fs.ensure_dirs()
        yield fs
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def counts(maps_dir: Path) -> tuple[int, int]:
    """Slots 0 and 1 of the `counts` ARRAY map of a loaded object."""
    values = []
    for slot in (0, 1):
        raw = kernel.map_lookup(maps_dir / "counts", struct.pack("<I", slot))
        assert raw is not None
        values.append(struct.unpack("<Q", raw[:8])[0])
    return values[0], values[1]


def call_getppid(n: int) -> None:
    for _ in range(n):
        os.getppid()


def wait_link_gone(kernel_link_id: int, timeout: float = 10.0) -> None:
    """Unpinning a link drops the pin's reference; wait (bounded) until the kernel has
    freed it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            kernel.link_info(kernel_link_id)
        except LinkNotFound:
            return
        time.sleep(0.05)
    raise AssertionError(f"link {kernel_link_id} still exists {timeout}s after unpinning")


def assert_stops_counting(maps_dir: Path, timeout: float = 10.0) -> None:
    """getppid() calls no longer move the counts, at the latest after `timeout`.

    Measured in the 6.12 VM: with a kprobe and a kretprobe on one function, the
    kretprobe program keeps running for up to ~2 s after its link is gone (a kretprobe
    alone stops at once), so "detached" is checked with a bounded wait, not at once."""
    deadline = time.monotonic() + timeout
    while True:
        before = counts(maps_dir)
        call_getppid(N_CALLS)
        if counts(maps_dir) == before:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still counting {timeout}s after detaching: {before}")
        time.sleep(0.2)


def load(bpffs: Bpffs, path: Path, *programs: kernel.ProgramLoad,
         **global_data: bytes) -> kernel.LoadedObject:
    return kernel.load_object(kernel.LoadOptions(
        path=path, programs=programs, global_data=global_data, bpffs=bpffs))


# --- tests ---------------------------------------------------------------------------


def test_runs_in_the_vm_kernel() -> None:
    assert os.environ.get("BPFMAN_IN_VM") == "1"
    assert os.uname().release.startswith("6.12.")
    assert kernel.kernel_release() == os.uname().release
    assert Path("/sys/bus/event_source/devices/kprobe").is_dir(), "no kprobe PMU"


def test_kprobe_and_kretprobe_count_calls(
    bpffs: Bpffs, vm_program: Callable[..., Path]
) -> None:
    loaded = load(bpffs, vm_program("kprobe_counter"),
                  kernel.ProgramLoad("count_entry"), kernel.ProgramLoad("count_return"),
                  target_pid=struct.pack("<I", os.getpid()))
    links: dict[Path, int] = {}
    for link_id, (name, retprobe) in enumerate(
            (("count_entry", False), ("count_return", True)), start=1):
        pin = bpffs.link_pin(link_id)
        kernel_link_id = kernel.attach_kprobe(
            bpffs.program_pin(loaded.programs[name]), GETPPID, 0, retprobe, pin)
        info = kernel.link_info(kernel_link_id)
        assert (info.type, info.program_id) == ("perf_event", loaded.programs[name])
        links[pin] = kernel_link_id

    before = counts(loaded.maps_dir)
    call_getppid(N_CALLS)
    after = counts(loaded.maps_dir)
    assert (after[0] - before[0], after[1] - before[1]) == (N_CALLS, N_CALLS)

    # Removing the link pins detaches: the counts stop moving.
    for pin, kernel_link_id in links.items():
        kernel.remove_pin(pin)
        wait_link_gone(kernel_link_id)
    assert_stops_counting(loaded.maps_dir)


def test_fentry_and_fexit_count_calls(
    bpffs: Bpffs, vm_program: Callable[..., Path]
) -> None:
    loaded = load(bpffs, vm_program("fentry_counter"),
                  kernel.ProgramLoad("fentry_getppid"), kernel.ProgramLoad("fexit_getppid"),
                  target_pid=struct.pack("<I", os.getpid()))
    links: dict[Path, int] = {}
    for link_id, (name, attach) in enumerate(
            (("fentry_getppid", "fentry"), ("fexit_getppid", "fexit")), start=1):
        assert kernel.program_info(loaded.programs[name]).kernel_type == "tracing"
        pin = bpffs.link_pin(link_id)
        links[pin] = kernel.attach_tracing(bpffs.program_pin(loaded.programs[name]), attach, pin)

    call_getppid(N_CALLS)
    assert counts(loaded.maps_dir) == (N_CALLS, N_CALLS)

    for pin, kernel_link_id in links.items():
        kernel.remove_pin(pin)
        wait_link_gone(kernel_link_id)
    assert_stops_counting(loaded.maps_dir)


def test_extension_program_replaces_a_global_function(
    bpffs: Bpffs, vm_program: Callable[..., Path]
) -> None:
    target = load(bpffs, vm_program("xdp_target"), kernel.ProgramLoad("xdp_main"))
    target_pin = bpffs.program_pin(target.programs["xdp_main"])
    assert xdp_verdict(target_pin) == XDP_PASS

    ext = load(bpffs, vm_program("xdp_ext"),
               kernel.ProgramLoad("xdp_drop_all", attach_func="xdp_verdict",
                                  attach_program_pin=target_pin))
    assert kernel.program_info(ext.programs["xdp_drop_all"]).kernel_type == "ext"
    [bss] = [name for name in ext.map_ids if name.endswith(".bss")]
    replaced_calls = ext.maps_dir / kernel.map_pin_name(bss)

    with extension_link(bpffs.program_pin(ext.programs["xdp_drop_all"])):
        assert xdp_verdict(target_pin) == XDP_DROP
        assert xdp_verdict(target_pin) == XDP_DROP
    # Detached: the original function decides again.
    assert xdp_verdict(target_pin) == XDP_PASS
    raw = kernel.map_lookup(replaced_calls, struct.pack("<I", 0))
    assert raw is not None and struct.unpack("<Q", raw[:8])[0] == 2


def test_xdp_loader_builds_a_multiprog_dispatcher(
    veth: VethPair, vm_program: Callable[..., Path]
) -> None:
    """libxdp's dispatcher is freplace underneath: the host kernel makes xdp-loader fall
    back to one program; here both programs must chain behind a real dispatcher."""
    objects = {name: vm_program("xdp_pass", PROG_NAME=name) for name in ("pass_a", "pass_b")}

    def xdp_loader(*args: str) -> subprocess.CompletedProcess[str]:
        # nsenter, not `ip netns exec`: the latter remounts /sys, hiding the bpffs at
        # /sys/fs/bpf where libxdp pins its dispatcher.
        return subprocess.run(["nsenter", f"--net={veth.netns_a}", "xdp-loader", *args],
                              capture_output=True, text=True, timeout=120, check=False)

    try:
        for obj in objects.values():
            out = xdp_loader("load", "-m", "native", veth.if_a, str(obj))
            assert out.returncode == 0, out.stdout + out.stderr
            assert "Compatibility check for dispatcher program failed" not in out.stderr
        status = xdp_loader("status", veth.if_a)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "xdp_dispatcher" in status.stdout, status.stdout
        chained = [line.split()[2] for line in status.stdout.splitlines()
                   if line.strip().startswith("=>")]
        assert sorted(chained) == ["pass_a", "pass_b"], status.stdout
    finally:
        xdp_loader("unload", "--all", veth.if_a)
