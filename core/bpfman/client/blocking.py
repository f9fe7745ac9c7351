"""The blocking client: one request at a time on one connection (what the CLI
uses; imports nothing heavy)."""

from __future__ import annotations

import collections
import itertools
import json
import os
import socket

from bpfman.client.envelope import (
    MAX_REPLY,
    DaemonUnreachable,
    RpcError,
    _is_notification,
    _plain,
    _request,
    _result,
    _typed,
    default_socket_path,
)

# typing only for annotations: the CLI's start-up is timed (docs/performance.md)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from types import TracebackType
    from typing import Any, Self


class Client:
    """A blocking client on one connection.

    Resource handling: connects in the constructor; `close()` (or the
    ``with`` block) closes the connection.

    Raises:
        DaemonUnreachable: from the constructor, when the socket is absent,
            refuses connections or is not accessible.
        RpcError: from `call`, for an error response.
        ConnectionError: from `call`, when the daemon hangs up.
    """

    def __init__(self, socket_path: str | os.PathLike[str] | None = None, *,
                 timeout: float | None = None) -> None:
        self.socket_path = os.fspath(socket_path) if socket_path else default_socket_path()
        self._ids = itertools.count(1)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        try:
            self._sock.connect(self.socket_path)
        except OSError as exc:
            self._sock.close()
            raise DaemonUnreachable(self.socket_path, exc) from exc
        self._reader = self._sock.makefile("rb")
        self._pending: collections.deque[dict[str, Any]] = collections.deque()

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        req_id = next(self._ids)
        self._sock.sendall(_request(method, params, req_id) + b"\n")
        while True:
            line = self._read_line()
            if line is not None and _is_notification(line):
                self._pending.append(json.loads(line)["params"])  # an event, kept for later
                continue
            return _result(line, req_id, self.socket_path)

    def _read_line(self) -> bytes | None:
        line = self._reader.readline(MAX_REPLY + 1)
        if line and not line.endswith(b"\n"):
            if len(line) > MAX_REPLY:
                raise RpcError(-32603, f"reply longer than {MAX_REPLY} bytes")
            return None  # EOF in the middle of a reply
        return line.rstrip(b"\n") if line else None

    def events(self, kinds: Sequence[str] = ()) -> Iterator[dict[str, Any]]:
        """Subscribe to the event stream and yield each event until the daemon
        closes the connection (``events.subscribe``)."""
        self.call("events.subscribe", {"kinds": list(kinds)})
        return self._event_stream()

    def _event_stream(self) -> Iterator[dict[str, Any]]:
        while True:
            while self._pending:
                yield self._pending.popleft()
            line = self._read_line()
            if line is None:
                return
            if _is_notification(line):
                yield json.loads(line)["params"]

    def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        """Send a notification: executed by the daemon, never answered."""
        self._sock.sendall(_request(method, params, None) + b"\n")

    def call_typed(self, method: str, params: Any = None) -> Any:
        """`call` with attrs classes on both sides: `params` may be the
        method's params class (e.g. `LoadRequest`), the result is its result
        class (e.g. `LoadReply`), exactly as the daemon defines them."""
        raw = self.call(method, _plain(params))
        return _typed(method, raw)

    def close(self) -> None:
        self._reader.close()
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
