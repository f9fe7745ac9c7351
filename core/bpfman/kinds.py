"""What a program-type plugin declares about each type it owns."""

from __future__ import annotations

import attrs


@attrs.frozen
class KindSpec:
    """One program type, as returned by `bpfman_register_kinds`.

    :param name: the type's name on the wire and in the CLI (``tracepoint``).
    :param kernel_prog_type: the kernel program type its programs load as,
        libbpf's name for it (``tracepoint``, ``kprobe``, ``xdp``, ``sched_cls``).
    :param params_type: attrs class of the attach parameters; the core
        structures ``AttachRequest.params`` into it (errors carry field paths).
    :param required_features: names of `KernelFeatures` fields that must be
        true for this type to work; otherwise load/attach fail with
        `KernelFeatureMissing` naming the first missing one.
    :param description: one line for `plugin.list` and the OpenRPC document.
    :param multiprog: whether several programs share one attach point through
        a dispatcher built by `bpfman_build_dispatcher`.
    """

    name: str
    kernel_prog_type: str
    params_type: type
    required_features: tuple[str, ...] = ()
    description: str = ""
    multiprog: bool = False
