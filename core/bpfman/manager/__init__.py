"""The only module that combines the store, the kernel and the plugins.

Every public method is one API call. Each runs synchronously in the daemon's
kernel lane (one worker thread at a time), so kernel mutations and store
transactions never interleave. A mutation follows one pattern:

    with ExitStack() as undo:          # inverse of every kernel change
        with store.transaction():      # one sqlite transaction
            ... kernel changes, each registering its inverse on `undo` ...
        undo.pop_all()                 # committed: keep the kernel changes

so a failure anywhere leaves neither a record without its kernel object nor a
kernel object without its record. Observers are told after the commit.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import attrs

import bpfman
from bpfman.authz import callerfiles, grants
from bpfman.config import Config
from bpfman.context import HookContext
from bpfman.images.service import ImageService
from bpfman.kernel.bpffs import Bpffs
from bpfman.manager.faults import fault_point
from bpfman.manager.maps import MapAccess
from bpfman.model import APPLICATION_KEY, convert
from bpfman.model.caller import Caller
from bpfman.model.errors import (
    BpfmanError,
    Conflict,
    InvalidArgument,
    InvalidParams,
    KernelFeatureMissing,
    LinkNotFound,
    PermissionDenied,
    PluginFailed,
    ProgramNotFound,
)
from bpfman.model.kernelfacts import KernelProgramInfo
from bpfman.model.records import (
    AttachPoint,
    DispatcherRecord,
    Drift,
    LinkRecord,
    ProgramRecord,
)
from bpfman.model.replies import (
    DaemonInfo,
    DispatcherReply,
    DispatcherSlot,
    DriftReply,
    LinkReply,
    LoadReply,
    OkReply,
    PluginFailure,
    PluginReply,
    ProgramReply,
)
from bpfman.model.requests import (
    AttachRequest,
    LinkIdRequest,
    LinkListRequest,
    LinkUpdateRequest,
    ListRequest,
    LoadRequest,
    NoParams,
    ProgramIdRequest,
    ProgramSelector,
)
from bpfman.plugins import KindOwner, PluginRegistry, hooks_of
from bpfman.store import Store, now_iso

log = logging.getLogger("bpfman.manager")


class Manager:
    def __init__(
        self,
        config: Config,
        store: Store,
        registry: PluginRegistry,
        kernel: ModuleType,
        features: Any,
    ) -> None:
        self.config = config
        self.store = store
        self.registry = registry
        self.kernel = kernel
        self.features = features
        self.bpffs = Bpffs(config.daemon.bpffs)
        self.maps = MapAccess(store, kernel)
        self.images = ImageService(config.images, config.signing, config.daemon.state_dir,
                                   in_use=self._object_paths_in_use)

    # -- helpers --------------------------------------------------------------

    def _object_paths_in_use(self) -> set[str]:
        return {p.path for p in self.store.list_programs()}

    def _owner(self, kind: str, field: str) -> KindOwner:
        owner = self.registry.owner(kind)
        if owner is None:
            known = ", ".join(sorted(self.registry.kinds)) or "none"
            raise InvalidArgument(
                f"unknown program type {kind!r} (known: {known})", field=field, known=known
            )
        return owner

    def _require_features(self, owner: KindOwner) -> None:
        available = self.features.as_dict()
        for name in owner.spec.required_features:
            if not available.get(name, False):
                reason = self.features.notes.get(name, "not detected on this kernel")
                raise KernelFeatureMissing(name, reason)

    def _ctx(self, owner: KindOwner | None, undo: ExitStack) -> HookContext:
        plugin_name = owner.plugin_name if owner else "core"
        return HookContext(
            kernel=self.kernel,
            bpffs=self.bpffs,
            undo=undo,
            features=self.features,
            plugin_config=self.config.plugins.config.get(plugin_name, {}),
            config=self.config,
            log=logging.getLogger(f"bpfman.plugin.{plugin_name}"),
        )

    def _call(self, kind: str, hook: str, **kwargs: Any) -> Any:
        """Call an ownership hook; non-bpfman exceptions become PluginFailed."""
        try:
            return self.registry.call_owner(kind, hook, **kwargs)
        except BpfmanError:
            raise
        except Exception as exc:
            raise PluginFailed(self.registry.kinds[kind].plugin_name, hook, exc) from exc

    def _notify(self, hook: str, **kwargs: Any) -> None:
        try:
            getattr(self.registry.pm.hook, hook)(**kwargs)
        except Exception:  # observers cannot undo a committed change
            log.exception("observer hook %s failed", hook)

    @staticmethod
    def _check_owner(caller: Caller, owner_uid: int | None, what: str) -> None:
        """Callers limited to their own objects (policy scope "own")."""
        if caller.own_only and owner_uid != caller.uid:
            raise PermissionDenied(f"{what} belongs to uid {owner_uid}, not to uid {caller.uid}",
                                   owner_uid=owner_uid)

    def _type_matches(self, kind: str, wanted: str | None) -> bool:
        """The `type` filter of the list methods: one of our types, else a
        kernel program type selecting every type built on it (upstream's
        `list -p tc` lists tc and tcx, `-p probe` every probe)."""
        if wanted is None or wanted == kind:
            return True
        owner = self.registry.kinds.get(kind)
        return (wanted not in self.registry.kinds and owner is not None
                and owner.spec.kernel_prog_type == kernel_type_name(wanted))

    def _kernel_types(self) -> list[tuple[str, str]]:
        return [(name, o.spec.kernel_prog_type) for name, o in self.registry.kinds.items()]

    def _check_reach(self, caller: Caller, ctx: HookContext, owner: KindOwner,
                     program: ProgramRecord, params: Any) -> None:
        """The caller's grant bounds what this attach touches (bpfman.authz.grants)."""
        if caller.grants is None:
            return
        reach = self._call(program.type, "bpfman_attach_reach", ctx=ctx, program=program,
                           params=params)
        grants.check_attach(caller, caller.grants, program.type,
                            owner.spec.kernel_prog_type, reach)

    def _program(self, program_id: int) -> ProgramRecord:
        record = self.store.get_program(program_id)
        if record is None:
            raise ProgramNotFound(program_id)
        return record

    def _granted_program(self, caller: Caller, program_id: int) -> ProgramRecord:
        """A program the caller's grants reach (`program_metadata` bounds)."""
        record = self._program(program_id)
        grants.check_program(caller, program_id, record.metadata)
        return record

    def _kernel_info(self, program_id: int) -> KernelProgramInfo | None:
        try:
            return self.kernel.program_info(program_id)
        except ProgramNotFound:
            return None

    def _program_reply(self, p: ProgramRecord) -> ProgramReply:
        """One program's reply, its links and live kernel info read now."""
        links = [link.link_id for link in self.store.list_links(program_id=p.program_id)]
        return self._reply_of(p, links, self._kernel_info(p.program_id),
                              sorted(self.store.map_users(p.map_owner_id)))

    @staticmethod
    def _reply_of(p: ProgramRecord, links: list[int], kernel: KernelProgramInfo | None,
                  map_used_by: list[int]) -> ProgramReply:
        """`kernel` is None when the program is gone from the kernel;
        `map_used_by`: the programs sharing its maps (itself included)."""
        return ProgramReply(
            program_id=p.program_id,
            name=p.name,
            type=p.type,
            managed=True,
            path=p.path,
            metadata=p.metadata,
            global_data=p.global_data,
            map_owner_id=p.map_owner_id,
            map_pin_dir=p.map_pin_dir,
            map_pin_path=p.map_pin_dir,
            map_used_by=map_used_by,
            pin_path=p.pin_path,
            loaded_by_uid=p.loaded_by_uid,
            created_at=p.created_at,
            links=links,
            kernel=kernel,
            attach_func=p.attach_func,
            image=p.image,
        )

    def _link_reply(self, link: LinkRecord,
                    dispatchers: dict[str, DispatcherRecord] | None = None) -> LinkReply:
        """`dispatchers`: by attach point, when the caller read them all once."""
        if dispatchers is None:
            dispatchers = self._dispatchers_by_point()
        chain = dispatchers.get(link.attach_point)
        summary = None
        if link.type in self.registry.kinds:
            try:
                summary = self._call(link.type, "bpfman_describe_link", link=link)
            except BpfmanError:
                summary = None
        return LinkReply(
            link_id=link.link_id,
            program_id=link.program_id,
            type=link.type,
            params=link.params,
            metadata=link.metadata,
            kernel_link_id=link.kernel_link_id,
            pin_path=link.pin_path,
            created_at=link.created_at,
            summary=summary or link.attach_point,
            dispatch_mode=chain.mode if chain else None,
            attach_mode=chain.attach_mode if chain else None,
        )

    def _dispatchers_by_point(self) -> dict[str, DispatcherRecord]:
        return {d.attach_point: d for d in self.store.list_dispatchers()}

    def _daemon_programs(self) -> dict[int, str]:
        """Kernel programs the daemon loaded itself to run chains, by id, with
        their role: each dispatcher, and each extension (freplace) copy of a
        program that a libxdp/freplace chain runs in its slot."""
        roles: dict[int, str] = {}
        dispatchers = self.store.list_dispatchers()
        for d in dispatchers:
            if d.program_id is not None:
                roles[d.program_id] = f"{d.type} dispatcher"
        chained = {d.attach_point for d in dispatchers if d.program_id is not None}
        for link in self.store.list_links():
            if link.attach_point not in chained or not link.pin_path:
                continue
            try:  # the link's pin holds the program its slot runs
                running = self.kernel.program_id_of_pin(link.pin_path)
            except (OSError, BpfmanError):  # a kernel link, or gone: not a copy
                continue
            if running != link.program_id:
                roles.setdefault(running, f"extension of {link.program_id}")
        return roles

    # -- program.load / program.unload ---------------------------------------

    def load(self, caller: Caller, req: LoadRequest) -> LoadReply:
        """Load the requested programs of one ELF object, sharing its maps.

        Raises: InvalidArgument (path, program names/types, global data,
        map owner), KernelFeatureMissing, VerifierRejected, KernelError.
        Kernel state on error: nothing loaded, no pins left.
        """
        if not req.programs:
            raise InvalidArgument("at least one program is required", field="programs")
        if (req.path is None) == (req.image is None):
            raise InvalidArgument("give exactly one of path and image", field="path")
        image_url = None
        data: bytes | None = None  # an image's object is the daemon's own file
        if req.image is not None:
            # The verified object from the image cache; the record keeps its path.
            obj = self.images.object_for_load(req.image, [sel.name for sel in req.programs])
            image_url = req.image.url
            req = attrs.evolve(req, path=str(obj), image=None)
        assert req.path is not None
        if not os.path.isabs(req.path):
            raise InvalidArgument("path must be absolute", field="path")
        if image_url is None:
            # Read once, as the caller, never blocking: see callerfiles.
            data = callerfiles.read_file(req.path, caller)
        owners = []
        for i, sel in enumerate(req.programs):
            owner = self._owner(sel.type, f"programs[{i}].type")
            self._require_features(owner)
            owners.append(owner)
        grants.check_load(caller, caller.grants,
                          [(sel.type, o.spec.kernel_prog_type)
                           for sel, o in zip(req.programs, owners, strict=True)])

        spec = self.kernel.inspect_object(Path(req.path), data)
        by_name = {p.name: p for p in spec.programs}
        for i, (sel, owner) in enumerate(zip(req.programs, owners, strict=True)):
            found = by_name.get(sel.name)
            if found is None:
                raise InvalidArgument(
                    f"no program {sel.name!r} in {req.path}"
                    f" (available: {', '.join(sorted(by_name)) or 'none'})",
                    field=f"programs[{i}].name",
                )
            expected = owner.spec.kernel_prog_type
            if found.kernel_type != expected:
                raise InvalidArgument(
                    f"program {sel.name!r} has kernel type {found.kernel_type}"
                    f" (section {found.section!r}); type {sel.type!r} needs {expected}",
                    field=f"programs[{i}].type",
                )

        reuse_dir: Path | None = None
        if req.map_owner_id is not None:
            map_owner = self.store.get_program(req.map_owner_id)
            if map_owner is not None:
                grants.check_program(caller, map_owner.program_id, map_owner.metadata)
            if map_owner is None:
                raise InvalidArgument(
                    f"map owner {req.map_owner_id} is not a program managed here",
                    field="map_owner_id",
                )
            # Sharing maps gives write access to them (map.update through
            # the new program): only to a caller who may touch the owner.
            self._check_owner(caller, map_owner.loaded_by_uid, f"program {req.map_owner_id}")
            reuse_dir = Path(map_owner.map_pin_dir)

        options = self.kernel.LoadOptions(
            path=Path(req.path),
            programs=tuple(
                self.kernel.ProgramLoad(name=sel.name, attach_func=sel.attach_func)
                for sel in req.programs
            ),
            global_data=dict(req.global_data),
            bpffs=self.bpffs,
            reuse_maps_dir=reuse_dir,
            data=data,
            # A caller not granted tracing types may not read memory through
            # the daemon's CAP_PERFMON either.
            kernel_reads=grants.may_trace(caller.grants, self._kernel_types()),
        )
        records: list[ProgramRecord] = []
        with ExitStack() as undo:
            loaded = self.kernel.load_object(options)
            fault_point("load.after_kernel")
            for program_id in loaded.programs.values():
                undo.callback(self.kernel.remove_pin, self.bpffs.program_pin(program_id))
            if reuse_dir is None:
                undo.callback(self.kernel.remove_pin_dir, loaded.maps_dir)
                map_owner_id, map_dir = loaded.map_owner_id, loaded.maps_dir
            else:
                assert req.map_owner_id is not None
                owner_record = self._program(req.map_owner_id)
                map_owner_id, map_dir = owner_record.map_owner_id, reuse_dir
            with self.store.transaction():
                for sel in req.programs:
                    program_id = loaded.programs[sel.name]
                    record = ProgramRecord(
                        program_id=program_id,
                        name=sel.name,
                        type=sel.type,
                        path=req.path,
                        pin_path=str(self.bpffs.program_pin(program_id)),
                        map_owner_id=map_owner_id,
                        map_pin_dir=str(map_dir),
                        global_data=dict(req.global_data),
                        metadata=dict(req.metadata),
                        loaded_by_uid=caller.uid,
                        created_at=now_iso(),
                        attach_func=sel.attach_func or _section_target(by_name[sel.name]),
                        image=image_url,
                    )
                    self.store.insert_program(record)
                    records.append(record)
                fault_point("load.before_commit")
            undo.pop_all()
        for record in records:
            self._notify("bpfman_program_loaded", program=record)
        return LoadReply(programs=[self._program_reply(r) for r in records])

    def unload(self, caller: Caller, req: ProgramIdRequest) -> OkReply:
        """Detach every link of the program, then unload it.

        The object's maps are removed with the last program using them.
        """
        program = self._granted_program(caller, req.program_id)
        self._check_owner(caller, program.loaded_by_uid, f"program {program.program_id}")
        links = self.store.list_links(program_id=program.program_id)
        for link in links:
            self._detach_link(program, link)
        with self.store.transaction():
            self.store.delete_program(program.program_id)
            remaining = self.store.map_users(program.map_owner_id)
            self.kernel.remove_pin(program.pin_path)
            fault_point("unload.after_kernel")
            if not remaining:
                self.kernel.remove_pin_dir(Path(program.map_pin_dir))
        if not self.kernel.wait_program_gone(program.program_id):
            log.warning("program %d unpinned but still in the kernel: another holder keeps it",
                        program.program_id)
        self._notify("bpfman_program_unloaded", program=program)
        return OkReply()

    # -- program.attach / program.detach --------------------------------------

    def structure_params(self, owner: KindOwner, raw: dict[str, Any]) -> Any:
        try:
            return convert.structure(raw, owner.spec.params_type)
        except Exception as exc:
            errors = convert.describe_errors(exc, prefix="$.params")
            raise InvalidParams(
                f"invalid {owner.spec.name} attach params: " + "; ".join(errors), errors
            ) from None

    def attach(self, caller: Caller, req: AttachRequest) -> LinkReply:
        """Attach a loaded program; the plugin owning its type does the work.

        Raises: ProgramNotFound, InvalidParams, InvalidArgument,
        AttachTargetNotFound, KernelFeatureMissing, KernelError, PluginFailed.
        Kernel state on error: nothing attached, no pins left.
        """
        program = self._granted_program(caller, req.program_id)
        self._check_owner(caller, program.loaded_by_uid, f"program {program.program_id}")
        owner = self._owner(program.type, "program_id")
        self._require_features(owner)
        params = self.structure_params(owner, req.params)
        with ExitStack() as undo:
            ctx = self._ctx(owner, undo)
            self._call(program.type, "bpfman_validate_attach", ctx=ctx, program=program,
                       params=params)
            self._check_reach(caller, ctx, owner, program, params)
            point = self._call(program.type, "bpfman_attach_point", program=program,
                               params=params)
            if point is None:
                point = AttachPoint(type=program.type, key=f"program={program.program_id}")
            dirty = self._mark_dirty(point.lock_key(), owner)
            with self._unmark_on_failure(dirty, undo), self.store.transaction():
                draft = LinkRecord(
                    link_id=0,
                    program_id=program.program_id,
                    type=program.type,
                    params=convert.unstructure(params),
                    attach_point=point.lock_key(),
                    seq=self.store.next_link_seq(),
                    pin_path="",
                    metadata=_link_metadata(program, req.metadata),
                    owner_uid=caller.uid,
                    created_at=now_iso(),
                )
                link_id = self.store.insert_link(draft)
                draft = attrs.evolve(
                    draft, link_id=link_id, pin_path=str(self.bpffs.link_pin(link_id))
                )
                link = self._call(program.type, "bpfman_attach", ctx=ctx, program=program,
                                  link=draft, params=params)
                if not isinstance(link, LinkRecord):
                    raise PluginFailed(owner.plugin_name, "bpfman_attach",
                                       TypeError("returned no LinkRecord"))
                fault_point("attach.after_kernel")
                self.store.update_link(link)
                if owner.spec.multiprog:
                    self._rebuild(ctx, program.type, point.lock_key())
                    link = self.store.get_link(link.link_id) or link
                fault_point("attach.before_commit")
            undo.pop_all()
        self._notify("bpfman_link_attached", program=program, link=link)
        return self._link_reply(link)

    def _rebuild(self, ctx: HookContext, kind: str, attach_point: str) -> None:
        links = self.store.list_links(attach_point=attach_point)
        ordered = self._call(kind, "bpfman_order_links", attach_point=attach_point, links=links)
        if ordered is None:
            ordered = default_order(links)
        record = self._call(kind, "bpfman_build_dispatcher", ctx=ctx, attach_point=attach_point,
                            ordered=ordered)
        if record is None or not ordered:
            self.store.delete_dispatcher(attach_point)
        else:
            self.store.put_dispatcher(record)
        self._record_kernel_links(ordered)
        self.store.clear_dirty(attach_point)  # committed with the change itself

    def _mark_dirty(self, attach_point: str, owner: KindOwner) -> str | None:
        """Before changing a multi-prog chain: a committed mark that the
        caller's own commit removes (see `_converge_dispatchers`)."""
        if not owner.spec.multiprog:
            return None
        with self.store.transaction():
            self.store.mark_dirty(attach_point, owner.spec.name)
        return attach_point

    @contextmanager
    def _unmark_on_failure(self, attach_point: str | None, undo: ExitStack) -> Iterator[None]:
        """A change that failed (rather than crashed) is undone right here,
        so its attach point is clean again."""
        try:
            yield
        except BaseException:
            undo.close()  # the previous chain is back in the kernel
            if attach_point is not None:
                with self.store.transaction():
                    self.store.clear_dirty(attach_point)
            raise

    def _record_kernel_links(self, ordered: list[LinkRecord]) -> None:
        """A chain builder that gives each program its own kernel link (TCX)
        pins it at the link's pin path, and a re-positioned link is a new
        kernel link: record the kernel's id of each."""
        for ln in ordered:
            if not self.kernel.pin_exists(ln.pin_path):
                continue
            try:
                kernel_link_id = self.kernel.link_id_of_pin(ln.pin_path)
            except BpfmanError:
                continue
            if kernel_link_id != ln.kernel_link_id:
                self.store.update_link(attrs.evolve(ln, kernel_link_id=kernel_link_id))

    def _detach_link(self, program: ProgramRecord, link: LinkRecord) -> None:
        owner = self.registry.kinds.get(link.type)
        dirty = self._mark_dirty(link.attach_point, owner) if owner else None
        with ExitStack() as undo:
            with self._unmark_on_failure(dirty, undo), self.store.transaction():
                self.store.delete_link(link.link_id)
                if link.type in self.registry.kinds:
                    ctx = self._ctx(self.registry.kinds[link.type], undo)
                    detached = self._call(link.type, "bpfman_detach", ctx=ctx, program=program,
                                          link=link)
                    if detached is None:  # a plain pinned link: the core's default
                        self.kernel.detach_link(Path(link.pin_path))
                    fault_point("detach.after_kernel")
                    if self.registry.kinds[link.type].spec.multiprog:
                        self._rebuild(ctx, link.type, link.attach_point)
                else:
                    # The owning plugin is gone (disabled or broken): the pin is
                    # still ours, and releasing it detaches the link.
                    self.kernel.detach_link(Path(link.pin_path))
            undo.pop_all()
        self._notify("bpfman_link_detached", program=program, link=link)

    def update_link(self, caller: Caller, req: LinkUpdateRequest) -> LinkReply:
        """Change a link's attach params in place (re-prioritize, re-position).

        Multi-prog types get their dispatcher rebuilt with the new order in one
        atomic swap; other types must implement `bpfman_update_link`.
        Raises: LinkNotFound, InvalidParams, Conflict (type cannot update).
        Kernel state on error: the previous chain keeps running unchanged.
        """
        link = self.store.get_link(req.link_id)
        if link is None:
            raise LinkNotFound(req.link_id)
        self._check_owner(caller, link.owner_uid, f"link {link.link_id}")
        program = self._granted_program(caller, link.program_id)
        owner = self._owner(link.type, "link_id")
        params = self.structure_params(owner, {**link.params, **req.params})
        with ExitStack() as undo:
            ctx = self._ctx(owner, undo)
            self._call(link.type, "bpfman_validate_attach", ctx=ctx, program=program,
                       params=params)
            point = self._call(link.type, "bpfman_attach_point", program=program, params=params)
            if point is not None and point.lock_key() != link.attach_point:
                raise Conflict("link.update cannot move a link to another attach point;"
                               " detach and attach instead", link_id=link.link_id)
            updated = attrs.evolve(
                link, params=convert.unstructure(params),
                metadata=link.metadata if req.metadata is None else dict(req.metadata),
            )
            if req.program_id is not None and req.program_id != link.program_id:
                replacement = self._granted_program(caller, req.program_id)
                self._check_owner(caller, replacement.loaded_by_uid,
                                  f"program {replacement.program_id}")
                if replacement.type != link.type:
                    raise InvalidArgument(
                        f"program {replacement.program_id} has type {replacement.type};"
                        f" link {link.link_id} has type {link.type}", field="program_id")
                program = replacement
                updated = attrs.evolve(updated, program_id=replacement.program_id)
            self._check_reach(caller, ctx, owner, program, params)
            dirty = self._mark_dirty(link.attach_point, owner)
            with self._unmark_on_failure(dirty, undo), self.store.transaction():
                if owner.spec.multiprog:
                    result = self._call(link.type, "bpfman_update_link", ctx=ctx,
                                        program=program, link=updated, params=params)
                    if result is None and updated.program_id != link.program_id:
                        # Generic swap: the old program leaves the link and the
                        # new one joins it; the one rebuild below makes both a
                        # single atomic change of the chain.
                        self._call(link.type, "bpfman_detach", ctx=ctx,
                                   program=self._program(link.program_id), link=link)
                        result = self._call(link.type, "bpfman_attach", ctx=ctx,
                                            program=program, link=updated, params=params)
                    self.store.update_link(result or updated)
                    self._rebuild(ctx, link.type, link.attach_point)
                    updated = self.store.get_link(updated.link_id) or updated
                else:
                    result = self._call(link.type, "bpfman_update_link", ctx=ctx,
                                        program=program, link=updated, params=params)
                    if result is None:
                        raise Conflict(f"links of type {link.type} cannot be updated in place",
                                       link_id=link.link_id)
                    updated = result
                    self.store.update_link(updated)
                fault_point("update.before_commit")
            undo.pop_all()
        self._notify("bpfman_link_updated", program=program, link=updated)
        return self._link_reply(updated)

    def list_dispatchers(self, caller: Caller, req: NoParams) -> list[DispatcherReply]:
        out = []
        names = {p.program_id: p.name for p in self.store.list_programs()}
        for d in self.store.list_dispatchers():
            links = self.store.list_links(attach_point=d.attach_point)
            ordered = self._call(d.type, "bpfman_order_links", attach_point=d.attach_point,
                                 links=links) if d.type in self.registry.kinds else None
            if ordered is None:
                ordered = default_order(links)
            out.append(DispatcherReply(
                attach_point=d.attach_point, type=d.type, mode=d.mode,
                program_id=d.program_id, revision=d.revision, pin_dir=d.pin_dir,
                links=[ln.link_id for ln in ordered],
                slots=[DispatcherSlot(link_id=ln.link_id, program_id=ln.program_id,
                                      priority=ln.params.get("priority"),
                                      proceed_on=ln.params.get("proceed_on"),
                                      name=names.get(ln.program_id))
                       for ln in ordered],
                attach_mode=d.attach_mode,
                netns=next((ln.params["netns"] for ln in ordered if ln.params.get("netns")),
                           None),
            ))
        return out

    def detach(self, caller: Caller, req: LinkIdRequest) -> OkReply:
        link = self.store.get_link(req.link_id)
        if link is None:
            raise LinkNotFound(req.link_id)
        self._check_owner(caller, link.owner_uid, f"link {link.link_id}")
        self._detach_link(self._granted_program(caller, link.program_id), link)
        return OkReply()

    # -- queries --------------------------------------------------------------

    def get_program(self, caller: Caller, req: ProgramIdRequest) -> ProgramReply:
        record = self.store.get_program(req.program_id)
        if record is not None:
            grants.check_program(caller, record.program_id, record.metadata)
            return self._program_reply(record)
        info = self._kernel_info(req.program_id)
        # Programs outside the store have no metadata: not for metadata-bound grants.
        if info is None or not grants.selects(caller, {}):
            raise ProgramNotFound(req.program_id)
        return _unmanaged_reply(info, self._daemon_programs())

    def list_programs(self, caller: Caller, req: ListRequest) -> list[ProgramReply]:
        all_records = records = self.store.list_programs()
        managed_ids = {r.program_id for r in records}
        records = [
            r for r in records
            if self._type_matches(r.type, req.type)
            and all(r.metadata.get(k) == v for k, v in req.metadata.items())
            and grants.selects(caller, r.metadata)
        ]
        # Bulk reads: one links query and one stats read for the whole listing.
        links = self.store.link_ids_by_program()
        live = self.kernel.programs_info(r.program_id for r in records)
        sharing: dict[int, list[int]] = {}
        for r in all_records:
            sharing.setdefault(r.map_owner_id, []).append(r.program_id)
        replies = [
            self._reply_of(r, links.get(r.program_id, []), live.get(r.program_id),
                           sorted(sharing.get(r.map_owner_id, [])))
            for r in records
        ]
        if req.all and not req.metadata and grants.selects(caller, {}):
            # Managed programs' info was read above: open only the others.
            others = (i for i in self.kernel.program_ids() if i not in managed_ids)
            roles = self._daemon_programs()
            for info in self.kernel.programs_info(others).values():
                if req.type is not None and info.kernel_type != kernel_type_name(req.type):
                    continue
                replies.append(_unmanaged_reply(info, roles))
            replies.sort(key=lambda r: r.program_id)
        return replies

    def get_link(self, caller: Caller, req: LinkIdRequest) -> LinkReply:
        link = self.store.get_link(req.link_id)
        if link is None:
            raise LinkNotFound(req.link_id)
        return self._link_reply(link)

    def list_links(self, caller: Caller, req: LinkListRequest) -> list[LinkReply]:
        links = self.store.list_links(program_id=req.program_id)
        dispatchers = self._dispatchers_by_point()
        return [self._link_reply(ln, dispatchers) for ln in links
                if self._type_matches(ln.type, req.type)
                and all(ln.metadata.get(k) == v for k, v in req.metadata.items())]

    def list_plugins(self, caller: Caller, req: NoParams) -> list[PluginReply]:
        pm = self.registry.pm
        out = []
        for name, plugin in pm.list_name_plugin():
            if name is None or plugin is None:
                continue
            types = sorted(k for k, o in self.registry.kinds.items() if o.plugin is plugin)
            out.append(
                PluginReply(
                    name=name,
                    module=getattr(plugin, "__name__", type(plugin).__name__),
                    version=self.registry.versions.get(name),
                    types=types,
                    hooks=hooks_of(pm, plugin),
                )
            )
        return sorted(out, key=lambda p: p.name)

    def info(self, caller: Caller, req: NoParams) -> DaemonInfo:
        d = self.config.daemon
        return DaemonInfo(
            version=bpfman.__version__,
            socket=str(d.socket),
            state_dir=str(d.state_dir),
            bpffs=str(d.bpffs),
            kernel_release=os.uname().release,
            features=self.features.as_dict(),
            feature_notes=dict(self.features.notes),
            plugins=self.registry.plugin_names(),
            plugin_failures=[PluginFailure(f.name, f.error) for f in self.registry.failures],
            types=sorted(self.registry.kinds),
        )

    # -- reconciliation -------------------------------------------------------

    def reconcile(self) -> list[Drift]:
        """Make the store and the pins agree; report every repair.

        Records whose kernel object is gone (after a reboot the bpffs is empty)
        are removed, or, with ``lost_programs = "restore"``, loaded again from
        their recorded source with their links re-attached (new kernel ids).
        Pins in our bpffs that no record names are removed.
        """
        drifts: list[Drift] = []
        lost: list[tuple[ProgramRecord, list[LinkRecord]]] = []
        with self.store.transaction():
            for program in self.store.list_programs():
                pinned_id = self._pinned_program_id(program.pin_path)
                if pinned_id == program.program_id:
                    continue
                problem = "pin missing" if pinned_id is None else f"pin holds program {pinned_id}"
                links = self.store.list_links(program_id=program.program_id)
                for link in links:
                    self.kernel.remove_pin(link.pin_path)
                    self.store.delete_link(link.link_id)
                self.store.delete_program(program.program_id)
                lost.append((program, links))
                drifts.append(Drift(f"program {program.program_id} ({program.name})", problem,
                                    "record and its links removed"))
            unpinned_chains = set()
            for link in self.store.list_links():
                if not self.kernel.pin_exists(link.pin_path):
                    self.store.delete_link(link.link_id)
                    owner = self.registry.kinds.get(link.type)
                    if owner is not None and owner.spec.multiprog:
                        # A dispatcher may still run the program (spliced in,
                        # or attached alone): rebuild the chain without it.
                        unpinned_chains.add((link.attach_point, link.type))
                        action = "record removed; its chain rebuilt without it"
                    else:
                        action = "record removed"
                    drifts.append(Drift(f"link {link.link_id}", "pin missing (detached outside "
                                        "the daemon)", action))
            for attach_point, kind in unpinned_chains:
                self.store.mark_dirty(attach_point, kind)
            drifts.extend(self._repin_missing_maps())
            drifts.extend(self._remove_orphan_pins())
        if lost and self.config.daemon.lost_programs == "restore":
            drifts.extend(self._restore(lost))
        for kind in self.registry.kinds:
            links = [ln for ln in self.store.list_links() if ln.type == kind]
            with ExitStack() as undo:
                try:
                    found = self._call(kind, "bpfman_reconcile", ctx=self._ctx(
                        self.registry.kinds[kind], undo), links=links)
                except BpfmanError as exc:
                    drifts.append(Drift(f"plugin for {kind}", "reconcile failed", str(exc)))
                    continue
                undo.pop_all()
            for group in found or []:
                for drift in group or []:
                    drifts.append(drift)
                    if drift.rebuild is not None:
                        self._mark_dirty(drift.rebuild, self.registry.kinds[kind])
        drifts.extend(self._converge_dispatchers())
        for drift in drifts:
            log.warning("reconcile: %s", drift)
        if drifts:
            self._notify("bpfman_state_repaired", drifts=drifts)
        return drifts

    def _converge_dispatchers(self) -> list[Drift]:
        """Rebuild, from the records, every shared attach point whose change
        was interrupted.

        A crash between a dispatcher swap and its commit leaves the kernel
        running a chain the store does not describe (one program more or
        less). Such attach points are still marked dirty; rebuilding them,
        one atomic swap each, makes the kernel match the records again.
        """
        drifts = []
        for attach_point, kind in sorted(self.store.list_dirty()):
            owner = self.registry.kinds.get(kind)
            if owner is None:
                continue
            drifts.append(Drift(f"dispatcher {attach_point}", "a change was interrupted",
                                "rebuilt from the records"))
            try:
                with ExitStack() as undo:
                    with self.store.transaction():
                        self._rebuild(self._ctx(owner, undo), kind, attach_point)
                    undo.pop_all()
            except BpfmanError as exc:
                drifts.append(Drift(f"dispatcher {attach_point}", "could not be rebuilt",
                                    f"left as it was: {exc}"))
        return drifts

    def _restore(self, lost: list[tuple[ProgramRecord, list[LinkRecord]]]) -> list[Drift]:
        """Load lost programs again from their recorded source, object by
        object (programs that shared maps share them again), and re-attach
        their links with the same params."""
        drifts = []
        new_owner: dict[int, int] = {}  # old map owner id -> new program id
        for program, links in sorted(lost, key=lambda pl: pl[0].program_id):
            subject = f"program {program.program_id} ({program.name})"
            caller = Caller(uid=program.loaded_by_uid or 0, gid=0, pid=os.getpid())
            request = LoadRequest(
                path=program.path,
                programs=[ProgramSelector(program.name, program.type, program.attach_func)],
                global_data=program.global_data,
                metadata=program.metadata,
                map_owner_id=new_owner.get(program.map_owner_id),
            )
            try:
                [loaded] = self.load(caller, request).programs
            except BpfmanError as exc:
                drifts.append(Drift(subject, "lost", f"could not restore: {exc}"))
                continue
            new_owner.setdefault(program.map_owner_id, loaded.program_id)
            drifts.append(Drift(subject, "lost", f"restored as program {loaded.program_id}"))
            for link in links:
                try:
                    reply = self.attach(
                        attrs.evolve(caller, uid=link.owner_uid or 0),
                        AttachRequest(loaded.program_id, link.params, link.metadata),
                    )
                except BpfmanError as exc:
                    drifts.append(Drift(f"link {link.link_id}", "lost",
                                        f"could not re-attach: {exc}"))
                    continue
                drifts.append(Drift(f"link {link.link_id}", "lost",
                                    f"re-attached as link {reply.link_id}"))
        return drifts

    def reconcile_now(self, caller: Caller, req: NoParams) -> list[DriftReply]:
        """``daemon.reconcile``: the start-up reconciliation, on demand."""
        return [DriftReply(d.subject, d.problem, d.action) for d in self.reconcile()]

    def _pinned_program_id(self, pin: str) -> int | None:
        try:
            return self.kernel.program_id_of_pin(Path(pin))
        except (OSError, BpfmanError):
            return None

    def _repin_missing_maps(self) -> list[Drift]:
        """A maps directory removed by hand: the programs still hold their
        maps in the kernel, so pin them there again (map.* works again)."""
        drifts = []
        users: dict[str, list[ProgramRecord]] = {}
        for program in self.store.list_programs():
            users.setdefault(program.map_pin_dir, []).append(program)
        for directory, programs in sorted(users.items()):
            if Path(directory).is_dir():
                continue
            map_ids = []
            for p in programs:
                info = self._kernel_info(p.program_id)
                map_ids += info.map_ids if info else []
            subject = f"maps of program {programs[0].map_owner_id}"
            try:
                names = self.kernel.repin_maps(map_ids, Path(directory))
            except (OSError, BpfmanError) as exc:
                drifts.append(Drift(subject, "maps directory missing",
                                    f"could not be pinned again ({exc}); map.* reports it"))
                continue
            drifts.append(Drift(subject, "maps directory missing",
                                f"pinned again from the kernel: {', '.join(names) or 'none'}"))
        return drifts

    def _remove_orphan_pins(self) -> list[Drift]:
        drifts = []
        known_programs = {p.pin_path for p in self.store.list_programs()}
        known_links = {ln.pin_path for ln in self.store.list_links()}
        known_maps = {p.map_pin_dir for p in self.store.list_programs()}
        root = self.bpffs.root
        for entry in sorted(root.glob("prog_*")):
            if str(entry) not in known_programs:
                self.kernel.remove_pin(entry)
                drifts.append(Drift(str(entry), "pinned program without a record", "pin removed"))
        for entry in sorted(self.bpffs.links_root.glob("*")):
            if str(entry) not in known_links:
                self.kernel.remove_pin(entry)
                drifts.append(Drift(str(entry), "pinned link without a record", "pin removed"))
        for entry in sorted(self.bpffs.maps_root.glob("*")):
            if str(entry) not in known_maps:
                self.kernel.remove_pin_dir(entry)
                drifts.append(Drift(str(entry), "pinned maps without a program", "pins removed"))
        return drifts


