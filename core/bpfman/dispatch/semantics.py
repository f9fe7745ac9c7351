"""Proceed-on semantics: how a program type's return values map to the bits
of a slot's proceed-on mask, and the slot limit.

XDP sets bit ``1 << action`` (libxdp), TC bit ``1 << (ret + 1)`` so that
TC_ACT_UNSPEC (-1) is bit 0 (bpfman's TC dispatcher). ``dispatcher_return``
is the value an empty libxdp/bpfman stub returns (31 for XDP, 30 for TC),
i.e. bit 31 in both.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from bpfman.model.errors import Conflict, InvalidArgument

MAX_SLOTS = 10


#: libxdp's ``XDP_DISPATCHER_RETVAL`` / bpfman's TC ``TC_DISPATCHER_RETVAL``
#: both land on bit 31 of a proceed-on mask.
DISPATCHER_RETURN_BIT = 31


@attrs.frozen
class ChainSemantics:
    """How one program type's return values map to proceed-on bits.

    :param offset: bit of return value ``r`` is ``1 << (r + offset)``.
    :param actions: proceed-on names -> return value.
    :param fallthrough: verdict when every slot proceeded.
    :param prog_type: kernel program type number of the dispatcher.
    """

    name: str
    offset: int
    actions: dict[str, int]
    fallthrough: int
    prog_type: int
    default_proceed_on: tuple[str, ...]

    def bit(self, action: str) -> int:
        try:
            return 1 << (self.actions[action] + self.offset)
        except KeyError:
            known = ", ".join(self.actions)
            raise InvalidArgument(f"unknown {self.name} proceed-on action {action!r}"
                                  f" (known: {known})", field="proceed_on") from None

    def mask(self, proceed_on: Iterable[str]) -> int:
        """Bit mask of a proceed-on set (names as in `actions`)."""
        mask = 0
        for action in proceed_on:
            mask |= self.bit(action)
        return mask

    def names(self, mask: int) -> list[str]:
        """The proceed-on names of a mask (inverse of `mask`)."""
        return [a for a, v in self.actions.items() if mask & (1 << (v + self.offset))]

    def proceeds(self, mask: int, retval: int) -> bool:
        """Whether a slot with `mask` proceeds after returning `retval`: the
        dispatcher shifts in 32 bits, so the amount is taken modulo 32."""
        return bool(mask & (1 << ((retval + self.offset) & 31)))


XDP = ChainSemantics(
    name="xdp", offset=0,
    actions={"aborted": 0, "drop": 1, "pass": 2, "tx": 3, "redirect": 4,
             "dispatcher_return": 31},
    fallthrough=2, prog_type=6, default_proceed_on=("pass", "dispatcher_return"),
)


TC = ChainSemantics(
    name="tc", offset=1,
    actions={"unspec": -1, "ok": 0, "reclassify": 1, "shot": 2, "pipe": 3, "stolen": 4,
             "queued": 5, "repeat": 6, "redirect": 7, "trap": 8, "dispatcher_return": 30},
    fallthrough=0, prog_type=3, default_proceed_on=("pipe", "dispatcher_return"),
)


def check_slot_count(count: int, where: str = "this attach point") -> None:
    if count > MAX_SLOTS:
        raise Conflict(f"{where} already runs {MAX_SLOTS} programs, the most one dispatcher"
                       " can chain; detach one first", max_programs=MAX_SLOTS)
