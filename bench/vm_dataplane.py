"""XDP dispatcher overhead per packet in the VM tier, beside libxdp's own dispatcher.

The host kernel refuses extension (freplace) programs, so libxdp's dispatcher (and
the daemon's `libxdp` mode) only runs in the VM tier: Debian's 6.12 kernel under qemu
with software emulation (TCG), booted by tests/vm/bpfman_vm_harness.py. One boot
measures, on the same pass-through program (xdp_pass_only of
tests/programs/xdp_verdict.bpf.c), with BPF_PROG_TEST_RUN:

- the program alone (TEST_RUN on the program itself): the baseline;
- the daemon's chain in static mode and in libxdp mode with 1, 2, 5 and 10
  programs, each on its own veth (one daemon: `dispatcher = "libxdp"`, static
  per interface), TEST_RUN on the program the interface runs;
- xdp-loader's dispatcher (libxdp 1.3.1) with 1, 2, 5 and 10 copies of the same
  program on another veth, TEST_RUN on the program the interface runs.

Every configuration is built five times (replicas, on their own veths) and all are
attached at once, then sampled in interleaved rounds (one TEST_RUN of many repeats each
per round): a build's figure is the median over the rounds, a configuration's the mean
over its builds. Both matter under TCG: a slow stretch of the emulator hits every
target alike, and where the JIT happened to place a build's programs moves its figure
by up to ~40% (rounds within one build agree within a few %). The per-slot slope is a
least-squares fit over the chains of two programs or more (with one program there may
be no dispatcher at all). Under TCG the absolute nanoseconds are emulated x86 and mean
nothing on real hardware: only the ratios within one run do.

    # on the host, as root: boot the VM, run measure() inside, print the rows
    .venv/bin/python bench/run.py --only vm
    # inside the VM (what the host runs there), rows as JSON into FILE
    python bench/vm_dataplane.py --obj xdp_verdict.bpf.o --out FILE [--smoke]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from bpfman import kernel
from bpfman.testing import DaemonProcess, VethPair, compile_bpf, import_file, running_daemon

ROOT = Path(__file__).resolve().parents[1]
FRAME = bytes(12) + b"\x08\x00" + bytes(50)
PROGRAM = "xdp_pass_only"
Row = dict[str, Any]

SIZES, SMOKE_SIZES = (1, 2, 5, 10), (1, 2, 3)  # smoke: still two sizes >= 2 for a slope
# (TEST_RUN repeats, rounds). Measured under TCG: ~0.1 us per run alone, ~0.4 us with
# 10 programs, so a full round of all 39 targets takes about 4 s.
FULL_RUNS, SMOKE_RUNS = (500_000, 9), (20_000, 3)
# Identical builds of each chain: where the JIT places the programs moves one build's
# figure by up to ~40% under TCG (within a build, rounds agree within a few %); with 3
# builds the static/libxdp slope ratio ranged 0.47-1.01 over five runs, so 5 builds.
REPLICAS, SMOKE_REPLICAS = 5, 1
KINDS = ("static", "libxdp", "xdp-loader")
TCG_NOTE = "qemu TCG: emulated ns, compare same-run ratios only"
DEFAULT_VM_TIMEOUT = 1200.0  # measured ~4 min: boot, one daemon, 36 attaches, sampling


# ---------------------------------------------------------------------------------------
# Inside the VM


@dataclass
class Chain:
    """One TEST_RUN target: the program alone, or an interface running `size` copies of
    it, built by `kind`; `replica` tells apart identical builds."""

    kind: str  # "alone" (the baseline), "static"/"libxdp" (the daemon) or "xdp-loader"
    size: int
    replica: int
    pair: VethPair | None = None  # None for "alone"
    program_id: int = 0  # what the interface runs: a dispatcher or the program itself
    pin: Path | None = None  # "alone": the program's pin, which TEST_RUN runs
    attached_name: str = ""  # that program's kernel name
    mode: str = ""  # the daemon's dispatcher.list mode; "" for xdp-loader
    status_programs: int = 0  # programs `xdp-loader status` lists under a dispatcher
    samples: list[float] = field(default_factory=list)

    @property
    def ns(self) -> float:
        return float(statistics.median(self.samples))

    @property
    def target(self) -> Path | int:
        return self.pin if self.pin is not None else self.program_id

    def describe(self) -> str:
        """What really runs on the interface, for the row's note."""
        if self.kind == "alone":
            return f"{self.attached_name} (not attached)"
        if self.kind == "xdp-loader":
            if self.status_programs:
                return f"{self.attached_name} with {self.status_programs} program(s)"
            return f"{self.attached_name} attached alone (no dispatcher)"
        return f"{self.mode} ({self.attached_name})"


