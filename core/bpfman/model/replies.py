"""Wire nouns: what methods return. Wire types are not storage types."""

from __future__ import annotations

from typing import Any

import attrs

from bpfman.model.kernelfacts import KernelProgramInfo
from bpfman.model.requests import doc


@attrs.frozen
class LinkReply:
    link_id: int
    program_id: int
    type: str
    params: dict[str, Any]
    metadata: dict[str, str]
    kernel_link_id: int | None
    pin_path: str | None
    created_at: str
    summary: str
    #: at a shared attach point: how its chain is built (the dispatcher's
    #: `mode`, as in dispatcher.list) and, for XDP, the driver mode the
    #: chain is attached in (native, generic, offload); None elsewhere
    dispatch_mode: str | None = None
    attach_mode: str | None = None


@attrs.frozen
class ProgramReply:
    program_id: int
    name: str
    type: str | None
    managed: bool
    path: str | None = None
    metadata: dict[str, str] = attrs.field(factory=dict)
    global_data: dict[str, bytes] = attrs.field(factory=dict)
    map_owner_id: int | None = None
    map_pin_dir: str | None = None
    #: upstream bpfman's names: the same directory, and the programs (this one
    #: included) sharing its maps
    map_pin_path: str | None = None
    map_used_by: list[int] = attrs.field(factory=list)
    pin_path: str | None = None
    loaded_by_uid: int | None = None
    created_at: str | None = None
    links: list[int] = attrs.field(factory=list)
    kernel: KernelProgramInfo | None = None
    attach_func: str | None = None  # fentry/fexit target function, fixed at load
    image: str | None = None  # the bytecode image it came from, pinned by digest
    #: who loaded it: "bpfman" (through the API), "daemon" (the daemon itself,
    #: to run a chain: see `daemon_role`) or "unmanaged" (anything else)
    owner: str = "bpfman"
    daemon_role: str | None = None  # e.g. "xdp dispatcher", "extension of 42"


@attrs.frozen
class LoadReply:
    programs: list[ProgramReply]


@attrs.frozen
class OkReply:
    ok: bool = True


@attrs.frozen
class PluginReply:
    name: str
    module: str
    version: str | None
    types: list[str]
    hooks: list[str]


@attrs.frozen
class PluginFailure:
    name: str
    error: str


@attrs.frozen
class DaemonInfo:
    version: str
    socket: str
    state_dir: str
    bpffs: str
    kernel_release: str
    features: dict[str, bool]
    feature_notes: dict[str, str]
    plugins: list[str]
    plugin_failures: list[PluginFailure]
    types: list[str]


@attrs.frozen
class DispatcherSlot:
    """One program of a dispatcher's chain, in run order."""

    link_id: int
    program_id: int
    priority: int | None = None
    proceed_on: list[str] | None = None
    name: str | None = None  # the program's name


@attrs.frozen
class DispatcherReply:
    """What runs at one shared attach point, in order."""

    attach_point: str
    type: str
    mode: str
    program_id: int | None
    revision: int
    pin_dir: str | None
    links: list[int]
    slots: list[DispatcherSlot] = attrs.field(factory=list)
    #: XDP: the driver mode the chain is attached in (native, generic, offload)
    attach_mode: str | None = None
    #: the network namespace path its links were attached with (``netns``), if any
    netns: str | None = None


@attrs.frozen
class DriftReply:
    subject: str
    problem: str
    action: str


# -- images ---------------------------------------------------------------------


@attrs.frozen
class ImageReply:
    url: str = doc("the reference as given")
    digest: str = doc("digest the reference resolved to (the index for multi-arch images)")
    manifest_digest: str = doc("digest of the manifest for this host's platform")
    programs: dict[str, str] = doc("program function name -> type, from the labels")
    maps: dict[str, str] = doc("map name -> type, from the labels")
    size: int = doc("bytes of the compressed layer")
    verification: str = doc("verified, unsigned_allowed, disabled (or, from image.inspect"
                            " only, rejected)")
    signer: str | None = doc("who signed it, when verified", default=None)
    rejection: str | None = doc("image.inspect: why verification rejects it", default=None)
    pulled_at: str | None = doc("when it entered the cache (null: not cached)", default=None)
    cached: bool = doc("whether the cache holds it", default=False)


@attrs.frozen
class ImageRemoveReply:
    removed: list[str] = doc("references removed from the cache")
    blobs_freed: int = doc("blobs deleted because nothing refers to them any more")


@attrs.frozen
class MapReply:
    name: str
    map_id: int
    type: str
    key_size: int
    value_size: int
    max_entries: int
    pin_path: str


@attrs.frozen
class MapValueReply:
    key: bytes
    value: bytes | None
    #: the key and value as structured data, when the map has BTF
    decoded_key: Any = None
    decoded_value: Any = None


@attrs.frozen
class MapEntry:
    key: bytes
    value: bytes
    decoded_key: Any = None
    decoded_value: Any = None


@attrs.frozen
class MapDumpReply:
    entries: list[MapEntry]
    next: bytes | None


@attrs.frozen
class Event:
    seq: int
    time: str
    kind: str
    program_id: int | None = None
    link_id: int | None = None
    type: str | None = None
    detail: str = ""


@attrs.frozen
class SubscribeReply:
    subscribed: bool
    kinds: list[str]
