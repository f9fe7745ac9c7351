"""`serve_rpc` on a real Unix socket with a tiny in-test method table.

Synchronisation is by trio events and by the protocol itself (a reply means
the request was handled), never by sleeping.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import stat
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from bpfman.cli.main import main as cli_main
from bpfman.client import AsyncClient, Client, DaemonUnreachable, RpcError
from bpfman.model.caller import Caller
from bpfman.model.requests import NoParams
from bpfman.rpc import server
from bpfman.rpc.framing import LineReader
from bpfman.rpc.methods import Method

MAX_LINE = 4096


@attrs.frozen
class EchoParams:
    x: int


@attrs.frozen
class WaitParams:
    checkpoints: int


class State:
    """What the handlers share with the test."""

    def __init__(self) -> None:
        self.notes: list[int] = []
        self.arrived = 0
        self.all_arrived = trio.Event()
        self.expected = 0
        self.slow_started = trio.Event()
        self.slow_release = trio.Event()
        self.slow_finished = trio.Event()


def method_table(state: State) -> dict[str, Method]:
    async def echo(caller: Caller, params: EchoParams) -> dict[str, int]:
        return {"x": params.x}

    async def whoami(caller: Caller, params: NoParams) -> dict[str, int]:
        return attrs.asdict(caller)

    async def note(caller: Caller, params: EchoParams) -> None:
        state.notes.append(params.x)

    async def notes(caller: Caller, params: NoParams) -> list[int]:
        return state.notes

    async def barrier(caller: Caller, params: EchoParams) -> dict[str, int]:
        # Returns only once `state.expected` callers are inside at the same
        # time: proof that connections are served concurrently.
        state.arrived += 1
        if state.arrived == state.expected:
            state.all_arrived.set()
        await state.all_arrived.wait()
        return {"x": params.x}

    async def wait(caller: Caller, params: WaitParams) -> int:
        for _ in range(params.checkpoints):
            await trio.lowlevel.checkpoint()
        return params.checkpoints

    async def slow(caller: Caller, params: NoParams) -> str:
        state.slow_started.set()
        await state.slow_release.wait()
        state.slow_finished.set()
        return "done"

    async def boom(caller: Caller, params: NoParams) -> None:
        raise RuntimeError("kaboom")

    handlers: list[tuple[str, type, Any]] = [
        ("echo", EchoParams, echo), ("whoami", NoParams, whoami), ("note", EchoParams, note),
        ("notes", NoParams, notes), ("barrier", EchoParams, barrier),
        ("wait", WaitParams, wait), ("slow", NoParams, slow), ("boom", NoParams, boom),
    ]
    return {n: Method(n, p, Any, h, n) for n, p, h in handlers}


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # A short path: sun_path holds 107 bytes, pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="bpfman-t-", dir="/tmp") as d:
        yield Path(d)


@pytest.fixture
def state() -> State:
    return State()


@pytest.fixture
async def sock(sock_dir: Path, state: State, nursery: trio.Nursery) -> Path:
    path = sock_dir / "run" / "bpfman.sock"
    listener = server.open_unix_listener(path)
    serve = partial(server.serve_rpc, [listener], method_table(state), max_line=MAX_LINE)
    await nursery.start(serve)
    return path


class Raw:
    """A raw connection for sending arbitrary bytes."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = LineReader(stream, 1 << 20)

    async def send(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def reply(self) -> Any:
        line = await self.reader.receive_line()
        assert line is not None, "server closed the connection"
        return json.loads(line)


@pytest.fixture
async def raw(sock: Path) -> AsyncIterator[Raw]:
    stream = await trio.open_unix_socket(str(sock))
    async with stream:
        yield Raw(stream)


def request(method: str, params: Any = None, id: Any = 1) -> bytes:
    out: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        out["params"] = params
    if id is not ...:
        out["id"] = id
    return json.dumps(out).encode() + b"\n"


# -- the listener ------------------------------------------------------------


async def test_socket_mode_group_and_parent_dir(sock_dir: Path) -> None:
    path = sock_dir / "new" / "deeper" / "bpfman.sock"
    listener = server.open_unix_listener(path, mode=0o660, group=os.getgid())
    try:
        st = path.stat()
        assert stat.S_ISSOCK(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == os.getgid()
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o755
        assert [p.name for p in path.parent.iterdir()] == ["bpfman.sock"]  # no temp left
    finally:
        await listener.aclose()


async def test_group_by_name(sock_dir: Path) -> None:
    import grp

    name = grp.getgrgid(os.getgid()).gr_name
    listener = server.open_unix_listener(sock_dir / "s.sock", group=name, mode=0o600)
    await listener.aclose()
    assert stat.S_IMODE((sock_dir / "s.sock").stat().st_mode) == 0o600
    with pytest.raises(ValueError, match="no such group"):
        server.open_unix_listener(sock_dir / "t.sock", group="no-such-group-xyz")


async def test_stale_socket_is_replaced(sock_dir: Path) -> None:
    path = sock_dir / "bpfman.sock"
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))  # a socket file nobody listens on, as a crash leaves it
    dead.close()
    listener = server.open_unix_listener(path)
    try:
        probe = socket.socket(socket.AF_UNIX)
        probe.connect(str(path))
        probe.close()
    finally:
        await listener.aclose()


