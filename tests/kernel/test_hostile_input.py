"""Hostile and broken clients: limits hold, every request gets a well-formed
answer, and the daemon stays healthy for everyone else."""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bpfman.testing import DaemonProcess, running_daemon

LIMITS = """[daemon]
socket_mode = "0666"
max_connections = 4
max_connections_per_uid = 3
read_timeout_seconds = 1
send_timeout_seconds = 1
max_request_bytes = 65536

[[authorization.rules]]
uids = [65534, 65533, 65532]
methods = ["daemon.info", "events.subscribe"]
"""


@pytest.fixture(scope="module")
def limited() -> Iterator[DaemonProcess]:
    with running_daemon(LIMITS) as d:
        os.chmod(d.root, 0o755)  # let other uids reach the socket
        yield d


def connect(d: DaemonProcess) -> socket.socket:
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(str(d.socket))
    return s


def request(s: socket.socket, payload: bytes) -> Any:
    s.sendall(payload + b"\n")
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return json.loads(data)


def healthy(d: DaemonProcess) -> None:
    assert d.client().call("daemon.info")["version"]


def connect_as(d: DaemonProcess, uid: int) -> socket.socket:
    """A connection whose peer credentials (taken at connect) are `uid`'s."""
    os.seteuid(uid)
    try:
        return connect(d)
    finally:
        os.seteuid(0)


def refused(s: socket.socket, needle: str) -> None:
    reply = json.loads(s.makefile("rb").readline())
    assert reply["error"]["code"] == -32001 and needle in reply["error"]["message"], reply
    assert s.recv(1) == b""  # and closed


def wait_healthy(d: DaemonProcess) -> None:
    deadline = time.monotonic() + 5
    while True:  # the slots free up as the daemon notices the closes
        try:
            healthy(d)
            break
        except Exception:
            assert time.monotonic() < deadline
            time.sleep(0.05)


def test_connection_caps_per_uid_then_global(limited: DaemonProcess) -> None:
    info = b'{"jsonrpc":"2.0","id":1,"method":"daemon.info"}'
    held = [connect_as(limited, 65534) for _ in range(3)]
    try:
        for s in held:  # each is really being served
            assert "version" in request(s, info)["result"]
        # The fourth of one uid is refused: its own share is full...
        refused(connect_as(limited, 65534), "uid 65534 holds 3 connections")
        # ...but another uid still gets in, up to the global cap.
        other = connect_as(limited, 65533)
        held.append(other)
        assert "version" in request(other, info)["result"]
        refused(connect_as(limited, 65532), "more than 4 connections")
        # Root is never locked out.
        healthy(limited)
    finally:
        for s in held:
            s.close()
    wait_healthy(limited)


def test_subscribers_count_toward_their_uids_share(limited: DaemonProcess) -> None:
    """Subscriptions are exempt from the read timeout, so they must not be
    exempt from the cap: a uid cannot hold more than its share forever."""
    held = []
    try:
        for _ in range(3):
            s = connect_as(limited, 65534)
            s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"events.subscribe"}\n')
            held.append(s)
        for s in held:
            assert json.loads(s.makefile("rb").readline())["id"] == 1
        time.sleep(1.5)  # past read_timeout_seconds: they are still held
        refused(connect_as(limited, 65534), "uid 65534 holds 3 connections")
        other = connect_as(limited, 65533)
        assert "version" in request(other, b'{"jsonrpc":"2.0","id":1,"method":"daemon.info"}'
                                    )["result"]
        other.close()
    finally:
        for s in held:
            s.close()
    wait_healthy(limited)


def test_idle_and_slow_clients_are_disconnected(limited: DaemonProcess) -> None:
    idle = connect(limited)
    slow = connect(limited)
    slow.sendall(b'{"jsonrpc":"2.0",')  # and never finishes the line
    started = time.monotonic()
    assert idle.recv(1) == b"" and slow.recv(1) == b""
    assert 0.9 < time.monotonic() - started < 5
    idle.close()
    slow.close()
    healthy(limited)


def test_client_that_does_not_read_is_dropped(limited: DaemonProcess) -> None:
    s = connect(limited)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    # Many requests whose answers we never read: the daemon's send blocks, times
    # out after 1 s and closes this connection, serving others meanwhile.
    discover = b'{"jsonrpc":"2.0","id":1,"method":"rpc.discover"}\n'
    try:
        for _ in range(200):
            s.sendall(discover)
            healthy(limited)
    except OSError:
        pass  # closed under us: that is the point
    deadline = time.monotonic() + 10
    closed = False
    s.settimeout(0.5)
    while time.monotonic() < deadline and not closed:
        try:
            closed = s.recv(1 << 20) == b""
        except TimeoutError:
            pass
        except OSError:
            closed = True
    assert closed
    s.close()
    healthy(limited)