#: upstream bpfman's kernel program type names that are not libbpf's
_UPSTREAM_KERNEL_TYPES = {"probe": "kprobe", "tc": "sched_cls"}


def kernel_type_name(name: str) -> str:
    """libbpf's name of a kernel program type given as libbpf or upstream
    names it (``socket-filter``, ``probe``, ``tc``)."""
    name = name.replace("-", "_")
    return _UPSTREAM_KERNEL_TYPES.get(name, name)


def _link_metadata(program: ProgramRecord, given: dict[str, str]) -> dict[str, str]:
    """A new link's metadata: as given, plus the program's application (so
    `link.list` filters on it, as upstream's links carry it)."""
    metadata = dict(given)
    if APPLICATION_KEY in program.metadata:
        metadata.setdefault(APPLICATION_KEY, program.metadata[APPLICATION_KEY])
    return metadata


def default_order(links: list[LinkRecord]) -> list[LinkRecord]:
    """Priority ascending; ties keep attach order (the monotonic ``seq``)."""
    return sorted(links, key=lambda link: (link.params.get("priority", 0), link.seq))


def _section_target(spec: Any) -> str | None:
    """The target function a tracing program's ELF section names
    ("fexit/do_unlinkat", or an LSM hook: "lsm/file_open"), for programs
    loaded without ``attach_func``."""
    if spec.kernel_type not in ("tracing", "ext", "lsm"):
        return None
    return spec.section.partition("/")[2] or None


def _unmanaged_reply(info: KernelProgramInfo, daemon_roles: dict[int, str]) -> ProgramReply:
    """A program outside the store: the daemon's own (a chain's dispatcher or
    extension copy, `daemon_roles`) or unmanaged."""
    role = daemon_roles.get(info.program_id)
    return ProgramReply(program_id=info.program_id, name=info.name, type=None, managed=False,
                        kernel=info, owner="unmanaged" if role is None else "daemon",
                        daemon_role=role)
