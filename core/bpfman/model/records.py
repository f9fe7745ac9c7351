"""Stored nouns: what the state store keeps, one attrs class per table row."""

from __future__ import annotations

from typing import Any

import attrs


@attrs.frozen
class ProgramRecord:
    """A program this daemon loaded. ``program_id`` is the kernel's id."""

    program_id: int
    name: str
    type: str
    path: str
    pin_path: str
    map_owner_id: int
    map_pin_dir: str
    global_data: dict[str, bytes] = attrs.field(factory=dict)
    metadata: dict[str, str] = attrs.field(factory=dict)
    loaded_by_uid: int | None = None
    created_at: str = ""
    attach_func: str | None = None  # fentry/fexit target, fixed at load time
    image: str | None = None  # source image pinned by digest (path is then its cached object)


@attrs.frozen
class AttachPoint:
    """Where a link runs; links with the same attach point share a lock (and,
    for multi-prog types, a dispatcher). ``key`` is type-specific text such as
    ``"syscalls/sys_enter_getpid"`` or ``"ifindex=3/ingress"``."""

    type: str
    key: str
    netns_id: int | None = None

    def lock_key(self) -> str:
        """The text form the store keeps (``type:netns_id:key``)."""
        return f"{self.type}:{self.netns_id or 0}:{self.key}"

    @classmethod
    def parse(cls, text: str) -> AttachPoint:
        """The inverse of `lock_key`."""
        kind, netns_id, key = text.split(":", 2)
        return cls(type=kind, key=key, netns_id=int(netns_id) or None)

    def __str__(self) -> str:
        return self.lock_key()


def _attach_point_text(value: AttachPoint | str) -> str:
    return value.lock_key() if isinstance(value, AttachPoint) else value


@attrs.frozen
class Reach:
    """What one attachment reaches beyond its program, for the grant check
    (`bpfman.authz.grants`). A plugin describes it in `bpfman_attach_reach`.

    :ivar network: the attachment acts on a network namespace (``netns``,
        None for the daemon's own) and, if ``interface`` is set, one interface.
    :ivar priority: its place in a chain shared with other owners' programs.
    :ivar processes: pids whose execution it observes.
    :ivar every_process: it observes every process that runs ``files``.
    :ivar files: files it instruments (the kernel reads them for it).
    :ivar cgroups: cgroup directories it attaches to.
    """

    network: bool = False
    netns: str | None = None
    interface: str | None = None
    priority: int | None = None
    processes: tuple[int, ...] = ()
    every_process: bool = False
    files: tuple[str, ...] = ()
    cgroups: tuple[str, ...] = ()


@attrs.frozen
class LinkRecord:
    """One attachment of a program, named by our ``link_id``."""

    link_id: int
    program_id: int
    type: str
    params: dict[str, Any]
    attach_point: str
    seq: int
    pin_path: str
    metadata: dict[str, str] = attrs.field(factory=dict)
    kernel_link_id: int | None = None
    details: dict[str, Any] = attrs.field(factory=dict)
    created_at: str = ""
    owner_uid: int | None = None


@attrs.frozen
class DispatcherRecord:
    """A multi-prog dispatcher at one attach point (kept as its `lock_key`)."""

    attach_point: str = attrs.field(converter=_attach_point_text)
    type: str
    mode: str
    program_id: int | None
    revision: int
    pin_dir: str | None = None
    #: XDP: the driver mode the kernel attached it in (native, generic, offload)
    attach_mode: str | None = None


@attrs.frozen
class Drift:
    """A difference between the store and the kernel, and what was done."""

    subject: str
    problem: str
    action: str
    #: a shared attach point (lock key) the core should rebuild from the
    #: records to repair this drift (set by plugins in `bpfman_reconcile`)
    rebuild: str | None = None

    def __str__(self) -> str:
        return f"{self.subject}: {self.problem}; {self.action}"

