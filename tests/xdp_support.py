"""Shared helpers of the XDP daemon tests (tests/kernel on the host, tests/vm in
libxdp mode): load tests/programs/xdp_counter.bpf.c and xdp_verdict.bpf.c
through the daemon, attach them to interface B of a veth pair, and read back
the counts and the dispatcher."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

from bpfman import kernel
from bpfman.testing import DaemonProcess, VethPair

XDP_ABORTED, XDP_DROP, XDP_PASS, XDP_TX = 0, 1, 2, 3
# A minimal Ethernet + IPv4 frame: enough for BPF_PROG_TEST_RUN on XDP.
FRAME = bytes(12) + b"\x08\x00" + bytes(50)


def load(d: DaemonProcess, path: Path, name: str, **extra: Any) -> dict[str, Any]:
    """Load program `name` of `path` as XDP (`extra`: more program.load params)."""
    return d.load(path, name, "xdp", **extra)


def attach(d: DaemonProcess, prog: dict[str, Any], pair: VethPair, **params: Any) -> dict:
    """Attach to interface B, inside its namespace (`params`: more attach params)."""
    return d.attach(prog, **{"iface": pair.if_b, "netns": pair.netns_b, **params})


def counts(prog: dict[str, Any]) -> tuple[int, int]:
    """(packets, bytes) an xdp_counter program has seen."""
    raw = kernel.map_lookup(Path(prog["map_pin_dir"]) / "xdp_counts", bytes(4))
    assert raw is not None
    packets, nbytes = struct.unpack("<QQ", raw)
    return packets, nbytes


def dispatchers(d: DaemonProcess) -> list[dict[str, Any]]:
    """The daemon's XDP dispatchers (`dispatcher.list`)."""
    return [x for x in d.client().call("dispatcher.list") if x["type"] == "xdp"]
