"""pybpfman: a daemon that loads, attaches and tracks eBPF programs for the host.

This top level is the plugin API: what a program-type plugin imports.
"""

from __future__ import annotations

from bpfman.errors import (
    AttachTargetNotFound,
    BpfmanError,
    Conflict,
    InvalidArgument,
    KernelError,
    KernelFeatureMissing,
    NotFound,
)
from bpfman.hookspecs import hookimpl
from bpfman.kinds import KindSpec

__version__ = "0.1.0"

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
