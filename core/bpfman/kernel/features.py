"""What this kernel can do, probed once at startup (cached).

Every False comes with a note that says why, in terms an operator can check
(`notes[field]`). Probes never attach anything to a real interface: the
TCX probe targets an ifindex that does not exist and reads the errno.
"""

from __future__ import annotations

import ctypes
import errno
import gzip
import os
import re
from contextlib import suppress
from functools import cache
from pathlib import Path

import attrs

from bpfman.kernel._sys import libbpf
from bpfman.kernel._sys.errors import SysError, errno_name
from bpfman.kernel._sys.structs import (
    BPF_LSM_MAC,
    BPF_PERF_EVENT,
    BPF_PROG_TYPE_EXT,
    BPF_PROG_TYPE_LSM,
    BPF_PROG_TYPE_SCHED_CLS,
    BPF_PROG_TYPE_SOCKET_FILTER,
    BPF_PROG_TYPE_TRACEPOINT,
    BPF_PROG_TYPE_TRACING,
    BPF_TCX_INGRESS,
    BPF_TRACE_FENTRY,
    BpfProgLoadOpts,
)
from bpfman.kernel.info import bpf_stats_enabled
from bpfman.kernel.links.perf_event import KPROBE_PMU
from bpfman.kernel.system import kernel_release

UPROBE_PMU = Path("/sys/bus/event_source/devices/uprobe")
LOCKDOWN = Path("/sys/kernel/security/lockdown")
ACTIVE_LSMS = Path("/sys/kernel/security/lsm")
# "r0 = 0; exit": the smallest valid program of any type.
_RETURN_ZERO = bytes.fromhex("b700000000000000" "9500000000000000")
_BOGUS_IFINDEX = 0x7FFFFFF0  # no interface has it; TCX answers ENODEV if supported


@attrs.frozen
class KernelFeatures:
    bpf_syscall: bool
    ext_programs: bool  # BPF_PROG_TYPE_EXT (freplace): libxdp-style dispatchers
    tracing_programs: bool  # BPF_PROG_TYPE_TRACING (fentry/fexit)
    lsm_programs: bool  # BPF_PROG_TYPE_LSM loads and the BPF LSM is active
    kprobes: bool  # kprobe PMU
    uprobes: bool  # uprobe PMU
    tcx: bool  # TCX links (6.6+)
    bpf_link_perf_event: bool  # bpf_link over perf events (5.15+)
    bpf_stats_enabled: bool  # kernel.bpf_stats_enabled (read fresh on each call)
    cgroup_programs: bool = False  # cgroup_skb/sock/sock_addr (CONFIG_CGROUP_BPF)
    sk_lookup: bool = False  # BPF_PROG_TYPE_SK_LOOKUP (5.9+)
    netfilter_programs: bool = False  # BPF_PROG_TYPE_NETFILTER (6.4+)
    notes: dict[str, str] = attrs.field(factory=dict)

    def as_dict(self) -> dict[str, bool]:
        """The boolean fields by name (notes excluded)."""
        return {
            f.name: getattr(self, f.name)
            for f in attrs.fields(KernelFeatures)
            if f.name != "notes"
        }


def probe_features() -> KernelFeatures:
    """Probe (once per process) and return the kernel's features."""
    static = _probe_static()
    stats = bpf_stats_enabled()
    notes = dict(static.notes)
    if not stats:
        notes["bpf_stats_enabled"] = (
            "kernel.bpf_stats_enabled is 0: run counts and run time are not collected"
        )
    else:
        notes.pop("bpf_stats_enabled", None)
    return attrs.evolve(static, bpf_stats_enabled=stats, notes=notes)


