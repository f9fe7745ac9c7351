"""The VM half of the dataplane benchmark (bench/vm_dataplane.py) at tiny sizes.

Runs inside the VM the CI test run boots anyway, so the benchmark keeps working between
full runs without a VM boot of its own. Numbers at these sizes mean nothing; what is
checked is that every chain is built in the mode it claims and the rows come out whole.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from bpfman.testing import import_file

BENCH = Path(__file__).resolve().parents[2] / "bench" / "vm_dataplane.py"


def _vm_dataplane() -> ModuleType:
    # bench/ is not a package: import the file by path.
    return import_file("bpfman_bench_vm_dataplane", BENCH)


def test_vm_dataplane_smoke(bpf_program: Callable[..., Path]) -> None:
    bench = _vm_dataplane()
    m = bench.measure(bpf_program("xdp_verdict"), smoke=True)
    seen = bench.observed(m)
    rows = bench.rows(m)

    sizes = list(bench.SMOKE_SIZES)
    assert sorted((c["kind"], c["size"]) for c in seen) == sorted(
        [("alone", 0)] + [(k, n) for k in bench.KINDS for n in sizes])
    for c in seen:
        kind, n = c["kind"], c["size"]
        assert c["program_id"] > 0 and c["ns"] > 0, c
        if kind == "alone":
            assert c["attached_name"] == bench.PROGRAM, c
        elif kind == "libxdp":  # our dispatcher, and xdp-loader sees every program in it
            assert (c["mode"], c["attached_name"], c["status_programs"]) == (
                "libxdp", "xdp_dispatcher", n), c
        elif kind == "static":  # alone: attached directly; chained: one spliced program
            expected = ("single", "xdp_pass_only") if n == 1 else ("static", "xdp_chain")
            assert (c["mode"], c["attached_name"]) == expected, c
        elif n >= 2:  # xdp-loader: libxdp's dispatcher with all copies under it
            assert (c["attached_name"], c["status_programs"]) == ("xdp_dispatcher", n), c

    # Rows: the baseline, one per (our mode, size), one slope per mode.
    assert len(rows) == 1 + 2 * len(sizes) + 2
    for r in rows:
        assert set(r) == {"benchmark", "ours", "reference", "ratio", "unit", "note"}, r
        assert r["benchmark"].startswith("VM: ") and "TCG" in r["note"], r
        if r["unit"] == "ns/packet":
            assert r["ours"] > 0 and (r["reference"] is None or r["reference"] > 0), r
        else:  # a slope: noise at these sizes may make it tiny or negative, never NaN
            assert r["unit"] == "ns/slot" and math.isfinite(r["ours"]), r
            assert math.isfinite(r["reference"]), r
    assert rows[0]["reference"] is None and rows[0]["ours"] > 0
    json.dumps(rows)  # what the host reads back
