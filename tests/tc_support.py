"""Shared helpers of the tc and tcx tests (host kernel and VM): load instances of
tests/programs/tc_chain.bpf.c through the daemon (sharing `counts` and
`trace`), attach them, and read back what ran, in which order."""

from __future__ import annotations

import json
import struct
import subprocess
from pathlib import Path
from typing import Any

from bpfman import kernel
from bpfman.testing import DaemonProcess, VethPair

# Return codes (TCX_* and TC_ACT_* share the values that matter here).
NEXT = UNSPEC = -1
PASS = OK = 0
DROP = SHOT = 2
PIPE = 3
ICMP, UDP = 1, 17


class Chain:
    """Instances of tc_chain loaded into one daemon, sharing their maps."""

    def __init__(self, daemon: DaemonProcess, obj: Path, kind: str) -> None:
        self.client = daemon.client()
        self.obj = obj
        self.kind = kind
        self.owner: int | None = None
        self.map_dir = ""
        self.programs: dict[int, int] = {}  # tag -> program id

    def load(self, tag: int, verdict: int, proto: int = ICMP) -> int:
        req: dict[str, Any] = {
            "path": str(self.obj),
            "programs": [{"name": "tc_chain", "type": self.kind}],
            "global_data": {"tag": struct.pack("<I", tag).hex(),
                            "verdict": struct.pack("<i", verdict).hex(),
                            "match_proto": bytes([proto]).hex()},
        }
        if self.owner is not None:
            req["map_owner_id"] = self.owner
        [prog] = self.client.call("program.load", req)["programs"]
        if self.owner is None:
            self.owner = prog["program_id"]
            self.map_dir = prog["map_pin_dir"]
        self.programs[tag] = prog["program_id"]
        return int(prog["program_id"])

    def attach(self, tag: int, **params: Any) -> dict[str, Any]:
        return self.client.call("program.attach", {"program_id": self.programs[tag],
                                                   "params": params})

    def count(self, tag: int) -> int:
        raw = kernel.map_lookup(Path(self.map_dir) / "counts", struct.pack("<I", tag))
        assert raw is not None
        return int(struct.unpack("<Q", raw)[0])

    def counts(self) -> dict[int, int]:
        return {tag: self.count(tag) for tag in self.programs}

    def trace(self) -> list[int]:
        """Tags in the order they ran since the last `reset_trace`."""
        path = Path(self.map_dir) / "trace"
        raw = kernel.map_lookup(path, struct.pack("<I", 0))
        assert raw is not None
        n = min(struct.unpack("<I", raw)[0], 63)
        out = []
        for slot in range(1, n + 1):
            cell = kernel.map_lookup(path, struct.pack("<I", slot))
            assert cell is not None
            out.append(struct.unpack("<I", cell)[0])
        return out

    def reset_trace(self) -> None:
        kernel.map_update(Path(self.map_dir) / "trace", struct.pack("<I", 0),
                          struct.pack("<I", 0))

    def dispatchers(self) -> list[dict[str, Any]]:
        return [d for d in self.client.call("dispatcher.list") if d["type"] == self.kind]

    def tag_of_link(self, link_id: int) -> int:
        link = self.client.call("link.get", {"link_id": link_id})
        return next(t for t, p in self.programs.items() if p == link["program_id"])


def tc(veth: VethPair, *args: str, ns: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["tc", "-n", ns or veth.ns_b, *args], capture_output=True,
                          text=True, check=True)


def filters(veth: VethPair, direction: str = "ingress", *, dev: str | None = None,
            ns: str | None = None) -> list[dict[str, Any]]:
    """`tc -j filter show` entries that are filters (not per-priority headers)."""
    out = tc(veth, "-j", "filter", "show", "dev", dev or veth.if_b, direction, ns=ns).stdout
    return [f for f in json.loads(out or "[]") if "options" in f]


def attach(chain: Chain, veth: VethPair, tag: int, priority: int,
           direction: str = "ingress", **extra: Any) -> dict[str, Any]:
    """Attach program `tag` of the chain to interface B, inside its namespace."""
    return chain.attach(tag, iface=veth.if_b, direction=direction, priority=priority,
                        netns=veth.netns_b, **extra)
