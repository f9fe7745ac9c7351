"""The trio client of the daemon's JSON-RPC socket (the envelope code is shared
with the blocking client: `bpfman.client.envelope`)."""



from __future__ import annotations

import itertools
import os
from types import TracebackType
from typing import Any, Self

import trio

from bpfman.client.envelope import (
    MAX_REPLY,
    DaemonUnreachable,
    _plain,
    _request,
    _result,
    _typed,
    default_socket_path,
)
from bpfman.rpc.framing import LineReader, send_line


class AsyncClient:
    """A trio client on one connection; ``async with await AsyncClient.connect()``.

    Calls from several tasks are serialised, so each gets its own reply.
    """

    def __init__(self, stream: trio.SocketStream, socket_path: str) -> None:
        self.socket_path = socket_path
        self._stream = stream
        self._reader = LineReader(stream, MAX_REPLY)
        self._ids = itertools.count(1)
        self._lock = trio.Lock()

    @classmethod
    async def connect(cls, socket_path: str | os.PathLike[str] | None = None) -> AsyncClient:
        """Raises `DaemonUnreachable` when the socket cannot be reached."""
        path = os.fspath(socket_path) if socket_path else default_socket_path()
        try:
            stream = await trio.open_unix_socket(path)
        except OSError as exc:
            raise DaemonUnreachable(path, exc) from exc
        return cls(stream, path)

    async def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        async with self._lock:
            req_id = next(self._ids)
            await send_line(self._stream, _request(method, params, req_id))
            line = await self._reader.receive_line()
        return _result(line, req_id, self.socket_path)

    async def call_typed(self, method: str, params: Any = None) -> Any:
        """As `Client.call_typed`: attrs classes in and out."""
        return _typed(method, await self.call(method, _plain(params)))

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        async with self._lock:
            await send_line(self._stream, _request(method, params, None))

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, tp: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


__all__ = ["AsyncClient"]
