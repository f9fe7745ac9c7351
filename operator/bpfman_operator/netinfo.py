"""The node's interfaces and addresses, read with ``ip -j`` (inside the
node's network namespace when the agent is told one: in the tests each
simulated node has its own; on a cluster the agent runs in the host's)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any


def _ip_addr(netns: str | None) -> list[dict[str, Any]]:
    cmd = ["ip", "-j", "addr", "show"]
    if netns:
        cmd = ["nsenter", f"--net={netns}", "--", *cmd]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=10).stdout
    return json.loads(out or "[]")


def interface_holding(ips: Sequence[str], netns: str | None = None) -> str | None:
    """The interface that holds one of `ips` (the first in `ips` order)."""
    if not ips:
        return None
    links = _ip_addr(netns)
    for ip in ips:
        for link in links:
            if any(a.get("local") == ip for a in link.get("addr_info") or []):
                return link["ifname"]
    return None


def interface_names(netns: str | None = None) -> list[str]:
    return [link["ifname"] for link in _ip_addr(netns)]
