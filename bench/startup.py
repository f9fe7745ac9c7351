"""Whole-process start-up of the `bpfman` CLI beside the C tools.

    .venv/bin/python bench/startup.py [--runs 30] [--bpfman PATH ...]

Starts a daemon of its own (needs root), then times, as a user's shell does,
complete processes: `bpfman --version`, `bpfman list` and `bpfman info`
against that daemon, `bpftool prog show`, and `xdp-loader --help` when
installed; prints the medians and each bpfman command's ratio to
`bpftool prog show`.

Each `bpfman` is timed: by default the test venv's (editable install, next
to this interpreter) and the installed daemon's (`scripts/setup.sh daemon`,
/opt/pybpfman/venv) when present. The commands run as a user's would: with
bytecode caches (one untimed run first writes them; PYTHONDONTWRITEBYTECODE
is dropped), one run of every command in turn so that a busy machine slows
them all alike.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from bpfman.testing import running_daemon

INSTALLED = Path("/opt/pybpfman/venv/bin/bpfman")


def medians_ms(rows: dict[str, list[str]], runs: int) -> dict[str, float]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

    def once(argv: list[str]) -> float:
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       env=env, check=False)
        return time.perf_counter() - started

    for argv in rows.values():  # warm: bytecode written, files in the page cache
        once(argv)
    took: dict[str, list[float]] = {name: [] for name in rows}
    for _ in range(runs):
        for name, argv in rows.items():
            took[name].append(once(argv))
    return {name: statistics.median(t) * 1000 for name, t in took.items()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--bpfman", action="append", metavar="PATH",
                    help="a bpfman to time (repeatable; default: this venv's and the"
                    f" installed one, {INSTALLED}, if present)")
    args = ap.parse_args()
    clis = args.bpfman or [str(p) for p in (Path(sys.executable).parent / "bpfman", INSTALLED)
                           if p.exists()]
    with running_daemon(log_level="info") as d:
        sock = ["--socket", str(d.socket)]
        rows: dict[str, list[str]] = {}
        for cli in clis:
            rows[f"{cli} --version"] = [cli, "--version"]
            rows[f"{cli} list"] = [cli, *sock, "list"]
            rows[f"{cli} info"] = [cli, *sock, "info"]
        rows["bpftool prog show"] = ["bpftool", "prog", "show"]
        if shutil.which("xdp-loader"):
            rows["xdp-loader --help"] = ["xdp-loader", "--help"]
        figures = medians_ms(rows, args.runs)
    base = figures["bpftool prog show"]
    width = max(map(len, figures))
    for name, ms in figures.items():
        ratio = f"  {ms / base:5.1f}x bpftool prog show" if "bpfman" in name else ""
        print(f"{name:{width}}  median {ms:6.1f} ms{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
