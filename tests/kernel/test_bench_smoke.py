"""The benchmarks run at tiny sizes on every CI run, so they never rot
(no thresholds: the numbers are for docs/performance.md, not for pass/fail)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]


def test_benchmarks_smoke_run() -> None:
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--smoke"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    assert "| JSON-RPC daemon.info, 1 client(s) |" in out.stdout
    assert "bpftool prog show" in out.stdout
