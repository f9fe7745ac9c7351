"""Attach through a perf event: tracepoints (tracefs event ids), kprobes
(the kprobe PMU), uprobes (the uprobe PMU) and sampling events
(`attach_perf_event`: software/hardware counters, one event per CPU).
One mechanism: perf_event_open(2), then bpf_link_create(prog, perf_fd,
BPF_PERF_EVENT), then pin the link. The link holds the perf event, so both
fds are closed once it is pinned.
"""

from __future__ import annotations

import ctypes
import errno
import os
import re
from collections.abc import Callable, Mapping
from contextlib import ExitStack, suppress
from pathlib import Path

from bpfman.kernel import pins
from bpfman.kernel._sys import libbpf, libc
from bpfman.kernel._sys.errors import SysError, kernel_errors
from bpfman.kernel._sys.structs import (
    BPF_PERF_EVENT,
    PERF_ATTR_FLAG_FREQ,
    PERF_ATTR_SIZE_VER7,
    PERF_FLAG_PID_CGROUP,
    PERF_TYPE_HARDWARE,
    PERF_TYPE_TRACEPOINT,
    PerfEventAttr,
)
from bpfman.kernel.links import pin_new_link, require_program_type
from bpfman.kernel.system import ensure_tracefs
from bpfman.model.errors import (
    AttachTargetNotFound,
    BpfmanError,
    Conflict,
    InvalidArgument,
    KernelFeatureMissing,
    PermissionDenied,
)

KPROBE_PMU = Path("/sys/bus/event_source/devices/kprobe")
UPROBE_PMU = Path("/sys/bus/event_source/devices/uprobe")
# tracefs system/event names: letters, digits, '_', and '-'/'.' inside
# (e.g. "xhci-hcd"); never '/', never "." or "..".
_EVENT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
# kernel symbols, including compiler clones such as "foo.isra.0".
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def attach_tracepoint(program_pin: Path, category: str, name: str, link_pin: Path) -> int:
    """Attach the (tracepoint-type) program pinned at `program_pin` to the
    tracepoint `category`/`name` and pin the link at `link_pin`.

    :return: the kernel link id.
    :raises InvalidArgument: malformed category or name, or not a
        tracepoint program.
    :raises AttachTargetNotFound: no such tracepoint in tracefs.
    """
    for field, value in (("category", category), ("name", name)):
        if not _EVENT_NAME.match(value):
            raise InvalidArgument(f"invalid tracepoint {field} {value!r}", field=field)
    target = f"{category}/{name}"
    id_file = ensure_tracefs() / "events" / category / name / "id"
    try:
        tracepoint_id = int(id_file.read_text().strip())
    except FileNotFoundError:
        raise AttachTargetNotFound(f"no tracepoint {target}", tracepoint=target) from None
    attr = _attr(PERF_TYPE_TRACEPOINT, config=tracepoint_id)
    return _attach(Path(program_pin), attr, Path(link_pin), ("tracepoint",), f"tracepoint {target}")


def attach_kprobe(
    program_pin: Path, fn_name: str, offset: int, retprobe: bool, link_pin: Path
) -> int:
    """Attach the (kprobe-type) program pinned at `program_pin` to kernel
    function `fn_name` (+`offset`), or to its return if `retprobe`.

    :return: the kernel link id.
    :raises KernelFeatureMissing: no kprobe PMU (kernel without kprobes).
    :raises AttachTargetNotFound: the function does not exist or cannot be probed.
    """
    if not _SYMBOL.match(fn_name):
        raise InvalidArgument(f"invalid kernel function name {fn_name!r}", field="fn_name")
    if offset < 0:
        raise InvalidArgument("offset must not be negative", field="offset")
    if retprobe and offset:
        raise InvalidArgument("a retprobe cannot have an offset", field="offset")
    pmu_type = _pmu_type(KPROBE_PMU)
    config = 1 << _retprobe_bit(KPROBE_PMU) if retprobe else 0
    func = ctypes.create_string_buffer(fn_name.encode())  # alive until the syscall returns
    attr = _attr(pmu_type, config=config, config1=ctypes.addressof(func), config2=offset)
    kind = "kretprobe" if retprobe else "kprobe"

    def missing(_exc: SysError) -> BpfmanError:
        return AttachTargetNotFound(f"no kernel function {fn_name} to {kind}", function=fn_name)

    def einval(exc: SysError) -> BpfmanError:
        # EINVAL covers both "no such symbol" and "not probeable here".
        if not _kernel_symbol_exists(fn_name):
            return missing(exc)
        return InvalidArgument(
            f"cannot {kind} {fn_name}+{offset} (not probeable, or offset not on an instruction)",
            field="fn_name",
        )

    def eilseq(_exc: SysError) -> BpfmanError:
        return InvalidArgument(
            f"{fn_name}+{offset:#x} is not on an instruction boundary", field="offset"
        )

    return _attach(
        Path(program_pin), attr, Path(link_pin), ("kprobe",), f"{kind} {fn_name}",
        {errno.ENOENT: missing, errno.EINVAL: einval, errno.EILSEQ: eilseq},
    )


