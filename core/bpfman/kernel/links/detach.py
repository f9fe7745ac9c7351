"""Detach a pinned link so that it has stopped running when the call returns.

Unpinning alone drops the last reference from bpffs inode eviction, and the
kernel then frees the link from a workqueue; a perf-event link's program was
seen to keep firing after the unlink returned (longer on a busy machine, since
the kworker defers the perf event's release again). Holding an fd across the
unpin and closing it afterwards makes this thread drop the last reference:
the link and its perf event are released in the close() syscall itself.
"""

from __future__ import annotations

import os
from contextlib import suppress
from pathlib import Path

from bpfman.kernel import pins
from bpfman.model.errors import StateDrift


def detach_link(link_pin: Path) -> bool:
    """Remove the link pinned at `link_pin` and release it synchronously.

    Idempotent: a pin that is already gone is fine.

    A directory is a link made of several kernel links (a perf_event link
    has one per CPU): each is detached, then the directory removed.

    :return: True if the pin existed. If something else still holds the link
        (another pin, an open fd), it keeps running until that goes too.
    """
    if Path(link_pin).is_dir():
        for entry in sorted(Path(link_pin).iterdir()):
            detach_link(entry)
        with suppress(FileNotFoundError):
            os.rmdir(link_pin)
        return True
    try:
        with pins.open_pinned(Path(link_pin), "link"):
            pins.remove_pin(link_pin)
    except StateDrift:  # the pin is missing: nothing to detach
        return pins.remove_pin(link_pin)
    return True
