"""What the kernel reports about a program, as the kernel layer returns it
and as replies embed it (`ProgramReply.kernel`): the kernel layer imports
this, never the request or reply types."""

from __future__ import annotations

import attrs


@attrs.frozen
class KernelProgramInfo:
    """The kernel's live view of one program (read at request time)."""

    program_id: int
    name: str
    kernel_type: str
    tag: str
    loaded_at: str | None
    uid: int | None
    gpl_compatible: bool
    map_ids: list[int]
    btf_id: int | None
    xlated_size: int
    jited_size: int
    memlock: int | None
    verified_insns: int | None
    run_count: int | None
    run_time_ns: int | None
