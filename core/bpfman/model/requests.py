"""Wire nouns: the params of every JSON-RPC method.

Each class is both the validator (through `bpfman.model.convert`) and the source of
the OpenRPC schema (`rpc.discover`). Field docs live in `metadata["doc"]`.
"""

from __future__ import annotations

from typing import Any

import attrs


def doc(text: str, **kw: Any) -> Any:
    """An attrs field carrying its documentation for the OpenRPC document."""
    return attrs.field(metadata={"doc": text}, **kw)


# Kernel program ids are u32; the daemon's link ids live in SQLite (i64).
# Checked here so an out-of-range id is invalid params (-32602), not an
# overflow deep in the store or a syscall.
MAX_PROGRAM_ID = 2**32 - 1
MAX_LINK_ID = 2**63 - 1


def _id_in_range(limit: int) -> Any:
    def check(_inst: Any, attr: attrs.Attribute[Any], value: int | None) -> None:
        if value is not None and not 0 < value <= limit:
            raise ValueError(f"{attr.name} must be between 1 and {limit}, got {value}")

    return check


def program_id_field(text: str, **kw: Any) -> Any:
    """A kernel program id (1 .. 2^32-1)."""
    return doc(text, validator=_id_in_range(MAX_PROGRAM_ID), **kw)


def link_id_field(text: str, **kw: Any) -> Any:
    """A link id assigned by the daemon (1 .. 2^63-1)."""
    return doc(text, validator=_id_in_range(MAX_LINK_ID), **kw)


@attrs.frozen
class ProgramSelector:
    """One program to load from an object: its function name and our program type."""

    name: str = doc("function name of the program in the ELF object")
    type: str = doc("program type as registered by a plugin, e.g. tracepoint, xdp, tc")
    attach_func: str | None = doc(
        "kernel function a fentry/fexit program attaches to (fixed at load time)", default=None
    )


PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def pull_policy_validator(_inst: Any, _attr: Any, value: str) -> None:
    if value not in PULL_POLICIES:
        raise ValueError(f"pull_policy must be one of {', '.join(PULL_POLICIES)}")


@attrs.frozen
class ImageSource:
    """Where `program.load` takes the object from when it is an image."""

    url: str = doc("image reference, e.g. quay.io/bpfman-bytecode/xdp_pass:latest")
    pull_policy: str = doc("Always, IfNotPresent (default) or Never",
                           default="IfNotPresent", validator=pull_policy_validator)
    username: str | None = doc("registry user (used for this pull only, never stored)",
                               default=None)
    password: str | None = doc("registry password (used for this pull only, never stored)",
                               default=None, repr=False)


@attrs.frozen
class LoadRequest:
    # kw_only: optional (`image` may replace it) yet first, as before.
    path: str | None = doc(
        "absolute path of the ELF object on the daemon's host (or give `image`)",
        default=None, kw_only=True,
    )
    programs: list[ProgramSelector] = doc("programs to load from the object (at least one)")
    global_data: dict[str, bytes] = doc(
        "global variables (in .rodata/.data/.bss) to set before load, NAME -> hex bytes",
        factory=dict,
    )
    metadata: dict[str, str] = doc("free-form key/value labels", factory=dict)
    map_owner_id: int | None = program_id_field(
        "share the maps of this already-loaded program instead of creating new ones",
        default=None,
    )
    image: ImageSource | None = doc(
        "load from this bytecode image instead of `path` (exactly one of the two)", default=None
    )


@attrs.frozen
class ProgramIdRequest:
    program_id: int = program_id_field("kernel program id")


TYPE_FILTER_DOC = (
    "a program type (e.g. tc), or a kernel program type matching every type built on it"
    " (libbpf's names, e.g. sched_cls, kprobe, tracing, or upstream's: tc, probe)"
)


@attrs.frozen
class ListRequest:
    type: str | None = doc(f"only programs of this type: {TYPE_FILTER_DOC}", default=None)
    metadata: dict[str, str] = doc("only programs whose metadata has all these pairs", factory=dict)
    all: bool = doc(
        "also list programs in the kernel that this daemon does not manage", default=False
    )


@attrs.frozen
class AttachRequest:
    program_id: int = program_id_field("the loaded program to attach")
    params: dict[str, Any] = doc(
        "attach parameters of the program's type (see each type's schema)", factory=dict
    )
    metadata: dict[str, str] = doc("free-form key/value labels for the link", factory=dict)


@attrs.frozen
class LinkIdRequest:
    link_id: int = link_id_field("link id assigned by the daemon")


@attrs.frozen
class LinkUpdateRequest:
    link_id: int = link_id_field("link id assigned by the daemon")
    params: dict[str, Any] = doc(
        "attach parameters to change (merged over the current ones), e.g. priority",
        factory=dict,
    )
    metadata: dict[str, str] | None = doc("replace the link's metadata", default=None)
    program_id: int | None = program_id_field(
        "run this loaded program (of the same type) in the link's place", default=None
    )


@attrs.frozen
class LinkListRequest:
    program_id: int | None = program_id_field("only links of this program", default=None)
    type: str | None = doc(f"only links of this program type: {TYPE_FILTER_DOC}",
                           default=None)
    metadata: dict[str, str] = doc("only links whose metadata has all these pairs",
                                   factory=dict)


@attrs.frozen
class NoParams:
    pass


# -- images ---------------------------------------------------------------------


@attrs.frozen
class ImagePullRequest:
    url: str = doc("image reference")
    pull_policy: str = doc("Always, IfNotPresent (default) or Never",
                           default="IfNotPresent", validator=pull_policy_validator)
    username: str | None = doc("registry user (never stored)", default=None)
    password: str | None = doc("registry password (never stored)", default=None, repr=False)


@attrs.frozen
class ImageRefRequest:
    url: str = doc("image reference as pulled, or REGISTRY/REPO@sha256:DIGEST")


@attrs.frozen
class ImageInspectRequest:
    url: str = doc("image reference")
    username: str | None = doc("registry user (never stored)", default=None)
    password: str | None = doc("registry password (never stored)", default=None, repr=False)


MAX_DUMP_PAGE = 4096


@attrs.frozen
class MapListRequest:
    program_id: int = program_id_field("program whose maps to list")


@attrs.frozen
class MapKeyRequest:
    program_id: int = program_id_field("a program using the map")
    map: str = doc("map name, as in map.list")
    key: bytes = doc("key as hex, in the map's layout")


@attrs.frozen
class MapUpdateRequest:
    program_id: int = program_id_field("a program using the map")
    map: str = doc("map name, as in map.list")
    key: bytes = doc("key as hex")
    value: bytes = doc("value as hex")


@attrs.frozen
class MapDumpRequest:
    program_id: int = program_id_field("a program using the map")
    map: str = doc("map name, as in map.list")
    after: bytes | None = doc("continue after this key (the previous page's `next`)",
                              default=None)
    limit: int = doc(f"entries per page (at most {MAX_DUMP_PAGE})", default=256)


EVENT_KINDS = ("loaded", "unloaded", "attached", "detached", "updated", "repaired", "overflow")


@attrs.frozen
class SubscribeRequest:
    kinds: list[str] = doc(f"only these kinds of event ({', '.join(EVENT_KINDS)}); all if empty",
                           factory=list)
