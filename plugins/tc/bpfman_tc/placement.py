"""Pure placement planning for TCX chains: given the order the daemon wants
for its own links and where the kernel has them now, the fewest moves
that make the kernel's relative order match.

Links the daemon does not own (other tools' TCX programs) stay where they
are; the daemon only orders its own links relative to each other. A move is
"detach this link, attach it next to a neighbour that is already in place",
so the plan keeps the longest run of links that are already in the right
relative order and re-places the rest, in desired order.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Literal, TypeVar

import attrs

K = TypeVar("K", bound=Hashable)


@attrs.frozen
class Step:
    """Put `key` at `where` relative to `neighbour` (None for "append").
    `move` is True when the key is on the hook already (detach it first)."""

    key: Hashable
    where: Literal["after", "before", "append"]
    neighbour: Hashable | None
    move: bool


def plan(desired: Sequence[K], positions: Mapping[K, int]) -> list[Step]:
    """Steps to bring `desired` (first runs first) into that order.

    :param positions: for each key already in the kernel chain, its index
        there; keys missing from it are new.
    """
    placed = [k for k in desired if k in positions]
    keep = set(_longest_increasing(placed, positions))
    steps: list[Step] = []
    for i, key in enumerate(desired):
        if key in keep:
            continue
        move = key in positions
        if i > 0:
            steps.append(Step(key, "after", desired[i - 1], move))
            continue
        following = next((k for k in desired[1:] if k in keep), None)
        if following is not None:
            steps.append(Step(key, "before", following, move))
        else:
            steps.append(Step(key, "append", None, move))
    return steps


def _longest_increasing(keys: list[K], positions: Mapping[K, int]) -> list[K]:
    """The longest subsequence of `keys` whose positions increase (O(n^2):
    a chain holds at most 63 programs). Ties keep the earliest keys."""
    if not keys:
        return []
    n = len(keys)
    best = [1] * n
    back = [-1] * n
    for i in range(n):
        for j in range(i):
            if positions[keys[j]] < positions[keys[i]] and best[j] + 1 > best[i]:
                best[i], back[i] = best[j] + 1, j
    i = max(range(n), key=lambda x: (best[x], -x))
    out: list[K] = []
    while i != -1:
        out.append(keys[i])
        i = back[i]
    return out[::-1]
