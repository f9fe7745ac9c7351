"""Clients of the daemon's JSON-RPC socket: blocking `Client` (here) and trio
`AsyncClient` (`bpfman.asyncclient`, also importable from here).

Both send one request at a time on one connection and return the decoded
``result``; an error response raises `RpcError`.
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import socket
from collections.abc import Iterator, Sequence
from types import TracebackType
from typing import Any, Self

DEFAULT_SOCKET = "/run/bpfman/bpfman.sock"
# Replies can be large (verifier logs, every program in the kernel); the
# limit only guards against a runaway peer.
MAX_REPLY = 256 << 20


def default_socket_path() -> str:
    return os.environ.get("BPFMAN_SOCKET") or DEFAULT_SOCKET


class RpcError(Exception):
    """The daemon answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def __repr__(self) -> str:
        return f"RpcError({self.code}, {self.message!r}, {self.data!r})"


class DaemonUnreachable(ConnectionError):
    """Could not connect to the daemon's socket (not running, no permission)."""

    def __init__(self, path: str, cause: OSError) -> None:
        reason = cause.strerror or str(cause)
        super().__init__(cause.errno, f"cannot connect to the bpfman daemon at {path}: {reason}")
        self.path = path
        self.cause = cause

    def __str__(self) -> str:
        return str(self.args[1])


def _request(method: str, params: dict[str, Any] | None, req_id: int | None) -> bytes:
    message: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if req_id is not None:
        message["id"] = req_id
    if params is not None:
        message["params"] = params
    return json.dumps(message, separators=(",", ":")).encode()


def _result(line: bytes | None, req_id: int, path: str) -> Any:
    if line is None:
        raise ConnectionResetError(f"the daemon at {path} closed the connection")
    response = json.loads(line)
    if isinstance(response, dict) and isinstance(response.get("error"), dict):
        # id null: an error found before the request could be read (over-long line).
        if response.get("id") in (req_id, None):
            err = response["error"]
            raise RpcError(err.get("code", 0), err.get("message", ""), err.get("data"))
    elif isinstance(response, dict) and response.get("id") == req_id and "result" in response:
        return response["result"]
    raise RpcError(-32603, f"unexpected response from the daemon: {line[:200]!r}")


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


def _plain(params: Any) -> dict[str, Any] | None:
    if params is None or isinstance(params, dict):
        return params
    from bpfman.model import convert

    return convert.unstructure(params)


def _typed(method: str, raw: Any) -> Any:
    from bpfman.model import convert
    from bpfman.rpc.methods import BY_NAME

    return convert.structure(raw, BY_NAME[method].result_type)


def _is_notification(line: bytes) -> bool:
    try:
        message = json.loads(line)
    except ValueError:
        return False
    return isinstance(message, dict) and "method" in message and "id" not in message


def __getattr__(name: str) -> Any:
    # The trio client lives in its own module: the blocking client (and so
    # every CLI command) starts without importing trio.
    if name == "AsyncClient":
        from bpfman.asyncclient import AsyncClient

        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_SOCKET",
    "Client",
    "DaemonUnreachable",
    "RpcError",
    "default_socket_path",
]
