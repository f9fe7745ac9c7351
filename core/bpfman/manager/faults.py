"""Fault injection for crash-safety tests: kill the daemon at a named step.

``BPFMAN_FAULT=attach.after_kernel`` makes the daemon SIGKILL itself when a
mutation reaches that point, exactly like ``kill -9`` would at the worst
moment. Unset (always, in production) every point is a no-op. The points,
in the order a mutation passes them:

    load.after_kernel      programs loaded and pinned, nothing recorded
    load.before_commit     records written, transaction not committed
    attach.after_kernel    link attached and pinned, transaction open
    attach.before_commit   link record updated, transaction not committed
    detach.after_kernel    link unpinned, record deletion not committed
    unload.after_kernel    program unpinned, record deletion not committed
    update.before_commit   link changed in the kernel, record not committed
"""

from __future__ import annotations

import os
import signal

_armed = os.environ.get("BPFMAN_FAULT")


def fault_point(name: str) -> None:
    """Die here, without any clean-up, if this point is armed."""
    if _armed == name:
        os.kill(os.getpid(), signal.SIGKILL)
