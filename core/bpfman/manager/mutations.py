"""The write side of the manager: load, unload, attach, detach, link update, and
the dispatcher rebuilds they cause. Each is one store transaction with an undo
stack for its kernel changes (see the package doc)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import attrs

from bpfman.authz import callerfiles, grants
from bpfman.context import HookContext
from bpfman.manager.base import ManagerBase, log
from bpfman.manager.faults import fault_point
from bpfman.model import APPLICATION_KEY, convert
from bpfman.model.caller import Caller
from bpfman.model.errors import (
    BpfmanError,
    Conflict,
    InvalidArgument,
    InvalidParams,
    LinkNotFound,
    PluginFailed,
)
from bpfman.model.records import (
    AttachPoint,
    LinkRecord,
    ProgramRecord,
)
from bpfman.model.replies import (
    LinkReply,
    LoadReply,
    OkReply,
)
from bpfman.model.requests import (
    AttachRequest,
    LinkIdRequest,
    LinkUpdateRequest,
    LoadRequest,
    ProgramIdRequest,
)
from bpfman.plugins import KindOwner
from bpfman.store import now_iso


class Mutations(ManagerBase):
    """Mutating API methods."""

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
            self.notify("bpfman_program_loaded", program=record)
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
        self.notify("bpfman_program_unloaded", program=program)
        return OkReply()

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
            ctx = self.context(owner, undo)
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
        self.notify("bpfman_link_attached", program=program, link=link)
        return self._link_reply(link)

    def _rebuild(self, ctx: HookContext, kind: str, attach_point: str) -> None:
        links = self.store.list_links(attach_point=attach_point)
        point = AttachPoint.parse(attach_point)
        ordered = self._call(kind, "bpfman_order_links", attach_point=point, links=links)
        record = self._call(kind, "bpfman_build_dispatcher", ctx=ctx, attach_point=point,
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
                    ctx = self.context(self.registry.kinds[link.type], undo)
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
        self.notify("bpfman_link_detached", program=program, link=link)

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
            ctx = self.context(owner, undo)
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
        self.notify("bpfman_link_updated", program=program, link=updated)
        return self._link_reply(updated)

    def detach(self, caller: Caller, req: LinkIdRequest) -> OkReply:
        link = self.store.get_link(req.link_id)
        if link is None:
            raise LinkNotFound(req.link_id)
        self._check_owner(caller, link.owner_uid, f"link {link.link_id}")
        self._detach_link(self._granted_program(caller, link.program_id), link)
        return OkReply()


def _section_target(spec: Any) -> str | None:
    """The target function a tracing program's ELF section names
    ("fexit/do_unlinkat", or an LSM hook: "lsm/file_open"), for programs
    loaded without ``attach_func``."""
    if spec.kernel_type not in ("tracing", "ext", "lsm"):
        return None
    return spec.section.partition("/")[2] or None


def _link_metadata(program: ProgramRecord, given: dict[str, str]) -> dict[str, str]:
    """A new link's metadata: as given, plus the program's application (so
    `link.list` filters on it, as upstream's links carry it)."""
    metadata = dict(given)
    if APPLICATION_KEY in program.metadata:
        metadata.setdefault(APPLICATION_KEY, program.metadata[APPLICATION_KEY])
    return metadata
