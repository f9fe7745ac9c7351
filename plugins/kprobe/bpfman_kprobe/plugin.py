"""Kernel probes: attach a ``kprobe`` program to a kernel function's entry
(plus an optional instruction offset), or a ``kretprobe`` to its return.

Policy: the requested type decides entry or return (both load as the
kernel's kprobe program type, so the ELF section alone cannot be trusted);
an offset only makes sense inside a function body, so a kretprobe refuses
one. The function must exist in /proc/kallsyms and be traceable
(available_filter_functions) before anything is created. One perf-event link
per attach, pinned, no dispatcher: the kernel runs every probe on a function.
Kernels without kprobes are refused by the core through
``required_features``, naming the missing feature.
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

KPROBE, KRETPROBE = "kprobe", "kretprobe"
# Kernel symbols, compiler clones included ("foo.isra.0").
_SYMBOL = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


@attrs.frozen
class KprobeParams:
    fn_name: str = attrs.field(
        validator=attrs.validators.matches_re(_SYMBOL),
        metadata={"doc": "kernel function to probe, e.g. do_unlinkat"},
    )
    offset: int = attrs.field(
        default=0,
        validator=attrs.validators.ge(0),
        metadata={"doc": "byte offset into the function (kprobe only; must start an instruction)"},
    )


@hookimpl
def bpfman_register_kinds() -> list[KindSpec]:
    return [
        KindSpec(
            name=KPROBE,
            kernel_prog_type="kprobe",
            params_type=KprobeParams,
            required_features=("kprobes",),
            description="kernel function entry (+offset) probes (kprobe PMU perf-event link)",
        ),
        KindSpec(
            name=KRETPROBE,
            kernel_prog_type="kprobe",
            params_type=KprobeParams,
            required_features=("kprobes",),
            description="kernel function return probes (kprobe PMU perf-event link)",
        ),
    ]


@hookimpl
def bpfman_validate_attach(ctx: HookContext, program: ProgramRecord,
                           params: KprobeParams) -> None:
    if program.type == KRETPROBE and params.offset:
        raise InvalidArgument("a kretprobe cannot have an offset (it fires on return)",
                              field="offset")
    ctx.kernel.check_kernel_function(params.fn_name, ctx.kernel.ensure_tracefs())


@hookimpl
def bpfman_attach_reach(ctx: HookContext, program: ProgramRecord, params: KprobeParams) -> Reach:
    # The whole kernel: bounded by the grant of the type itself (root-equivalent).
    return Reach()


@hookimpl
def bpfman_attach_point(program: ProgramRecord, params: KprobeParams) -> AttachPoint:
    return AttachPoint(type=program.type, key=_where(params.fn_name, params.offset))


@hookimpl
def bpfman_attach(ctx: HookContext, program: ProgramRecord, link: LinkRecord,
                  params: KprobeParams) -> LinkRecord:
    kernel_link_id = ctx.kernel.attach_kprobe(
        Path(program.pin_path), params.fn_name, params.offset, program.type == KRETPROBE,
        Path(link.pin_path),
    )
    return ctx.adopt_link(link, kernel_link_id,
                          {"fn_name": params.fn_name, "offset": params.offset})



@hookimpl
def bpfman_describe_link(link: LinkRecord) -> str:
    return f"{link.type} {_where(link.params.get('fn_name', '?'), link.params.get('offset', 0))}"


def _where(fn_name: str, offset: int) -> str:
    return f"{fn_name}+{offset:#x}" if offset else fn_name
