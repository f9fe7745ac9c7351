"""User-space probes: attach a ``uprobe`` program to a function (or file
offset) of a binary or library, or a ``uretprobe`` to the function's return.

Policy:
- ``target`` is an absolute path or a library name (``libc``, ``c``,
  ``libssl.so.3``), found the way the dynamic loader finds it (bcc).
- ``fn_name`` is resolved to a file offset with bcc; ``offset`` is added to
  it, or is the file offset itself when there is no ``fn_name``.
- ``pid`` makes the probe fire only in that process.
- ``container_pid`` resolves ``target`` inside that process's mount
  namespace (the library it has mapped, else its own lib directories)
  through ``/proc/<pid>/root``, so the probe lands on the container's inode.
- The requested type alone decides entry or return, for every target
  (both load as the kernel's kprobe program type).
One perf-event link per attach, pinned, no dispatcher.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from bpfman import (
    AttachPoint,
    HookContext,
    InvalidArgument,
    KindSpec,
    LinkRecord,
    ProgramRecord,
    Reach,
    hookimpl,
)

UPROBE, URETPROBE = "uprobe", "uretprobe"
# ELF symbol names, C++ mangled ones and versioned ones ("memcpy@GLIBC_2.14") included.
_SYMBOL = re.compile(r"^[A-Za-z_.$][A-Za-z0-9_.$@]*$")
_positive = attrs.validators.optional(attrs.validators.gt(0))


@attrs.frozen
class UprobeParams:
    target: str = attrs.field(
        validator=attrs.validators.min_len(1),
        metadata={"doc": "absolute path of a binary or library, or a library name such as libc"},
    )
    fn_name: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.matches_re(_SYMBOL)),
        metadata={"doc": "function to probe (its symbol); omit to probe a bare file offset"},
    )
    offset: int = attrs.field(
        default=0,
        validator=attrs.validators.ge(0),
        metadata={"doc": "added to fn_name's offset, or the file offset without fn_name"},
    )
    pid: int | None = attrs.field(
        default=None, validator=_positive,
        metadata={"doc": "fire only in this process (host pid)"},
    )
    container_pid: int | None = attrs.field(
        default=None, validator=_positive,
        metadata={"doc": "resolve target in this process's mount namespace (a container)"},
    )


@hookimpl
def bpfman_register_kinds() -> list[KindSpec]:
    return [
        KindSpec(name=UPROBE, kernel_prog_type="kprobe", params_type=UprobeParams,
                 required_features=("uprobes",),
                 description="user-space function entry probes (uprobe PMU perf-event link)"),
        KindSpec(name=URETPROBE, kernel_prog_type="kprobe", params_type=UprobeParams,
                 required_features=("uprobes",),
                 description="user-space function return probes (uprobe PMU perf-event link)"),
    ]


@hookimpl
def bpfman_validate_attach(ctx: HookContext, program: ProgramRecord,
                           params: UprobeParams) -> None:
    if params.fn_name is None and not params.offset:
        raise InvalidArgument("give fn_name, offset or both", field="fn_name")
    if params.pid is not None:
        ctx.kernel.check_process(params.pid, "pid")
    _resolve(ctx, params)


@hookimpl
def bpfman_attach_reach(ctx: HookContext, program: ProgramRecord, params: UprobeParams) -> Reach:
    path, _ = _resolve(ctx, params)
    pids = tuple(p for p in (params.pid, params.container_pid) if p is not None)
    return Reach(files=(str(path),), processes=pids, every_process=params.pid is None)


@hookimpl
def bpfman_attach_point(program: ProgramRecord, params: UprobeParams) -> AttachPoint:
    return AttachPoint(type=program.type, key=_where(params))


@hookimpl
def bpfman_attach(ctx: HookContext, program: ProgramRecord, link: LinkRecord,
                  params: UprobeParams) -> LinkRecord:
    path, file_offset = _resolve(ctx, params)
    kernel_link_id = ctx.kernel.attach_uprobe(
        Path(program.pin_path), path, file_offset, program.type == URETPROBE, params.pid,
        Path(link.pin_path),
    )
    # What the names resolved to at attach time, for link.get.
    return ctx.adopt_link(link, kernel_link_id, {"path": str(path), "file_offset": file_offset})



@hookimpl
def bpfman_describe_link(link: LinkRecord) -> str:
    params = UprobeParams(**link.params)
    text = f"{link.type} {_where(params)}"
    if "path" in link.details:
        text += f" ({link.details['path']} @ {link.details['file_offset']:#x})"
    return text


def _resolve(ctx: HookContext, params: UprobeParams) -> tuple[Path, int]:
    """The file the kernel should open and the file offset to probe."""
    path = ctx.kernel.resolve_user_target(params.target, params.container_pid)
    base = ctx.kernel.user_function_offset(path, params.fn_name) if params.fn_name else 0
    return path, base + params.offset


def _where(params: UprobeParams) -> str:
    where = params.target
    if params.fn_name:
        where += f":{params.fn_name}"
    if params.offset:
        where += f"+{params.offset:#x}"
    for name in ("pid", "container_pid"):
        if getattr(params, name) is not None:
            where += f" {name}={getattr(params, name)}"
    return where
