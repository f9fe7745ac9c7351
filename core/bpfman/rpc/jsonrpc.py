"""JSON-RPC 2.0: envelopes, batches, notifications and the error mapping.

`dispatch` takes one framed payload (a request or a batch) and returns the
bytes to send back, or None when nothing is due (notifications).

Policy, beyond the spec:
- Params must be an object (by-name). Positional params (an array) are
  refused with -32602: field order in the attrs classes is not API, and
  adding a field must never shift a client's arguments. Missing params
  mean ``{}``.
- Unknown members in the request envelope are refused with -32600, as
  unknown keys in params are (a typo must not silently become a default).
- A batch is executed in order, one request at a time; responses keep the
  order of the requests that get one.
- Protocol errors are -32700/-32600/-32601/-32602; a `BpfmanError` travels
  with its own code, message and ``data()``; anything else is -32603 with a
  short incident id in ``data`` and the traceback in the log only.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from typing import Any

import cattrs
import trio

from bpfman.model import convert
from bpfman.model.caller import Caller
from bpfman.model.errors import BpfmanError
from bpfman.rpc.methods import Method, MethodTable

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

log = logging.getLogger("bpfman.rpc")

_ENVELOPE_KEYS = frozenset({"jsonrpc", "id", "method", "params"})


class ProtocolError(Exception):
    """A JSON-RPC protocol error (the reserved -327xx/-326xx codes)."""

    code: int = INVALID_REQUEST

    def __init__(self, message: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class ParseError(ProtocolError):
    code = PARSE_ERROR


class InvalidRequest(ProtocolError):
    code = INVALID_REQUEST


class MethodNotFound(ProtocolError):
    code = METHOD_NOT_FOUND


class InvalidParams(ProtocolError):
    """Params that do not fit the method; `errors` are field-path lines.

    Handlers may raise it too, for params they structure themselves (the
    per-type attach params), so the caller sees the same -32602 shape.
    """

    code = INVALID_PARAMS

    def __init__(self, errors: list[str], message: str = "invalid params") -> None:
        super().__init__(message, {"errors": errors})
        self.errors = errors


def error_object(exc: BaseException) -> dict[str, Any]:
    """The JSON-RPC error object for `exc`.

    Unexpected exceptions are logged here with their traceback and reported
    as -32603 with only an incident id, so nothing internal leaks to callers.
    """
    exc = _unwrap_group(exc)
    if isinstance(exc, ProtocolError):
        err: dict[str, Any] = {"code": exc.code, "message": exc.message}
        if exc.data is not None:
            err["data"] = exc.data
        return err
    if isinstance(exc, BpfmanError):
        try:
            data = convert.unstructure(exc.data())
            err = {"code": exc.code, "message": exc.message, "data": data}
            _encode(err)
            return err
        except Exception as bad:  # data() that cannot travel is our bug, not the caller's
            exc = bad
    incident = secrets.token_hex(4)
    log.error("internal error, incident %s", incident, exc_info=exc)
    return {"code": INTERNAL_ERROR, "message": "internal error", "data": {"incident": incident}}


def _unwrap_group(exc: BaseException) -> BaseException:
    # A handler's nursery wraps even a single failure in an ExceptionGroup;
    # the caller should see the one real error, not the group.
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


async def dispatch(payload: bytes, methods: MethodTable, caller: Caller) -> bytes | None:
    """Answer one framed payload: a single request or a batch.

    Returns the encoded response (no trailing newline), or None when every
    request in it was a notification. Never raises for anything a client
    sends; only cancellation and BaseExceptions other than Exception escape.
    """
    try:
        message = _decode(payload)
    except (ParseError, InvalidRequest) as exc:
        return _encode(_error_response(None, exc))
    if isinstance(message, list):
        if not message:
            return _encode(_error_response(None, InvalidRequest("empty batch")))
        if len(message) > MAX_BATCH:
            return _encode(_error_response(None, InvalidRequest(
                f"batch of {len(message)} requests; at most {MAX_BATCH}",
                {"max_batch": MAX_BATCH})))
        responses = []
        for item in message:
            # One request at a time, yielding between them: a batch of cheap
            # calls answered without a checkpoint would hold the event loop.
            await trio.lowlevel.checkpoint()
            response = await _handle(item, methods, caller)
            if response is not None:
                responses.append(response)
        return b"[" + b",".join(responses) + b"]" if responses else None
    return await _handle(message, methods, caller)


MAX_NESTING = 64
MAX_BATCH = 100


def _nesting_depth(payload: bytes, limit: int) -> int:
    """Deepest array/object nesting, outside strings, stopping past `limit`.

    json.loads recurses per level: a line of 100k brackets would exhaust the
    stack, so deep documents are refused before parsing.
    """
    depth = deepest = 0
    in_string = escaped = False
    for byte in payload:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > limit:
                    return deepest
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


def _decode(payload: bytes) -> Any:
    def refuse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    def finite_float(text: str) -> float:
        # 1e309 parses as inf, which no reply can encode: refuse it here,
        # before anything runs, rather than after a method has acted.
        value = float(text)
        if not math.isfinite(value):
            raise ValueError(f"number {text} is out of range")
        return value

    # Counting brackets is cheap; only then is the exact (slower) scan needed.
    if payload.count(b"[") + payload.count(b"{") > MAX_NESTING and (
        _nesting_depth(payload, MAX_NESTING) > MAX_NESTING
    ):
        raise InvalidRequest(f"nested deeper than {MAX_NESTING} levels",
                             {"max_nesting": MAX_NESTING})
    try:
        return json.loads(payload, parse_constant=refuse_constant, parse_float=finite_float)
    except RecursionError:
        raise InvalidRequest(f"nested deeper than {MAX_NESTING} levels",
                             {"max_nesting": MAX_NESTING}) from None
    except UnicodeDecodeError as exc:
        raise ParseError("parse error", {"errors": [f"not UTF-8: {exc.reason}"]}) from None
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise ParseError("parse error", {"errors": [str(exc)]}) from None


class Encoded:
    """A result a handler encoded once for many answers (rpc.discover's
    document): spliced into the response as is."""

    __slots__ = ("json",)

    def __init__(self, value: Any) -> None:
        self.json = _encode(convert.unstructure(value))


def _encode(obj: Any) -> bytes:
    # ASCII output: a lone surrogate echoed from a client (an id, a method
    # name) is escaped instead of failing to encode as UTF-8.
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


def _valid_id(value: Any) -> bool:
    return value is None or (isinstance(value, int | float | str) and not isinstance(value, bool))


async def _handle(item: Any, methods: MethodTable, caller: Caller) -> bytes | None:
    """One request object -> its encoded response object, or None for a
    notification. The result is encoded once, here: an unencodable result
    (our bug) is still reported as an error response."""
    try:
        _check_envelope(item)
    except InvalidRequest as exc:
        # Answered even without an id: with a broken envelope we cannot
        # tell that it was meant as a notification (the spec does the same).
        req_id = item.get("id") if isinstance(item, dict) else None
        return _encode(_error_response(req_id if _valid_id(req_id) else None, exc))
    req_id = item.get("id")
    is_notification = "id" not in item
    method = methods.get(item["method"])
    started = time.monotonic()
    try:
        if method is None:
            raise MethodNotFound("method not found", {"method": item["method"]})
        params = _structure_params(item.get("params", {}), method)
        result = await method.handler(caller, params)
        encoded = (result.json if isinstance(result, Encoded)
                   else _encode(convert.unstructure(result)))
    except Exception as exc:
        err = error_object(exc)
        if method is not None:
            _log_call(method, caller, started, err)
        return None if is_notification else _encode({"jsonrpc": "2.0", "id": req_id,
                                                     "error": err})
    _log_call(method, caller, started, None)
    if is_notification:
        return None
    return b'{"jsonrpc":"2.0","id":' + _encode(req_id) + b',"result":' + encoded + b"}"


def _check_envelope(item: Any) -> None:
    if not isinstance(item, dict):
        raise InvalidRequest("invalid request", {"errors": ["a request must be a JSON object"]})
    problems = []
    if item.get("jsonrpc") != "2.0":
        problems.append('"jsonrpc" must be "2.0"')
    if not isinstance(item.get("method"), str):
        problems.append('"method" must be a string')
    if "id" in item and not _valid_id(item["id"]):
        problems.append('"id" must be a string, a number or null')
    if "params" in item and not isinstance(item["params"], dict | list):
        problems.append('"params" must be an object')
    extra = sorted(set(item) - _ENVELOPE_KEYS)
    if extra:
        problems.append(f"unknown members: {', '.join(extra)}")
    if problems:
        raise InvalidRequest("invalid request", {"errors": problems})


def _structure_params(raw: dict[str, Any] | list[Any], method: Method) -> Any:
    if isinstance(raw, list):
        raise InvalidParams(["positional params are not supported; pass an object @ $.params"])
    try:
        return convert.structure(raw, method.params_type)
    except (cattrs.BaseValidationError, ValueError, TypeError) as exc:
        raise InvalidParams(convert.describe_errors(exc, "$.params")) from None


def notification(method: str, params: Any) -> bytes:
    """A server-to-client notification line (no id: no answer expected)."""
    return _encode({"jsonrpc": "2.0", "method": method, "params": convert.unstructure(params)})


def error_response(exc: BaseException, req_id: Any = None) -> bytes:
    """An encoded response carrying `exc`, for errors found outside `dispatch`
    (an over-long line is rejected before it is even parsed)."""
    return _encode(_error_response(req_id, exc))


def _error_response(req_id: Any, exc: BaseException) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": req_id, "error": error_object(exc)}


def _log_call(method: Method, caller: Caller, started: float, err: dict[str, Any] | None) -> None:
    # Mutations are the audit trail: who changed the host, and how it went.
    if not method.mutates:
        return
    ms = (time.monotonic() - started) * 1000
    if err is None:
        log.info("%s uid=%d pid=%d: ok (%.1f ms)", method.name, caller.uid, caller.pid, ms)
    else:
        log.warning(
            "%s uid=%d pid=%d: error %d %s (%.1f ms)",
            method.name, caller.uid, caller.pid, err["code"], err["message"], ms,
        )


__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "PARSE_ERROR",
    "InvalidParams",
    "InvalidRequest",
    "MethodNotFound",
    "ParseError",
    "ProtocolError",
    "dispatch",
    "error_object",
    "error_response",
]
