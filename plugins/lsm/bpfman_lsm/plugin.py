"""LSM programs: run an ``lsm`` program on a Linux Security Module hook
(``file_open``, ``task_kill``, ``bprm_check_security``...), where a negative
return (``-EPERM``) denies the operation.

Policy: as fentry, the hook is fixed at load time, as the kernel requires
(``attach_func`` in the program selector, or the ELF section's
``lsm/<hook>``; the kernel looks up ``bpf_lsm_<hook>`` in vmlinux BTF);
``program.get`` shows it. Attach takes no parameters: it creates the
BPF_LSM_MAC link through the hook's trampoline and pins it. The kernel runs
every program on a hook and denies when any denies, so there is no
dispatcher. Kernels that refuse LSM programs (no CONFIG_BPF_LSM, lockdown,
the BPF LSM not in the active list) are refused by the core through
``required_features``, naming the reason.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from bpfman import AttachPoint, HookContext, KindSpec, LinkRecord, ProgramRecord, Reach, hookimpl

TYPE = "lsm"


@attrs.frozen
class LsmParams:
    """No attach parameters: the LSM hook was given at load time
    (``attach_func`` or the ``lsm/<hook>`` ELF section)."""


@hookimpl
def bpfman_register_kinds() -> list[KindSpec]:
    return [
        KindSpec(name=TYPE, kernel_prog_type="lsm", params_type=LsmParams,
                 required_features=("lsm_programs",),
                 description="Linux Security Module hooks (BPF LSM; hook fixed at load"
                             " time with attach_func or SEC(\"lsm/<hook>\"))")
    ]


@hookimpl
def bpfman_attach_reach(ctx: HookContext, program: ProgramRecord, params: LsmParams) -> Reach:
    # The whole kernel: bounded by the grant of the type itself (root-equivalent).
    return Reach()


@hookimpl
def bpfman_attach_point(program: ProgramRecord, params: LsmParams) -> AttachPoint:
    return AttachPoint(type=TYPE, key=program.attach_func or f"program={program.program_id}")


@hookimpl
def bpfman_attach(ctx: HookContext, program: ProgramRecord, link: LinkRecord,
                  params: LsmParams) -> LinkRecord:
    kernel_link_id = ctx.kernel.attach_tracing(Path(program.pin_path), TYPE, Path(link.pin_path))
    return ctx.adopt_link(link, kernel_link_id, {"hook": program.attach_func})


@hookimpl
def bpfman_describe_link(link: LinkRecord) -> str:
    return f"lsm {link.details.get('hook') or '?'}"
