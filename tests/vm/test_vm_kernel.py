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
from probe_support import FENTRY, FEXIT, FUNCTION, KPROBE, KRETPROBE, counts, unlink_files
from xdp_support import XDP_DROP, XDP_PASS

from bpfman import kernel
from bpfman.kernel.bpffs import Bpffs
from bpfman.model.errors import LinkNotFound
from bpfman.testing import VethPair

N_CALLS = 50


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


def unpin_links(links: dict[Path, int]) -> None:
    """Detach by removing the link pins (pin -> kernel link id), each link gone."""
    for pin, kernel_link_id in links.items():
        kernel.remove_pin(pin)
        wait_link_gone(kernel_link_id)


def assert_stops_counting(maps_dir: Path, timeout: float = 10.0) -> None:
    """unlink() calls no longer move the counts, at the latest after `timeout`.

    Measured in the 6.12 VM: with a kprobe and a kretprobe on one function, the
    kretprobe program keeps running for up to ~2 s after its link is gone (a kretprobe
    alone stops at once), so "detached" is checked with a bounded wait, not at once."""
    deadline = time.monotonic() + timeout
    while True:
        before = counts(maps_dir)
        unlink_files(N_CALLS)
        if counts(maps_dir) == before:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"still counting {timeout}s after detaching: {before}")
        time.sleep(0.2)


def load(bpffs: Bpffs, path: Path, *programs: kernel.ProgramLoad,
         **global_data: bytes) -> kernel.LoadedObject:
    return kernel.load_object(kernel.LoadOptions(
        path=path, programs=programs, global_data=global_data, bpffs=bpffs))


def load_probes(bpffs: Bpffs, path: Path, *programs: kernel.ProgramLoad) -> kernel.LoadedObject:
    """Programs of kernel_probes.bpf.c, counting this process's calls only."""
    return load(bpffs, path, *programs, target_pid=struct.pack("<I", os.getpid()))


def count_calls(maps_dir: Path, *slots: int) -> list[int]:
    """How much each slot of kernel_probes' `counts` moves over N_CALLS unlink() calls."""
    before = counts(maps_dir)
    unlink_files(N_CALLS)
    after = counts(maps_dir)
    return [after[slot] - before[slot] for slot in slots]


# --- tests ---------------------------------------------------------------------------


def test_runs_in_the_vm_kernel() -> None:
    assert os.environ.get("BPFMAN_IN_VM") == "1"
    assert os.uname().release.startswith("6.12.")
    assert kernel.kernel_release() == os.uname().release
    assert Path("/sys/bus/event_source/devices/kprobe").is_dir(), "no kprobe PMU"


def test_kprobe_and_kretprobe_count_calls(
    bpffs: Bpffs, bpf_program: Callable[..., Path]
) -> None:
    loaded = load_probes(bpffs, bpf_program("kernel_probes"),
                         kernel.ProgramLoad("on_entry"), kernel.ProgramLoad("on_return"))
    links: dict[Path, int] = {}
    for link_id, (name, retprobe) in enumerate(
            (("on_entry", False), ("on_return", True)), start=1):
        pin = bpffs.link_pin(link_id)
        kernel_link_id = kernel.attach_kprobe(
            bpffs.program_pin(loaded.programs[name]), FUNCTION, 0, retprobe, pin)
        info = kernel.link_info(kernel_link_id)
        assert (info.type, info.program_id) == ("perf_event", loaded.programs[name])
        links[pin] = kernel_link_id

    assert count_calls(loaded.maps_dir, KPROBE, KRETPROBE) == [N_CALLS, N_CALLS]
    unpin_links(links)
    assert_stops_counting(loaded.maps_dir)


def test_fentry_and_fexit_count_calls(
    bpffs: Bpffs, bpf_program: Callable[..., Path]
) -> None:
    loaded = load_probes(bpffs, bpf_program("kernel_probes"),
                         kernel.ProgramLoad("on_fentry", attach_func=FUNCTION),
                         kernel.ProgramLoad("on_fexit"))  # its section names the function
    links: dict[Path, int] = {}
    for link_id, (name, attach) in enumerate(
            (("on_fentry", "fentry"), ("on_fexit", "fexit")), start=1):
        assert kernel.program_info(loaded.programs[name]).kernel_type == "tracing"
        pin = bpffs.link_pin(link_id)
        links[pin] = kernel.attach_tracing(bpffs.program_pin(loaded.programs[name]), attach, pin)

    assert count_calls(loaded.maps_dir, FENTRY, FEXIT) == [N_CALLS, N_CALLS]
    unpin_links(links)
    assert_stops_counting(loaded.maps_dir)


def test_extension_program_replaces_a_global_function(
    bpffs: Bpffs, bpf_program: Callable[..., Path]
) -> None:
    obj = bpf_program("freplace")
    target = load(bpffs, obj, kernel.ProgramLoad("with_decision"))
    target_pin = bpffs.program_pin(target.programs["with_decision"])
    assert xdp_verdict(target_pin) == XDP_PASS

    ext = load(bpffs, obj, kernel.ProgramLoad("replacement", attach_func="decide",
                                              attach_program_pin=target_pin))
    assert kernel.program_info(ext.programs["replacement"]).kernel_type == "ext"
    [bss] = [name for name in ext.map_ids if name.endswith(".bss")]
    replaced_calls = ext.maps_dir / kernel.map_pin_name(bss)

    with extension_link(bpffs.program_pin(ext.programs["replacement"])):
        assert xdp_verdict(target_pin) == XDP_DROP
        assert xdp_verdict(target_pin) == XDP_DROP
    # Detached: the original function decides again.
    assert xdp_verdict(target_pin) == XDP_PASS
    raw = kernel.map_lookup(replaced_calls, struct.pack("<I", 0))
    assert raw is not None and struct.unpack("<Q", raw[:8])[0] == 2


def test_xdp_loader_builds_a_multiprog_dispatcher(
    veth: VethPair, bpf_program: Callable[..., Path]
) -> None:
    """libxdp's dispatcher is freplace underneath: the host kernel makes xdp-loader fall
    back to one program; here both programs must chain behind a real dispatcher."""
    objects = {"xdp_pass_only": bpf_program("xdp_verdict"),
               "xdp_counter": bpf_program("xdp_counter")}  # both pass every packet

    def xdp_loader(*args: str) -> subprocess.CompletedProcess[str]:
        # nsenter, not `ip netns exec`: the latter remounts /sys, hiding the bpffs at
        # /sys/fs/bpf where libxdp pins its dispatcher.
        return subprocess.run(["nsenter", f"--net={veth.netns_a}", "xdp-loader", *args],
                              capture_output=True, text=True, timeout=120, check=False)

    try:
        for name, obj in objects.items():
            out = xdp_loader("load", "-m", "native", "-n", name, veth.if_a, str(obj))
            assert out.returncode == 0, out.stdout + out.stderr
            assert "Compatibility check for dispatcher program failed" not in out.stderr
        status = xdp_loader("status", veth.if_a)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "xdp_dispatcher" in status.stdout, status.stdout
        chained = [line.split()[2] for line in status.stdout.splitlines()
                   if line.strip().startswith("=>")]
        assert sorted(chained) == sorted(objects), status.stdout
    finally:
        xdp_loader("unload", "--all", veth.if_a)
