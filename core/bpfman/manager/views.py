"""The read side of the manager: replies built from the records and the kernel's
live facts (program.get/list, link.get/list, dispatcher.list, plugin.list,
daemon.info)."""

from __future__ import annotations

import os

import bpfman
from bpfman.authz import grants
from bpfman.manager.base import ManagerBase
from bpfman.model.caller import Caller
from bpfman.model.errors import (
    BpfmanError,
    LinkNotFound,
    ProgramNotFound,
)
from bpfman.model.kernelfacts import KernelProgramInfo
from bpfman.model.records import (
    AttachPoint,
    DispatcherRecord,
    LinkRecord,
    ProgramRecord,
)
from bpfman.model.replies import (
    DaemonInfo,
    DispatcherReply,
    DispatcherSlot,
    LinkReply,
    PluginFailure,
    PluginReply,
    ProgramReply,
)
from bpfman.model.requests import (
    LinkIdRequest,
    LinkListRequest,
    ListRequest,
    NoParams,
    ProgramIdRequest,
)
from bpfman.plugins import default_order, hooks_of


class Views(ManagerBase):
    """Read-only API methods: no store transaction, no kernel change."""

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

    def list_dispatchers(self, caller: Caller, req: NoParams) -> list[DispatcherReply]:
        out = []
        names = {p.program_id: p.name for p in self.store.list_programs()}
        for d in self.store.list_dispatchers():
            links = self.store.list_links(attach_point=d.attach_point)
            ordered = (self._call(d.type, "bpfman_order_links",
                                  attach_point=AttachPoint.parse(d.attach_point), links=links)
                       if d.type in self.registry.kinds else default_order(links))
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
        program = self.store.get_program(link.program_id)
        # A link is as visible as its program (metadata-bound grants).
        grants.check_program(caller, link.program_id, program.metadata if program else {})
        return self._link_reply(link)

    def list_links(self, caller: Caller, req: LinkListRequest) -> list[LinkReply]:
        links = self.store.list_links(program_id=req.program_id)
        dispatchers = self._dispatchers_by_point()
        visible = self._visible_programs(caller)
        return [self._link_reply(ln, dispatchers) for ln in links
                if (visible is None or ln.program_id in visible)
                and self._type_matches(ln.type, req.type)
                and all(ln.metadata.get(k) == v for k, v in req.metadata.items())]

    def _visible_programs(self, caller: Caller) -> set[int] | None:
        """Ids of the programs a metadata-bound grant lets the caller see (a
        link is as visible as its program); None: every program."""
        if grants.selects_everything(caller):
            return None
        return {p.program_id for p in self.store.list_programs()
                if grants.selects(caller, p.metadata)}

    def _type_matches(self, kind: str, wanted: str | None) -> bool:
        """The `type` filter of the list methods: one of our types, else a
        kernel program type selecting every type built on it (upstream's
        `list -p tc` lists tc and tcx, `-p probe` every probe)."""
        if wanted is None or wanted == kind:
            return True
        owner = self.registry.kinds.get(kind)
        return (wanted not in self.registry.kinds and owner is not None
                and owner.spec.kernel_prog_type == kernel_type_name(wanted))

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


#: upstream bpfman's kernel program type names that are not libbpf's
_UPSTREAM_KERNEL_TYPES = {"probe": "kprobe", "tc": "sched_cls"}


def kernel_type_name(name: str) -> str:
    """libbpf's name of a kernel program type given as libbpf or upstream
    names it (``socket-filter``, ``probe``, ``tc``)."""
    name = name.replace("-", "_")
    return _UPSTREAM_KERNEL_TYPES.get(name, name)


def _unmanaged_reply(info: KernelProgramInfo, daemon_roles: dict[int, str]) -> ProgramReply:
    """A program outside the store: the daemon's own (a chain's dispatcher or
    extension copy, `daemon_roles`) or unmanaged."""
    role = daemon_roles.get(info.program_id)
    return ProgramReply(program_id=info.program_id, name=info.name, type=None, managed=False,
                        kernel=info, owner="unmanaged" if role is None else "daemon",
                        daemon_role=role)
