"""Run every benchmark and write the results table.

    .venv/bin/python bench/run.py                 # full run -> docs/performance.md
    .venv/bin/python bench/run.py --smoke         # tiny sizes, no file written (CI)

Needs root (it runs real daemons and loads real programs).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

import control_plane

from bpfman.testing import compile_bpf

ROOT = Path(__file__).resolve().parents[1]


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
        lines.append("| {benchmark} | {ours} | {ref} | {ratio} | {unit} | {note} |".format(
            ref="" if r["reference"] is None else r["reference"],
            ratio="" if r["ratio"] is None else r["ratio"], **{
                k: v for k, v in r.items() if k not in ("reference", "ratio")}))
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny sizes; print, write nothing")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "performance.md")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench: needs root", file=sys.stderr)
        return 2
    build = Path(tempfile.mkdtemp(prefix="bpfman-bench-"))
    obj = compile_bpf(ROOT / "tests" / "programs" / "tp_counter.bpf.c", build)
    started = time.monotonic()
    rows = control_plane.run(obj, args.smoke)
    for extra in ("dataplane",):  # benchmarks that need other plugins join here
        try:
            module = __import__(extra)
        except ImportError:
            continue
        rows += module.run(args.smoke)
    text = table(rows)
    print(text)
    print(f"\n({time.monotonic() - started:.0f} s)")
    if not args.smoke:
        args.out.write_text(
            "# Performance\n\nMeasured by `bench/run.py` on " + machine() + ", "
            + time.strftime("%Y-%m-%d") + ". Ratios are ours / reference, same run; "
            "lower is better for times.\n\n" + text + "\n")
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
