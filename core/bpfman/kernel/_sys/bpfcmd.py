"""Raw bpf(2) commands that libbpf 1.1 cannot express: TCX link creation
with a relative anchor and an expected revision, BPF_PROG_QUERY with link
ids and the revision, BPF_LINK_UPDATE and BPF_LINK_DETACH.

Each command has its own `union bpf_attr` member mirrored as a ctypes
struct; the layouts (byte offsets) are those of the kernel UAPI (6.6+),
pinned in tests/unit/test_tc_structs.py. The kernel accepts a buffer
shorter than its own `union bpf_attr` (it zero-fills the rest), so each
call passes exactly its member.
"""

from __future__ import annotations

import ctypes
import platform
from ctypes import c_int, c_long, c_uint32, c_uint64, c_void_p

from bpfman.kernel._sys.errors import SysError

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = c_long

_NR_BPF = {"x86_64": 321, "aarch64": 280, "riscv64": 280, "ppc64le": 361, "s390x": 351}

# enum bpf_cmd
BPF_PROG_QUERY = 16
BPF_LINK_CREATE = 28
BPF_LINK_UPDATE = 29
BPF_LINK_DETACH = 34

# enum bpf_attach_type (6.6+)
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47

# enum bpf_link_type
BPF_LINK_TYPE_TCX = 11

# attach flags (mprog relative placement)
BPF_F_REPLACE = 1 << 2
BPF_F_BEFORE = 1 << 3
BPF_F_AFTER = 1 << 4
BPF_F_ID = 1 << 5
BPF_F_LINK = 1 << 13


class TcxLinkCreateAttr(ctypes.Structure):
    """`union bpf_attr`.link_create with its tcx member (size 32)."""

    _fields_ = (
        ("prog_fd", c_uint32),
        ("target_ifindex", c_uint32),
        ("attach_type", c_uint32),
        ("flags", c_uint32),
        ("relative_id", c_uint32),  # union: relative_fd | relative_id
        ("_pad", c_uint32),
        ("expected_revision", c_uint64),
    )


class ProgQueryAttr(ctypes.Structure):
    """`union bpf_attr`.query (size 64)."""

    _fields_ = (
        ("target_ifindex", c_uint32),  # union: target_fd | target_ifindex
        ("attach_type", c_uint32),
        ("query_flags", c_uint32),
        ("attach_flags", c_uint32),
        ("prog_ids", c_uint64),
        ("count", c_uint32),  # union: prog_cnt | count
        ("_pad", c_uint32),
        ("prog_attach_flags", c_uint64),
        ("link_ids", c_uint64),
        ("link_attach_flags", c_uint64),
        ("revision", c_uint64),
    )


class LinkUpdateAttr(ctypes.Structure):
    """`union bpf_attr`.link_update (size 16)."""

    _fields_ = (
        ("link_fd", c_uint32),
        ("new_prog_fd", c_uint32),
        ("flags", c_uint32),
        ("old_prog_fd", c_uint32),
    )


class LinkDetachAttr(ctypes.Structure):
    """`union bpf_attr`.link_detach (size 4)."""

    _fields_ = (("link_fd", c_uint32),)


def bpf(cmd: int, attr: ctypes.Structure, name: str) -> int:
    """bpf(cmd, &attr, sizeof(attr)); raises `SysError(errno, name)`."""
    nr = _NR_BPF.get(platform.machine())
    if nr is None:
        raise SysError(38, name, f"bpf(2) syscall number unknown for {platform.machine()}")
    ret = _syscall(c_long(nr), c_int(cmd), c_void_p(ctypes.addressof(attr)),
                   c_uint32(ctypes.sizeof(attr)))
    if ret < 0:
        raise SysError(ctypes.get_errno(), name)
    return int(ret)


# enum bpf_attach_type, the fd-target types (cgroup, netns, netfilter)
BPF_SK_LOOKUP = 36
BPF_NETFILTER = 45

# enum bpf_link_type
BPF_LINK_TYPE_CGROUP = 3
BPF_LINK_TYPE_NETNS = 5
BPF_LINK_TYPE_NETFILTER = 10


class NetfilterLinkCreateAttr(ctypes.Structure):
    """`union bpf_attr`.link_create with its netfilter member (size 32)."""

    _fields_ = (
        ("prog_fd", c_uint32),
        ("target_fd", c_uint32),  # must be 0: the link hooks the caller's netns
        ("attach_type", c_uint32),
        ("flags", c_uint32),
        ("pf", c_uint32),
        ("hooknum", c_uint32),
        ("priority", ctypes.c_int32),
        ("nf_flags", c_uint32),
    )
