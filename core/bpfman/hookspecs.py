"""The plugin contract: every hook a program-type or cross-cutting plugin may implement.

A program-type plugin owns one or more program types (`KindSpec`) and
implements the ownership hooks for them. The core calls an ownership hook
only on the plugin that owns the program's type, so an implementation never
sees a program of a type it did not declare. Cross-cutting plugins (audit,
metrics, events) implement the observer hooks, which every plugin sees.

Where hooks run: every hook is a plain (synchronous) function. The core calls
ownership hooks in a worker thread that holds the daemon's *kernel lane*, so
kernel mutations never interleave; a hook may block on the kernel, but must not
touch trio. Observer hooks about a change (loaded, attached, ...) are called
in the lane right after the store has committed; `bpfman_rpc_completed` is
called on the daemon's event loop after every call, `bpfman_daemon_started`
once the socket is open, before the first request is served. All must be
quick and must not raise (an exception there is logged and swallowed, it does
not undo a committed change).

Shared vocabulary (each name means one thing in every hook):
    type       a program type's name ("xdp", "tracepoint"); a plugin declares
               each with a `KindSpec` ("kind" in the code is the same word).
    ctx        `bpfman.HookContext`: the kernel facade (`ctx.kernel`),
               pin paths (`ctx.bpffs`), the undo stack (`ctx.undo`), kernel
               features (`ctx.features`), this plugin's config and a logger.
    program    `bpfman.ProgramRecord` of a loaded program.
    link       `bpfman.LinkRecord`: one attachment of a program.
    params     the attach parameters, an instance of the type's
               `KindSpec.params_type` (already validated in shape).
    attach_point  `bpfman.AttachPoint`, the key shared by programs that run on
               the same hook (interface + direction, tracepoint...).

Errors: raise the errors `bpfman` exports (`InvalidArgument`,
`AttachTargetNotFound`, `KernelFeatureMissing`, `KernelError`...). Anything else is reported to the
client as `PluginFailed` naming the plugin and hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from bpfman.context import HookContext
    from bpfman.kinds import KindSpec
    from bpfman.model.records import (
        AttachPoint,
        DispatcherRecord,
        Drift,
        LinkRecord,
        ProgramRecord,
        Reach,
    )

PROJECT = "bpfman"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# ---------------------------------------------------------------------------
# Startup
# ---------------------------------------------------------------------------


@hookspec
def bpfman_register_kinds() -> list[KindSpec]:
    """Declare the program types this plugin owns.

    Called once on every plugin when the daemon builds its plugin manager,
    before it serves any request. Two plugins declaring the same type name is
    a startup error naming both.

    :return: the `KindSpec` of every type the plugin owns (an empty list for a
        cross-cutting plugin, or do not implement the hook at all).

    Allowed effects: none (return values only).

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------
# Attach and detach (ownership hooks: called only on the owning plugin)
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def bpfman_validate_attach(ctx: HookContext, program: ProgramRecord, params: Any) -> None:
    """Check an attach request against live state before anything changes.

    Called by ``program.attach`` after the params were structured into the
    type's params class and before the link record exists. Typical checks:
    the interface exists, the tracepoint or kernel function exists, the values
    are in range.

    :param ctx: the hook context (read-only use: no kernel mutation here).
    :param program: the program to attach.
    :param params: the attach parameters.
    :return: None. Raise `InvalidArgument` (with ``field=``) or
        `AttachTargetNotFound` to refuse.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def bpfman_attach_point(program: ProgramRecord, params: Any) -> AttachPoint | None:
    """Name the attach point a new link would occupy.

    Pure: no kernel access. Links with equal attach points are serialized by
    one lock and, for multi-prog types, share one dispatcher.

    :return: the `AttachPoint`. Stops at the first non-None result.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def bpfman_attach_reach(ctx: HookContext, program: ProgramRecord, params: Any) -> Reach | None:
    """Say what an attachment with these params would reach, for the grant check.

    Called by ``program.attach`` and ``link.update`` after
    `bpfman_validate_attach`, when the caller's grant has bounds (see
    `bpfman.authz.grants`): the core checks the `Reach` against them, as the
    caller. Name every network namespace, interface, chain priority,
    process, file and cgroup the attachment acts on or observes; a type
    whose attachments reach none of these returns ``Reach()``. A type that
    does not implement this hook can be attached only under unbounded grants.

    :param ctx: the hook context (read-only use: no kernel mutation here).
    :return: the `Reach`. Stops at the first non-None result.

    .. versionadded:: 0.2
    """


