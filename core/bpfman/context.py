"""What an ownership hook receives as ``ctx``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

import attrs

from bpfman.model.errors import BpfmanError
from bpfman.model.records import Drift, LinkRecord

if TYPE_CHECKING:  # plugins import this module; the kernel layer loads in the daemon
    from bpfman.kernel.bpffs import Bpffs


@attrs.frozen
class HookContext:
    """:ivar kernel: the `bpfman.kernel` facade (plugins reach the kernel
        through it or through `bpfman.dispatch`).
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

    def link_drifts(self, links: list[LinkRecord], what: str, read: Callable[[str], Any],
                    defunct: Callable[[LinkRecord, Any], str | None]) -> list[Drift]:
        """The usual `bpfman_reconcile` of a type whose links are kernel links
        pinned at ``link.pin_path``: read each with `read` (e.g.
        ``ctx.kernel.fd_link_info``); a pin that is not `what` link, or a link
        `defunct` gives a reason for, is a drift. Both are kept for the user
        to detach; links whose pin is gone are the core's to remove."""
        drifts = []
        for ln in links:
            if not Path(ln.pin_path).exists():
                continue
            try:
                info = read(ln.pin_path)
            except BpfmanError as exc:
                drifts.append(Drift(f"link {ln.link_id}", f"pin is not {what} link ({exc})",
                                    "kept; detach it to clean up"))
                continue
            why = defunct(ln, info)
            if why:
                drifts.append(Drift(f"link {ln.link_id}", why, "kept; detach it to clean up"))
        return drifts
