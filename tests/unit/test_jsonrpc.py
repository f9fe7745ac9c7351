"""JSON-RPC 2.0 dispatch against a tiny method table (no socket, no daemon)."""

from __future__ import annotations

import json
import logging
from typing import Any

import attrs
import pytest

from bpfman.model import errors
from bpfman.model.caller import Caller
from bpfman.model.requests import NoParams
from bpfman.rpc import jsonrpc
from bpfman.rpc.methods import Method

CALLER = Caller(uid=1000, gid=1000, pid=4242)


@attrs.frozen
class EchoParams:
    x: int
    label: str = "none"


@attrs.frozen
class EchoReply:
    x: int
    label: str
    raw: bytes = b"\x01\xff"


calls: list[tuple[str, Any]] = []


async def echo(caller: Caller, params: EchoParams) -> EchoReply:
    calls.append(("echo", params))
    return EchoReply(params.x, params.label)


async def whoami(caller: Caller, params: NoParams) -> dict[str, int]:
    return {"uid": caller.uid, "gid": caller.gid, "pid": caller.pid}


async def boom(caller: Caller, params: NoParams) -> None:
    raise RuntimeError("secret internal detail")


async def missing(caller: Caller, params: NoParams) -> None:
    raise errors.ProgramNotFound(7)


async def grouped(caller: Caller, params: NoParams) -> None:
    raise ExceptionGroup("nursery", [errors.LinkNotFound(3)])


async def bad_params_inside(caller: Caller, params: NoParams) -> None:
    raise errors.InvalidParams("invalid xdp attach params", ["bad @ $.params.params.priority"])


async def unencodable(caller: Caller, params: NoParams) -> object:
    return object()


async def mutate(caller: Caller, params: EchoParams) -> dict[str, bool]:
    calls.append(("mutate", params))
    if params.x < 0:
        raise errors.InvalidArgument("x must not be negative", field="x")
    return {"ok": True}


def _m(name: str, params: type, handler: Any, mutates: bool = False) -> Method:
    return Method(name, params, Any, handler, f"{name} for tests", mutates)


METHODS = {
    m.name: m
    for m in [
        _m("echo", EchoParams, echo),
        _m("whoami", NoParams, whoami),
        _m("boom", NoParams, boom),
        _m("missing", NoParams, missing),
        _m("grouped", NoParams, grouped),
        _m("bad_params_inside", NoParams, bad_params_inside),
        _m("unencodable", NoParams, unencodable),
        _m("mutate", EchoParams, mutate, mutates=True),
    ]
}


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    calls.clear()


async def rpc(payload: Any) -> Any:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    out = await jsonrpc.dispatch(raw, METHODS, CALLER)
    if out is None:
        return None
    assert b"\n" not in out
    return json.loads(out)


def req(method: str, params: Any = None, id: Any = 1) -> dict[str, Any]:
    out: dict[str, Any] = {"jsonrpc": "2.0", "method": method}
    if params is not None:
        out["params"] = params
    if id is not ...:
        out["id"] = id
    return out


@pytest.mark.parametrize("req_id", [1, "abc", None, 2.5])
async def test_result_echoes_the_id(req_id: Any) -> None:
    resp = await rpc(req("echo", {"x": 5}, id=req_id))
    assert resp == {
        "jsonrpc": "2.0",
        "id": req_id,
        "result": {"x": 5, "label": "none", "raw": "01ff"},
    }


async def test_caller_reaches_the_handler() -> None:
    resp = await rpc(req("whoami"))
    assert resp["result"] == {"uid": 1000, "gid": 1000, "pid": 4242}


@pytest.mark.parametrize("payload", [b"{not json", b'{"a":NaN}', b"\xff\xfe", b""])
async def test_parse_error(payload: bytes) -> None:
    resp = await rpc(payload)
    assert resp["id"] is None
    assert resp["error"]["code"] == jsonrpc.PARSE_ERROR == -32700
    assert resp["error"]["data"]["errors"]


