"""Every API method's signature: params type, result type, summary.

The one list both sides use: the daemon binds each to its handler
(`bpfman.model.caller.build_method_table`), the client structures results into the
same attrs classes (`bpfman.client.Client.call_typed`), and `rpc.discover`
documents them.
"""

from __future__ import annotations

from typing import Any

import attrs

from bpfman import images as im
from bpfman.daemon import events as ev
from bpfman.manager import maps as mp
from bpfman.model import replies as r
from bpfman.model import requests as q


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
    Signature("map.list", mp.MapListRequest, list[mp.MapReply], "Maps of a program",
              "maps.list"),
    Signature("map.get", mp.MapKeyRequest, mp.MapValueReply,
              "One map value (null when the key is absent)", "maps.get"),
    Signature("map.dump", mp.MapDumpRequest, mp.MapDumpReply,
              "Map entries, a page at a time", "maps.dump"),
    Signature("map.update", mp.MapUpdateRequest, mp.MapValueReply,
              "Create or replace one map entry", "maps.update", mutates=True),
    Signature("map.delete", mp.MapKeyRequest, mp.MapValueReply, "Delete one map entry",
              "maps.delete", mutates=True),
    Signature("image.pull", im.ImagePullRequest, im.ImageReply,
              "Pull a bytecode image into the cache (pull policy, signature checked)",
              "images.pull", mutates=True),
    Signature("image.list", q.NoParams, list[im.ImageReply], "Images in the cache",
              "images.list"),
    Signature("image.inspect", im.ImageInspectRequest, im.ImageReply,
              "An image's digests, labels and signature verdict, from its registry",
              "images.inspect"),
    Signature("image.remove", im.ImageRefRequest, im.ImageRemoveReply,
              "Remove an image from the cache", "images.remove", mutates=True),
    Signature("plugin.list", q.NoParams, list[r.PluginReply],
              "Loaded plugins, their types and hooks", "list_plugins", inline=True),
    Signature("daemon.reconcile", q.NoParams, list[r.DriftReply],
              "Compare the records with the kernel now; repair and report drifts",
              "reconcile_now", mutates=True),
    Signature("daemon.info", q.NoParams, r.DaemonInfo,
              "Version, paths, kernel features, plugins", "info", inline=True),
    Signature("events.subscribe", ev.SubscribeRequest, ev.SubscribeReply,
              "Keep the connection open and receive an `event` notification per change"),
    Signature("rpc.discover", q.NoParams, dict, "This API as an OpenRPC document"),
)

BY_NAME: dict[str, Signature] = {s.name: s for s in SIGNATURES}