@cache
def _probe_static() -> KernelFeatures:
    notes: dict[str, str] = {}
    bpf_syscall = _libbpf_probe(BPF_PROG_TYPE_SOCKET_FILTER) == 1
    if not bpf_syscall:
        notes["bpf_syscall"] = "loading a socket filter failed: no usable bpf(2) here"

    ext = _libbpf_probe(BPF_PROG_TYPE_EXT) == 1
    if not ext:
        notes["ext_programs"] = _why_refused(
            "BPF_PROG_TYPE_EXT", BPF_PROG_TYPE_EXT, 0, "5.6"
        )
    tracing = _libbpf_probe(BPF_PROG_TYPE_TRACING) == 1
    if not tracing:
        notes["tracing_programs"] = _why_refused(
            "BPF_PROG_TYPE_TRACING", BPF_PROG_TYPE_TRACING, BPF_TRACE_FENTRY, "5.5"
        )

    lsm, lsm_note = _probe_lsm()
    if lsm_note:
        notes["lsm_programs"] = lsm_note

    kprobes = (KPROBE_PMU / "type").exists()
    if not kprobes:
        notes["kprobes"] = f"no kprobe PMU at {KPROBE_PMU} (kernel built without CONFIG_KPROBES)"
    uprobes = (UPROBE_PMU / "type").exists()
    if not uprobes:
        notes["uprobes"] = (
            f"no uprobe PMU at {UPROBE_PMU} (kernel built without CONFIG_UPROBE_EVENTS)"
        )

    tcx, tcx_note = _probe_tcx()
    if tcx_note:
        notes["tcx"] = tcx_note
    perf_link, perf_note = _probe_perf_link()
    if perf_note:
        notes["bpf_link_perf_event"] = perf_note

    fd_targets = _probe_fd_target_types(notes)
    return KernelFeatures(
        **fd_targets,
        bpf_syscall=bpf_syscall,
        ext_programs=ext,
        tracing_programs=tracing,
        lsm_programs=lsm,
        kprobes=kprobes,
        uprobes=uprobes,
        tcx=tcx,
        bpf_link_perf_event=perf_link,
        bpf_stats_enabled=False,
        notes=notes,
    )


# prog type, expected attach type, first kernel, the config option it needs
_FD_TARGET_TYPES = {
    "cgroup_programs": ("BPF_PROG_TYPE_CGROUP_SKB", 8, 1, "4.10", "CONFIG_CGROUP_BPF"),
    "sk_lookup": ("BPF_PROG_TYPE_SK_LOOKUP", 30, 36, "5.9", "CONFIG_NET"),
    "netfilter_programs": ("BPF_PROG_TYPE_NETFILTER", 32, 45, "6.4",
                           "CONFIG_NETFILTER_BPF_LINK"),
}


def _probe_fd_target_types(notes: dict[str, str]) -> dict[str, bool]:
    """Load a trivial program of each fd-target type (libbpf 1.1 cannot
    probe netfilter, so every one is loaded directly)."""
    found = {}
    for field, (name, prog_type, attach_type, version, config) in _FD_TARGET_TYPES.items():
        try:
            os.close(_load_probe(prog_type, expected_attach_type=attach_type))
            found[field] = True
        except SysError as exc:
            found[field] = False
            notes[field] = (f"loading {name} returned {errno_name(exc.errno or 0)}"
                            f" (needs Linux >= {version} with {config})")
    return found
def _probe_lsm() -> tuple[bool, str | None]:
    """LSM programs need the program type (CONFIG_BPF_LSM, no lockdown) and
    the BPF LSM in the active list (CONFIG_LSM or lsm= on the command line):
    without it they load and attach but never run, so that is refused too."""
    if _libbpf_probe(BPF_PROG_TYPE_LSM) != 1:
        return False, _why_refused("BPF_PROG_TYPE_LSM", BPF_PROG_TYPE_LSM, BPF_LSM_MAC, "5.7")
    try:
        active = ACTIVE_LSMS.read_text().strip().split(",")
    except OSError:
        return True, None  # securityfs not mounted: cannot tell, the load will say
    if "bpf" not in active:
        return False, (f"the BPF LSM is not active (active LSMs: {','.join(active)};"
                       " add bpf to the lsm= kernel command line or CONFIG_LSM)")
    return True, None


def _libbpf_probe(prog_type: int) -> int:
    # 1 supported, 0 not, <0 the probe itself failed.
    return int(libbpf.libbpf_probe_bpf_prog_type(prog_type, None))


