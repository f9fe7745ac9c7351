"""The manager's shared state and helpers: plugins, hook contexts, ownership
and grant checks, lookups. `Mutations`, `Views` and `Reconcile` build on it."""

from __future__ import annotations

import logging
from contextlib import ExitStack
from types import ModuleType
from typing import Any

from bpfman.authz import grants
from bpfman.config import Config
from bpfman.context import HookContext
from bpfman.images.service import ImageService
from bpfman.kernel.bpffs import Bpffs
from bpfman.manager.maps import MapAccess
from bpfman.model.caller import Caller
from bpfman.model.errors import (
    BpfmanError,
    InvalidArgument,
    KernelFeatureMissing,
    PermissionDenied,
    PluginFailed,
    ProgramNotFound,
)
from bpfman.model.records import (
    ProgramRecord,
)
from bpfman.plugins import KindOwner, PluginRegistry
from bpfman.store import Store

log = logging.getLogger("bpfman.manager")


class ManagerBase:
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

    def context(self, owner: KindOwner | None, undo: ExitStack) -> HookContext:
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

    def notify(self, hook: str, **kwargs: Any) -> None:
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





