"""raw_tracepoint programs for pybpfman: a plugin written against the public API only.

Attach parameters: ``name``, the raw tracepoint (``sys_enter``, ``sched_switch``).
Uses only `bpfman` (hookimpl, KindSpec, errors) and ``ctx.kernel``.
"""

from __future__ import annotations

import re
from pathlib import Path

import attrs

from bpfman import AttachTargetNotFound, KindSpec, hookimpl

TYPE = "raw_tracepoint"


@attrs.frozen
class RawTracepointParams:
    name: str = attrs.field(
        validator=attrs.validators.matches_re(re.compile(r"^[A-Za-z0-9_]+$")),
        metadata={"doc": "raw tracepoint name, e.g. sys_enter"},
    )


@hookimpl
def bpfman_register_kinds() -> list[KindSpec]:
    return [KindSpec(name=TYPE, kernel_prog_type="raw_tracepoint",
                     params_type=RawTracepointParams,
                     description="raw tracepoints (bpf_raw_tracepoint_open)")]


@hookimpl
def bpfman_validate_attach(ctx, program, params: RawTracepointParams) -> None:
    # Every raw tracepoint is also a tracefs event of some category.
    events = ctx.kernel.ensure_tracefs() / "events"
    if not any(events.glob(f"*/{params.name}/id")):
        raise AttachTargetNotFound(f"no raw tracepoint {params.name}", raw_tracepoint=params.name)


@hookimpl
def bpfman_attach(ctx, program, link, params: RawTracepointParams):
    kernel_link_id = ctx.kernel.attach_raw_tracepoint(
        Path(program.pin_path), params.name, Path(link.pin_path))
    # Detach needs no hook: the core releases a plain pinned link itself.
    return ctx.adopt_link(link, kernel_link_id)


@hookimpl
def bpfman_describe_link(link) -> str:
    return f"raw_tracepoint {link.params['name']}"
