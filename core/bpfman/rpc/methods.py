"""The method table: every API method's signature (params type, result type,
summary), and the table the daemon serves once each is bound to a handler.

The one list both sides use: the daemon binds each to the handler the
manager declares for it (`Binding`, `build_method_table`), the client
structures results into the same attrs classes
(`bpfman.client.Client.call_typed`), and `rpc.discover` documents them.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs

from bpfman.model import replies as r
from bpfman.model import requests as q
from bpfman.model.caller import Caller


@attrs.frozen
class Signature:
    name: str
    params_type: type
    result_type: Any
    summary: str
    mutates: bool = False


SIGNATURES: tuple[Signature, ...] = (
    Signature("program.load", q.LoadRequest, r.LoadReply,
              "Load programs from an ELF object or a bytecode image", mutates=True),
    Signature("program.unload", q.ProgramIdRequest, r.OkReply,
              "Detach every link of a program and unload it", mutates=True),
    Signature("program.attach", q.AttachRequest, r.LinkReply,
              "Attach a loaded program; params depend on its type", mutates=True),
    Signature("program.detach", q.LinkIdRequest, r.OkReply, "Detach one link",
              mutates=True),
    Signature("program.get", q.ProgramIdRequest, r.ProgramReply,
              "One program, managed or not, with live kernel facts"),
    Signature("program.list", q.ListRequest, list[r.ProgramReply],
              "Managed programs (and with all=true every program in the kernel)"),
    Signature("link.get", q.LinkIdRequest, r.LinkReply, "One link"),
    Signature("link.list", q.LinkListRequest, list[r.LinkReply],
              "Links, optionally of one program or type"),
    Signature("link.update", q.LinkUpdateRequest, r.LinkReply,
              "Change a link's attach params in place (e.g. priority)",
              mutates=True),
    Signature("dispatcher.list", q.NoParams, list[r.DispatcherReply],
              "Shared attach points and their chains, in order"),
    Signature("map.list", q.MapListRequest, list[r.MapReply], "Maps of a program"),
    Signature("map.get", q.MapKeyRequest, r.MapValueReply,
              "One map value (null when the key is absent)"),
    Signature("map.dump", q.MapDumpRequest, r.MapDumpReply,
              "Map entries, a page at a time"),
    Signature("map.update", q.MapUpdateRequest, r.MapValueReply,
              "Create or replace one map entry", mutates=True),
    Signature("map.delete", q.MapKeyRequest, r.MapValueReply, "Delete one map entry", mutates=True),
    Signature("image.pull", q.ImagePullRequest, r.ImageReply,
              "Pull a bytecode image into the cache (pull policy, signature checked)",
              mutates=True),
    Signature("image.list", q.NoParams, list[r.ImageReply], "Images in the cache"),
    Signature("image.inspect", q.ImageInspectRequest, r.ImageReply,
              "An image's digests, labels and signature verdict, from its registry"),
    Signature("image.remove", q.ImageRefRequest, r.ImageRemoveReply,
              "Remove an image from the cache", mutates=True),
    Signature("plugin.list", q.NoParams, list[r.PluginReply],
              "Loaded plugins, their types and hooks"),
    Signature("daemon.reconcile", q.NoParams, list[r.DriftReply],
              "Compare the records with the kernel now; repair and report drifts", mutates=True),
    Signature("daemon.info", q.NoParams, r.DaemonInfo,
              "Version, paths, kernel features, plugins"),
    Signature("events.subscribe", q.SubscribeRequest, r.SubscribeReply,
              "Keep the connection open and receive an `event` notification per change"),
    Signature("rpc.discover", q.NoParams, dict, "This API as an OpenRPC document"),
)

BY_NAME: dict[str, Signature] = {s.name: s for s in SIGNATURES}


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


@attrs.frozen
class Binding:
    """How the daemon runs one method: `handler` (a blocking function run in
    the kernel lane, or a coroutine function run on the trio loop when it is
    network-bound), with an optional async `prepare` step run on the trio loop
    first (pulling an image, so the lane never waits on the network), or
    `inline` on the trio loop when it reads only in-memory state."""

    handler: Callable[[Caller, Any], Any]
    prepare: Callable[[Caller, Any], Awaitable[Any]] | None = None
    inline: bool = False


def build_method_table(
    bindings: Mapping[str, Binding], run_in_lane: Callable[..., Awaitable[Any]]
) -> dict[str, Method]:
    """The served methods: each signature with its binding (the daemon adds
    its own methods, events and rpc.discover, afterwards).

    `run_in_lane(fn, *args)` runs a blocking function in the daemon's single
    kernel worker thread (see `bpfman.daemon.main`).
    """
    unknown = sorted(set(bindings) - set(BY_NAME))
    if unknown:
        raise ValueError(f"handlers for methods without a signature: {unknown}")

    def bind(b: Binding) -> Handler:
        fn, prepare = b.handler, b.prepare
        if inspect.iscoroutinefunction(fn):
            return fn
        if b.inline:
            async def direct(caller: Caller, params: Any) -> Any:
                return fn(caller, params)

            return direct

        async def handler(caller: Caller, params: Any) -> Any:
            if prepare is not None:
                params = await prepare(caller, params)
            return await run_in_lane(fn, caller, params)

        return handler

    return {name: Method(name, sig.params_type, sig.result_type, bind(bindings[name]),
                         sig.summary, mutates=sig.mutates)
            for name, sig in BY_NAME.items() if name in bindings}
