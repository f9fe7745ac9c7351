"""Run every benchmark and write the results table.

    .venv/bin/python bench/run.py                 # full run -> docs/performance.md
    .venv/bin/python bench/run.py --smoke         # tiny sizes, no VM, no file written (CI)
    .venv/bin/python bench/run.py --no-vm         # everything but the VM part
    .venv/bin/python bench/run.py --only vm       # one part (repeatable); prints, writes
                                                  # nothing unless --out/--json is given

Parts: control_plane and dataplane run on the host kernel; vm boots the VM tier once
(bench/vm_dataplane.py: XDP dispatchers in static and libxdp mode beside xdp-loader's).
Needs root (it runs real daemons and loads real programs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from bpfman.testing import compile_bpf

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("control_plane", "dataplane", "vm")
KEEP_MARKER = "<!-- analysis: written by hand, kept by bench/run.py -->"


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown CPU")
    bpftool = subprocess.run(["bpftool", "version"], capture_output=True, text=True)
    return (f"{os.cpu_count()} cores ({cpu}), kernel {platform.release()}, "
            f"Python {platform.python_version()}, {bpftool.stdout.splitlines()[0]}")


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| benchmark | ours | reference | ratio | unit | note |",
             "|---|---:|---:|---:|---|---|"]
    for r in rows:
        # None prints empty (e.g. the VM part could not run).
        lines.append("| {benchmark} | {ours} | {reference} | {ratio} | {unit} | {note} |"
                     .format(**{k: "" if v is None else v for k, v in r.items()}))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, no VM unless --only vm; print, write nothing")
    parser.add_argument("--only", action="append", choices=PARTS,
                        help="run only this part (repeatable); writes no file by default")
    parser.add_argument("--no-vm", action="store_true", help="skip the VM part")
    parser.add_argument("--out", type=Path, help="the markdown table (default: "
                        "docs/performance.md on a full run, nothing otherwise)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root", file=sys.stderr)
        return 2
    parts = list(args.only or PARTS)
    if "vm" in parts and (args.no_vm or (args.smoke and not args.only)):
        parts.remove("vm")  # smoke runs in CI, which boots the VM once for its vm tests
    out = args.out
    if out is None and not args.smoke and not args.only:
        out = ROOT / "docs" / "performance.md"
    started = time.monotonic()
    rows: list[dict[str, Any]] = []
    if "control_plane" in parts:
        import control_plane

        build = Path(tempfile.mkdtemp(prefix="bpfman-bench-"))
        try:
            obj = compile_bpf(ROOT / "tests" / "programs" / "tp_counter.bpf.c", build)
            rows += control_plane.run(obj, args.smoke)
        finally:
            shutil.rmtree(build, ignore_errors=True)
    # Benchmarks that need other plugins join here; the VM part last (alone on the CPUs).
    for part, module_name in (("dataplane", "dataplane"), ("vm", "vm_dataplane")):
        if part not in parts:
            continue
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        rows += module.run(args.smoke)
    text = table(rows)
    print(text)
    print(f"\n({time.monotonic() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
        print(f"rows written to {args.json}")
    if out is not None:
        # The hand-written analysis below KEEP_MARKER survives a new run.
        kept = ""
        if out.exists() and KEEP_MARKER in (previous := out.read_text()):
            kept = "\n" + previous[previous.index(KEEP_MARKER):]
        out.write_text(
            "# Performance\n\nMeasured by `bench/run.py` on " + machine() + ", "
            + time.strftime("%Y-%m-%d") + ". Ratios are ours / reference, same run; "
            "lower is better for times.\n\n" + text + "\n" + kept)
        print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