async def test_live_socket_is_refused(sock_dir: Path) -> None:
    path = sock_dir / "bpfman.sock"
    first = server.open_unix_listener(path)
    try:
        with pytest.raises(OSError) as info:
            server.open_unix_listener(path)
        assert info.value.errno == errno.EADDRINUSE
    finally:
        await first.aclose()


async def test_regular_file_is_not_replaced(sock_dir: Path) -> None:
    path = sock_dir / "bpfman.sock"
    path.write_text("precious")
    with pytest.raises(FileExistsError):
        server.open_unix_listener(path)
    assert path.read_text() == "precious"


def test_systemd_variables_for_another_pid_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LISTEN_PID", str(os.getpid() + 1))
    monkeypatch.setenv("LISTEN_FDS", "1")
    monkeypatch.setenv("LISTEN_FDNAMES", "bpfman.socket")
    assert server.listeners_from_systemd() is None
    assert "LISTEN_FDS" not in os.environ and "LISTEN_FDNAMES" not in os.environ
    monkeypatch.delenv("LISTEN_PID", raising=False)
    assert server.listeners_from_systemd() is None


# -- serving -----------------------------------------------------------------


async def test_call_and_peer_credentials(sock: Path) -> None:
    async with await AsyncClient.connect(str(sock)) as client:
        assert await client.call("echo", {"x": 3}) == {"x": 3}
        assert await client.call("whoami") == {
            "uid": os.getuid(), "gid": os.getgid(), "pid": os.getpid(),
            "groups": list(os.getgroups()), "own_only": False, "grants": None,
        }


async def test_many_concurrent_clients(sock: Path, state: State) -> None:
    n = 40
    state.expected = n
    results: dict[int, Any] = {}

    async def one(i: int) -> None:
        async with await AsyncClient.connect(str(sock)) as client:
            results[i] = await client.call("barrier", {"x": i})
            for k in range(5):  # and the connection stays usable afterwards
                assert await client.call("echo", {"x": k}) == {"x": k}

    with trio.fail_after(20):  # a guard: serialised connections would deadlock here
        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(one, i)
    assert results == {i: {"x": i} for i in range(n)}


async def test_replies_on_one_connection_keep_request_order(raw: Raw) -> None:
    # Sent in one write; the earlier requests take longer to handle.
    await raw.send(b"".join(request("wait", {"checkpoints": 50 - 10 * i}, id=i) for i in range(5)))
    replies = [await raw.reply() for _ in range(5)]
    assert [r["id"] for r in replies] == [0, 1, 2, 3, 4]
    assert [r["result"] for r in replies] == [50, 40, 30, 20, 10]


async def test_malformed_json_keeps_the_connection(raw: Raw) -> None:
    await raw.send(b"{this is not json\n")
    reply = await raw.reply()
    assert reply["error"]["code"] == -32700 and reply["id"] is None
    await raw.send(b"\xff\xfe\n")
    assert (await raw.reply())["error"]["code"] == -32700
    await raw.send(request("echo", {"x": 1}, id=2))
    assert (await raw.reply()) == {"jsonrpc": "2.0", "id": 2, "result": {"x": 1}}


async def test_overlong_line_is_answered_and_the_connection_survives(raw: Raw) -> None:
    await raw.send(b'{"jsonrpc":"2.0","id":1,"method":"echo","params":{"pad":"' + b"x" * 5000)
    # Answered before the line even ends (the guard turns a hang into a failure).
    with trio.fail_after(10):
        reply = await raw.reply()
    assert reply["id"] is None
    assert reply["error"]["code"] == -32600
    assert reply["error"]["data"] == {"limit": MAX_LINE}
    await raw.send(b"y" * 10000 + b'"}}\n' + request("echo", {"x": 2}, id=2))
    assert (await raw.reply())["result"] == {"x": 2}


async def test_blank_lines_are_ignored(raw: Raw) -> None:
    await raw.send(b"\n  \n\r\n" + request("echo", {"x": 5}, id=5))
    assert (await raw.reply())["id"] == 5


async def test_batch(raw: Raw) -> None:
    batch = [
        {"jsonrpc": "2.0", "id": "a", "method": "echo", "params": {"x": 1}},
        {"jsonrpc": "2.0", "method": "note", "params": {"x": 9}},
        {"jsonrpc": "2.0", "id": "b", "method": "echo", "params": {"x": "nope"}},
    ]
    await raw.send(json.dumps(batch).encode() + b"\n")
    reply = await raw.reply()
    assert [r["id"] for r in reply] == ["a", "b"]
    assert reply[0]["result"] == {"x": 1}
    assert reply[1]["error"]["code"] == -32602
    assert "$.params.x" in reply[1]["error"]["data"]["errors"][0]


