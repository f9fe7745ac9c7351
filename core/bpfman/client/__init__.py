"""Clients of the daemon's JSON-RPC socket: the blocking `Client` and the trio
`AsyncClient`.

Both send one request at a time on one connection and return the decoded
``result``; an error response raises `RpcError`. `AsyncClient` is imported
on first use, so the blocking client (and every CLI command) starts without
importing trio.
"""

from __future__ import annotations

from bpfman.client.blocking import Client
from bpfman.client.envelope import (
    DEFAULT_SOCKET,
    DaemonUnreachable,
    RpcError,
    default_socket_path,
)

# typing only for annotations: the CLI's start-up is timed (docs/performance.md)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any


def __getattr__(name: str) -> Any:
    if name == "AsyncClient":
        from bpfman.client.trio_client import AsyncClient

        return AsyncClient
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_SOCKET",
    "AsyncClient",
    "Client",
    "DaemonUnreachable",
    "RpcError",
    "default_socket_path",
]
