"""Attach parameters of the `tc` and `tcx` types: one model for both.

Both attach to an interface (``iface``, in ``netns`` if given) in one
``direction``, ordered by ``priority`` (lower runs first, ties in attach
order). ``tc`` adds ``proceed_on``: which return codes let its dispatcher go
on to the next program. ``tcx`` has none: the kernel's own rule applies
(only TCX_NEXT continues).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import attrs

from bpfman import dispatch

DIRECTIONS = ("ingress", "egress")
MIN_PRIORITY, MAX_PRIORITY = 0, 1000
DEFAULT_PRIORITY = 1000
# Linux interface names: at most 15 bytes, no '/', no whitespace.
_IFNAME = re.compile(r"^[^/\s:]{1,15}$")

# TC return codes (linux/pkt_cls.h) plus the dispatcher's "slot empty" code.
TC_ACTIONS: dict[str, int] = dispatch.TC.actions
DEFAULT_PROCEED_ON = dispatch.TC.default_proceed_on


def _check_iface(_self: object, _attr: attrs.Attribute, value: str) -> None:
    if not _IFNAME.match(value):
        raise ValueError(f"not an interface name: {value!r}")


def _check_netns(_self: object, _attr: attrs.Attribute, value: str | None) -> None:
    if value is not None and not value.startswith("/"):
        raise ValueError("netns must be an absolute path such as /var/run/netns/NAME")


def _field(doc: str, choices: Sequence[str] = (), **kw: Any) -> Any:
    # metadata "choices": the values the CLI offers on completion
    return attrs.field(metadata={"doc": doc, **({"choices": list(choices)} if choices else {})},
                       **kw)


_iface = _field("interface name, e.g. eth0", validator=_check_iface)
_direction = _field("ingress or egress", validator=attrs.validators.in_(DIRECTIONS))
_priority = _field(
    f"{MIN_PRIORITY}..{MAX_PRIORITY}, lower runs first; ties run in attach order",
    default=DEFAULT_PRIORITY,
    validator=[attrs.validators.ge(MIN_PRIORITY), attrs.validators.le(MAX_PRIORITY)],
)
_netns = _field("network namespace path (/var/run/netns/NAME); default: the daemon's",
                default=None, validator=_check_netns)


@attrs.frozen
class TcxParams:
    """Attach a sched_cls program as a kernel TCX link."""

    iface: str = _iface
    direction: str = _direction
    priority: int = _priority
    netns: str | None = _netns


def _check_proceed_on(_self: object, _attr: attrs.Attribute, value: list[str]) -> None:
    unknown = [v for v in value if v not in TC_ACTIONS]
    if unknown:
        raise ValueError(f"unknown TC return code(s) {', '.join(unknown)}"
                         f" (choose from {', '.join(TC_ACTIONS)})")


@attrs.frozen
class TcParams:
    """Attach a sched_cls program behind the interface's TC dispatcher."""

    iface: str = _iface
    direction: str = _direction
    priority: int = _priority
    proceed_on: list[str] = _field(
        "return codes after which the next program runs: " + ", ".join(TC_ACTIONS)
        + "; default pipe, dispatcher_return",
        factory=lambda: list(DEFAULT_PROCEED_ON), validator=_check_proceed_on,
        choices=list(TC_ACTIONS),
    )
    netns: str | None = _netns