@dataclass
class Measurement:
    chains: list[Chain]
    repeat: int
    rounds: int
    kernel_release: str = field(default_factory=lambda: os.uname().release)

    def builds(self, kind: str, size: int) -> list[Chain]:
        return [c for c in self.chains if c.kind == kind and c.size == size]

    def ns(self, kind: str, size: int) -> float:
        """Mean over the replicas of each one's median: where the JIT happened to put
        the programs moves one build's figure by up to ~40% under TCG, so every build
        counts (a median over rounds within one build varies by a few % only)."""
        return statistics.fmean(c.ns for c in self.builds(kind, size))

    def spread(self, kind: str, size: int) -> str:
        got = [c.ns for c in self.builds(kind, size)]
        return f"{min(got):.0f}-{max(got):.0f}" if len(got) > 1 else f"{got[0]:.0f}"

    def sizes(self) -> list[int]:
        return sorted({c.size for c in self.chains if c.kind != "alone"})

    @property
    def replicas(self) -> int:
        return len(self.builds("alone", 0))


def _xdp_loader(pair: VethPair, *args: str) -> str:
    # nsenter, not ip netns exec: that remounts /sys and hides bpffs (libxdp's pins).
    proc = subprocess.run(["nsenter", f"--net={pair.netns_b}", "xdp-loader", *args],
                          capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"xdp-loader {' '.join(args)}: exit {proc.returncode}\n"
                           f"{proc.stdout}{proc.stderr}")
    return proc.stdout + proc.stderr


def _status_programs(pair: VethPair) -> int:
    """How many programs `xdp-loader status` lists under the interface's dispatcher
    (rows "=> PRIO NAME ID TAG ACTIONS"); 0 when a program is attached alone."""
    out = _xdp_loader(pair, "status", pair.if_b)
    return sum(1 for line in out.splitlines() if re.match(r"\s*=>\s+\d+\s+\S+\s+\d+", line))


def _config(chains: list[Chain]) -> str:
    # libxdp forced (fails loudly rather than falling back), static per interface.
    lines = ["[plugins.config.xdp]", 'dispatcher = "libxdp"', ""]
    for c in chains:
        if c.kind == "static" and c.pair is not None:
            lines += [f"[plugins.config.xdp.interfaces.{c.pair.if_b}]",
                      'dispatcher = "static"', ""]
    return "\n".join(lines)


def _load(d: DaemonProcess, obj: Path) -> dict[str, Any]:
    [prog] = d.client().call("program.load", {"path": str(obj), "programs": [
        {"name": PROGRAM, "type": "xdp"}]})["programs"]
    return prog


@contextlib.contextmanager
def _pairs(chains: list[Chain]) -> Iterator[None]:
    """Create every chain's veth pair; on exit empty and delete them all."""
    made = [c for c in chains if c.pair is not None]
    try:
        for c in made:
            assert c.pair is not None
            c.pair.create()
        yield
    finally:
        for c in made:
            assert c.pair is not None
            if c.kind == "xdp-loader":  # its pins under /sys/fs/bpf/xdp go with it
                with contextlib.suppress(Exception):
                    _xdp_loader(c.pair, "unload", "--all", c.pair.if_b)
            c.pair.destroy()


def _build(d: DaemonProcess, obj: Path, c: Chain, loaded: list[int]) -> None:
    if c.pair is None:  # the baseline: loaded, not attached
        p = _load(d, obj)
        loaded.append(p["program_id"])
        c.program_id, c.pin = p["program_id"], Path(p["pin_path"])
    elif c.kind == "xdp-loader":
        # All copies in one call: xdp-loader builds one dispatcher for them.
        _xdp_loader(c.pair, "load", "-m", "native", "-n", PROGRAM, c.pair.if_b,
                    *[str(obj)] * c.size)
    else:
        for i in range(c.size):
            p = _load(d, obj)
            loaded.append(p["program_id"])
            d.client().call("program.attach", {"program_id": p["program_id"], "params": {
                "iface": c.pair.if_b, "netns": c.pair.netns_b, "priority": 10 + i,
                "proceed_on": ["pass"]}})


