"""The rtnetlink transport's pure parts: attribute walking and error acks."""

from __future__ import annotations

import errno
import struct

import pytest

from bpfman.kernel import rtnl
from bpfman.kernel.rtnl import NetlinkError


def _attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + bytes(-size % 4)


def _error(code: int, *tlvs: bytes) -> tuple[bytes, int]:
    """An NLMSG_ERROR body as the kernel sends it with CAP_ACK: header,
    error, the request's header, then extended-ack attributes."""
    request_header = struct.pack("=IHHII", 16, 19, 5, 1, 0)
    body = struct.pack("=i", code) + request_header + b"".join(tlvs)
    flags = rtnl.NLM_F_ACK_TLVS if tlvs else 0
    return struct.pack("=IHHII", 16 + len(body), 2, flags, 1, 0) + body, flags


def test_attributes_by_type_with_padding_and_nesting_flag() -> None:
    nested = _attr(2, b"\x01") + _attr(4, struct.pack("=I", 77))
    data = bytes(8) + _attr(3, b"veth0\0") + _attr(43 | 0x8000, nested) + _attr(3, b"second\0")
    found = rtnl.attributes(data, 8)
    assert found[3] == b"veth0\0"  # the first of a repeated type wins
    inner = rtnl.attributes(found[43], 0)
    assert inner[2] == b"\x01"
    assert struct.unpack("=I", inner[4]) == (77,)


def test_attributes_stop_at_a_malformed_length() -> None:
    data = _attr(1, b"ok") + struct.pack("=HH", 2, 9)
    assert rtnl.attributes(data, 0) == {1: b"ok"}


def test_zero_error_is_an_ack() -> None:
    body, flags = _error(0)
    rtnl._raise_or_ack(body, flags)


def test_error_carries_errno_and_the_kernels_extended_ack_text() -> None:
    body, flags = _error(-errno.EBUSY, _attr(1, b"XDP program already attached.\0"))
    with pytest.raises(NetlinkError) as caught:
        rtnl._raise_or_ack(body, flags)
    assert caught.value.code == errno.EBUSY
    assert "XDP program already attached." in str(caught.value)


def test_error_without_extended_ack_uses_strerror() -> None:
    body, flags = _error(-errno.ENODEV)
    with pytest.raises(NetlinkError) as caught:
        rtnl._raise_or_ack(body, flags)
    assert caught.value.code == errno.ENODEV
    assert "No such device" in str(caught.value)
