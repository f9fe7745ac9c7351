"""Whole-process start-up of the `bpfman` CLI beside the C tools.

    .venv/bin/python bench/startup.py [--runs 30] [--bpfman .venv/bin/bpfman]

Starts a daemon of its own (needs root), then times, as a user's shell does,
complete processes: `bpfman --version`, `bpfman list` and `bpfman info`
against that daemon, `bpftool prog show`, and `xdp-loader --help` when
installed; prints the medians and each bpfman command's ratio to
`bpftool prog show`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bpfman.testing import running_daemon


def median_ms(argv: list[str], runs: int) -> float:
    took = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        took.append(time.perf_counter() - started)
    return statistics.median(took) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--bpfman", default=str(Path(sys.executable).parent / "bpfman"))
    args = ap.parse_args()
    with running_daemon(log_level="info") as d:
        sock = ["--socket", str(d.socket)]
        rows = {
            "bpfman --version": [args.bpfman, "--version"],
            "bpfman list": [args.bpfman, *sock, "list"],
            "bpfman info": [args.bpfman, *sock, "info"],
            "bpftool prog show": ["bpftool", "prog", "show"],
        }
        if shutil.which("xdp-loader"):
            rows["xdp-loader --help"] = ["xdp-loader", "--help"]
        figures = {name: median_ms(argv, args.runs) for name, argv in rows.items()}
    base = figures["bpftool prog show"]
    for name, ms in figures.items():
        ratio = f"  {ms / base:.1f}x bpftool prog show" if name.startswith("bpfman") else ""
        print(f"{name:24} median {ms:7.1f} ms{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
