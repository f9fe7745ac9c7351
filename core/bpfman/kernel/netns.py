"""Network namespaces: a handle (path, inode) and `entered()`.

A netns is named by a path such as ``/var/run/netns/NAME`` (what ``ip netns``
creates) or ``/proc/PID/ns/net``; its identity is the inode of that file
(``netns_id``), which stays the same for the namespace's whole life and is
never the identity of another live namespace. `NetNs.entered()` runs code
inside the namespace *in the calling thread* (setns(2) on the thread, always
restored, even on error), so use it only in a worker thread: a netlink or
other socket created inside belongs to that namespace for its whole life.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from bpfman.kernel._sys.setns import setns
from bpfman.model.errors import AttachTargetNotFound, InvalidArgument, KernelError

CLONE_NEWNET = 0x40000000
_SELF = Path("/proc/thread-self/ns/net")
_local = threading.local()


@attrs.frozen
class NetNs:
    """A network namespace. ``path=None`` is the daemon's own namespace."""

    path: Path | None = attrs.field(default=None,
                                    converter=lambda p: None if p in (None, "") else Path(p))

    @classmethod
    def of(cls, path: str | Path | None) -> NetNs:
        """Validate a user-given path (absolute, exists, is a netns file).

        :raises InvalidArgument: relative path.
        :raises AttachTargetNotFound: no such namespace.
        """
        if path in (None, ""):
            return cls(None)
        p = Path(path)  # type: ignore[arg-type]
        if not p.is_absolute():
            raise InvalidArgument(f"netns must be an absolute path, got {path!r}",
                                  field="netns")
        ns = cls(p)
        ns.inode()
        return ns

    def exists(self) -> bool:
        if self.path is None:
            return True
        try:
            self.inode()
        except AttachTargetNotFound:
            return False
        return True

    def inode(self) -> int:
        """The namespace's identity (``netns_id``).

        :raises AttachTargetNotFound: the path is gone or not a netns.
        """
        path = self.path or _SELF
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise AttachTargetNotFound(f"no network namespace at {path} ({exc.strerror})",
                                       netns=str(path)) from exc
        try:
            # An `ip netns` file is a bind mount of an nsfs inode: fstat of
            # the open file gives the namespace inode (a plain file would not
            # be accepted by setns, checked in entered()).
            return os.fstat(fd).st_ino
        finally:
            os.close(fd)

    @contextmanager
    def entered(self) -> Iterator[None]:
        """Run the block inside this namespace in the current thread.

        Nested use is fine. The thread's previous namespace is restored on
        exit whatever happens; failing to restore it is fatal for the thread's
        later work, so it raises `KernelError` (never silently continues).
        """
        if self.path is None:
            yield
            return
        depth = getattr(_local, "depth", 0)
        try:
            target = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise AttachTargetNotFound(f"no network namespace at {self.path}"
                                       f" ({exc.strerror})", netns=str(self.path)) from exc
        previous = os.open(_SELF, os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                setns(target, CLONE_NEWNET)
            except OSError as exc:
                raise InvalidArgument(f"{self.path} is not a network namespace"
                                      f" ({exc.strerror})", field="netns") from exc
            _local.depth = depth + 1
            try:
                yield
            finally:
                _local.depth = depth
                try:
                    setns(previous, CLONE_NEWNET)
                except OSError as exc:  # pragma: no cover - would need a broken kernel
                    raise KernelError("setns(restore)", exc.errno or 0) from exc
        finally:
            os.close(previous)
            os.close(target)

    def __str__(self) -> str:
        return str(self.path) if self.path else "(daemon netns)"


def host_netns(netns: NetNs | None = None) -> NetNs:
    """`netns`, or the daemon's own namespace when None."""
    return netns if netns is not None else NetNs()