def _inspect(c: Chain, modes: dict[int, str]) -> None:
    """Record what the interface really runs."""
    if c.pair is not None:
        c.program_id = c.pair.xdp_program_id()
        if c.kind != "static":
            c.status_programs = _status_programs(c.pair)
    c.attached_name = kernel.program_info(c.program_id).name
    if c.kind in ("static", "libxdp"):
        c.mode = modes.get(c.program_id, "")


def measure(obj: Path, *, smoke: bool = False,
            log: Callable[[str], None] = lambda s: print(s, flush=True)) -> Measurement:
    """Build every chain, sample them all, tear everything down (root, bpffs and
    extension programs needed: run inside the VM)."""
    started = time.monotonic()

    def step(text: str) -> None:
        log(f"vm-bench: {time.monotonic() - started:6.1f}s {text}")

    kernel.ensure_bpffs("/sys/fs/bpf")  # libxdp's pins; virtme-ng mounts no bpffs
    sizes = SMOKE_SIZES if smoke else SIZES
    repeat, rounds = SMOKE_RUNS if smoke else FULL_RUNS
    replicas = SMOKE_REPLICAS if smoke else REPLICAS
    tags = {"static": "vs", "libxdp": "vl", "xdp-loader": "vx"}
    # Replica-major: each replica's builds are made together, so that the kinds share
    # the JIT's placement luck. Names are fixed when the VethPair is made: the daemon's
    # config needs them.
    chains = [c for r in range(replicas) for c in (
        Chain("alone", 0, r), *(Chain(kind, n, r, VethPair(tags[kind]))
                                for kind in KINDS for n in sizes))]
    with _pairs(chains), running_daemon(_config(chains)) as d:
        step(f"daemon up; {len(chains)} targets, {replicas} replica(s)")
        loaded: list[int] = []
        try:
            for c in chains:
                _build(d, obj, c, loaded)
                step(f"replica {c.replica}: {c.kind} x{c.size} built")
            modes = {x["program_id"]: x["mode"] for x in d.client().call("dispatcher.list")
                     if x["type"] == "xdp"}
            for c in chains:
                _inspect(c, modes)
                step(f"replica {c.replica}: {c.kind} x{c.size} runs id {c.program_id}"
                     f" {c.describe()}, xdp-loader status lists {c.status_programs}")
            for r in range(rounds):
                # Interleaved (rotated each round): drift in the emulator hits all alike.
                shift = r % len(chains)
                for c in chains[shift:] + chains[:shift]:
                    c.samples.append(float(kernel.test_run(c.target, FRAME, repeat=repeat)
                                           .duration_ns))
                step(f"round {r + 1}/{rounds}")
        finally:
            for program_id in loaded:  # removes our libxdp pins under /sys/fs/bpf/xdp too
                with contextlib.suppress(Exception):
                    d.client().call("program.unload", {"program_id": program_id})
    return Measurement(chains, repeat, rounds)


# ---------------------------------------------------------------------------------------
# Rows


def _fit(points: list[tuple[int, float]]) -> tuple[float, float]:
    """Least-squares (slope, intercept) of ns against the number of programs."""
    slope, intercept = statistics.linear_regression([float(n) for n, _ in points],
                                                    [ns for _, ns in points])
    return slope, intercept


def _ratio(ours: float, ref: float) -> float | None:
    return round(ours / ref, 2) if ref > 0 else None


def rows(m: Measurement) -> list[Row]:
    base = m.ns("alone", 0)
    how = (f"mean of {m.replicas} build(s), each the median of {m.rounds} interleaved"
           f" TEST_RUNs x {m.repeat:,} repeats")
    out: list[Row] = [{
        "benchmark": "VM: XDP pass program alone (TEST_RUN), the baseline",
        "ours": round(base, 1), "reference": None, "ratio": None, "unit": "ns/packet",
        "note": f"{how}; builds {m.spread('alone', 0)} ns; Linux {m.kernel_release};"
                f" {TCG_NOTE}"}]
    for kind in ("static", "libxdp"):
        for n in m.sizes():
            ours, ref = m.ns(kind, n), m.ns("xdp-loader", n)
            c, x = m.builds(kind, n)[0], m.builds("xdp-loader", n)[0]
            out.append({
                "benchmark": f"VM: XDP chain of {n} pass program(s), {kind} mode"
                             " vs xdp-loader's dispatcher",
                "ours": round(ours, 1), "reference": round(ref, 1),
                "ratio": _ratio(ours, ref), "unit": "ns/packet",
                "note": f"ours: {c.describe()}, {ours / base:.2f}x alone, builds"
                        f" {m.spread(kind, n)} ns; xdp-loader: {x.describe()}, {ref / base:.2f}x"
                        f" alone, builds {m.spread('xdp-loader', n)} ns; {TCG_NOTE}"})
    fitted = [n for n in m.sizes() if n >= 2]
    ref_slope, ref_icpt = _fit([(n, m.ns("xdp-loader", n)) for n in fitted])
    for kind in ("static", "libxdp"):
        slope, icpt = _fit([(n, m.ns(kind, n)) for n in fitted])
        out.append({
            "benchmark": f"VM: XDP per-slot slope, {kind} mode vs xdp-loader's dispatcher",
            "ours": round(slope, 1), "reference": round(ref_slope, 1),
            "ratio": _ratio(slope, ref_slope), "unit": "ns/slot",
            "note": f"least squares over {', '.join(map(str, fitted))} programs; intercept"
                    f" {icpt:.0f} vs {ref_icpt:.0f} ns; baseline {base:.0f} ns; {TCG_NOTE}"})
    return out


