"""Control-plane benchmarks: the daemon against the reference tools, same run.

Each benchmark returns rows of (benchmark, ours, reference, ratio, unit, note).
Run through `bench/run.py`; `--smoke` shrinks every size so CI keeps them alive.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bpfman import kernel
from bpfman.testing import DaemonProcess, running_daemon

Row = dict[str, Any]


def bench_daemon(config_text: str = "") -> contextlib.AbstractContextManager[DaemonProcess]:
    """A daemon as deployed: the default log level (info), not the tests' debug,
    whose libbpf and netlink chatter would be timed too."""
    return running_daemon(config_text, log_level="info")


def _timed(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append(time.perf_counter() - started)
    return out


def _pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def rpc_throughput(d: DaemonProcess, requests: int, clients: int) -> Row:
    """Simple requests (daemon.info) per second and latency, `clients` at once."""
    per_client = max(1, requests // clients)
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def worker() -> None:
        client = d.client()
        mine = []
        barrier.wait()
        for _ in range(per_client):
            started = time.perf_counter()
            client.call("daemon.info")
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    rate = len(latencies) / elapsed
    return {"benchmark": f"JSON-RPC daemon.info, {clients} client(s)",
            "ours": round(rate), "reference": None, "ratio": None, "unit": "requests/s",
            "note": f"p50 {_pct(latencies, 50) * 1e3:.2f} ms, "
                    f"p99 {_pct(latencies, 99) * 1e3:.2f} ms"}


def _load_many(d: DaemonProcess, obj: Path, count: int) -> None:
    client = d.client()
    for _ in range(count):
        client.call("program.load", {"path": str(obj), "programs": [
            {"name": "count_getpid", "type": "tracepoint"}]})


def listing(d: DaemonProcess, count: int, repeat: int) -> list[Row]:
    client = d.client()
    samples: dict[str, list[float]] = {"ours": [], "all": [], "bpftool": []}
    for _ in range(repeat):  # interleaved: a slow moment of the machine hits all three
        samples["ours"] += _timed(lambda: client.call("program.list", {}), 1)
        samples["bpftool"] += _timed(lambda: subprocess.run(
            ["bpftool", "prog", "show", "-j"], capture_output=True, check=True), 1)
        samples["all"] += _timed(lambda: client.call("program.list", {"all": True}), 1)
    ours, ours_all, bpftool = (statistics.median(samples[k]) for k in ("ours", "all", "bpftool"))
    return [
        {"benchmark": f"list {count} managed programs (program.list vs bpftool prog show -j)",
         "ours": round(ours * 1e3, 2), "reference": round(bpftool * 1e3, 2),
         "ratio": round(ours / bpftool, 2), "unit": "ms",
         "note": f"median of {repeat} interleaved with bpftool's"},
        {"benchmark": f"list every kernel program, {count} managed (program.list all=true)",
         "ours": round(ours_all * 1e3, 2), "reference": round(bpftool * 1e3, 2),
         "ratio": round(ours_all / bpftool, 2), "unit": "ms",
         "note": f"median of {repeat} interleaved with bpftool's"},
    ]


def load_attach(d: DaemonProcess, obj: Path, repeat: int) -> list[Row]:
    """Load (and attach) a tracepoint program: API, CLI, against bpftool.

    bpftool 7.1 cannot attach tracepoints, so the reference is its load and
    pin (`prog loadall`); the API is timed for load alone too, like for like.
    """
    client = d.client()
    pins = Path("/sys/fs/bpf")

    def api() -> None:
        [p] = client.call("program.load", {"path": str(obj), "programs": [
            {"name": "count_getpid", "type": "tracepoint"}]})["programs"]
        client.call("program.attach", {"program_id": p["program_id"],
                                       "params": {"tracepoint": "syscalls/sys_enter_getpid"}})
        client.call("program.unload", {"program_id": p["program_id"]})

    def cli() -> None:
        out = d.cli("-o", "json", "load", "file", "--path", str(obj),
                    "--programs", "tracepoint:count_getpid")
        pid = str(json.loads(out.stdout)["programs"][0]["program_id"])
        d.cli("attach", pid, "tracepoint", "--tracepoint", "syscalls/sys_enter_getpid")
        d.cli("unload", pid)

    def api_load_only() -> None:
        [p] = client.call("program.load", {"path": str(obj), "programs": [
            {"name": "count_getpid", "type": "tracepoint"}]})["programs"]
        client.call("program.unload", {"program_id": p["program_id"]})

    def bpftool() -> None:
        target = pins / f"bench_{os.getpid()}"
        subprocess.run(["bpftool", "prog", "loadall", str(obj), str(target)],
                       check=True, capture_output=True)
        subprocess.run(["rm", "-rf", str(target)], check=True)

    kernel.ensure_bpffs(pins)  # mounts only when it is not a bpffs yet
    t_api = statistics.median(_timed(api, repeat))
    t_load = statistics.median(_timed(api_load_only, repeat))
    t_cli = statistics.median(_timed(cli, repeat))
    t_tool = statistics.median(_timed(bpftool, repeat))
    return [
        {"benchmark": "load+pin+unload tracepoint object via API (in-process client)",
         "ours": round(t_load * 1e3, 2), "reference": round(t_tool * 1e3, 2),
         "ratio": round(t_load / t_tool, 2), "unit": "ms",
         "note": "reference: bpftool prog loadall OBJ PIN; rm PIN"},
        {"benchmark": "load+attach+unload tracepoint via API (in-process client)",
         "ours": round(t_api * 1e3, 2), "reference": round(t_tool * 1e3, 2),
         "ratio": round(t_api / t_tool, 2), "unit": "ms",
         "note": "reference loads only (bpftool 7.1 cannot attach tracepoints)"},
        {"benchmark": "load+attach+unload tracepoint via the bpfman CLI (3 processes)",
         "ours": round(t_cli * 1e3, 2), "reference": round(t_tool * 1e3, 2),
         "ratio": round(t_cli / t_tool, 2), "unit": "ms", "note": "Python start-up dominates"},
    ]


def start_time(obj: Path, sizes: list[int]) -> list[Row]:
    rows = []
    for n in sizes:
        with bench_daemon() as d:
            _load_many(d, obj, n)
            d.stop()
            started = time.perf_counter()
            d.start()
            d.client().call("daemon.info")
            elapsed = time.perf_counter() - started
            assert d.proc is not None
            rss = next(int(line.split()[1]) for line in
                       Path(f"/proc/{d.proc.pid}/status").read_text().splitlines()
                       if line.startswith("VmRSS:"))
            rows.append({"benchmark": f"daemon start (reconcile) with {n} programs",
                         "ours": round(elapsed * 1e3), "reference": None, "ratio": None,
                         "unit": "ms", "note": f"RSS {rss / 1024:.1f} MiB after start"})
    return rows


def growth(obj: Path, sizes: list[int], repeat: int) -> list[Row]:
    rows = []
    with bench_daemon() as d:
        loaded = 0
        client = d.client()
        for n in sizes:
            _load_many(d, obj, n - loaded)
            loaded = n
            t = statistics.median(_timed(lambda: client.call("program.list", {}), repeat))
            started = time.perf_counter()
            [p] = client.call("program.load", {"path": str(obj), "programs": [
                {"name": "count_getpid", "type": "tracepoint"}]})["programs"]
            t_load = time.perf_counter() - started
            client.call("program.unload", {"program_id": p["program_id"]})
            rows.append({"benchmark": f"cost at {n} programs: program.list / one more load",
                         "ours": round(t * 1e3, 2), "reference": None, "ratio": None,
                         "unit": "ms", "note": f"load {t_load * 1e3:.2f} ms"})
    return rows


def run(obj: Path, smoke: bool) -> list[Row]:
    n_list = 20 if smoke else 1000
    rows: list[Row] = []
    with bench_daemon() as d:
        rows.append(rpc_throughput(d, 200 if smoke else 20000, 1))
        rows.append(rpc_throughput(d, 500 if smoke else 20000, 50 if not smoke else 10))
        rows += load_attach(d, obj, 3 if smoke else 20)
        _load_many(d, obj, n_list)
        rows += listing(d, n_list, 3 if smoke else 30)
    rows += start_time(obj, [0, 5] if smoke else [0, 100, 1000])
    rows += growth(obj, [2, 10] if smoke else [10, 100, 1000], 3 if smoke else 10)
    return rows


if __name__ == "__main__":
    print(json.dumps(run(Path(sys.argv[1]), "--smoke" in sys.argv), indent=2))
