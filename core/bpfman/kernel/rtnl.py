"""rtnetlink requests on a plain blocking socket, with pyroute2's message
classes (`ifinfmsg`, `tcmsg`) as the codec.

Why not pyroute2's `IPRoute`: it starts an asyncio loop for every socket
(0.3 ms to open) and its helpers dump every interface to find one by name
(about 1 ms each); an XDP attach made a dozen such calls and spent three
quarters of its time there (py-spy profile, docs/performance.md). Here a
request is one send and the recv of its answer: tens of microseconds.

Errors come back as pyroute2's `NetlinkError` (``.code`` is the errno), with
the kernel's extended-ack text when it gives one ("Native and generic XDP
can't be active at the same time.").
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from pyroute2.netlink.exceptions import NetlinkError

from bpfman.kernel.netns import NetNs
from bpfman.model.errors import KernelError

NLM_F_REQUEST = 0x1
NLM_F_MULTI = 0x2
NLM_F_ACK = 0x4
NLM_F_ROOT = 0x100
NLM_F_MATCH = 0x200
NLM_F_DUMP = NLM_F_ROOT | NLM_F_MATCH
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
#: the kernel's answer to an acked request carries extended-ack attributes
NLM_F_ACK_TLVS = 0x200

NLMSG_ERROR = 2
NLMSG_DONE = 3

RTM_NEWLINK, RTM_GETLINK, RTM_SETLINK = 16, 18, 19
RTM_NEWQDISC, RTM_DELQDISC, RTM_GETQDISC = 36, 37, 38
RTM_NEWTFILTER, RTM_DELTFILTER, RTM_GETTFILTER = 44, 45, 46

#: request flags of the usual operations (as `ip`/`tc` send them)
CREATE = NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL  # fails with EEXIST if present
REPLACE = NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE
ACKED = NLM_F_ACK
DUMP = NLM_F_DUMP

_SOL_NETLINK = 270
_NETLINK_CAP_ACK = 10  # errors echo only the request's header, not its body
_NETLINK_EXT_ACK = 11
_NLMSGERR_ATTR_MSG = 1
_HEADER = struct.Struct("=IHHII")
_RECV_SIZE = 1 << 18

Message = TypeVar("Message")


class Rtnl:
    """One NETLINK_ROUTE socket, made inside a network namespace (where it
    stays: interfaces, qdiscs and filters are those of that namespace)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._seq = 0

    def request(self, msg: Message, msg_type: int, flags: int = 0) -> list[Message]:
        """Send `msg` (a pyroute2 message with its fields set) and return the
        answers decoded as the same class: every part of a dump, the one
        reply of a get, nothing for an acked change.

        :raises NetlinkError: the kernel refused (``.code`` = errno).
        """
        return [self._decode(msg, body) for body in self.request_raw(msg, msg_type, flags)]

    @staticmethod
    def _decode(msg: Message, body: bytes) -> Message:
        reply = type(msg)(body)
        reply.decode()  # type: ignore[attr-defined]
        return reply

    def request_raw(self, msg: Any, msg_type: int, flags: int = 0) -> list[bytes]:
        """`request`, answering undecoded messages (header included), for
        callers that read a few attributes with `attributes` (pyroute2 decodes
        every attribute of an interface: about 0.3 ms each)."""
        self._seq += 1
        header: Any = msg["header"]  # type: ignore[index]
        header["type"] = msg_type
        header["flags"] = NLM_F_REQUEST | flags
        header["sequence_number"] = self._seq
        header["pid"] = 0
        msg.encode()  # type: ignore[attr-defined]
        self._sock.send(msg.data)  # type: ignore[attr-defined]
        replies: list[bytes] = []
        while True:
            data = self._sock.recv(_RECV_SIZE)
            offset = 0
            while offset + _HEADER.size <= len(data):
                length, kind, reply_flags, seq, _pid = _HEADER.unpack_from(data, offset)
                if length < _HEADER.size:
                    raise NetlinkError(errno.EPROTO, "truncated netlink message")
                body = data[offset:offset + length]
                offset += (length + 3) & ~3
                if seq != self._seq:
                    continue  # an answer to an earlier, abandoned request
                if kind == NLMSG_ERROR:
                    _raise_or_ack(body, reply_flags)
                    return replies
                if kind == NLMSG_DONE:
                    return replies
                replies.append(body)
                if not (reply_flags & NLM_F_MULTI) and not (flags & NLM_F_ACK):
                    return replies  # the single answer to a plain get


def attributes(data: bytes, offset: int) -> dict[int, bytes]:
    """The netlink attributes from `offset` on, by type (flags masked off;
    the first of repeated types wins), payloads unpadded."""
    out: dict[int, bytes] = {}
    while offset + 4 <= len(data):
        size, kind = struct.unpack_from("=HH", data, offset)
        if size < 4:
            break
        out.setdefault(kind & 0x3FFF, data[offset + 4:offset + size])
        offset += (size + 3) & ~3
    return out


def kernel_error(op: str, exc: NetlinkError, **details: Any) -> KernelError:
    """A refused request as the daemon reports kernel errors (op, errno, text)."""
    return KernelError(op, exc.code or errno.EIO, f"{op} failed: {exc}", **details)


def _raise_or_ack(body: bytes, flags: int) -> None:
    (code,) = struct.unpack_from("=i", body, _HEADER.size)
    if code == 0:
        return
    code = -code
    message = os.strerror(code)
    if flags & NLM_F_ACK_TLVS:
        # capped: after the error code comes only the request's header
        text = attributes(body, _HEADER.size + 4 + _HEADER.size).get(_NLMSGERR_ATTR_MSG)
        if text:
            said = text.split(b"\0", 1)[0].decode(errors="replace")
            message = f"{message}: {said}"
    raise NetlinkError(code, message)


@contextmanager
def connect(netns: NetNs) -> Iterator[Rtnl]:
    """An rtnetlink socket in `netns`, closed on exit."""
    with netns.entered():
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC,
                             socket.NETLINK_ROUTE)
    try:
        sock.setsockopt(_SOL_NETLINK, _NETLINK_CAP_ACK, 1)
        sock.setsockopt(_SOL_NETLINK, _NETLINK_EXT_ACK, 1)
        sock.bind((0, 0))
        yield Rtnl(sock)
    finally:
        sock.close()


__all__ = ["ACKED", "CREATE", "DUMP", "REPLACE", "NetlinkError", "Rtnl", "attributes", "connect",
           "kernel_error"]
