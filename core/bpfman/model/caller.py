"""Who is calling: the one fact every layer below the socket needs."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs

if TYPE_CHECKING:
    from bpfman.authz.grants import Bounds


@attrs.frozen
class Caller:
    """Who is calling: the peer credentials of the connection (SO_PEERCRED).

    ``groups`` are the peer's supplementary groups; ``own_only`` and ``grants``
    are set by the authorization policy: the caller may change only what it
    created, and may reach only what the granting rules' bounds allow.
    """

    uid: int
    gid: int
    pid: int
    groups: tuple[int, ...] = ()
    own_only: bool = False
    #: The bounds of the rules that granted this call (`bpfman.authz.grants`);
    #: None: unbounded (root, or the daemon acting for itself).
    grants: tuple[Bounds, ...] | None = None








