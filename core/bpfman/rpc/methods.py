"""The method table: every API method's signature (params type, result type,
summary) and its binding to a handler.

The one list both sides use: the daemon binds each to its handler
(`build_method_table`), the client structures results into the
same attrs classes (`bpfman.client.Client.call_typed`), and `rpc.discover`
documents them.
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
    #: attribute path of the handler on the Manager ("" for the daemon's own)
    handler: str = ""
    mutates: bool = False
    #: attribute path of an async step run on the trio loop before the handler
    #: (e.g. pulling an image, so the kernel lane never waits on the network)
    prepare: str = ""
    #: the handler reads only in-memory state (no kernel, no store): it runs on
    #: the trio loop directly instead of queueing behind kernel work
    inline: bool = False


SIGNATURES: tuple[Signature, ...] = (
    Signature("program.load", q.LoadRequest, r.LoadReply,
              "Load programs from an ELF object or a bytecode image", "load", mutates=True,
              prepare="images.prepare_load"),
    Signature("program.unload", q.ProgramIdRequest, r.OkReply,
              "Detach every link of a program and unload it", "unload", mutates=True),
    Signature("program.attach", q.AttachRequest, r.LinkReply,
              "Attach a loaded program; params depend on its type", "attach", mutates=True),
    Signature("program.detach", q.LinkIdRequest, r.OkReply, "Detach one link", "detach",
              mutates=True),
    Signature("program.get", q.ProgramIdRequest, r.ProgramReply,
              "One program, managed or not, with live kernel facts", "get_program"),
    Signature("program.list", q.ListRequest, list[r.ProgramReply],
              "Managed programs (and with all=true every program in the kernel)",
              "list_programs"),
    Signature("link.get", q.LinkIdRequest, r.LinkReply, "One link", "get_link"),
    Signature("link.list", q.LinkListRequest, list[r.LinkReply],
              "Links, optionally of one program or type", "list_links"),
    Signature("link.update", q.LinkUpdateRequest, r.LinkReply,
              "Change a link's attach params in place (e.g. priority)", "update_link",
              mutates=True),
    Signature("dispatcher.list", q.NoParams, list[r.DispatcherReply],
              "Shared attach points and their chains, in order", "list_dispatchers"),
    Signature("map.list", q.MapListRequest, list[r.MapReply], "Maps of a program",
              "maps.list"),
    Signature("map.get", q.MapKeyRequest, r.MapValueReply,
              "One map value (null when the key is absent)", "maps.get"),
    Signature("map.dump", q.MapDumpRequest, r.MapDumpReply,
              "Map entries, a page at a time", "maps.dump"),
    Signature("map.update", q.MapUpdateRequest, r.MapValueReply,
              "Create or replace one map entry", "maps.update", mutates=True),
    Signature("map.delete", q.MapKeyRequest, r.MapValueReply, "Delete one map entry",
              "maps.delete", mutates=True),
    Signature("image.pull", q.ImagePullRequest, r.ImageReply,
              "Pull a bytecode image into the cache (pull policy, signature checked)",
              "images.pull", mutates=True),
    Signature("image.list", q.NoParams, list[r.ImageReply], "Images in the cache",
              "images.list"),
    Signature("image.inspect", q.ImageInspectRequest, r.ImageReply,
              "An image's digests, labels and signature verdict, from its registry",
              "images.inspect"),
    Signature("image.remove", q.ImageRefRequest, r.ImageRemoveReply,
              "Remove an image from the cache", "images.remove", mutates=True),
    Signature("plugin.list", q.NoParams, list[r.PluginReply],
              "Loaded plugins, their types and hooks", "list_plugins", inline=True),
    Signature("daemon.reconcile", q.NoParams, list[r.DriftReply],
              "Compare the records with the kernel now; repair and report drifts",
              "reconcile_now", mutates=True),
    Signature("daemon.info", q.NoParams, r.DaemonInfo,
              "Version, paths, kernel features, plugins", "info", inline=True),
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


def build_method_table(
    manager: Any, run_in_lane: Callable[..., Awaitable[Any]]
) -> dict[str, Method]:
    """Bind every `bpfman.rpc.methods` signature that has a Manager handler, run
    in the kernel lane. The daemon adds its own (events, rpc.discover).

    `run_in_lane(fn, *args)` runs a blocking function in the daemon's single
    kernel worker thread (see `bpfman.daemon.main`).
    """
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
