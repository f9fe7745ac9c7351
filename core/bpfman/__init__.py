"""pybpfman: a daemon that loads, attaches and tracks eBPF programs for the host.

This top level is the plugin API: what a program-type plugin imports, with
`bpfman.kernel` (the kernel facade) and `bpfman.dispatch` (multi-prog
dispatch). The hook specifications are in `bpfman.hookspecs`.
"""

from __future__ import annotations

from bpfman.lazy import loader

# `typing` is not imported: the CLI imports this package first, and
# `bpfman --version` is timed (docs/performance.md, "CLI start-up").
TYPE_CHECKING = False
if TYPE_CHECKING:
    from bpfman.context import HookContext
    from bpfman.hookspecs import hookimpl
    from bpfman.kinds import KindSpec
    from bpfman.model.errors import (
        AttachTargetNotFound,
        BpfmanError,
        Conflict,
        InvalidArgument,
        KernelError,
        KernelFeatureMissing,
        NotFound,
    )
    from bpfman.model.records import (
        AttachPoint,
        DispatcherRecord,
        Drift,
        LinkRecord,
        ProgramRecord,
        Reach,
    )

__version__ = "0.1.0"


#: name -> (module, name), imported on first use: the CLI imports this package
#: too, and pluggy and attrs would double its start-up time for nothing.
_LAZY = {
    **{name: ("bpfman.model.errors", name) for name in (
        "AttachTargetNotFound", "BpfmanError", "Conflict", "InvalidArgument", "KernelError",
        "KernelFeatureMissing", "NotFound")},
    **{name: ("bpfman.model.records", name) for name in (
        "AttachPoint", "DispatcherRecord", "Drift", "LinkRecord", "ProgramRecord", "Reach")},
    "hookimpl": ("bpfman.hookspecs", "hookimpl"),
    "KindSpec": ("bpfman.kinds", "KindSpec"),
    "HookContext": ("bpfman.context", "HookContext"),
}

__getattr__ = loader(__name__, _LAZY, globals())

__all__ = [
    "AttachPoint",
    "AttachTargetNotFound",
    "BpfmanError",
    "Conflict",
    "DispatcherRecord",
    "Drift",
    "HookContext",
    "InvalidArgument",
    "KernelError",
    "KernelFeatureMissing",
    "KindSpec",
    "LinkRecord",
    "NotFound",
    "ProgramRecord",
    "Reach",
    "__version__",
    "hookimpl",
]
