"""The daemon's socket: a Unix listener (or systemd's) and `serve_rpc`.

Access control is the socket file's mode and group; the peer credentials of
each connection (SO_PEERCRED) travel to every handler as a `Caller` for the
audit log and for finer checks.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import errno
import grp
import logging
import math
import os
import socket
import stat
import struct
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any, NoReturn

import attrs
import trio

from bpfman.model.caller import Caller
from bpfman.rpc import jsonrpc
from bpfman.rpc.framing import DEFAULT_MAX_LINE, LineReader, LineTooLong, send_line
from bpfman.rpc.methods import MethodTable

log = logging.getLogger("bpfman.server")

_UCRED = struct.Struct("iII")  # struct ucred: pid_t pid; uid_t uid; gid_t gid
_SUN_PATH_MAX = 107  # sizeof(sockaddr_un.sun_path) - 1 for the terminating NUL
SD_LISTEN_FDS_START = 3


def open_unix_listener(
    path: str | os.PathLike[str], *, mode: int = 0o660, group: str | int | None = None
) -> trio.SocketListener:
    """Listen on the Unix socket `path`, with file mode `mode` and group `group`.

    Creates the parent directory (0755) when missing. A socket file left by
    a dead daemon is replaced; a live one makes this fail. The socket is
    bound under a temporary name, given its mode and group, and only then
    renamed into place, so no client ever sees it with the wrong permissions.

    Resource handling: the caller owns the returned listener. The socket
    file is left behind on close (the next start replaces it; removing it
    could race with a daemon that has already taken over the path).

    Raises:
        OSError(EADDRINUSE): another process is listening on `path`.
        FileExistsError: `path` exists and is not a socket.
        ValueError: `group` names no group.
    """
    path = os.fspath(path)
    gid = _resolve_group(group)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, mode=0o755, exist_ok=True)
    _refuse_live_socket(path)

    tmp = os.path.join(parent, f".{os.path.basename(path)}.{os.getpid()}")
    direct = len(os.fsencode(tmp)) > _SUN_PATH_MAX
    bind_path = path if direct else tmp
    with contextlib.suppress(FileNotFoundError):
        os.unlink(bind_path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(bind_path)
        os.chmod(bind_path, mode)
        if gid is not None:
            os.chown(bind_path, -1, gid)
        sock.listen(socket.SOMAXCONN)
        if not direct:
            os.rename(bind_path, path)
    except BaseException:
        sock.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(bind_path)
        raise
    return trio.SocketListener(trio.socket.from_stdlib_socket(sock))


def _resolve_group(group: str | int | None) -> int | None:
    if group is None or isinstance(group, int):
        return group
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise ValueError(f"no such group: {group!r}") from None


def _refuse_live_socket(path: str) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(errno.EEXIST, "exists and is not a socket; refusing to replace", path)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # Non-blocking: a live daemon with a full backlog answers EAGAIN instead
    # of making us wait.
    probe.setblocking(False)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        return  # stale: nobody listens, the bind below replaces it
    except BlockingIOError:
        pass
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, "another daemon is already listening on this socket", path)


def listeners_from_systemd() -> list[trio.SocketListener] | None:
    """Listeners inherited through systemd socket activation, or None.

    Follows sd_listen_fds(3): the fds start at 3, LISTEN_FDS counts them and
    LISTEN_PID must be our pid. The variables are removed from the
    environment so that child processes do not take the sockets for theirs.

    Raises:
        ValueError: an inherited fd is not a listening stream socket (the
            unit's Socket section is wrong).
    """
    env_pid = os.environ.pop("LISTEN_PID", None)
    env_fds = os.environ.pop("LISTEN_FDS", None)
    os.environ.pop("LISTEN_FDNAMES", None)
    if env_pid is None or env_fds is None:
        return None
    try:
        if int(env_pid) != os.getpid():
            return None
        count = int(env_fds)
    except ValueError:
        return None
    if count <= 0:
        return None
    listeners = []
    for fd in range(SD_LISTEN_FDS_START, SD_LISTEN_FDS_START + count):
        os.set_inheritable(fd, False)
        sock = socket.socket(fileno=fd)
        if sock.type != socket.SOCK_STREAM:
            raise ValueError(f"inherited fd {fd} is not a stream socket")
        listeners.append(trio.SocketListener(trio.socket.from_stdlib_socket(sock)))
    return listeners


def peer_caller(sock: trio.socket.SocketType) -> Caller:
    """The peer credentials of a connected Unix socket."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    pid, uid, gid = _UCRED.unpack(raw)
    return Caller(uid=uid, gid=gid, pid=pid, groups=_supplementary_groups(sock))


SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)  # Linux 4.13+
_GID = struct.Struct("I")
_MAX_GROUPS = 65536  # NGROUPS_MAX