def attach_uprobe(
    program_pin: Path, binary_path: Path, offset: int, retprobe: bool, pid: int | None,
    link_pin: Path,
) -> int:
    """Attach the (kprobe-type) program pinned at `program_pin` to file offset
    `offset` of `binary_path` (its return if `retprobe`), in every process
    or, with `pid`, only in that process (all its threads).

    The kernel opens `binary_path` in the caller's mount namespace; a path
    under ``/proc/<pid>/root`` reaches a container's own file (its inode).

    :return: the kernel link id.
    :raises KernelFeatureMissing: no uprobe PMU.
    :raises AttachTargetNotFound: no such file, or no process `pid`.
    """
    binary_path = Path(binary_path)
    if not binary_path.is_absolute():
        raise InvalidArgument(f"uprobe target {binary_path} is not absolute", field="target")
    if offset <= 0:
        raise InvalidArgument("uprobe file offset must be positive", field="offset")
    if pid is not None and pid <= 0:
        raise InvalidArgument("pid must be positive", field="pid")
    pmu_type = _pmu_type(UPROBE_PMU, "uprobes", "CONFIG_UPROBE_EVENTS", "4.17")
    config = 1 << _retprobe_bit(UPROBE_PMU) if retprobe else 0
    path = ctypes.create_string_buffer(os.fsencode(binary_path))  # alive for the syscall
    attr = _attr(pmu_type, config=config, config1=ctypes.addressof(path), config2=offset)
    kind = "uretprobe" if retprobe else "uprobe"
    target = f"{kind} {binary_path}:{offset:#x}"

    def no_file(_exc: SysError) -> BpfmanError:
        return AttachTargetNotFound(f"no file {binary_path} to {kind}", target=str(binary_path))

    def no_process(_exc: SysError) -> BpfmanError:
        return AttachTargetNotFound(f"no process {pid} to {kind} in", pid=pid)

    def einval(_exc: SysError) -> BpfmanError:
        return InvalidArgument(
            f"cannot {kind} {binary_path} at offset {offset:#x} (beyond the file,"
            " or not a regular file)", field="offset",
        )

    def denied(exc: SysError) -> BpfmanError:
        # A pid the daemon may not trace (ptrace access checks), or a file it may not open.
        return PermissionDenied(f"cannot {kind} {binary_path} (pid {pid}): {exc.strerror}",
                                pid=pid, target=str(binary_path))

    return _attach(
        Path(program_pin), attr, Path(link_pin), ("kprobe",), target,
        {errno.ENOENT: no_file, errno.ESRCH: no_process, errno.EINVAL: einval,
         errno.EACCES: denied, errno.EPERM: denied},
        pid=-1 if pid is None else pid,
    )


ONLINE_CPUS = Path("/sys/devices/system/cpu/online")
MAX_SAMPLE_RATE = Path("/proc/sys/kernel/perf_event_max_sample_rate")


