"""Assembling the plugin manager: hook specs, blocked plugins, entry points, owners.

Plugins come only from the ``bpfman.plugins`` entry-point group; the core
imports no plugin by name, built-in or not. A plugin that fails to import or
to validate is recorded in `PluginRegistry.failures` (shown by
``daemon.info``) and the daemon carries on without it.
"""

from __future__ import annotations

import logging
from importlib import metadata
from types import ModuleType
from typing import Any

import attrs
import pluggy

from bpfman import hookspecs
from bpfman.kinds import KindSpec
from bpfman.model.records import AttachPoint, LinkRecord

ENTRY_POINT_GROUP = "bpfman.plugins"
#: registered first, run last: the core's own answer where no plugin has one
CORE_DEFAULTS = "bpfman.core-defaults"

log = logging.getLogger("bpfman.plugins")


@attrs.frozen
class PluginFailure:
    name: str
    error: str


@attrs.frozen
class KindOwner:
    spec: KindSpec
    plugin_name: str
    plugin: Any


@attrs.define
class PluginRegistry:
    pm: pluggy.PluginManager
    kinds: dict[str, KindOwner]
    failures: list[PluginFailure]
    versions: dict[str, str | None]
    _callers: dict[tuple[str, str], Any] = attrs.field(factory=dict)

    def owner(self, kind: str) -> KindOwner | None:
        return self.kinds.get(kind)

    def call_owner(self, kind: str, hook: str, **kwargs: Any) -> Any:
        """Call an ownership hook on the plugin that owns `kind` only.

        Other type-owning plugins are excluded; plugins that own no type
        (wrappers such as audit or metrics) still see the call.
        """
        key = (kind, hook)
        caller = self._callers.get(key)
        if caller is None:
            owner = self.kinds[kind].plugin
            others = {o.plugin for o in self.kinds.values() if o.plugin is not owner}
            caller = self.pm.subset_hook_caller(hook, remove_plugins=others)
            self._callers[key] = caller
        return caller(**kwargs)

    def plugin_names(self) -> list[str]:
        return sorted(name for name, _ in self.pm.list_name_plugin()
                      if name is not None and name != CORE_DEFAULTS)


def build_plugin_manager(
    disabled: tuple[str, ...] = (), extra: dict[str, ModuleType | object] | None = None
) -> PluginRegistry:
    """Build the plugin manager for one daemon.

    :param disabled: entry-point names to block before anything is imported.
    :param extra: plugins to register directly (name -> module or object),
        used by tests and embedders; they go through the same validation.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(CoreDefaults(), name=CORE_DEFAULTS)
    failures: list[PluginFailure] = []
    versions: dict[str, str | None] = {}
    for name in disabled:
        pm.set_blocked(name)

    candidates: list[tuple[str, Any, str | None]] = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.is_blocked(ep.name):
            log.info("plugin %s is disabled by config", ep.name)
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not take the daemon down
            log.exception("plugin %s failed to import", ep.name)
            failures.append(PluginFailure(ep.name, f"import failed: {type(exc).__name__}: {exc}"))
            continue
        version = ep.dist.version if ep.dist is not None else None
        candidates.append((ep.name, plugin, version))
    for name, plugin in (extra or {}).items():
        candidates.append((name, plugin, None))

    kinds: dict[str, KindOwner] = {}
    for name, plugin, version in candidates:
        try:
            pm.register(plugin, name=name)
        except Exception as exc:  # PluginValidationError, duplicate names
            failures.append(PluginFailure(name, f"rejected: {exc}"))
            continue
        try:
            declared = _declared_kinds(pm, plugin)
            clash = [k.name for k in declared if k.name in kinds]
            if clash:
                raise ValueError(
                    f"type {clash[0]!r} is already owned by plugin {kinds[clash[0]].plugin_name!r}"
                )
        except Exception as exc:
            pm.unregister(plugin)
            failures.append(PluginFailure(name, f"rejected: {exc}"))
            continue
        for spec in declared:
            kinds[spec.name] = KindOwner(spec, name, plugin)
        versions[name] = version

    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        # A hook name with a typo: drop the offending plugin, keep the rest.
        bad = exc.plugin
        bad_name = pm.get_name(bad) or repr(bad)
        pm.unregister(bad)
        for k in [k for k, o in kinds.items() if o.plugin is bad]:
            del kinds[k]
        failures.append(PluginFailure(bad_name, f"rejected: {exc}"))

    for f in failures:
        log.error("plugin %s: %s", f.name, f.error)
    return PluginRegistry(pm=pm, kinds=kinds, failures=failures, versions=versions)


def _declared_kinds(pm: pluggy.PluginManager, plugin: Any) -> list[KindSpec]:
    impl = getattr(plugin, "bpfman_register_kinds", None)
    if impl is None:
        return []
    result = impl()
    if not isinstance(result, list) or not all(isinstance(k, KindSpec) for k in result):
        raise TypeError("bpfman_register_kinds must return a list of KindSpec")
    return result


def hooks_of(pm: pluggy.PluginManager, plugin: Any) -> list[str]:
    callers = pm.get_hookcallers(plugin) or []
    return sorted(c.name for c in callers)


def default_order(links: list[LinkRecord]) -> list[LinkRecord]:
    """Priority ascending; ties keep attach order (the monotonic ``seq``)."""
    return sorted(links, key=lambda link: (link.params.get("priority", 0), link.seq))


class CoreDefaults:
    """The core's implementations of hooks a plugin may override (`trylast`:
    any plugin's answer comes first)."""

    @hookspecs.hookimpl(trylast=True)
    def bpfman_order_links(self, attach_point: AttachPoint,
                           links: list[LinkRecord]) -> list[LinkRecord]:
        return default_order(links)
