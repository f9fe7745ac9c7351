"""The method table: JSON-RPC method name -> params type, handler, result type.

`bpfman.jsonrpc` dispatches by this table; `bpfman.openrpc` documents it.
The handlers themselves are `Manager` methods (see `bpfman.manager`), bound
by `build_method_table`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import attrs


@attrs.frozen
class Caller:
    """Who is calling: the peer credentials of the connection (SO_PEERCRED).

    ``groups`` are the peer's supplementary groups; ``own_only`` is set by the
    authorization policy when the caller may change only what it created.
    """

    uid: int
    gid: int
    pid: int
    groups: tuple[int, ...] = ()
    own_only: bool = False


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
    """Bind every API method to its `Manager` method, run in the kernel lane.

    `run_in_lane(fn, *args)` runs a blocking function in the daemon's single
    kernel worker thread (see `bpfman.daemon`).
    """
    from bpfman import mapaccess as mp
    from bpfman import replies as r
    from bpfman import requests as q

    def bind(fn: Callable[[Caller, Any], Any]) -> Handler:
        async def handler(caller: Caller, params: Any) -> Any:
            return await run_in_lane(fn, caller, params)

        return handler

    m = manager
    table = [
        Method("program.load", q.LoadRequest, r.LoadReply, bind(m.load),
               "Load programs from an ELF object", mutates=True),
        Method("program.unload", q.ProgramIdRequest, r.OkReply, bind(m.unload),
               "Detach every link of a program and unload it", mutates=True),
        Method("program.attach", q.AttachRequest, r.LinkReply, bind(m.attach),
               "Attach a loaded program; params depend on its type", mutates=True),
        Method("program.detach", q.LinkIdRequest, r.OkReply, bind(m.detach),
               "Detach one link", mutates=True),
        Method("program.get", q.ProgramIdRequest, r.ProgramReply, bind(m.get_program),
               "One program, managed or not, with live kernel facts"),
        Method("program.list", q.ListRequest, list[r.ProgramReply], bind(m.list_programs),
               "Managed programs (and with all=true every program in the kernel)"),
        Method("link.get", q.LinkIdRequest, r.LinkReply, bind(m.get_link), "One link"),
        Method("link.list", q.LinkListRequest, list[r.LinkReply], bind(m.list_links),
               "Links, optionally of one program or type"),
        Method("link.update", q.LinkUpdateRequest, r.LinkReply, bind(m.update_link),
               "Change a link's attach params in place (e.g. priority)", mutates=True),
        Method("dispatcher.list", q.NoParams, list[r.DispatcherReply],
               bind(m.list_dispatchers), "Shared attach points and their chains, in order"),
        Method("map.list", mp.MapListRequest, list[mp.MapReply], bind(m.maps.list),
               "Maps of a program"),
        Method("map.get", mp.MapKeyRequest, mp.MapValueReply, bind(m.maps.get),
               "One map value (null when the key is absent)"),
        Method("map.dump", mp.MapDumpRequest, mp.MapDumpReply, bind(m.maps.dump),
               "Map entries, a page at a time"),
        Method("map.update", mp.MapUpdateRequest, mp.MapValueReply, bind(m.maps.update),
               "Create or replace one map entry", mutates=True),
        Method("map.delete", mp.MapKeyRequest, mp.MapValueReply, bind(m.maps.delete),
               "Delete one map entry", mutates=True),
        Method("plugin.list", q.NoParams, list[r.PluginReply], bind(m.list_plugins),
               "Loaded plugins, their types and hooks"),
        Method("daemon.reconcile", q.NoParams, list[r.DriftReply], bind(m.reconcile_now),
               "Compare the records with the kernel now; repair and report drifts",
               mutates=True),
        Method("daemon.info", q.NoParams, r.DaemonInfo, bind(m.info),
               "Version, paths, kernel features, plugins"),
    ]
    return {method.name: method for method in table}