def online_cpus() -> list[int]:
    """The online CPUs ("0-3,6" in sysfs)."""
    cpus: list[int] = []
    for part in ONLINE_CPUS.read_text().strip().split(","):
        first, _, last = part.partition("-")
        cpus.extend(range(int(first), int(last or first) + 1))
    return cpus


def attach_perf_event(
    program_pin: Path,
    *,
    event_type: int,
    config: int,
    sample_period: int | None,
    frequency: int | None,
    link_dir: Path,
    pid: int | None = None,
    cgroup: Path | None = None,
) -> dict[str, int]:
    """Attach the perf_event program pinned at `program_pin` to a sampling
    event (`event_type`/`config`, every `sample_period` events or
    `frequency` times a second) and pin each link under `link_dir`.

    A perf event counts on one CPU, so the default (every task) is one event
    and one link per online CPU (pins ``cpu<N>``); with `pid`, one event
    that follows that process's main thread on any CPU (pin ``pid``); with
    `cgroup` (a cgroup v2 directory), one event per CPU counting only that
    cgroup's tasks (pins ``cpu<N>``). `link_dir` is created here and,
    on failure, removed with everything in it.

    :return: pin name -> kernel link id.
    :raises KernelFeatureMissing: the event does not exist on this machine
        (e.g. hardware counters in a VM without a virtual PMU).
    :raises AttachTargetNotFound: no process `pid`, no cgroup directory.
    :raises PermissionDenied: the kernel refused the event for this target.
    """
    if (sample_period is None) == (frequency is None):
        raise InvalidArgument("give exactly one of sample_period and frequency",
                              field="frequency")
    if pid is not None and cgroup is not None:
        raise InvalidArgument("give at most one of pid and cgroup", field="pid")
    attr = _attr(event_type, config=config)
    if frequency is not None:
        attr.sample_period = frequency  # the union's sample_freq
        attr.flags |= PERF_ATTR_FLAG_FREQ
    else:
        attr.sample_period = sample_period or 0
    name = f"perf event type {event_type} config {config:#x}"
    errors = _sampling_errors(name, event_type, frequency, pid, cgroup)
    link_dir = Path(link_dir)
    with ExitStack() as fds:
        prog_fd = fds.enter_context(pins.open_pinned(Path(program_pin), "prog"))
        require_program_type(prog_fd, ("perf_event",), name)
        flags = 0
        if pid is not None:
            targets = [("pid", pid, -1)]
        else:
            who = -1
            if cgroup is not None:
                try:
                    who = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                except (FileNotFoundError, NotADirectoryError):
                    raise AttachTargetNotFound(f"no cgroup directory {cgroup}",
                                               cgroup=str(cgroup)) from None
                fds.callback(os.close, who)
                flags = PERF_FLAG_PID_CGROUP
            targets = [(f"cpu{cpu}", who, cpu) for cpu in online_cpus()]
        link_dir.mkdir(mode=0o700)
        cleanup = fds.enter_context(ExitStack())
        cleanup.callback(pins.remove_pin_dir, link_dir)
        links: dict[str, int] = {}
        for pin_name, who, cpu in targets:
            with kernel_errors("perf_event_open", errors, target=name):
                perf_fd = libc.perf_event_open(attr, pid=who, cpu=cpu, flags=flags)
            try:
                with kernel_errors("bpf_link_create", target=name):
                    link_fd = libbpf.bpf_link_create(prog_fd, perf_fd, BPF_PERF_EVENT, None)
            finally:
                os.close(perf_fd)  # the link holds the event
            try:
                links[pin_name] = pin_new_link(link_fd, link_dir / pin_name)
            finally:
                os.close(link_fd)
        cleanup.pop_all()
        return links
    raise AssertionError("unreachable")  # ExitStack does not swallow exceptions


