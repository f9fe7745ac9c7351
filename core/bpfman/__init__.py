"""pybpfman: a daemon that loads, attaches and tracks eBPF programs for the host.

This top level is the plugin API: what a program-type plugin imports, with
`bpfman.kernel` (the kernel facade) and `bpfman.dispatch` (multi-prog
dispatch). The hook specifications are in `bpfman.hookspecs`.
"""

from __future__ import annotations

# `typing` is not imported: the CLI imports this package first, and
# `bpfman --version` is timed (docs/performance.md, "CLI start-up").
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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


#: name -> module, imported on first use: the CLI imports this package too,
#: and pluggy and attrs would double its start-up time for nothing.
_LAZY = {
    **dict.fromkeys(["AttachTargetNotFound", "BpfmanError", "Conflict", "InvalidArgument",
                     "KernelError", "KernelFeatureMissing", "NotFound"], "bpfman.model.errors"),
    "hookimpl": "bpfman.hookspecs",
    "KindSpec": "bpfman.kinds",
    "HookContext": "bpfman.context",
    "AttachPoint": "bpfman.model.records",
    "DispatcherRecord": "bpfman.model.records",
    "Drift": "bpfman.model.records",
    "LinkRecord": "bpfman.model.records",
    "ProgramRecord": "bpfman.model.records",
    "Reach": "bpfman.model.records",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)

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