@pytest.mark.parametrize(
    ("payload", "expected_id", "reason"),
    [
        (1, None, "JSON object"),
        ("text", None, "JSON object"),
        ({"method": "echo", "id": 1}, 1, "jsonrpc"),
        ({"jsonrpc": "1.0", "method": "echo", "id": 1}, 1, "jsonrpc"),
        ({"jsonrpc": "2.0", "method": 5, "id": "a"}, "a", "method"),
        ({"jsonrpc": "2.0", "method": "echo", "id": True}, None, "id"),
        ({"jsonrpc": "2.0", "method": "echo", "id": {"x": 1}}, None, "id"),
        ({"jsonrpc": "2.0", "method": "echo", "params": 3, "id": 1}, 1, "params"),
        ({"jsonrpc": "2.0", "method": "echo", "param": {}, "id": 1}, 1, "unknown members: param"),
        ({"jsonrpc": "2.0", "method": "echo", "params": 3}, None, "params"),
    ],
)
async def test_invalid_request(payload: Any, expected_id: Any, reason: str) -> None:
    resp = await rpc(payload)
    assert resp["error"]["code"] == jsonrpc.INVALID_REQUEST == -32600
    assert resp["id"] == expected_id
    assert any(reason in line for line in resp["error"]["data"]["errors"])


async def test_lone_surrogates_are_echoed_safely() -> None:
    resp = await rpc(b'{"jsonrpc":"2.0","id":"\\ud800","method":"\\udfff"}')
    assert resp["id"] == "\ud800"
    assert resp["error"]["data"] == {"method": "\udfff"}


async def test_method_not_found() -> None:
    resp = await rpc(req("nope", id=9))
    assert resp["id"] == 9
    assert resp["error"]["code"] == jsonrpc.METHOD_NOT_FOUND == -32601
    assert resp["error"]["data"] == {"method": "nope"}


@pytest.mark.parametrize(
    ("params", "line"),
    [
        ({"x": "abc"}, "$.params.x"),
        ({}, "required field missing @ $.params.x"),
        (None, "required field missing @ $.params.x"),
        ({"x": 1, "colour": "red"}, "extra fields found (colour) @ $.params"),
        ([1, "a"], "positional params are not supported"),
    ],
)
async def test_invalid_params_carry_field_paths(params: Any, line: str) -> None:
    resp = await rpc(req("echo", params))
    err = resp["error"]
    assert err["code"] == jsonrpc.INVALID_PARAMS == -32602
    assert err["message"] == "invalid params"
    assert any(line in e for e in err["data"]["errors"]), err
    assert calls == []


async def test_missing_params_mean_an_empty_object() -> None:
    assert (await rpc(req("whoami")))["result"]["pid"] == 4242
    assert (await rpc(req("whoami", {})))["result"]["pid"] == 4242


async def test_application_error_keeps_its_code_and_data() -> None:
    err = (await rpc(req("missing")))["error"]
    assert err == {
        "code": 1100,
        "message": "no program with id 7",
        "data": {"kind": "program_not_found", "program_id": 7},
    }


async def test_exception_group_of_one_is_unwrapped() -> None:
    err = (await rpc(req("grouped")))["error"]
    assert err["code"] == errors.LinkNotFound.code
    assert err["data"]["link_id"] == 3


async def test_handler_invalid_params_use_the_protocol_code() -> None:
    err = (await rpc(req("bad_params_inside")))["error"]
    assert err["code"] == -32602
    assert err["data"]["errors"] == ["bad @ $.params.params.priority"]


async def test_internal_error_hides_details_and_logs_an_incident(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR, logger="bpfman.rpc"):
        resp = await rpc(req("boom"))
    err = resp["error"]
    assert err["code"] == jsonrpc.INTERNAL_ERROR == -32603
    assert err["message"] == "internal error"
    incident = err["data"]["incident"]
    assert len(incident) == 8 and int(incident, 16) >= 0
    assert "secret" not in json.dumps(resp)
    [record] = caplog.records
    assert incident in record.getMessage()
    assert record.exc_info is not None and "secret internal detail" in str(record.exc_info[1])