def _sampling_errors(
    name: str, event_type: int, frequency: int | None, pid: int | None, cgroup: Path | None
) -> dict[int, Callable[[SysError], BpfmanError]]:
    def missing(exc: SysError) -> BpfmanError:
        kind = "hardware perf events" if event_type == PERF_TYPE_HARDWARE else "perf event"
        return KernelFeatureMissing(
            kind, f"perf_event_open({name}) returned {exc.strerror}: this machine has no"
            " such event (a VM without a virtual PMU has no hardware counters; software"
            " events such as cpu-clock always exist)",
        )

    def no_process(_exc: SysError) -> BpfmanError:
        return AttachTargetNotFound(f"no process {pid}", pid=pid)

    def denied(exc: SysError) -> BpfmanError:
        return PermissionDenied(f"the kernel refused {name} (pid {pid}, cgroup {cgroup}):"
                                f" {exc.strerror}", pid=pid)

    def einval(exc: SysError) -> BpfmanError:
        limit = ""
        if frequency is not None:
            with suppress(OSError, ValueError):
                limit = (f"; frequency must not exceed kernel.perf_event_max_sample_rate="
                         f"{int(MAX_SAMPLE_RATE.read_text())}")
        return InvalidArgument(f"the kernel refused {name}: {exc.strerror}{limit}",
                               field="config")

    return {errno.ENOENT: missing, errno.EOPNOTSUPP: missing, errno.ENODEV: missing,
            errno.ESRCH: no_process, errno.EACCES: denied, errno.EPERM: denied,
            errno.EINVAL: einval}


def _attr(type_: int, *, config: int, config1: int = 0, config2: int = 0) -> PerfEventAttr:
    return PerfEventAttr(
        type=type_,
        size=PERF_ATTR_SIZE_VER7,
        config=config,
        config1=config1,
        config2=config2,
        sample_period=1,
        wakeup_events=1,
    )


def _attach(
    program_pin: Path,
    attr: PerfEventAttr,
    link_pin: Path,
    allowed: tuple[str, ...],
    target: str,
    open_errors: Mapping[int, Callable[[SysError], BpfmanError]] | None = None,
    pid: int = -1,
) -> int:
    with ExitStack() as fds:
        prog_fd = fds.enter_context(pins.open_pinned(program_pin, "prog"))
        require_program_type(prog_fd, allowed, target)
        # pid -1, cpu 0: a BPF program on a tracing perf event runs for every
        # task on every CPU; the event only has to exist once. With a pid the
        # event follows that task on any CPU (cpu -1), which filters uprobes.
        with kernel_errors("perf_event_open", open_errors, target=target):
            perf_fd = libc.perf_event_open(attr, pid=pid, cpu=0 if pid == -1 else -1)
        fds.callback(os.close, perf_fd)
        # A tracepoint or probe runs each program once: the kernel refuses
        # the same program twice on one (its prog array already holds it).
        twice = {errno.EEXIST: lambda _e: Conflict(
            f"the program is already attached to {target}"
            " (load another copy to run it twice)", target=target)}
        with kernel_errors("bpf_link_create", twice, target=target):
            link_fd = libbpf.bpf_link_create(prog_fd, perf_fd, BPF_PERF_EVENT, None)
        fds.callback(os.close, link_fd)
        return pin_new_link(link_fd, link_pin)
    raise AssertionError("unreachable")  # ExitStack does not swallow exceptions


def _pmu_type(
    pmu: Path, feature: str = "kprobes", config: str = "CONFIG_KPROBES", min_version: str = "4.17"
) -> int:
    try:
        return int((pmu / "type").read_text().strip())
    except FileNotFoundError:
        raise KernelFeatureMissing(
            feature,
            f"no {pmu.name} PMU at {pmu} (kernel built without {config})",
            min_version=min_version,
        ) from None


def _retprobe_bit(pmu: Path) -> int:
    # The format file reads "config:<bit>".
    text = (pmu / "format" / "retprobe").read_text().strip()
    return int(text.partition(":")[2])


def _kernel_symbol_exists(name: str) -> bool:
    needle = f" {name}"
    try:
        with open("/proc/kallsyms") as fh:
            for line in fh:
                # "<addr> <type> <name>[\t[module]]"
                symbol = line.rstrip("\n").split("\t", 1)[0]
                if symbol.endswith(needle) and symbol.count(" ") == 2:
                    return True
    except OSError:
        return True  # cannot tell: report the kernel's error instead
    return False