def observed(m: Measurement) -> list[dict[str, Any]]:
    """What ran on each interface (for the smoke test and the console log)."""
    return [{"kind": c.kind, "size": c.size, "replica": c.replica,
             "program_id": c.program_id, "attached_name": c.attached_name, "mode": c.mode,
             "status_programs": c.status_programs, "ns": c.ns} for c in m.chains]

def guest_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="measure inside the VM; rows as JSON")
    parser.add_argument("--obj", type=Path, help="compiled xdp_verdict.bpf.o"
                        " (default: compile tests/programs/xdp_verdict.bpf.c)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args(argv)
    try:
        obj = args.obj or compile_bpf(ROOT / "tests" / "programs" / "xdp_verdict.bpf.c",
                                      Path(tempfile.gettempdir()) / "bpfman-bench-objs")
        m = measure(obj, smoke=args.smoke)
        result = {"rows": rows(m), "observed": observed(m)}
    except Exception:
        result = {"error": traceback.format_exc()}
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 1 if "error" in result else 0


# ---------------------------------------------------------------------------------------
# On the host: one VM boot


def _harness() -> ModuleType:
    # The pytest harness owns the boot logic; same module name as tests/vm/conftest.py.
    return import_file("bpfman_vm_harness", ROOT / "tests" / "vm" / "bpfman_vm_harness.py")


def _not_run(why: str) -> Row:
    return {"benchmark": "VM: XDP dispatcher overhead (static, libxdp, xdp-loader)",
            "ours": None, "reference": None, "ratio": None, "unit": "",
            "note": f"not measured: {why}"}


def run(smoke: bool) -> list[Row]:
    """Boot the VM once, run measure() inside, return its rows (or one row saying why
    there are none). Needs root on the host and the VM tier's setup."""
    try:
        harness = _harness()
        why = harness.vm_unavailable_reason()
    except Exception as e:  # a broken harness must not take the other benchmarks down
        return [_not_run(f"cannot load the VM harness: {e!r}")]
    if why is not None:
        return [_not_run(why)]
    # Shared writable with the guest: the object goes in, the result comes out.
    rwdir = Path(tempfile.mkdtemp(prefix="bpfman_bench_vm_"))
    try:
        # Compiled here (clang is much faster outside the emulator); the guest reads it.
        obj = compile_bpf(ROOT / "tests" / "programs" / "xdp_verdict.bpf.c", rwdir)
        out = rwdir / "result.json"
        cmd = [str(Path(sys.prefix) / "bin" / "python"), str(Path(__file__).resolve()),
               "--obj", str(obj), "--out", str(out), *(["--smoke"] if smoke else [])]
        timeout = float(os.environ.get("BPFMAN_VM_TIMEOUT", DEFAULT_VM_TIMEOUT))
        # run_in_vm boots once more when the guest dies before the command starts.
        boot = harness.run_in_vm(
            cmd, rwdir=rwdir, cwd=ROOT, timeout=timeout, console_name="bench-console.log",
            what="the dataplane benchmark", announce=lambda s: print(s, file=sys.stderr))
        result = json.loads(out.read_text()) if out.exists() else {}
        if "rows" in result:
            return list(result["rows"])
        if "error" in result:
            last = result["error"].strip().splitlines()[-1]
            return [_not_run(f"failed inside the VM: {last}; console log {boot.console_log}")]
        return [_not_run(f"{boot.error or f'exit status {boot.exit_status}'};"
                         f" console log {boot.console_log}")]
    except Exception as e:
        return [_not_run(f"{e!r}")]
    finally:
        shutil.rmtree(rwdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(guest_main())
