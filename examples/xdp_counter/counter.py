"""Count packets on an interface without any BPF privilege of our own.

The daemon loads and attaches the XDP counter for us; we read its per-CPU map
through the API (`map.get`) every few seconds, and detach and unload it when
we exit. Run it as any user the daemon's authorization policy lets load
programs (for example with a rule ``users = ["you"], scope = "own",
methods = ["program.*", "link.*", "map.get"], netns = ["/run/netns/lab"]``),
with the daemon's Python (where ``bpfman.client`` is installed):

    /opt/pybpfman/venv/bin/python counter.py --object xdp_counter.bpf.o \
        --netns /run/netns/lab --iface lab1 [--priority 55]
"""

from __future__ import annotations

import argparse
import signal
import struct
import sys
import time
from pathlib import Path
from types import FrameType

from bpfman.client import Client, RpcError

ZERO_KEY = struct.pack("<I", 0).hex()


def totals(value_hex: str) -> tuple[int, int]:
    """Sum the per-CPU {packets, bytes} records (16 bytes per CPU)."""
    raw = bytes.fromhex(value_hex)
    packets = bytes_ = 0
    for offset in range(0, len(raw), 16):
        p, b = struct.unpack_from("<QQ", raw, offset)
        packets, bytes_ = packets + p, bytes_ + b
    return packets, bytes_


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--object", required=True, type=Path, help="compiled xdp_counter.bpf.o")
    parser.add_argument("--iface", required=True)
    parser.add_argument("--netns", help="network namespace path, e.g. /var/run/netns/blue")
    parser.add_argument("--priority", type=int, default=55)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between reports")
    parser.add_argument("--count", type=int, default=0, help="stop after N reports (0: never)")
    parser.add_argument("--socket", help="daemon socket (default $BPFMAN_SOCKET)")
    args = parser.parse_args(argv)

    stop = False

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    with Client(args.socket) as client:
        [program] = client.call("program.load", {
            "path": str(args.object.resolve()),
            "programs": [{"name": "xdp_stats", "type": "xdp"}],
            "metadata": {"app": "xdp-counter"},
        })["programs"]
        program_id = program["program_id"]
        try:
            params = {"iface": args.iface, "priority": args.priority}
            if args.netns:
                params["netns"] = args.netns
            link = client.call("program.attach", {"program_id": program_id, "params": params})
            print(f"counting on {args.iface}: program {program_id}, link {link['link_id']}",
                  flush=True)
            reports = 0
            while not stop:
                time.sleep(args.interval)
                value = client.call("map.get", {"program_id": program_id,
                                                "map": "xdp_stats_map", "key": ZERO_KEY})
                packets, bytes_ = totals(value["value"])
                print(f"{packets} packets received\n{bytes_} bytes received\n", flush=True)
                reports += 1
                if args.count and reports >= args.count:
                    break
        except RpcError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            # Unloading detaches the link too; nothing is left behind.
            client.call("program.unload", {"program_id": program_id})
    return 0


if __name__ == "__main__":
    sys.exit(main())
