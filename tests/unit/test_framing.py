"""Newline-delimited framing over trio memory streams (no sockets)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from bpfman.rpc.framing import DEFAULT_MAX_LINE, LineReader, LineTooLong, send_line


def pair(max_line: int = DEFAULT_MAX_LINE) -> tuple[trio.abc.SendStream, LineReader]:
    send, receive = trio.testing.memory_stream_pair()
    return send, LineReader(receive, max_line)


async def test_lines_split_over_many_reads() -> None:
    send, reader = pair()
    async with trio.open_nursery() as nursery:

        async def trickle() -> None:
            for byte in b'{"a":1}\n{"b":2}\n':
                await send.send_all(bytes([byte]))
                await trio.lowlevel.checkpoint()

        nursery.start_soon(trickle)
        assert await reader.receive_line() == b'{"a":1}'
        assert await reader.receive_line() == b'{"b":2}'


async def test_many_lines_in_one_read_and_eof() -> None:
    send, reader = pair()
    await send.send_all(b"one\ntwo\n\nthree\n")
    await send.aclose()
    assert [await reader.receive_line() for _ in range(5)] == [b"one", b"two", b"", b"three", None]
    assert await reader.receive_line() is None  # EOF is sticky


async def test_final_line_without_newline_is_returned() -> None:
    send, reader = pair()
    await send.send_all(b"first\nlast")
    await send.aclose()
    assert await reader.receive_line() == b"first"
    assert await reader.receive_line() == b"last"
    assert await reader.receive_line() is None


async def test_line_of_exactly_the_limit_is_accepted() -> None:
    send, reader = pair(max_line=8)
    await send.send_all(b"12345678\n")
    assert await reader.receive_line() == b"12345678"


async def test_complete_overlong_line_is_reported_and_the_next_line_read() -> None:
    send, reader = pair(max_line=8)
    await send.send_all(b"123456789\nok\n")
    with pytest.raises(LineTooLong) as info:
        await reader.receive_line()
    assert info.value.limit == 8
    assert await reader.receive_line() == b"ok"


async def test_overlong_line_is_reported_before_its_end_arrives() -> None:
    # The reader must not buffer an endless line: it reports as soon as the
    # limit is crossed, then drops the rest of that line.
    send, reader = pair(max_line=16)
    await send.send_all(b"x" * 40)
    with pytest.raises(LineTooLong):
        await reader.receive_line()
    await send.send_all(b"y" * 100)
    await send.send_all(b"z" * 100 + b"\nnext\n")
    assert await reader.receive_line() == b"next"
    assert len(reader._buf) == 0


async def test_overlong_unterminated_line_at_eof() -> None:
    send, reader = pair(max_line=4)
    await send.send_all(b"ok\ntoo long")
    await send.aclose()
    assert await reader.receive_line() == b"ok"
    with pytest.raises(LineTooLong):
        await reader.receive_line()
    assert await reader.receive_line() is None


async def test_overlong_tail_then_eof() -> None:
    send, reader = pair(max_line=4)
    await send.send_all(b"way too long")
    with pytest.raises(LineTooLong):
        await reader.receive_line()
    await send.send_all(b" still going")
    await send.aclose()
    assert await reader.receive_line() is None


async def test_send_line_appends_newline() -> None:
    send, receive = trio.testing.memory_stream_pair()
    await send_line(send, b'{"x":1}')
    assert await receive.receive_some() == b'{"x":1}\n'
    with pytest.raises(ValueError, match="newline"):
        await send_line(send, b"a\nb")


def test_max_line_must_be_positive() -> None:
    _, receive = trio.testing.memory_stream_pair()
    with pytest.raises(ValueError):
        LineReader(receive, 0)
