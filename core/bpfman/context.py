"""What an ownership hook receives as ``ctx``."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

from bpfman.kernel.bpffs import Bpffs
from bpfman.model.records import LinkRecord


@attrs.frozen
class HookContext:
    """:ivar kernel: the `bpfman.kernel` facade, the only way to the kernel.
    :ivar bpffs: pin paths.
    :ivar undo: the inverse of every kernel change made so far in this call;
        the core unwinds it if the call fails and discards it after commit.
    :ivar features: `bpfman.kernel.KernelFeatures` detected at startup.
    :ivar plugin_config: this plugin's table from the daemon config (a dict).
    :ivar config: the whole daemon `Config` (observers read their table with
        ``ctx.config.plugins.config.get(NAME, {})``).
    :ivar log: a logger named after the plugin.
    """

    kernel: ModuleType
    bpffs: Bpffs
    undo: ExitStack
    features: Any
    plugin_config: dict[str, Any] = attrs.field(factory=dict)
    config: Any = None
    log: logging.Logger = attrs.field(factory=lambda: logging.getLogger("bpfman.plugin"))

    def adopt_link(self, link: LinkRecord, kernel_link_id: int,
                   details: dict[str, Any] | None = None) -> LinkRecord:
        """The usual end of `bpfman_attach` for a type whose attachment is one
        kernel link pinned at ``link.pin_path``: register its detach on the
        undo stack and return the record with what the kernel assigned."""
        self.undo.callback(self.kernel.detach_link, Path(link.pin_path))
        return attrs.evolve(link, kernel_link_id=kernel_link_id, details=details or {})