async def test_notification_runs_without_a_reply(raw: Raw, state: State) -> None:
    await raw.send(request("note", {"x": 7}, id=...) + request("notes", id=1))
    # The first line back answers the second request: the notification got none.
    reply = await raw.reply()
    assert reply["id"] == 1 and reply["result"] == [7]


async def test_internal_error_over_the_wire(sock: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with await AsyncClient.connect(str(sock)) as client:
        with caplog.at_level(logging.ERROR, logger="bpfman.rpc"), pytest.raises(RpcError) as info:
            await client.call("boom")
        assert info.value.code == -32603
        assert "kaboom" not in repr(info.value)
        assert await client.call("echo", {"x": 1}) == {"x": 1}


async def test_client_that_disconnects_mid_request(
    sock: Path, state: State, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    leaving = await trio.open_unix_socket(str(sock))
    await leaving.send_all(request("slow"))
    await state.slow_started.wait()
    await leaving.aclose()
    # Others are served while the orphaned request is still running...
    async with await AsyncClient.connect(str(sock)) as other:
        assert await other.call("echo", {"x": 1}) == {"x": 1}
        state.slow_release.set()
        # ...the orphaned request runs to completion (a mutation is never
        # cut short by a hang-up) and the server carries on.
        await state.slow_finished.wait()
        assert await other.call("echo", {"x": 2}) == {"x": 2}
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_client_that_hangs_up_mid_line(sock: Path) -> None:
    stream = await trio.open_unix_socket(str(sock))
    await stream.send_all(b'{"jsonrpc":"2.0","id":1,"meth')
    await stream.aclose()
    async with await AsyncClient.connect(str(sock)) as client:
        assert await client.call("echo", {"x": 3}) == {"x": 3}


# -- the blocking client and the CLI against a live server ----------------------


async def test_blocking_client(sock: Path) -> None:
    def work() -> tuple[Any, RpcError]:
        with Client(str(sock)) as client:
            ok = client.call("echo", {"x": 4})
            client.notify("note", {"x": 11})
            try:
                client.call("echo", {"x": "bad"})
            except RpcError as exc:
                return ok, exc
        raise AssertionError("no error")

    ok, err = await trio.to_thread.run_sync(work)
    assert ok == {"x": 4}
    assert err.code == -32602 and "$.params.x" in err.data["errors"][0]


async def test_blocking_client_unreachable(sock_dir: Path) -> None:
    with pytest.raises(DaemonUnreachable) as info:
        Client(str(sock_dir / "absent.sock"))
    assert str(sock_dir / "absent.sock") in str(info.value)


async def test_cli_against_the_server(sock: Path, capfd: pytest.CaptureFixture[str]) -> None:
    run = partial(trio.to_thread.run_sync, cli_main)
    assert await run(["--socket", str(sock), "call", "echo", '{"x": 8}']) == 0
    assert json.loads(capfd.readouterr().out) == {"x": 8}
    assert await run(["--socket", str(sock), "call", "echo", '{"x": "no"}']) == 1
    err = capfd.readouterr().err
    assert err.startswith("error: invalid params\n") and "$.params.x" in err
    assert await run(["--socket", str(sock), "call", "nope"]) == 1
    assert "error: method not found" in capfd.readouterr().err


# -- socket activation -------------------------------------------------------

CHILD = textwrap.dedent(
    """
    import os, sys, trio
    from bpfman.rpc import server
    from bpfman.rpc.methods import Method
    from bpfman.model.requests import NoParams

    async def env(caller, params):
        return {
            "pid": os.getpid(),
            "leftover": [k for k in os.environ if k.startswith("LISTEN_")],
            "caller_pid": caller.pid,
        }

    async def main():
        listeners = server.listeners_from_systemd()
        assert listeners is not None and len(listeners) == 1, listeners
        table = {"env": Method("env", NoParams, dict, env, "env")}
        await server.serve_rpc(listeners, table, max_line=1024)

    trio.run(main)
    """
)

# Does what systemd does between fork and exec: put the socket on fd 3 and
# name our own pid (exec keeps it) in LISTEN_PID.
LAUNCHER = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); "
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='bpfman'); "
    "os.execv(sys.executable, [sys.executable, '-c', sys.argv[2]])"
)


async def test_inherited_socket_in_a_subprocess(sock_dir: Path) -> None:
    path = sock_dir / "activated.sock"
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(path))
    listening.listen()
    proc = await trio.lowlevel.open_process(
        [sys.executable, "-c", LAUNCHER, str(listening.fileno()), CHILD],
        pass_fds=[listening.fileno()],
    )
    listening.close()  # the child holds the only copy now
    try:
        async with await AsyncClient.connect(str(path)) as client:
            result = await client.call("env")
        assert result["pid"] == proc.pid
        assert result["caller_pid"] == os.getpid()
        assert result["leftover"] == []
    finally:
        proc.kill()
        await proc.wait()