def _load_probe(
    prog_type: int,
    *,
    expected_attach_type: int = 0,
    attach_btf_id: int = 0,
    log: ctypes.Array[ctypes.c_char] | None = None,
) -> int:
    """Load "r0 = 0; exit" as `prog_type`; returns the fd (caller closes)."""
    insns = ctypes.create_string_buffer(_RETURN_ZERO, len(_RETURN_ZERO))
    opts = BpfProgLoadOpts(
        sz=ctypes.sizeof(BpfProgLoadOpts),
        expected_attach_type=expected_attach_type,
        attach_btf_id=attach_btf_id,
    )
    if log is not None:
        opts.log_buf = ctypes.cast(log, ctypes.c_char_p)
        opts.log_size = len(log)
        opts.log_level = 1
    return int(
        libbpf.bpf_prog_load(
            prog_type, b"bpfman_probe", b"GPL", insns, len(_RETURN_ZERO) // 8,
            ctypes.byref(opts),
        )
    )


def _why_refused(name: str, prog_type: int, attach_type: int, min_version: str) -> str:
    """Explain libbpf's "unsupported" by loading the way libbpf's probe does
    (attach_btf_id 1, which a capable kernel rejects with EINVAL from the
    verifier) and reporting what came back instead."""
    log = ctypes.create_string_buffer(4096)
    try:
        fd = _load_probe(
            prog_type, expected_attach_type=attach_type, attach_btf_id=1, log=log
        )
    except SysError as exc:
        err = exc.errno or 0
        said = log.value.decode(errors="replace").strip().splitlines()
        if err == errno.EPERM and not said:
            return (
                f"loading {name} returned EPERM before the verifier ran, as root"
                f" ({_lockdown_text()}; read {LOCKDOWN})"
            )
        detail = f": {said[-1]}" if said else ""
        return f"loading {name} returned {errno_name(err)}{detail} (needs Linux >= {min_version})"
    os.close(fd)
    return f"libbpf's probe reported {name} unsupported although a probe load succeeded"


def _lockdown_text() -> str:
    state = _lockdown_state()
    return f"kernel lockdown={state}" if state else "likely kernel lockdown"


def _lockdown_state() -> str | None:
    """The active lockdown mode: securityfs if mounted, else the kernel
    config's forced mode."""
    with suppress(OSError):
        match = re.search(r"\[(\w+)\]", LOCKDOWN.read_text())
        if match:
            return match.group(1)
    with suppress(OSError), gzip.open("/proc/config.gz", "rt") as fh:
        for line in fh:
            match = re.match(r"CONFIG_LOCK_DOWN_KERNEL_FORCE_(\w+)=y", line)
            if match:
                return f"{match.group(1).lower()} (forced by the kernel config)"
    return None


def _probe_tcx() -> tuple[bool, str | None]:
    try:
        fd = _load_probe(BPF_PROG_TYPE_SCHED_CLS)
    except SysError as exc:
        supported = _release_at_least(6, 6)
        return supported, (
            None if supported else
            f"cannot load a sched_cls probe ({errno_name(exc.errno or 0)}); kernel < 6.6"
        )
    try:
        link = libbpf.bpf_link_create(fd, _BOGUS_IFINDEX, BPF_TCX_INGRESS, None)
        os.close(link)  # cannot happen: the ifindex does not exist
        return True, None
    except SysError as exc:
        if exc.errno == errno.ENODEV:
            return True, None  # TCX understood the request, found no device
        return False, (
            f"bpf_link_create(BPF_TCX_INGRESS) returned {errno_name(exc.errno or 0)}"
            " (TCX needs Linux >= 6.6)"
        )
    finally:
        os.close(fd)


def _probe_perf_link() -> tuple[bool, str | None]:
    try:
        fd = _load_probe(BPF_PROG_TYPE_TRACEPOINT)
    except SysError as exc:
        return False, f"cannot load a tracepoint probe ({errno_name(exc.errno or 0)})"
    try:
        # The program fd is not a perf event: a kernel with perf links gets
        # as far as looking the event up (EBADF); one without says EINVAL.
        link = libbpf.bpf_link_create(fd, fd, BPF_PERF_EVENT, None)
        os.close(link)
        return True, None
    except SysError as exc:
        if exc.errno == errno.EBADF:
            return True, None
        return False, (
            f"bpf_link_create(BPF_PERF_EVENT) returned {errno_name(exc.errno or 0)}"
            " (perf_event links need Linux >= 5.15)"
        )
    finally:
        os.close(fd)


def _release_at_least(major: int, minor: int) -> bool:
    match = re.match(r"(\d+)\.(\d+)", kernel_release())
    if match is None:
        return False
    return (int(match[1]), int(match[2])) >= (major, minor)