def _supplementary_groups(sock: trio.socket.SocketType) -> tuple[int, ...]:
    """The peer's supplementary groups as they were at connect(), from the
    kernel with its uid (SO_PEERGROUPS): /proc/<pid> could name another process
    once the peer's pid is reused."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_PEERGROUPS, 1024)  # CPython's cap
    except OSError as exc:
        if exc.errno != errno.ERANGE:
            raise
        raw = _peergroups_unbounded(sock.fileno())
    return tuple(g for (g,) in _GID.iter_unpack(raw))


def _peergroups_unbounded(fd: int) -> bytes:
    """More than 256 groups: ask libc directly with room for NGROUPS_MAX."""
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(_GID.size * _MAX_GROUPS)
    size = ctypes.c_uint32(len(buf))
    if libc.getsockopt(fd, socket.SOL_SOCKET, SO_PEERGROUPS, buf, ctypes.byref(size)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return buf.raw[:size.value]


@attrs.frozen
class ConnectionLimits:
    """What one client may hold: hostile or broken clients cannot pin the daemon.

    :ivar max_connections: connections served at once; more are answered with
        `TooManyConnections` (-32001) and closed. Root's connections are
        neither counted nor refused (root is outside the threat model, and
        must always get in to repair things).
    :ivar max_connections_per_uid: connections one uid may hold, checked
        first, so no uid can take the global allowance from the others
        (event subscriptions count like any connection).
    :ivar requests_per_uid: requests (a batch is one) of one uid other than
        root answered at once; the others of that uid wait their turn, so
        many connections give a uid no more of the event loop than a few.
    :ivar read_timeout: seconds a connection may take to send a whole request
        line, counted from the previous response (idle and slow clients alike);
        connections with an event subscription are exempt.
    :ivar send_timeout: seconds a response may wait for a client that does not
        read; then the connection is closed.
    """

    max_connections: int = 256
    read_timeout: float = 300.0
    send_timeout: float = 30.0
    max_connections_per_uid: int = 32
    requests_per_uid: int = 4


class TooManyConnections(jsonrpc.ProtocolError):
    """Implementation-defined server error (JSON-RPC reserves -32000..-32099)."""

    code = -32001


async def serve_rpc(
    listeners: Sequence[trio.SocketListener],
    methods: MethodTable,
    *,
    max_line: int = DEFAULT_MAX_LINE,
    limits: ConnectionLimits = ConnectionLimits(),
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Answer JSON-RPC on `listeners` forever, one task per connection.

    Requests on one connection are answered one at a time, in order;
    connections are served concurrently. `task_status.started(listeners)` is
    called once every listener is accepting.

    Resource handling: takes ownership of `listeners` and of each accepted
    connection, and closes them when cancelled.

    Error handling: a connection's failure (a client that hangs up mid-request,
    garbage on the wire, a bug) is logged and ends that connection only.
    Accept errors from fd exhaustion are retried after 100 ms
    (`trio.serve_listeners`); other accept errors propagate.
    """
    # Connections being served, per uid (one trio thread: no lock needed).
    by_uid: collections.Counter[int] = collections.Counter()
    # Requests being answered at once, per uid: a uid flooding from many
    # connections takes turns with itself, not with everyone else.
    # Root is not limited (outside the threat model; its tools may wait on
    # one request while making others).
    turns: dict[int, trio.CapacityLimiter] = collections.defaultdict(
        lambda: trio.CapacityLimiter(limits.requests_per_uid))
    turns[0] = trio.CapacityLimiter(math.inf)

    async def refuse(stream: trio.SocketStream, message: str, data: dict[str, int]) -> None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError), \
                trio.move_on_after(1):
            await send_line(stream, jsonrpc.error_response(TooManyConnections(message, data)))
        await stream.aclose()

    async def handler(stream: trio.SocketStream) -> None:
        try:
            caller = peer_caller(stream.socket)
        except OSError as exc:
            # Not a Unix socket (a misconfigured socket unit): we could not say
            # who is calling, so we do not serve it.
            log.warning("closing connection without peer credentials: %s", exc)
            await stream.aclose()
            return
        if caller.uid != 0:
            if by_uid[caller.uid] >= limits.max_connections_per_uid:
                log.warning("refusing connection of uid=%d pid=%d: %d connections held",
                            caller.uid, caller.pid, by_uid[caller.uid])
                await refuse(stream, f"uid {caller.uid} holds {by_uid[caller.uid]} connections;"
                             f" at most {limits.max_connections_per_uid}",
                             {"max_connections_per_uid": limits.max_connections_per_uid})
                return
            if by_uid.total() - by_uid[0] >= limits.max_connections:
                await refuse(stream, f"more than {limits.max_connections} connections",
                             {"max_connections": limits.max_connections})
                return
        by_uid[caller.uid] += 1
        try:
            await _serve_connection(stream, caller, methods=methods, max_line=max_line,
                                    limits=limits, turns=turns[caller.uid])
        finally:
            by_uid[caller.uid] -= 1

    await trio.serve_listeners(handler, list(listeners), task_status=task_status)


