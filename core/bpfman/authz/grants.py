"""What a grant reaches: the bounds of an authorization rule, checked on every
load and attach the daemon does for a caller other than root.

A rule's method patterns say which calls a caller may make; its bounds say
what those calls may touch (see docs/security.md for the config):

- ``program_types``: the types it may load and attach. Unset, it is every
  type whose programs cannot read kernel memory, i.e. every type but the
  tracing ones (kprobe, tracepoint, perf_event, fentry/fexit, lsm...), judged
  by the kernel program type, so a third-party type is classed the same way.
- ``netns`` and ``interfaces``: the network namespaces it may attach in
  (``"host"`` for the daemon's own, ``"*"`` for all, or path globs such as
  ``/run/netns/alice-*``, compared by namespace identity, not by name), and
  the interfaces of the daemon's own namespace it may use without being
  granted that whole namespace. A namespace whose user namespace the caller
  owns is always allowed: the caller could do the same there itself.
- ``min_priority``: the earliest place it may take in a shared chain.
- ``as_caller``: files, processes and cgroups an attach reaches are checked
  with the caller's own rights (read the file, ptrace the process, own the
  cgroup directory). ``false`` lends the daemon's rights: root-equivalent.
- ``program_metadata``: only programs whose metadata has these key/value
  pairs (e.g. one Kubernetes application's, ``bpfman.io/ProgramName``) are
  visible and reachable: listed, read, their maps, their links.

Each check runs as the caller where the kernel can decide (files, cgroups:
see `callerfiles`) and by the kernel's own rules where it cannot (a process
is ptrace-able by the caller when every one of its uids and gids is the
caller's and it is dumpable, as in ``__ptrace_may_access``).
"""

from __future__ import annotations

import fcntl
import fnmatch
import glob
import os
import struct
from collections.abc import Mapping, Sequence

import attrs

from bpfman.authz.callerfiles import check_readable, open_as
from bpfman.model.caller import Caller
from bpfman.model.errors import BpfmanError, PermissionDenied
from bpfman.model.records import Reach

#: Kernel program types loadable only with CAP_PERFMON: their programs read
#: kernel memory (bpf_probe_read_kernel) or run inside any program (ext).
TRACING_KERNEL_TYPES = frozenset({
    "kprobe", "tracepoint", "perf_event", "raw_tracepoint", "raw_tracepoint_writable",
    "tracing", "lsm", "struct_ops", "ext",
})

HOST = "host"
_NS_GET_USERNS = 0xB701
_NS_GET_OWNER_UID = 0xB704


@attrs.frozen
class Bounds:
    """The bounds of one rule (see the module doc)."""

    program_types: tuple[str, ...] | None = None
    netns: tuple[str, ...] = ()
    interfaces: tuple[str, ...] = ()
    min_priority: int = 0
    as_caller: bool = True
    program_metadata: tuple[tuple[str, str], ...] = ()

    def selects(self, metadata: Mapping[str, str]) -> bool:
        return all(metadata.get(k) == v for k, v in self.program_metadata)

    @property
    def reaches_anything(self) -> bool:
        """True when no attach target is ever refused by these bounds."""
        return "*" in self.netns and not self.as_caller and self.min_priority <= 0

    def allows_type(self, name: str, kernel_prog_type: str) -> bool:
        if self.program_types is None:
            return kernel_prog_type not in TRACING_KERNEL_TYPES
        return any(fnmatch.fnmatchcase(name, p) for p in self.program_types)

    def refusal(self, caller: Caller, kind: str, kernel_prog_type: str,
                reach: Reach | None) -> str | None:
        """Why these bounds refuse this attach, or None when they allow it."""
        if not self.allows_type(kind, kernel_prog_type):
            return f"program type {kind} is not granted"
        if self.reaches_anything:
            return None
        if reach is None:
            return f"type {kind} does not describe what its attachments reach"
        if reach.priority is not None and reach.priority < self.min_priority:
            return f"priority {reach.priority} is before the granted minimum {self.min_priority}"
        if reach.network:
            why = self._netns_refusal(caller, reach)
            if why:
                return why
        if self.as_caller:
            return _as_caller_refusal(caller, reach)
        return None

    def _netns_refusal(self, caller: Caller, reach: Reach) -> str | None:
        if "*" in self.netns:
            return None
        where = reach.netns or "the daemon's network namespace"
        try:
            ident, owner = _netns_identity(reach.netns, caller)
        except BpfmanError as exc:
            return exc.message
        if ident == _netns_identity(None, caller)[0]:
            if HOST in self.netns:
                return None
            if reach.interface and any(fnmatch.fnmatchcase(reach.interface, p)
                                       for p in self.interfaces):
                return None
            what = f"interface {reach.interface}" if reach.interface else "the whole namespace"
            return f"{what} of the daemon's network namespace is not granted"
        if owner == caller.uid:
            return None
        for pattern in self.netns:
            if pattern != HOST and ident in _identities(pattern):
                return None
        return f"network namespace {where} is not granted (owned by uid {owner})"


