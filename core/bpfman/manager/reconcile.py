"""Reconciliation: compare the records with what is pinned and what the kernel
runs, at start-up and on daemon.reconcile; repair what can be repaired from
the records and report every drift."""

from __future__ import annotations

import os
from contextlib import ExitStack
from pathlib import Path

import attrs

from bpfman.manager.base import ManagerBase, log
from bpfman.model.caller import Caller
from bpfman.model.errors import (
    BpfmanError,
)
from bpfman.model.records import (
    Drift,
    LinkRecord,
    ProgramRecord,
)
from bpfman.model.replies import (
    DriftReply,
)
from bpfman.model.requests import (
    AttachRequest,
    LoadRequest,
    NoParams,
    ProgramSelector,
)


class Reconcile(ManagerBase):
    """Start-up and on-demand reconciliation."""

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
                    found = self._call(kind, "bpfman_reconcile", ctx=self.context(
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
            self.notify("bpfman_state_repaired", drifts=drifts)
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
                        self._rebuild(self.context(owner, undo), kind, attach_point)
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
