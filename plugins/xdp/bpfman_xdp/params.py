"""Attach parameters and plugin configuration of the `xdp` type."""

from __future__ import annotations

import os
from typing import Any

import attrs

from bpfman import InvalidArgument
from bpfman.dispatch import XDP

DEFAULT_PRIORITY = 50  # libxdp's XDP_DEFAULT_RUN_PRIO, what xdp-loader uses
MIN_PRIORITY, MAX_PRIORITY = 0, 1000
DEFAULT_PROCEED_ON = ["pass", "dispatcher_return"]

XDP_MODES = ("auto", "native", "generic", "offload")
DISPATCHER_MODES = ("auto", "libxdp", "static", "single")


def _check_priority(_self: object, _a: attrs.Attribute, value: int) -> None:
    if not MIN_PRIORITY <= value <= MAX_PRIORITY:
        raise ValueError(f"priority must be {MIN_PRIORITY}..{MAX_PRIORITY} (lower runs first)")


def _check_proceed_on(_self: object, _a: attrs.Attribute, value: list[str]) -> None:
    unknown = [a for a in value if a not in XDP.actions]
    if unknown:
        raise ValueError(f"unknown proceed_on action(s) {unknown}"
                         f" (known: {', '.join(XDP.actions)})")
    if len(set(value)) != len(value):
        raise ValueError("proceed_on lists an action twice")


def _check_iface(_self: object, _a: attrs.Attribute, value: str) -> None:
    if not value or len(value) > 15 or "/" in value or value.strip() != value:
        raise ValueError("iface must be an interface name (1..15 characters, no '/')")


def _check_netns(_self: object, _a: attrs.Attribute, value: str | None) -> None:
    if value is not None and not value.startswith("/"):
        raise ValueError("netns must be an absolute path such as /var/run/netns/NAME")


@attrs.frozen
class XdpParams:
    iface: str = attrs.field(validator=_check_iface,
                             metadata={"doc": "interface name (resolved inside netns)"})
    priority: int = attrs.field(
        default=DEFAULT_PRIORITY, validator=_check_priority,
        metadata={"doc": "0..1000, lower runs first; ties run in attach order"})
    proceed_on: list[str] = attrs.field(
        factory=lambda: list(DEFAULT_PROCEED_ON), validator=_check_proceed_on,
        metadata={"doc": "return values after which the next program runs: aborted, drop,"
                         " pass, tx, redirect, dispatcher_return",
                  "choices": list(XDP.actions)})  # offered by the CLI's completion
    netns: str | None = attrs.field(
        default=None, validator=_check_netns,
        metadata={"doc": "network namespace path, e.g. /var/run/netns/NAME"})


@attrs.frozen
class XdpConfig:
    """``[plugins.config.xdp]``:

    xdp_mode         "auto" (native, generic when the driver refuses native),
                     "native", "generic" or "offload"
    dispatcher       "auto" (libxdp where the kernel loads extension programs,
                     static elsewhere), "libxdp", "static" or "single"
    libxdp_bpffs     root under which libxdp keeps its pins (libxdp's
                     LIBXDP_BPFFS; default that variable or /sys/fs/bpf)
    dispatcher_version  libxdp dispatcher version for new dispatchers (2)
    [plugins.config.xdp.interfaces.NAME]  xdp_mode / dispatcher per interface
    """

    xdp_mode: str = "auto"
    dispatcher: str = "auto"
    libxdp_bpffs: str = attrs.field(factory=lambda: os.environ.get("LIBXDP_BPFFS",
                                                                   "/sys/fs/bpf"))
    dispatcher_version: int = 2
    interfaces: dict[str, dict[str, str]] = attrs.field(factory=dict)

    @classmethod
    def parse(cls, raw: dict[str, Any]) -> XdpConfig:
        known = {f.name for f in attrs.fields(cls)}
        extra = sorted(set(raw) - known)
        if extra:
            raise InvalidArgument(f"unknown [plugins.config.xdp] key(s) {extra}",
                                  field="plugins.config.xdp")
        cfg = cls(**raw)
        for where, table in [("", raw), *((f"interfaces.{k}.", v)
                                           for k, v in cfg.interfaces.items())]:
            bad = sorted(set(table) - ({"xdp_mode", "dispatcher"} if where else known))
            if bad:
                raise InvalidArgument(f"unknown key(s) {bad} in [plugins.config.xdp.{where}]",
                                      field="plugins.config.xdp")
            _one_of(table.get("xdp_mode", "auto"), XDP_MODES, where + "xdp_mode")
            _one_of(table.get("dispatcher", "auto"), DISPATCHER_MODES, where + "dispatcher")
        if cfg.dispatcher_version not in (2, 3):
            raise InvalidArgument("dispatcher_version must be 2 or 3",
                                  field="plugins.config.xdp.dispatcher_version")
        return cfg

    def xdp_mode_for(self, iface: str) -> str:
        return self.interfaces.get(iface, {}).get("xdp_mode", self.xdp_mode)

    def dispatcher_for(self, iface: str) -> str:
        return self.interfaces.get(iface, {}).get("dispatcher", self.dispatcher)


def _one_of(value: str, allowed: tuple[str, ...], key: str) -> None:
    if value not in allowed:
        raise InvalidArgument(f"plugins.config.xdp.{key} must be one of {', '.join(allowed)},"
                              f" got {value!r}", field=f"plugins.config.xdp.{key}")
