"""Newline-delimited JSON framing over a trio `Stream`.

One message per line, so that ``echo '{...}' | socat - UNIX-CONNECT:...``
works. Lines are bytes; decoding JSON is the caller's business. JSON
encoders never emit a raw newline inside a compact document (newlines in
strings are escaped), so a newline is an unambiguous separator.
"""

from __future__ import annotations

import trio

DEFAULT_MAX_LINE = 1 << 20
_CHUNK = 64 * 1024


class LineTooLong(Exception):
    """A line exceeded the reader's limit.

    Raised as soon as the limit is crossed, without waiting for the rest of
    the line. The reader then discards everything up to the next newline on
    the following `receive_line` call, so the connection stays usable.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(f"line longer than {limit} bytes")
        self.limit = limit


class LineReader:
    """Read newline-terminated lines from `stream`, at most `max_line` bytes each.

    Resource handling: does not own `stream`; closing it is the caller's job.

    Error handling: `receive_line` raises `LineTooLong` for an over-long line
    and lets the stream's own errors (`trio.BrokenResourceError`,
    `trio.ClosedResourceError`) propagate.
    """

    def __init__(self, stream: trio.abc.ReceiveStream, max_line: int = DEFAULT_MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError("max_line must be positive")
        self._stream = stream
        self.max_line = max_line
        self._buf = bytearray()
        # Bytes of _buf already searched for a newline (avoids rescanning).
        self._scanned = 0
        self._discarding = False
        self._eof = False

    async def receive_line(self) -> bytes | None:
        """The next line without its newline, or None at end of stream.

        A final line without a trailing newline is still returned (a client
        using ``printf`` instead of ``echo`` should not be ignored).
        """
        while True:
            nl = self._buf.find(b"\n", self._scanned)
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                self._scanned = 0
                if self._discarding:
                    # The tail of an over-long line that was already reported.
                    self._discarding = False
                    continue
                if len(line) > self.max_line:
                    raise LineTooLong(self.max_line)
                return line
            self._scanned = len(self._buf)
            if self._discarding:
                self._buf.clear()
                self._scanned = 0
            elif len(self._buf) > self.max_line:
                self._buf.clear()
                self._scanned = 0
                self._discarding = True
                raise LineTooLong(self.max_line)
            if self._eof:
                break
            data = await self._stream.receive_some(_CHUNK)
            if not data:
                self._eof = True
                continue
            self._buf += data
        if self._buf and not self._discarding:
            line = bytes(self._buf)
            self._buf.clear()
            self._scanned = 0
            return line
        self._buf.clear()
        return None


async def send_line(stream: trio.abc.SendStream, line: bytes) -> None:
    """Send `line` followed by a newline; `line` must not contain one."""
    if b"\n" in line:
        raise ValueError("a framed line must not contain a newline")
    await stream.send_all(line + b"\n")


__all__ = ["DEFAULT_MAX_LINE", "LineReader", "LineTooLong", "send_line"]
