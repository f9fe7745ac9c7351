"""BPF trampolines: run an ``fentry`` program at a kernel function's entry, or
an ``fexit`` program at its exit (with its arguments and return value).

Policy: the target function is fixed at load time, as the kernel requires
(``attach_func`` in the program selector, or the ELF section's
``fentry/<function>``); ``program.get`` shows it. Attach takes no
parameters: it creates the tracing link and pins it. The kernel runs every
trampoline program on a function, so there is no dispatcher. The ELF
section decides entry or exit, so a program loaded as the other type is
refused at attach. Kernels that refuse tracing programs (no BTF, lockdown)
are refused by the core through ``required_features``, naming the feature.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from bpfman import AttachPoint, HookContext, KindSpec, LinkRecord, ProgramRecord, Reach, hookimpl

FENTRY, FEXIT = "fentry", "fexit"


@attrs.frozen
class FentryParams:
    """No attach parameters: the target was given at load time."""


@hookimpl
def bpfman_register_kinds() -> list[KindSpec]:
    return [
        KindSpec(name=kind, kernel_prog_type="tracing", params_type=FentryParams,
                 required_features=("tracing_programs",),
                 description=f"kernel function {where} through a BPF trampoline"
                             " (target fixed at load time with attach_func)")
        for kind, where in ((FENTRY, "entry"), (FEXIT, "exit"))
    ]


@hookimpl
def bpfman_attach_reach(ctx: HookContext, program: ProgramRecord, params: FentryParams) -> Reach:
    # The whole kernel: bounded by the grant of the type itself (root-equivalent).
    return Reach()


@hookimpl
def bpfman_attach_point(program: ProgramRecord, params: FentryParams) -> AttachPoint:
    key = program.attach_func or f"program={program.program_id}"
    return AttachPoint(type=program.type, key=key)


@hookimpl
def bpfman_attach(ctx: HookContext, program: ProgramRecord, link: LinkRecord,
                  params: FentryParams) -> LinkRecord:
    kernel_link_id = ctx.kernel.attach_tracing(Path(program.pin_path), program.type,
                                               Path(link.pin_path))
    return ctx.adopt_link(link, kernel_link_id, {"attach_func": program.attach_func})



@hookimpl
def bpfman_describe_link(link: LinkRecord) -> str:
    return f"{link.type} {link.details.get('attach_func') or '?'}"
