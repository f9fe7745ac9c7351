"""Sample a process's (or every process's) stacks without BPF privileges.

The daemon loads profile.bpf.c and attaches it to the cpu-clock software
event on every CPU at `--frequency` Hz; after `--seconds` we read the
sample counts (`counts`, a hash keyed by pid and stack ids) with map.dump
and each stack (`stacks`, a BPF_MAP_TYPE_STACK_TRACE) with map.get, print
the hottest stacks, and unload (which detaches every per-CPU link).

    python3 profiler.py --object profile.bpf.o [--pid PID] [--seconds 5] [--frequency 99]
"""

from __future__ import annotations

import argparse
import struct
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bpfman.client import Client, RpcError

KEY = struct.Struct("<Iii16s")  # struct key_t: pid, user stack id, kernel stack id, comm


def dump(client: Client, program_id: int, name: str) -> list[dict[str, Any]]:
    """Every entry of a map, page by page."""
    entries: list[dict[str, Any]] = []
    after = None
    while True:
        params: dict[str, Any] = {"program_id": program_id, "map": name, "limit": 256}
        if after is not None:
            params["after"] = after
        page = client.call("map.dump", params)
        entries.extend(page["entries"])
        after = page["next"]
        if after is None:
            return entries


def stack(client: Client, program_id: int, stack_id: int, cache: dict[int, list[int]]) -> list[int]:
    """The instruction pointers of one stack (innermost first); [] if it
    was not recorded (a negative id: no user stack, map full...)."""
    if stack_id < 0:
        return []
    if stack_id not in cache:
        try:
            value = client.call("map.get", {"program_id": program_id, "map": "stacks",
                                            "key": struct.pack("<I", stack_id).hex()})
        except RpcError:
            cache[stack_id] = []  # evicted since the sample was counted
        else:
            raw = bytes.fromhex(value["value"])
            ips = struct.unpack(f"<{len(raw) // 8}Q", raw)
            cache[stack_id] = [ip for ip in ips if ip]
    return cache[stack_id]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--object", required=True, type=Path, help="compiled profile.bpf.o")
    parser.add_argument("--pid", type=int, default=0, help="profile only this process")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--frequency", type=int, default=99, help="samples per second per CPU")
    parser.add_argument("--top", type=int, default=10, help="stacks to print")
    parser.add_argument("--socket", help="daemon socket (default $BPFMAN_SOCKET)")
    args = parser.parse_args(argv)

    with Client(args.socket) as client:
        [program] = client.call("program.load", {
            "path": str(args.object.resolve()),
            "programs": [{"name": "profile", "type": "perf_event"}],
            "global_data": {"target_pid": struct.pack("<I", args.pid).hex()},
            "metadata": {"app": "perf-profiler"},
        })["programs"]
        program_id = program["program_id"]
        try:
            client.call("program.attach", {"program_id": program_id, "params": {
                "event": "cpu-clock", "frequency": args.frequency}})
            time.sleep(args.seconds)
            counts: Counter[tuple[int, str, int, int]] = Counter()
            for entry in dump(client, program_id, "counts"):
                pid, user_id, kernel_id, comm = KEY.unpack(bytes.fromhex(entry["key"]))
                name = comm.split(b"\0", 1)[0].decode(errors="replace")
                counts[(pid, name, user_id, kernel_id)] += struct.unpack(
                    "<Q", bytes.fromhex(entry["value"]))[0]
            print(f"{sum(counts.values())} samples in {len(counts)} stacks", flush=True)
            cache: dict[int, list[int]] = {}
            for (pid, name, user_id, kernel_id), n in counts.most_common(args.top):
                print(f"{n:8d} {name} ({pid})")
                for ip in stack(client, program_id, kernel_id, cache)[:5]:
                    print(f"{'':10}k {ip:#x}")
                for ip in stack(client, program_id, user_id, cache)[:5]:
                    print(f"{'':10}u {ip:#x}")
        except RpcError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        finally:
            # Unloading detaches every per-CPU link too; nothing is left behind.
            client.call("program.unload", {"program_id": program_id})
    return 0


if __name__ == "__main__":
    sys.exit(main())