async def test_unencodable_result_is_an_internal_error() -> None:
    assert (await rpc(req("unencodable")))["error"]["code"] == -32603


async def test_notification_runs_but_gets_no_response() -> None:
    assert await rpc(req("echo", {"x": 1}, id=...)) is None
    assert calls == [("echo", EchoParams(1))]
    # Errors in notifications are not answered either.
    assert await rpc(req("missing", id=...)) is None
    assert await rpc(req("nope", id=...)) is None
    assert await rpc(req("echo", {"x": "bad"}, id=...)) is None


async def test_batch_answers_in_order_and_skips_notifications() -> None:
    resp = await rpc(
        [
            req("echo", {"x": 1}, id="a"),
            req("echo", {"x": 2}, id=...),
            req("nope", id="b"),
            {"foo": "boo"},
            req("echo", {"x": 3}, id="c"),
        ]
    )
    assert [r["id"] for r in resp] == ["a", "b", None, "c"]
    assert resp[0]["result"]["x"] == 1
    assert resp[1]["error"]["code"] == -32601
    assert resp[2]["error"]["code"] == -32600
    assert resp[3]["result"]["x"] == 3
    assert [p.x for _, p in calls] == [1, 2, 3]


async def test_batch_of_notifications_gets_nothing() -> None:
    assert await rpc([req("echo", {"x": 1}, id=...), req("echo", {"x": 2}, id=...)]) is None
    assert len(calls) == 2


async def test_empty_batch_is_one_invalid_request() -> None:
    resp = await rpc([])
    assert resp["error"]["code"] == -32600 and resp["id"] is None


async def test_batch_of_garbage_is_answered_item_by_item() -> None:
    resp = await rpc([1, 2])
    assert [r["error"]["code"] for r in resp] == [-32600, -32600]


async def test_mutating_calls_are_logged_with_the_peer(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="bpfman.rpc"):
        await rpc(req("mutate", {"x": 1}))
        await rpc(req("mutate", {"x": -1}))
        await rpc(req("mutate", {"x": "bad"}))
        await rpc(req("echo", {"x": 1}))  # not a mutation: not logged
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3
    assert lines[0].startswith("mutate uid=1000 pid=4242: ok")
    assert lines[1].startswith("mutate uid=1000 pid=4242: error 1000 x must not be negative")
    assert lines[2].startswith("mutate uid=1000 pid=4242: error -32602 invalid params")


def test_error_object_for_each_kind(caplog: pytest.LogCaptureFixture) -> None:
    assert jsonrpc.error_object(jsonrpc.MethodNotFound("method not found")) == {
        "code": -32601,
        "message": "method not found",
    }
    assert jsonrpc.error_object(errors.KernelFeatureMissing("bpf_link", "too old")) == {
        "code": 1400,
        "message": "unsupported by this kernel: bpf_link (too old)",
        "data": {
            "kind": "kernel_feature_missing",
            "feature": "bpf_link",
            "reason": "too old",
            "min_version": None,
        },
    }
    with caplog.at_level(logging.CRITICAL, logger="bpfman.rpc"):
        assert jsonrpc.error_object(KeyError("x"))["code"] == -32603


def test_error_object_bytes_in_data_travel_as_hex() -> None:
    err = errors.BpfmanError("bad value", value=b"\x00\x10")
    assert jsonrpc.error_object(err)["data"] == {"kind": "error", "value": "0010"}


def test_error_response_encodes_with_null_id() -> None:
    out = jsonrpc.error_response(jsonrpc.InvalidRequest("too long", {"limit": 5}))
    assert json.loads(out) == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32600, "message": "too long", "data": {"limit": 5}},
    }
