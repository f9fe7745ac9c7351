"""perf_event programs: run a ``perf_event`` program on a sampling event.

Policy: the event is a named software or hardware event (``cpu-clock``,
``cycles``...) or a raw ``type``/``config`` pair, sampled every
``sample_period`` events or ``frequency`` times a second (99 Hz when neither
is given). A perf event counts on one CPU, so a system-wide attach is one
event and one bpf_link per online CPU, all pinned in one directory at the
link's pin path: the link is the set, detached as one. ``pid`` follows one
process on any CPU; ``cgroup`` counts the tasks of one cgroup v2 directory on
every CPU. CPUs brought online after the attach are not covered (detach and
attach again). The kernel runs every program attached to an event, so there
is no dispatcher and any number of links may share a target.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import attrs

from bpfman import (
    AttachPoint,
    AttachTargetNotFound,
    BpfmanError,
    Drift,
    HookContext,
    InvalidArgument,
    KindSpec,
    LinkRecord,
    ProgramRecord,
    Reach,
    hookimpl,
)

TYPE = "perf_event"
PERF_TYPE_HARDWARE, PERF_TYPE_SOFTWARE = 0, 1
DEFAULT_FREQUENCY = 99  # Hz: off-beat with timer ticks, as perf and profilers use

# Named events: perf(1)'s names -> (perf_event_attr.type, config), from UAPI
# enum perf_hw_id / perf_sw_ids.
EVENTS: dict[str, tuple[int, int]] = {
    "cpu-cycles": (PERF_TYPE_HARDWARE, 0),
    "cycles": (PERF_TYPE_HARDWARE, 0),
    "instructions": (PERF_TYPE_HARDWARE, 1),
    "cache-references": (PERF_TYPE_HARDWARE, 2),
    "cache-misses": (PERF_TYPE_HARDWARE, 3),
    "branch-instructions": (PERF_TYPE_HARDWARE, 4),
    "branch-misses": (PERF_TYPE_HARDWARE, 5),
    "bus-cycles": (PERF_TYPE_HARDWARE, 6),
    "ref-cycles": (PERF_TYPE_HARDWARE, 9),
    "cpu-clock": (PERF_TYPE_SOFTWARE, 0),
    "task-clock": (PERF_TYPE_SOFTWARE, 1),
    "page-faults": (PERF_TYPE_SOFTWARE, 2),
    "context-switches": (PERF_TYPE_SOFTWARE, 3),
    "cpu-migrations": (PERF_TYPE_SOFTWARE, 4),
    "minor-faults": (PERF_TYPE_SOFTWARE, 5),
    "major-faults": (PERF_TYPE_SOFTWARE, 6),
}
EventName = Literal[
    "cpu-cycles", "cycles", "instructions", "cache-references", "cache-misses",
    "branch-instructions", "branch-misses", "bus-cycles", "ref-cycles",
    "cpu-clock", "task-clock", "page-faults", "context-switches", "cpu-migrations",
    "minor-faults", "major-faults",
]


def _positive(_self: object, attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive")


def _not_negative(_self: object, attribute: attrs.Attribute, value: int | None) -> None:
    if value is not None and value < 0:
        raise ValueError(f"{attribute.name} must not be negative")


@attrs.frozen
class PerfEventParams:
    """Which event (``event``, or ``type`` and ``config``), how often
    (``sample_period`` or ``frequency``, default 99 Hz) and whose (every task
    on every CPU by default, or ``pid``, or ``cgroup``)."""

    event: EventName | None = attrs.field(default=None, metadata={
        "doc": "a named event (perf's names): software cpu-clock, task-clock, page-faults,"
               " context-switches, cpu-migrations, minor-faults, major-faults; hardware"
               " cycles, instructions, cache-references, cache-misses, branch-instructions,"
               " branch-misses, bus-cycles, ref-cycles. Or give type and config instead"})
    type: int | None = attrs.field(default=None, validator=_not_negative, metadata={
        "doc": "raw perf_event_attr.type: 0 hardware, 1 software, 3 hw cache, 4 raw, or a"
               " PMU's number from /sys/bus/event_source/devices/*/type (with config)"})
    config: int | None = attrs.field(default=None, validator=_not_negative, metadata={
        "doc": "raw perf_event_attr.config for type (e.g. 0 = cpu-clock with type 1)"})
    sample_period: int | None = attrs.field(default=None, validator=_positive, metadata={
        "doc": "run the program every this many events (exclusive with frequency)"})
    frequency: int | None = attrs.field(default=None, validator=_positive, metadata={
        "doc": "run the program this many times a second per CPU (default 99 when no"
               " sample_period; at most kernel.perf_event_max_sample_rate)"})
    pid: int | None = attrs.field(default=None, validator=_positive, metadata={
        "doc": "sample only this process (host pid), on any CPU; default every task"})
    cgroup: str | None = attrs.field(default=None, metadata={
        "doc": "sample only tasks of this cgroup v2 directory (absolute path, e.g."
               " /sys/fs/cgroup/system.slice), on every CPU"})

    def __attrs_post_init__(self) -> None:
        if self.event is None and (self.type is None or self.config is None):
            raise ValueError("give event, or both type and config")
        if self.event is not None and (self.type is not None or self.config is not None):
            raise ValueError("give event or type/config, not both")
        if self.sample_period is not None and self.frequency is not None:
            raise ValueError("give sample_period or frequency, not both")
        if self.pid is not None and self.cgroup is not None:
            raise ValueError("give pid or cgroup, not both")
        if self.cgroup is not None and not self.cgroup.startswith("/"):
            raise ValueError("cgroup must be an absolute path of a cgroup v2 directory")

    @property
    def type_config(self) -> tuple[int, int]:
        if self.event is not None:
            return EVENTS[self.event]
        assert self.type is not None and self.config is not None
        return self.type, self.config

    @property
    def effective_frequency(self) -> int | None:
        if self.sample_period is None and self.frequency is None:
            return DEFAULT_FREQUENCY
        return self.frequency

    def describe(self) -> str:
        event = self.event or f"type={self.type},config={self.config}"
        rate = (f"every {self.sample_period}" if self.sample_period is not None
                else f"{self.effective_frequency}Hz")
        scope = (f"pid {self.pid}" if self.pid is not None
                 else f"cgroup {self.cgroup}" if self.cgroup is not None else "all CPUs")
        return f"{event} {rate} {scope}"


@hookimpl
def bpfman_register_kinds() -> list[KindSpec]:
    return [
        KindSpec(
            name=TYPE,
            kernel_prog_type="perf_event",
            params_type=PerfEventParams,
            required_features=("bpf_link_perf_event",),
            description="sampling on software/hardware perf events (cpu-clock, cycles...),"
                        " one link per CPU, or per pid or cgroup",
        )
    ]


@hookimpl
def bpfman_validate_attach(ctx: HookContext, program: ProgramRecord,
                           params: PerfEventParams) -> None:
    if params.pid is not None:
        ctx.kernel.check_process(params.pid, "pid")
    if params.cgroup is not None and not Path(params.cgroup, "cgroup.procs").exists():
        raise AttachTargetNotFound(f"no cgroup v2 directory {params.cgroup}",
                                   cgroup=params.cgroup)


@hookimpl
def bpfman_attach_reach(ctx: HookContext, program: ProgramRecord, params: PerfEventParams) -> Reach:
    # The whole kernel: bounded by the grant of the type itself (root-equivalent).
    return Reach()


@hookimpl
def bpfman_attach_point(program: ProgramRecord, params: PerfEventParams) -> AttachPoint:
    return AttachPoint(type=TYPE, key=params.describe())


@hookimpl
def bpfman_attach(ctx: HookContext, program: ProgramRecord, link: LinkRecord,
                  params: PerfEventParams) -> LinkRecord:
    event_type, config = params.type_config
    links = ctx.kernel.attach_perf_event(
        Path(program.pin_path), event_type=event_type, config=config,
        sample_period=params.sample_period, frequency=params.effective_frequency,
        link_dir=Path(link.pin_path), pid=params.pid,
        cgroup=Path(params.cgroup) if params.cgroup else None,
    )
    if not links:
        raise InvalidArgument("no online CPU to attach to", field="cgroup")
    first = next(iter(links.values()))
    # ctx.adopt_link registers the detach of the whole directory on undo.
    return ctx.adopt_link(link, first, {"event": params.describe(), "kernel_links": links})


@hookimpl
def bpfman_describe_link(link: LinkRecord) -> str:
    return f"perf_event {link.details.get('event', '?')}"


@hookimpl
def bpfman_reconcile(ctx: HookContext, links: list[LinkRecord]) -> list[Drift]:
    """A link is a directory of per-CPU kernel links: one missing (unpinned
    behind our back) leaves a CPU unsampled. Report it; detach and attach
    again to repair (the daemon never guesses the caller's intent)."""
    drifts = []
    for ln in links:
        expected: dict[str, int] = ln.details.get("kernel_links") or {}
        for pin_name, kernel_id in sorted(expected.items()):
            pin = Path(ln.pin_path) / pin_name
            try:
                found = ctx.kernel.link_id_of_pin(pin)
            except (BpfmanError, OSError):
                found = None
            if found != kernel_id:
                drifts.append(Drift(f"perf_event link {ln.link_id}",
                                    f"{pin_name} link {kernel_id} missing",
                                    "kept; detach and attach again to cover every CPU"))
    return drifts
