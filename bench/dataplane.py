"""Data-plane and XDP/TC control-plane benchmarks, against the reference tools.

- Per-packet cost of the XDP chain the daemon attaches (static mode on this
  kernel): BPF_PROG_TEST_RUN on the attached program with 1, 2, 5 and 10
  pass-through programs against the same program run alone, median of several
  runs of many repeats each; the per-program slope is the dispatcher's price.
- Load+attach of an XDP program: the daemon's API against `xdp-loader load`
  on the same object and a fresh veth each round.
- Attaching a TC program: the daemon (tc type) against `tc filter add`.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from control_plane import bench_daemon

from bpfman import kernel
from bpfman.testing import DaemonProcess, VethPair, compile_bpf, veth_pair

ROOT = Path(__file__).resolve().parents[1]
FRAME = bytes(12) + b"\x08\x00" + bytes(50)
Row = dict[str, Any]




def _ns_per_packet(program: int | Path, repeat: int, runs: int) -> float:
    samples = [kernel.test_run(program, FRAME, repeat=repeat).duration_ns for _ in range(runs)]
    return float(statistics.median(samples))


def xdp_chain_overhead(d: DaemonProcess, obj: Path, smoke: bool) -> list[Row]:
    client = d.client()
    repeat, runs = (1000, 3) if smoke else (2_000_000, 7)
    rows = []
    with veth_pair("bench") as pair:
        [alone] = client.call("program.load", {"path": str(obj), "programs": [
            {"name": "xdp_pass_only", "type": "xdp"}]})["programs"]
        baseline = _ns_per_packet(Path(alone["pin_path"]), repeat, runs)
        links: list[int] = []
        previous, prev_slots = 0.0, 0
        for slots in (1, 2, 5, 10):
            while len(links) < slots:
                [p] = client.call("program.load", {"path": str(obj), "programs": [
                    {"name": "xdp_pass_only", "type": "xdp"}]})["programs"]
                link = client.call("program.attach", {"program_id": p["program_id"], "params": {
                    "iface": pair.if_b, "netns": pair.netns_b, "priority": 10 + len(links),
                    "proceed_on": ["pass"]}})
                links.append(link["link_id"])
            cost = _ns_per_packet(pair.xdp_program_id(), repeat, runs)
            mode = next(x["mode"] for x in client.call("dispatcher.list") if x["type"] == "xdp")
            rows.append({"benchmark": f"XDP chain of {slots} pass program(s), {mode} mode",
                         "ours": cost, "reference": baseline,
                         "ratio": round(cost / baseline, 2) if baseline else None,
                         "unit": "ns/packet",
                         "note": "reference: the same program run alone (TEST_RUN)"
                                 + (f"; +{(cost - previous) / (slots - prev_slots):.1f} ns per"
                                    " added program" if previous else "")})
            previous, prev_slots = cost, slots
        for link_id in links:
            client.call("program.detach", {"link_id": link_id})
    return rows


def _paired_rounds(rounds: int, ours: Callable[[VethPair], float],
                   theirs: Callable[[VethPair], float]) -> tuple[float, float]:
    """Median seconds of `ours` and `theirs`, each timing itself on a fresh
    veth pair. Both pairs of a round are made first and left to settle (the
    kernel tears the previous round's namespaces down in the background,
    under the locks attaching takes), and the two alternate in going first."""
    mine: list[float] = []
    reference: list[float] = []
    for n in range(rounds):
        with veth_pair("bo") as pair_ours, veth_pair("br") as pair_theirs:
            time.sleep(0.1)
            if n % 2:
                reference.append(theirs(pair_theirs))
                mine.append(ours(pair_ours))
            else:
                mine.append(ours(pair_ours))
                reference.append(theirs(pair_theirs))
    return statistics.median(mine), statistics.median(reference)


def xdp_load_attach(d: DaemonProcess, obj: Path, smoke: bool) -> list[Row]:
    """Load+attach of one XDP program: the API and the CLI against xdp-loader."""
    client = d.client()

    def api(pair: VethPair) -> float:
        started = time.perf_counter()
        [p] = client.call("program.load", {"path": str(obj), "programs": [
            {"name": "xdp_pass_only", "type": "xdp"}]})["programs"]
        client.call("program.attach", {"program_id": p["program_id"], "params": {
            "iface": pair.if_b, "netns": pair.netns_b}})
        elapsed = time.perf_counter() - started
        client.call("program.unload", {"program_id": p["program_id"]})
        return elapsed

    def cli(pair: VethPair) -> float:
        started = time.perf_counter()
        out = d.cli("-o", "json", "load", "file", "--path", str(obj),
                    "--programs", "xdp:xdp_pass_only")
        program_id = json.loads(out.stdout)["programs"][0]["program_id"]
        d.cli("attach", str(program_id), "xdp", "--iface", pair.if_b, "--netns", pair.netns_b)
        elapsed = time.perf_counter() - started
        client.call("program.unload", {"program_id": program_id})
        return elapsed

    def xdp_loader(pair: VethPair) -> float:
        started = time.perf_counter()
        # nsenter, not ip netns exec: that remounts /sys and hides bpffs.
        subprocess.run(["nsenter", f"--net={pair.netns_b}", "xdp-loader", "load", "-m",
                        "native", "-s", "xdp", pair.if_b, str(obj)],
                       check=True, capture_output=True)
        return time.perf_counter() - started

    rounds = 3 if smoke else 25
    rows = []
    for how, ours, note in (
        ("API (in-process client)", api, "median of paired rounds; xdp-loader falls back to"
                                         " a single program on this kernel"),
        ("the bpfman CLI (2 processes)", cli, "median of paired rounds; Python start-up"
                                              " (about 0.15 s a process) dominates"),
    ):
        a, b = _paired_rounds(rounds if ours is api else max(3, rounds // 3), ours, xdp_loader)
        rows.append({"benchmark": f"XDP load+attach: {how} vs xdp-loader load",
                     "ours": round(a * 1e3, 2), "reference": round(b * 1e3, 2),
                     "ratio": round(a / b, 2), "unit": "ms", "note": note})
    return rows


def tc_attach(d: DaemonProcess, obj: Path, smoke: bool) -> Row:
    client = d.client()

    def ours(pair: VethPair) -> float:
        [p] = client.call("program.load", {"path": str(obj), "programs": [
            {"name": "tc_chain", "type": "tc"}]})["programs"]
        started = time.perf_counter()
        client.call("program.attach", {"program_id": p["program_id"], "params": {
            "iface": pair.if_b, "netns": pair.netns_b, "direction": "ingress",
            "priority": 50}})
        elapsed = time.perf_counter() - started
        client.call("program.unload", {"program_id": p["program_id"]})
        return elapsed

    def theirs(pair: VethPair) -> float:
        subprocess.run(["tc", "-n", pair.ns_b, "qdisc", "add", "dev", pair.if_b, "clsact"],
                       check=True)
        started = time.perf_counter()
        # tc -n: one process that enters the namespace itself.
        subprocess.run(["tc", "-n", pair.ns_b, "filter", "add", "dev", pair.if_b, "ingress",
                        "bpf", "da", "obj", str(obj), "sec", "tc"],
                       check=True, capture_output=True)
        return time.perf_counter() - started

    a, b = _paired_rounds(3 if smoke else 25, ours, theirs)
    return {"benchmark": "TC attach (dispatcher built and swapped in) vs tc filter add",
            "ours": round(a * 1e3, 2), "reference": round(b * 1e3, 2),
            "ratio": round(a / b, 2), "unit": "ms",
            "note": "median of paired rounds; program already loaded for ours, tc loads"
                    " it too"}


def run(smoke: bool) -> list[Row]:
    build = Path(os.environ.get("TMPDIR", "/tmp")) / "bpfman-bench-objs"
    verdict = compile_bpf(ROOT / "tests" / "programs" / "xdp_verdict.bpf.c", build)
    tc_obj = compile_bpf(ROOT / "tests" / "programs" / "tc_chain.bpf.c", build)
    rows: list[Row] = []
    with bench_daemon() as d:
        rows += xdp_chain_overhead(d, verdict, smoke)
        rows += xdp_load_attach(d, verdict, smoke)
        rows.append(tc_attach(d, tc_obj, smoke))
    return rows