@pytest.mark.parametrize(("payload", "code"), [
    (b"[" * 5000 + b"]" * 5000, -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":"program.list","params":' + b'{"a":' * 200 + b"1"
     + b"}" * 200 + b"}", -32600),
    (b"[" + b",".join([b'{"jsonrpc":"2.0","id":1,"method":"daemon.info"}'] * 101) + b"]", -32600),
    (b'{"jsonrpc":"2.0","id":1,"method":"program.list","params":{"type":"' + b"x" * 70000
     + b'"}}', -32600),
    (b"\xff\xfe", -32700),
    (b'{"jsonrpc":"2.0","id":1,"method":"program.get","params":{"program_id":NaN}}', -32700),
    # A non-finite id could not be echoed in the reply: refused before dispatch.
    (b'{"jsonrpc":"2.0","id":1e309,"method":"program.unload","params":{"program_id":1}}',
     -32700),
    (b'{"jsonrpc":"2.0","id":1,"method":"program.list","params":{"metadata":{"a":-1e400}}}',
     -32700),
    # Ids outside the kernel's (u32) and the store's (i64) range are invalid params.
    (b'{"jsonrpc":"2.0","id":1,"method":"program.get","params":{"program_id":%d}}' % 2**63,
     -32602),
    (b'{"jsonrpc":"2.0","id":1,"method":"program.unload","params":{"program_id":4294967296}}',
     -32602),
    (b'{"jsonrpc":"2.0","id":1,"method":"program.detach","params":{"link_id":%d}}' % 2**64,
     -32602),
    (b'{"jsonrpc":"2.0","id":1,"method":"map.list","params":{"program_id":-1}}', -32602),
    (b'{"jsonrpc":"2.0","id":1,"method":"link.get","params":{"link_id":0}}', -32602),
])
def test_limits_on_request_shape(limited: DaemonProcess, payload: bytes, code: int) -> None:
    s = connect(limited)
    try:
        assert request(s, payload)["error"]["code"] == code
        # The same connection still works.
        assert request(s, b'{"jsonrpc":"2.0","id":2,"method":"program.list"}')["id"] == 2
    finally:
        s.close()


# -- property-based fuzzing of the API surface ---------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)


def from_schema(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values shaped like `schema` (often valid, sometimes not): deeper coverage
    than random JSON, which the daemon rejects at the first field."""
    if "$ref" in schema:
        return from_schema(defs[schema["$ref"].rsplit("/", 1)[1]], defs)
    if "anyOf" in schema or "oneOf" in schema:
        return st.one_of([from_schema(s, defs) for s in schema.get("anyOf", schema.get("oneOf"))])
    kind = schema.get("type")
    if kind == "object" and "properties" in schema:
        props = schema["properties"]
        required = set(schema.get("required", []))
        return st.fixed_dictionaries(
            {k: from_schema(v, defs) for k, v in props.items() if k in required},
            optional={k: from_schema(v, defs) for k, v in props.items() if k not in required},
        )
    if kind == "integer":
        return st.integers(-5, 2**33)
    if kind == "string":
        return st.text(max_size=30) | st.sampled_from(["", "/", "a/b", "00", "tracepoint"])
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(from_schema(schema.get("items", {}), defs), max_size=3)
    return json_values


@pytest.fixture(scope="module")
def fuzzed() -> Iterator[DaemonProcess]:
    # Default timeouts: hypothesis may pause between examples longer than
    # the 1 s the limits tests use.
    with running_daemon() as d:
        yield d


KNOWN_CODES = {-32700, -32600, -32601, -32602, -32603, 1000, 1100, 1200, 1300, 1400, 1500, 2000,
               2001, 3000, 3001, 3002, 9000}
N_FUZZ = 2000


def test_fuzz_every_method(fuzzed: DaemonProcess) -> None:
    api = fuzzed.client().call("rpc.discover")
    defs = api["components"]["schemas"]
    methods = {m["name"]: m for m in api["methods"]}
    # Read-only and refusing-to-mutate both exercised; events would hold the
    # connection open, so it is left out.
    names = sorted(set(methods) - {"events.subscribe"})

    def params_for(name: str) -> st.SearchStrategy[Any]:
        # By-name params: one entry per field of the params object.
        fields = methods[name]["params"]
        shaped = st.fixed_dictionaries(
            {p["name"]: from_schema(p["schema"], defs) for p in fields if p.get("required")},
            optional={p["name"]: from_schema(p["schema"], defs)
                      for p in fields if not p.get("required")},
        )
        return shaped | json_values

    requests = st.one_of(
        st.sampled_from(names).flatmap(
            lambda n: st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": st.integers(1, 9),
                                             "method": st.just(n), "params": params_for(n)})),
        st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": st.integers(1, 9),
                               "method": st.text(max_size=12), "params": json_values}),
        json_values,
    )
    s = connect(fuzzed)
    s.settimeout(30)
    reader = s.makefile("rb")
    count = 0

    @settings(max_examples=N_FUZZ, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(requests)
    def one(message: Any) -> None:
        nonlocal count
        count += 1
        s.sendall(json.dumps(message).encode() + b"\n")
        is_notification = (isinstance(message, dict) and "id" not in message
                           and message.get("jsonrpc") == "2.0"
                           and isinstance(message.get("method"), str))
        if is_notification:
            return
        reply = json.loads(reader.readline())
        replies = reply if isinstance(reply, list) else [reply]
        for r in replies:
            assert r["jsonrpc"] == "2.0" and "id" in r
            assert ("result" in r) != ("error" in r), r
            if "error" in r:
                assert r["error"]["code"] in KNOWN_CODES, r
                assert r["error"]["code"] != -32603, r  # no internal errors on any input
                assert isinstance(r["error"]["message"], str)

    try:
        one()
    finally:
        s.close()
    assert count >= N_FUZZ
    healthy(fuzzed)
    # Whatever the fuzzer did, nothing was left loaded.
    assert fuzzed.client().call("program.list", {}) == []
    log = fuzzed.log_text()
    assert " failed\nTraceback" not in log and "incident" not in log, log[-3000:]
