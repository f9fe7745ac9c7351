"""The method table: JSON-RPC method name -> params type, handler, result type.

`bpfman.rpc.jsonrpc` dispatches by this table; `bpfman.rpc.openrpc` documents it.
The handlers themselves are `Manager` methods (see `bpfman.manager`), bound
by `build_method_table`.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

if TYPE_CHECKING:
    from bpfman.authz.grants import Bounds


@attrs.frozen
class Caller:
    """Who is calling: the peer credentials of the connection (SO_PEERCRED).

    ``groups`` are the peer's supplementary groups; ``own_only`` and ``grants``
    are set by the authorization policy: the caller may change only what it
    created, and may reach only what the granting rules' bounds allow.
    """

    uid: int
    gid: int
    pid: int
    groups: tuple[int, ...] = ()
    own_only: bool = False
    #: The bounds of the rules that granted this call (`bpfman.authz.grants`);
    #: None: unbounded (root, or the daemon acting for itself).
    grants: tuple[Bounds, ...] | None = None


Handler = Callable[[Caller, Any], Awaitable[Any]]


@attrs.frozen
class Method:
    name: str
    params_type: type
    result_type: Any
    handler: Handler
    summary: str
    mutates: bool = False


MethodTable = Mapping[str, Method]


def build_method_table(
    manager: Any, run_in_lane: Callable[..., Awaitable[Any]]
) -> dict[str, Method]:
    """Bind every `bpfman.rpc.methods` signature that has a Manager handler, run
    in the kernel lane. The daemon adds its own (events, rpc.discover).

    `run_in_lane(fn, *args)` runs a blocking function in the daemon's single
    kernel worker thread (see `bpfman.daemon.main`).
    """
    from bpfman.rpc.methods import SIGNATURES

    def bind(fn: Callable[[Caller, Any], Any], prepare: Any, inline: bool = False) -> Handler:
        if inspect.iscoroutinefunction(fn):
            # Network-bound (image pulls): runs on the trio loop, off the lane.
            return fn
        if inline:
            async def direct(caller: Caller, params: Any) -> Any:
                return fn(caller, params)

            return direct

        async def handler(caller: Caller, params: Any) -> Any:
            if prepare is not None:
                params = await prepare(caller, params)
            return await run_in_lane(fn, caller, params)

        return handler

    def resolve(path: str) -> Any:
        target = manager
        for part in path.split("."):
            target = getattr(target, part)
        return target

    table = {}
    for sig in SIGNATURES:
        if not sig.handler:
            continue
        prepare = resolve(sig.prepare) if sig.prepare else None
        table[sig.name] = Method(sig.name, sig.params_type, sig.result_type,
                                 bind(resolve(sig.handler), prepare, sig.inline), sig.summary,
                                 mutates=sig.mutates)
    return table
