"""pybpfman: a daemon that loads, attaches and tracks eBPF programs for the host.

This top level is the plugin API: what a program-type plugin imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bpfman.model.errors import (
    AttachTargetNotFound,
    BpfmanError,
    Conflict,
    InvalidArgument,
    KernelError,
    KernelFeatureMissing,
    NotFound,
)

if TYPE_CHECKING:
    from bpfman.hookspecs import hookimpl
    from bpfman.kinds import KindSpec

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Imported on first use: the CLI imports this package too, and pluggy and
    # attrs would double its start-up time for nothing.
    if name == "hookimpl":
        from bpfman.hookspecs import hookimpl

        return hookimpl
    if name == "KindSpec":
        from bpfman.kinds import KindSpec

        return KindSpec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "AttachTargetNotFound",
    "BpfmanError",
    "Conflict",
    "InvalidArgument",
    "KernelError",
    "KernelFeatureMissing",
    "KindSpec",
    "NotFound",
    "__version__",
    "hookimpl",
]
