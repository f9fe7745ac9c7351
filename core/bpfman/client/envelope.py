"""What both clients share: the socket's default path, the request and response
envelopes, and the errors a call raises."""

from __future__ import annotations

import json
import os

# typing only for annotations: the CLI's start-up is timed (docs/performance.md)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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