@hookspec(firstresult=True)
def bpfman_attach(ctx: HookContext, program: ProgramRecord, link: LinkRecord, params: Any) -> (
    LinkRecord | None
):
    """Attach a loaded program and pin the result at ``link.pin_path``.

    Called by ``program.attach``, inside the store transaction that created
    ``link`` (its ``link_id`` and ``pin_path`` are already assigned) and before
    that transaction commits. The core runs, in order: structure params ->
    `bpfman_validate_attach` -> `bpfman_attach_point` -> insert link record ->
    **bpfman_attach** -> (multi-prog types) `bpfman_build_dispatcher` ->
    commit -> `ctx.undo` is discarded -> observers `bpfman_link_attached`.

    :param ctx: register every kernel change's inverse on ``ctx.undo``
        (``ctx.undo.callback(ctx.kernel.remove_pin, path)``); if anything
        later fails, the core unwinds it so that no half-done kernel state stays.
    :param program: the program to attach.
    :param link: the new link record, with ``link_id`` and ``pin_path``.
    :param params: the attach parameters.
    :return: ``link`` evolved with what the kernel assigned
        (``kernel_link_id``, and ``details`` to show in ``link.get``).
        Stops at the first non-None result.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def bpfman_detach(ctx: HookContext, program: ProgramRecord, link: LinkRecord) -> bool | None:
    """Detach one link.

    Called by ``program.detach`` and, for each of its links, by
    ``program.unload``, inside the transaction that deletes the link record.
    Idempotent: a link whose kernel object is already gone is detached
    successfully (return True; log what was missing if it matters, as the
    core does not look).

    Optional: types whose attachment is just the kernel link pinned at
    ``link.pin_path`` (see `HookContext.adopt_link`) need not implement it;
    the core then releases that pin synchronously (`kernel.detach_link`).

    :return: True when done. Stops at the first non-None result.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def bpfman_update_link(ctx: HookContext, program: ProgramRecord, link: LinkRecord, params: Any) -> (
    LinkRecord | None
):
    """Change an attached link in place (``link.update``).

    Called inside the transaction that updates the record, with ``params``
    the merged, validated new attach parameters and ``link.program_id`` the
    program the link must run from now on (it differs from the current one
    when the caller swaps programs; ``program`` is that program). Register
    inverses on ``ctx.undo``.

    Types without a dispatcher must implement it to support ``link.update``.
    Multi-prog types may: the core then stores the returned record and calls
    `bpfman_build_dispatcher` once; if they return None and the program
    changed, the core runs `bpfman_detach` (old program) and `bpfman_attach`
    (new program) on the link before that single rebuild.

    :return: ``link`` evolved with the new params and kernel ids, or None when
        the type does nothing special (without a dispatcher: cannot update,
        and the core answers Conflict). Stops at the first non-None result.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------
# Multi-prog dispatch (ownership hooks of multi-prog types)
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def bpfman_order_links(attach_point: AttachPoint, links: list[LinkRecord]) -> (
    list[LinkRecord] | None
):
    """Order the links sharing one attach point, first to run first.

    Pure, no kernel. The default policy (priority ascending, ties in attach
    order by ``link.seq``) is the core's; a plugin overrides it only when its
    type orders differently.

    .. versionadded:: 0.1
    """


@hookspec(firstresult=True)
def bpfman_build_dispatcher(
    ctx: HookContext, attach_point: AttachPoint, ordered: list[LinkRecord]
) -> DispatcherRecord | None:
    """Make the kernel run exactly ``ordered`` at ``attach_point``, atomically.

    Called after a link of a multi-prog type was attached, detached or
    re-prioritized, inside the same transaction. ``ordered`` may be empty: then
    remove the dispatcher. The previous chain must keep running until the new
    one replaces it in one step; register inverses on ``ctx.undo``.

    :return: the `DispatcherRecord` describing what now runs (None when the
        type has no dispatcher). Stops at the first non-None result.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------
# Listing and reconciliation
# ---------------------------------------------------------------------------


@hookspec(firstresult=True)
def bpfman_describe_link(link: LinkRecord) -> str | None:
    """One short line describing where a link is attached (for tables).

    Pure. Stops at the first non-None result.

    .. versionadded:: 0.1
    """


@hookspec
def bpfman_reconcile(ctx: HookContext, links: list[LinkRecord]) -> list[Drift]:
    """Compare this plugin's links with the kernel at startup.

    Called on every plugin with the links of the types it owns, after the core
    checked program and link pins. Report what differs; repair what is safe.

    :return: the drifts found (each says what was repaired or how it is marked).
        A drift whose ``rebuild`` names a shared attach point makes the core
        rebuild that chain from the records after all plugins reconciled.

    .. versionadded:: 0.1
    """


# ---------------------------------------------------------------------------
# Observers (every plugin; after commit; return values ignored)
# ---------------------------------------------------------------------------


@hookspec
def bpfman_daemon_started(ctx: HookContext, drifts: list[Drift]) -> None:
    """The daemon reconciled its state and is about to serve requests;
    ``ctx.config.daemon.socket`` is the socket it serves (under socket
    activation, the inherited one).

    .. versionadded:: 0.1
    """


@hookspec
def bpfman_state_repaired(drifts: list[Drift]) -> None:
    """Reconciliation found and handled ``drifts`` (at start-up or on
    ``daemon.reconcile``); called only when there are any.

    .. versionadded:: 0.1
    """


@hookspec
def bpfman_rpc_completed(method: str, caller: Any, seconds: float, error_code: int | None) -> None:
    """An API call finished (``error_code`` None on success).

    Unlike the other observers this one runs in the daemon's trio thread,
    once per call: it must not block.

    .. versionadded:: 0.1
    """


@hookspec
def bpfman_program_loaded(program: ProgramRecord) -> None:
    """A program was loaded and recorded. .. versionadded:: 0.1"""


@hookspec
def bpfman_program_unloaded(program: ProgramRecord) -> None:
    """A program was unloaded and its record removed. .. versionadded:: 0.1"""


@hookspec
def bpfman_link_attached(program: ProgramRecord, link: LinkRecord) -> None:
    """A link was attached and recorded. .. versionadded:: 0.1"""


@hookspec
def bpfman_link_detached(program: ProgramRecord, link: LinkRecord) -> None:
    """A link was detached and its record removed. .. versionadded:: 0.1"""


@hookspec
def bpfman_link_updated(program: ProgramRecord, link: LinkRecord) -> None:
    """A link was changed in place (``link.update``). .. versionadded:: 0.1"""
