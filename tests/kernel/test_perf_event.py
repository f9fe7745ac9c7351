"""perf_event programs through the daemon in the host kernel: cpu-clock
sampling on every CPU (one pinned link per CPU), on one process, on one
cgroup; the CLI form; detach; restart survival and drift; the errors for
events this machine lacks; and the example profiler as an unprivileged app.
LSM programs are refused here (lockdown): that error is checked too.

Every process and cgroup a test makes is removed by its fixture; each daemon
fixture unmounts its bpffs, so nothing it loaded survives.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bpfman import kernel
from bpfman.client import RpcError
from bpfman.model import convert
from bpfman.model.errors import LinkNotFound
from bpfman.model.requests import AttachRequest
from bpfman.testing import DaemonProcess, compile_bpf, running_daemon
from bpfman_perf_event.plugin import PerfEventParams

PROFILER = Path(__file__).parents[2] / "examples" / "perf_profiler"
CGROUP_ROOT = Path("/sys/fs/cgroup/unified")
BUSY = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass\n"


@pytest.fixture
def obj(bpf_program: Callable[..., Path]) -> Path:
    return bpf_program("perf_counter")


@pytest.fixture
def busy() -> Iterator[subprocess.Popen[bytes]]:
    """A process that burns CPU for up to a minute (killed at teardown)."""
    proc = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait(10)


def load(daemon: DaemonProcess, path: Path, name: str = "count_samples",
         **extra: Any) -> dict[str, Any]:
    return daemon.load(path, name, "perf_event", **extra)




def u64(map_dir: str, name: str, index: int) -> int:
    raw = kernel.map_lookup(Path(map_dir) / name, struct.pack("<I", index))
    assert raw is not None
    return struct.unpack("<Q", raw[:8])[0]


def per_cpu(map_dir: str) -> list[int]:
    return [u64(map_dir, "samples", cpu) for cpu in kernel.online_cpus()]


def wait_for(check: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def link_pins(link: dict[str, Any]) -> list[str]:
    return sorted(p.name for p in Path(link["pin_path"]).iterdir())


def test_cpu_clock_on_every_cpu_then_detach(daemon: DaemonProcess, obj: Path) -> None:
    prog = load(daemon, obj)
    link = daemon.attach(prog["program_id"], event="cpu-clock", frequency=1000)
    cpus = kernel.online_cpus()
    # One kernel link per online CPU, pinned in the link's directory.
    assert link_pins(link) == sorted(f"cpu{c}" for c in cpus)
    kernel_ids = {kernel.link_id_of_pin(Path(link["pin_path"]) / f"cpu{c}") for c in cpus}
    assert len(kernel_ids) == len(cpus)
    map_dir = prog["map_pin_dir"]
    # cpu-clock fires on idle CPUs too: every CPU must have sampled.
    assert wait_for(lambda: all(n > 0 for n in per_cpu(map_dir))), per_cpu(map_dir)
    [listed] = daemon.client().call("link.list", {"program_id": prog["program_id"]})
    assert listed["link_id"] == link["link_id"]

    daemon.client().call("program.detach", {"link_id": link["link_id"]})
    assert not Path(link["pin_path"]).exists()
    for kernel_id in kernel_ids:  # released synchronously, every one
        with pytest.raises(LinkNotFound):
            kernel.link_info(kernel_id)
    before = per_cpu(map_dir)
    time.sleep(0.2)  # ~200 samples per CPU if anything still fired
    assert per_cpu(map_dir) == before


def test_pid_scope_samples_only_that_process(daemon: DaemonProcess, obj: Path,
                                             busy: subprocess.Popen[bytes]) -> None:
    prog = load(daemon, obj, global_data={"target_pid": struct.pack("<I", busy.pid).hex()})
    link = daemon.attach(prog["program_id"], event="task-clock", sample_period=1_000_000,
                  pid=busy.pid)
    assert link_pins(link) == ["pid"]
    map_dir = prog["map_pin_dir"]
    assert wait_for(lambda: u64(map_dir, "target_samples", 0) >= 20)
    daemon.client().call("program.detach", {"link_id": link["link_id"]})
    # task-clock on one process: every sample was taken while it ran.
    assert sum(per_cpu(map_dir)) == u64(map_dir, "target_samples", 0)


def test_cgroup_scope(daemon: DaemonProcess, obj: Path) -> None:
    if not (CGROUP_ROOT / "cgroup.procs").exists():
        pytest.skip(f"no cgroup v2 hierarchy at {CGROUP_ROOT}")
    cgroup = CGROUP_ROOT / f"types_b_perf_{os.getpid()}"
    cgroup.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", BUSY])
    try:
        (cgroup / "cgroup.procs").write_text(str(proc.pid))
        prog = load(daemon, obj, global_data={"target_pid": struct.pack("<I", proc.pid).hex()})
        link = daemon.attach(prog["program_id"], event="cpu-clock", frequency=1000,
                      cgroup=str(cgroup))
        assert link_pins(link) == sorted(f"cpu{c}" for c in kernel.online_cpus())
        map_dir = prog["map_pin_dir"]
        assert wait_for(lambda: u64(map_dir, "target_samples", 0) >= 20)
        daemon.client().call("program.detach", {"link_id": link["link_id"]})
        # Only the cgroup's one process was sampled.
        assert sum(per_cpu(map_dir)) == u64(map_dir, "target_samples", 0)
        assert not Path(link["pin_path"]).exists()
    finally:
        proc.kill()
        proc.wait(10)
        cgroup.rmdir()


def test_cli_python_client_and_plugins_listed(daemon: DaemonProcess, obj: Path) -> None:
    prog = load(daemon, obj)
    # The Python client with the plugin's own attrs class as the params.
    typed = daemon.client().call_typed("program.attach", AttachRequest(
        program_id=prog["program_id"],
        params=convert.unstructure(PerfEventParams(event="task-clock", sample_period=10**6))))
    assert typed.summary == "perf_event task-clock every 1000000 all CPUs"
    daemon.client().call("program.detach", {"link_id": typed.link_id})
    out = daemon.cli("attach", str(prog["program_id"]), "perf_event", "--event", "cpu-clock",
                "--frequency", "99", "-o", "json")
    link = json.loads(out.stdout)
    assert link["params"]["event"] == "cpu-clock" and link["params"]["frequency"] == 99
    assert wait_for(lambda: sum(per_cpu(prog["map_pin_dir"])) > 0)
    plugins = daemon.cli("plugins").stdout
    assert re.search(r"\bperf_event\b", plugins) and re.search(r"\blsm\b", plugins), plugins
    discover = daemon.client().call("rpc.discover")
    assert "cpu-clock" in json.dumps(discover)


def test_restart_survival_and_drift(obj: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the daemon")
    with running_daemon() as daemon:
        prog = load(daemon, obj)
        link = daemon.attach(prog["program_id"], event="cpu-clock", frequency=1000)
        map_dir = prog["map_pin_dir"]
        daemon.stop()
        # The daemon is down: the pinned links keep sampling.
        before = sum(per_cpu(map_dir))
        assert wait_for(lambda: sum(per_cpu(map_dir)) > before + 10)
        daemon.start()
        [listed] = daemon.client().call("link.list", {"program_id": prog["program_id"]})
        assert listed["link_id"] == link["link_id"]
        assert daemon.client().call("daemon.reconcile") == []
        # One CPU's link removed behind the daemon's back: reported as drift.
        kernel.detach_link(Path(link["pin_path"]) / "cpu0")
        drifts = daemon.client().call("daemon.reconcile")
        assert any("cpu0" in drift["problem"] for drift in drifts), drifts
        daemon.client().call("program.detach", {"link_id": link["link_id"]})
        assert not Path(link["pin_path"]).exists()


def test_errors(daemon: DaemonProcess, obj: Path) -> None:
    prog = load(daemon, obj)
    pid = prog["program_id"]
    with pytest.raises(RpcError) as bad:
        daemon.attach(pid, event="no-such-event")
    assert bad.value.code == -32602 and "event" in str(bad.value.data)
    with pytest.raises(RpcError) as both:
        daemon.attach(pid, event="cpu-clock", frequency=99, sample_period=1000)
    assert both.value.code == -32602
    with pytest.raises(RpcError) as gone:
        daemon.attach(pid, event="cpu-clock", pid=2**22 + 7)
    assert gone.value.data["kind"] == "attach_target_not_found"
    with pytest.raises(RpcError) as too_fast:
        daemon.attach(pid, event="cpu-clock", frequency=10**9)
    assert "perf_event_max_sample_rate" in str(too_fast.value)
    if not Path("/sys/bus/event_source/devices/cpu").exists():
        # No hardware PMU on this machine (a VM): the error names it.
        with pytest.raises(RpcError) as hw:
            daemon.attach(pid, event="cycles")
        assert hw.value.data["kind"] == "kernel_feature_missing"
        assert "hardware perf events" in str(hw.value)
    # Nothing half-made was left behind.
    assert daemon.client().call("link.list", {"program_id": pid}) == []
    assert list((daemon.bpffs / "links").iterdir()) == []


def test_lsm_refused_with_the_reason(daemon: DaemonProcess,
                                     bpf_program: Callable[..., Path]) -> None:
    if kernel.probe_features().lsm_programs:
        pytest.skip("this kernel runs LSM programs: tests/vm/test_vm_lsm_perf_event.py covers them")
    with pytest.raises(RpcError) as refused:
        daemon.client().call("program.load", {
            "path": str(bpf_program("lsm_deny")),
            "programs": [{"name": "deny_kill", "type": "lsm"}]})
    assert refused.value.data["kind"] == "kernel_feature_missing"
    assert refused.value.data["feature"] == "lsm_programs"
    assert "lockdown" in str(refused.value) or "LSM" in str(refused.value)


def test_example_profiler_unprivileged(public_tmp_path: Path,
                                       busy: subprocess.Popen[bytes]) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run the daemon")
    policy = ('[daemon]\nsocket_mode = "0666"\n\n[[authorization.rules]]\nusers = ["nobody"]\n'
              'scope = "own"\nmethods = ["program.load", "program.attach", "program.unload",'
              ' "map.get", "map.dump"]\nprogram_types = ["perf_event"]\n')
    built = compile_bpf(PROFILER / "profile.bpf.c", public_tmp_path)
    with running_daemon(policy) as daemon:
        os.chmod(daemon.root, 0o755)
        app = subprocess.run(
            [sys.executable, str(PROFILER / "profiler.py"), "--object", str(built),
             "--pid", str(busy.pid), "--seconds", "2", "--frequency", "199",
             "--socket", str(daemon.socket)],
            user=65534, group=65534, extra_groups=[], capture_output=True, text=True,
            timeout=60,
        )
        assert app.returncode == 0, app.stderr
        # The busy loop is the python interpreter: its samples are reported.
        match = re.search(r"^(\d+) samples", app.stdout, re.M)
        assert match and int(match.group(1)) >= 50, app.stdout
        assert "python" in app.stdout, app.stdout
        assert daemon.client().call("program.list") == []  # it unloaded on exit