class Connection:
    """One client connection, for handlers that talk back on their own
    (event subscriptions). Handlers find it through `current_connection`."""

    def __init__(self, stream: trio.SocketStream, caller: Caller, nursery: trio.Nursery,
                 send_timeout: float = 30.0) -> None:
        self.stream = stream
        self.caller = caller
        self.nursery = nursery
        self.send_timeout = send_timeout
        #: set by a handler that keeps the connection open on purpose (events)
        self.subscribed = False
        self._send_lock = trio.Lock()

    async def send(self, line: bytes) -> None:
        # Responses and notifications interleave on one stream: whole lines only.
        async with self._send_lock:
            with trio.move_on_after(self.send_timeout) as stuck:
                await send_line(self.stream, line)
            if stuck.cancelled_caught:
                # A client that does not read must not hold a response forever.
                log.info("dropping the connection of uid=%d pid=%d: it read nothing for %ss%s",
                         self.caller.uid, self.caller.pid, self.send_timeout,
                         " (event subscriber)" if self.subscribed else "")
                await self.stream.aclose()
                raise trio.ClosedResourceError("client stopped reading")

    async def notify(self, method: str, params: Any) -> None:
        await self.send(jsonrpc.notification(method, params))


current_connection: ContextVar[Connection] = ContextVar("current_connection")


async def _serve_connection(
    stream: trio.SocketStream, caller: Caller, *, methods: MethodTable, max_line: int,
    limits: ConnectionLimits, turns: trio.CapacityLimiter
) -> None:
    try:
        async with trio.open_nursery() as nursery:
            connection = Connection(stream, caller, nursery, limits.send_timeout)
            current_connection.set(connection)
            await _answer_requests(connection, methods, max_line, limits.read_timeout, turns)
            nursery.cancel_scope.cancel()  # the client is gone: stop its subscriptions
    except* (trio.BrokenResourceError, trio.ClosedResourceError) as group:
        log.debug("client pid=%d went away: %s", caller.pid, group.exceptions[0])
    except* Exception:
        log.exception("connection from pid=%d uid=%d failed", caller.pid, caller.uid)


async def _answer_requests(
    connection: Connection, methods: MethodTable, max_line: int, read_timeout: float,
    turns: trio.CapacityLimiter,
) -> None:
    reader = LineReader(connection.stream, max_line)
    while True:
        try:
            timeout = math.inf if connection.subscribed else read_timeout
            with trio.move_on_after(timeout) as idle:
                line = await reader.receive_line()
            if idle.cancelled_caught:
                log.info("closing connection of pid=%d: no complete request in %ss",
                         connection.caller.pid, read_timeout)
                return
        except LineTooLong as exc:
            response: bytes | None = jsonrpc.error_response(
                jsonrpc.InvalidRequest(
                    f"request longer than {exc.limit} bytes", {"limit": exc.limit}
                )
            )
        else:
            if line is None:
                return
            if not line.strip():
                continue  # blank lines are keep-alives from interactive users
            async with turns:
                response = await jsonrpc.dispatch(line, methods, connection.caller)
                if response is not None:
                    await connection.send(response)
            continue
        if response is not None:
            await connection.send(response)


__all__ = [
    "Connection",
    "ConnectionLimits",
    "current_connection",
    "listeners_from_systemd",
    "open_unix_listener",
    "peer_caller",
    "serve_rpc",
]