def selects(caller: Caller, metadata: Mapping[str, str]) -> bool:
    """Whether one of the caller's grants reaches a program with `metadata`."""
    return caller.grants is None or any(g.selects(metadata) for g in caller.grants)


def selects_everything(caller: Caller) -> bool:
    """Whether some grant of the caller is bound to no program metadata."""
    return caller.grants is None or any(not g.program_metadata for g in caller.grants)


def check_program(caller: Caller, program_id: int, metadata: Mapping[str, str]) -> None:
    """Raise PermissionDenied unless the caller's grants reach this program."""
    if not selects(caller, metadata):
        raise PermissionDenied(f"program {program_id} is not among the programs granted to"
                               f" uid {caller.uid}", program_id=program_id)


def check_load(caller: Caller, grants: Sequence[Bounds] | None,
               kinds: Sequence[tuple[str, str]]) -> None:
    """Refuse a load of these (type, kernel type) pairs not covered by one grant."""
    if grants is None:
        return
    for kind, kernel_type in kinds:
        if not any(g.allows_type(kind, kernel_type) for g in grants):
            hint = (" (tracing types read kernel memory: granting them is root-equivalent)"
                    if kernel_type in TRACING_KERNEL_TYPES else "")
            raise PermissionDenied(f"uid {caller.uid} may not load {kind} programs{hint}",
                                   type=kind)


def may_trace(grants: Sequence[Bounds] | None, kinds: Sequence[tuple[str, str]]) -> bool:
    """Whether the caller's loads may use what only tracing programs may
    (CAP_PERFMON's helpers): only if a grant allows one of the tracing types
    among `kinds` (every registered (type, kernel type)) anyway."""
    if grants is None:
        return True
    return any(g.allows_type(name, kernel_type) for g in grants for name, kernel_type in kinds
               if kernel_type in TRACING_KERNEL_TYPES)


def check_attach(caller: Caller, grants: Sequence[Bounds] | None, kind: str,
                 kernel_prog_type: str, reach: Reach | None) -> None:
    """Raise PermissionDenied unless one grant allows the whole attach."""
    if grants is None:
        return
    reasons = [g.refusal(caller, kind, kernel_prog_type, reach) for g in grants]
    if any(r is None for r in reasons):
        return
    raise PermissionDenied(f"uid {caller.uid} may not attach here: {reasons[0]}", type=kind)


def _as_caller_refusal(caller: Caller, reach: Reach) -> str | None:
    try:
        for path in reach.files:
            check_readable(path, caller, field="params")
    except BpfmanError as exc:
        return exc.message
    for path in reach.cgroups:
        if not _delegated(path, caller):
            return f"cgroup {path} is not delegated to uid {caller.uid}"
    if reach.every_process:
        return "it would observe every process, not only the caller's: give a pid"
    for pid in reach.processes:
        if not may_ptrace(caller, pid):
            return f"uid {caller.uid} may not trace process {pid}"
    return None


def _delegated(path: str, caller: Caller) -> bool:
    """A cgroup is the caller's when its directory is (systemd's Delegate=,
    or an admin's chown, hands a subtree to a user that way). Ownership, not
    a write check: the daemon may see cgroupfs read-only (its unit)."""
    try:
        return os.stat(path).st_uid == caller.uid
    except OSError:
        return False


def may_ptrace(caller: Caller, pid: int) -> bool:
    """The credential part of the kernel's ptrace read check, for `caller`.

    Every uid (real, effective, saved) of the process must be the caller's,
    every gid its primary gid, and the process dumpable (a non-dumpable
    process's /proc directory is owned by root).
    """
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        st = os.stat(f"/proc/{pid}")
    except OSError:
        return False
    uids = {int(u) for u in fields["Uid"].split()[:3]}
    gids = {int(g) for g in fields["Gid"].split()[:3]}
    return uids == {caller.uid} and gids == {caller.gid} and st.st_uid == caller.uid


def _netns_identity(path: str | None, caller: Caller) -> tuple[tuple[int, int], int]:
    """(device, inode) of the namespace and the uid owning its user namespace.

    The caller must be able to open the path itself (it names it)."""
    fd = open_as(path, caller, field="netns") if path else os.open(
        "/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        try:
            userns = fcntl.ioctl(fd, _NS_GET_USERNS)
        except OSError:
            raise PermissionDenied(f"{path} is not a namespace", netns=path) from None
        try:
            buf = bytearray(4)
            fcntl.ioctl(userns, _NS_GET_OWNER_UID, buf)
            owner = struct.unpack("I", buf)[0]
        finally:
            os.close(userns)
        return (st.st_dev, st.st_ino), owner
    finally:
        os.close(fd)


def _identities(pattern: str) -> set[tuple[int, int]]:
    """Namespaces named by an admin's glob (never by the caller's path)."""
    if pattern == "*":
        return set()
    out = set()
    for path in glob.glob(pattern):
        try:
            st = os.stat(path)
        except OSError:
            continue
        out.add((st.st_dev, st.st_ino))
    return out
