"""Tracepoint programs: attach a ``tracepoint`` program to ``category/name``.

Policy: one perf-event link per attach, pinned at the link's pin path, so
the program keeps running while the daemon is down. Any number of programs
may attach to the same tracepoint (the kernel runs them all), so there is no
dispatcher. A tracepoint that does not exist is refused before anything is
created.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from bpfman import (
    AttachPoint,
    AttachTargetNotFound,
    HookContext,
    KindSpec,
    LinkRecord,
    ProgramRecord,
    Reach,
    hookimpl,
)

TYPE = "tracepoint"
# tracefs names: event systems and events are C identifiers in practice.
_PART = re.compile(r"^[A-Za-z0-9_]+$")


def _check_tracepoint(_self: object, _attr: attrs.Attribute, value: str) -> None:
    category, sep, name = value.partition("/")
    if not sep or not _PART.match(category) or not _PART.match(name):
        raise ValueError("tracepoint must be CATEGORY/NAME, e.g. syscalls/sys_enter_openat")


@attrs.frozen
class TracepointParams:
    tracepoint: str = attrs.field(
        validator=_check_tracepoint,
        metadata={"doc": "CATEGORY/NAME of the tracepoint, e.g. syscalls/sys_enter_openat"},
    )

    @property
    def category(self) -> str:
        return self.tracepoint.partition("/")[0]

    @property
    def name(self) -> str:
        return self.tracepoint.partition("/")[2]


@hookimpl
def bpfman_register_kinds() -> list[KindSpec]:
    return [
        KindSpec(
            name=TYPE,
            kernel_prog_type="tracepoint",
            params_type=TracepointParams,
            description="kernel tracepoints (perf-event link on tracefs CATEGORY/NAME)",
        )
    ]


@hookimpl
def bpfman_validate_attach(ctx: HookContext, program: ProgramRecord,
                           params: TracepointParams) -> None:
    events = ctx.kernel.ensure_tracefs() / "events"
    if not (events / params.category / params.name / "id").exists():
        raise AttachTargetNotFound(
            f"no tracepoint {params.tracepoint} (see {events})",
            tracepoint=params.tracepoint,
        )


@hookimpl
def bpfman_attach_reach(ctx: HookContext, program: ProgramRecord,
                        params: TracepointParams) -> Reach:
    # The whole kernel: bounded by the grant of the type itself (root-equivalent).
    return Reach()


@hookimpl
def bpfman_attach_point(program: ProgramRecord, params: TracepointParams) -> AttachPoint:
    return AttachPoint(type=TYPE, key=params.tracepoint)


@hookimpl
def bpfman_attach(ctx: HookContext, program: ProgramRecord, link: LinkRecord,
                  params: TracepointParams) -> LinkRecord:
    kernel_link_id = ctx.kernel.attach_tracepoint(
        Path(program.pin_path), params.category, params.name, Path(link.pin_path)
    )
    return ctx.adopt_link(link, kernel_link_id, {"tracepoint": params.tracepoint})



@hookimpl
def bpfman_describe_link(link: LinkRecord) -> str:
    return f"tracepoint {link.params.get('tracepoint', '?')}"

