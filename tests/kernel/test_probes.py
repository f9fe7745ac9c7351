"""Probe types through the daemon in the host kernel: uprobes and uretprobes
for real (binary, library by name, pid filter, a container-style mount
namespace), and kprobe/fentry refused with the documented missing-feature
error (this kernel has no kprobes and refuses tracing programs).

Every process, mount namespace and file a test makes is removed by its
fixture, also when the test fails; the daemon fixture unmounts its bpffs.
"""

from __future__ import annotations

import os
import platform
import select
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bpfman import kernel
from bpfman.client import RpcError
from bpfman.testing import TEST_RUN_ROOT, DaemonProcess

USERSPACE = Path(__file__).parents[1] / "programs" / "userspace"
LIB = "libbpfmantest.so"
ARCH = {"x86_64": "x86", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
N = 50


# --- the probed process ---------------------------------------------------------------


class Target:
    """A running probe_target (see programs/userspace/probe_target.c)."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     env=env, text=True, bufsize=1)
        assert self._line() == "ready", "probe_target did not start"

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _line(self, timeout: float = 10.0) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        assert ready, "probe_target did not answer"
        return self.proc.stdout.readline().strip()

    def call(self, what: str, n: int) -> int:
        """Make `n` calls ("f": own function, "l": library, "p": getpid); their sum."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{what} {n}\n")
        return int(self._line())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """probe_target and libbpfmantest.so, compiled with gcc (or clang)."""
    compiler = shutil.which("gcc") or shutil.which("clang")
    assert compiler, "the uprobe tests need a C compiler for the host (gcc or clang)"
    out = tmp_path_factory.mktemp("userspace")
    cc = [compiler, "-O2", "-g", "-Wall", "-Werror"]
    subprocess.run([*cc, "-shared", "-fPIC", "-o", str(out / LIB),
                    str(USERSPACE / "libbpfmantest.c")], check=True)
    subprocess.run([*cc, "-o", str(out / "probe_target"), str(USERSPACE / "probe_target.c"),
                    "-L", str(out), "-lbpfmantest"], check=True)
    return out


@pytest.fixture
def spawn(build: Path) -> Iterator[Callable[..., Target]]:
    """Start probe_target processes (all killed at teardown)."""
    started: list[Target] = []

    def start(argv: list[str] | None = None, lib_dir: Path = build) -> Target:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LD_LIBRARY_PATH": str(lib_dir)}
        target = Target(argv or [str(build / "probe_target")], env)
        started.append(target)
        return target

    yield start
    for target in started:
        target.stop()


@pytest.fixture
def container(build: Path, spawn: Callable[..., Target]) -> Iterator[tuple[Target, Path]]:
    """probe_target in its own mount namespace (``unshare -m``, private
    propagation) where ``<dir>/lib`` is a tmpfs holding its own copy of
    libbpfmantest.so. The host sees a *different* file at the same path, so
    only resolution inside the namespace reaches the inode the process runs.
    The namespace (and its tmpfs) dies with the process."""
    TEST_RUN_ROOT.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="ctr", dir=TEST_RUN_ROOT))  # no dots (bpffs rule)
    try:
        lib_dir = root / "lib"
        lib_dir.mkdir()
        shutil.copy(build / LIB, lib_dir / LIB)  # the host's decoy copy
        script = (f"mount -t tmpfs ctrlib {lib_dir} && cp {build / LIB} {lib_dir}/ && "
                  f"exec {build / 'probe_target'}")
        target = spawn(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       lib_dir=lib_dir)
        inside = Path(f"/proc/{target.pid}/root") / lib_dir.relative_to("/") / LIB
        assert os.stat(inside).st_ino != os.stat(lib_dir / LIB).st_ino
        yield target, lib_dir / LIB
        target.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --- daemon helpers -----------------------------------------------------------------


@pytest.fixture
def uprobe_object(bpf_program: Callable[..., Path]) -> Path:
    return bpf_program("uprobe_counter", **{f"__TARGET_ARCH_{ARCH}": "1"})






def counts(prog: dict[str, Any]) -> tuple[int, int]:
    """(hits, sum) of the program's map: entry_counts or return_counts."""
    name = "entry_counts" if prog["name"] == "count_entry" else "return_counts"
    values = []
    for slot in (0, 1):
        raw = kernel.map_lookup(Path(prog["map_pin_dir"]) / name, struct.pack("<I", slot))
        assert raw is not None
        values.append(struct.unpack("<Q", raw[:8])[0])
    return values[0], values[1]


def entry_and_return(d: DaemonProcess, obj: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    return d.load(obj, "count_entry", "uprobe"), d.load(obj, "count_return", "uretprobe")


# --- uprobes ------------------------------------------------------------------------


def test_uprobe_and_uretprobe_count_exactly(daemon: DaemonProcess, uprobe_object: Path,
                                            build: Path, spawn: Callable[..., Target]) -> None:
    entry, ret = entry_and_return(daemon, uprobe_object)
    binary = str(build / "probe_target")
    target = spawn()
    links = [daemon.attach(p, target=binary, fn_name="bpfman_probe_target") for p in (entry, ret)]
    for link in links:
        assert Path(link["pin_path"]).exists()
        assert kernel.link_info(link["kernel_link_id"]).type == "perf_event"
    assert links[1]["summary"].startswith(f"uretprobe {binary}:bpfman_probe_target (")

    assert target.call("f", N) == N * N  # sum of 2i+1
    # Entry sees the argument i, return sees the value 2i+1: really a return probe.
    assert counts(entry) == (N, N * (N - 1) // 2)
    assert counts(ret) == (N, N * N)

    got = daemon.client().call("link.get", {"link_id": links[0]["link_id"]})
    assert got["params"] == {"target": binary, "fn_name": "bpfman_probe_target", "offset": 0,
                             "pid": None, "container_pid": None}
    listed = daemon.client().call("link.list", {"type": "uretprobe"})
    assert [ln["link_id"] for ln in listed] == [links[1]["link_id"]]

    # Detach stops the counting, the program stays loaded; unload removes all.
    for link in links:
        daemon.client().call("program.detach", {"link_id": link["link_id"]})
        assert not Path(link["pin_path"]).exists()
    target.call("f", N)
    assert counts(entry)[0] == N and counts(ret)[0] == N
    for prog in (entry, ret):
        daemon.client().call("program.unload", {"program_id": prog["program_id"]})
    assert daemon.client().call("program.list", {}) == []


def test_offset_without_function_name(daemon: DaemonProcess, uprobe_object: Path,
                                      build: Path, spawn: Callable[..., Target]) -> None:
    binary = build / "probe_target"
    file_offset = kernel.user_function_offset(binary, "bpfman_probe_target")
    entry = daemon.load(uprobe_object, "count_entry", "uprobe")
    link = daemon.attach(entry, target=str(binary), offset=file_offset)
    target = spawn()
    target.call("f", N)
    assert counts(entry) == (N, N * (N - 1) // 2)
    assert link["summary"].endswith(f"@ {file_offset:#x})")


def test_pid_filter_counts_one_process(daemon: DaemonProcess, uprobe_object: Path,
                                       build: Path, spawn: Callable[..., Target]) -> None:
    first, second = spawn(), spawn()
    entry, ret = entry_and_return(daemon, uprobe_object)
    for prog in (entry, ret):
        daemon.attach(prog, target=str(build / "probe_target"), fn_name="bpfman_probe_target",
               pid=second.pid)
    first.call("f", 3 * N)
    second.call("f", N)
    first.call("f", 2 * N)
    assert counts(entry) == (N, N * (N - 1) // 2)
    assert counts(ret) == (N, N * N)


def test_library_by_name(daemon: DaemonProcess, uprobe_object: Path,
                         spawn: Callable[..., Target]) -> None:
    target = spawn()
    entry, ret = entry_and_return(daemon, uprobe_object)
    # libc's getpid, system-wide in libc but filtered to our process.
    link = daemon.attach(ret, target="libc", fn_name="getpid", pid=target.pid)
    assert link["summary"].startswith(f"uretprobe libc:getpid pid={target.pid} (/")
    # The loader's bare name for the same library ("c" as in -lc).
    daemon.attach(entry, target="c", fn_name="getpid", pid=target.pid)
    assert target.call("p", N) == N
    hits, pid_sum = counts(ret)
    assert (hits, pid_sum) == (N, N * target.pid)  # getpid() returned the pid each time
    assert counts(entry)[0] == N


def test_container_target_resolves_in_its_mount_namespace(
    daemon: DaemonProcess, uprobe_object: Path, build: Path, spawn: Callable[..., Target],
    container: tuple[Target, Path],
) -> None:
    inside, lib_path = container
    entry, ret = entry_and_return(daemon, uprobe_object)
    # By library name, from what the process mapped, and by absolute path.
    by_name = daemon.attach(ret, target="bpfmantest", fn_name="bpfman_lib_target",
                     container_pid=inside.pid)
    by_path = daemon.attach(entry, target=str(lib_path), fn_name="bpfman_lib_target",
                     container_pid=inside.pid)
    root = f"/proc/{inside.pid}/root{lib_path}"
    for link in (by_name, by_path):
        assert f"({root} @ 0x" in link["summary"], link["summary"]
    # A host process running the host's copy of the same path is not counted.
    outside = spawn(lib_dir=lib_path.parent)
    outside.call("l", 2 * N)
    assert inside.call("l", N) == N * (3 * N + 1) // 2  # sum of 3i+2
    assert counts(entry) == (N, N * (N - 1) // 2)
    assert counts(ret) == (N, N * (3 * N + 1) // 2)  # the return values: a real uretprobe


def test_uprobe_errors_leave_nothing(daemon: DaemonProcess, uprobe_object: Path,
                                     build: Path) -> None:
    entry, ret = entry_and_return(daemon, uprobe_object)
    binary = str(build / "probe_target")
    cases: list[tuple[dict[str, Any], dict[str, Any], int, str | None]] = [
        (entry, {"target": binary, "fn_name": "no_such_function"}, 1100, None),
        (entry, {"target": "/no/such/file", "fn_name": "main"}, 1100, None),
        (entry, {"target": "libno_such_library", "fn_name": "main"}, 1100, None),
        (entry, {"target": "relative/path", "fn_name": "main"}, 1000, "target"),
        (entry, {"target": binary}, 1000, "fn_name"),
        (entry, {"target": binary, "fn_name": "main", "pid": 0x3FFFFFF0}, 1100, None),
        (entry, {"target": binary, "fn_name": "main", "container_pid": 0x3FFFFFF0}, 1100, None),
        (ret, {"target": binary, "fn_name": "main", "pid": -1}, -32602, None),
    ]
    for prog, params, code, field in cases:
        with pytest.raises(RpcError) as err:
            daemon.attach(prog, **params)
        assert err.value.code == code, (params, err.value)
        if field is not None:
            assert err.value.data["field"] == field
    assert daemon.client().call("link.list", {}) == []
    assert list((daemon.bpffs / "links").iterdir()) == []


# --- kprobe and fentry: refused by this kernel, with the feature named --------------


@pytest.mark.parametrize(
    ("type_", "program", "selector", "feature"),
    [
        ("kprobe", "on_entry", {}, "kprobes"),
        ("kretprobe", "on_return", {}, "kprobes"),
        ("fentry", "on_fentry", {"attach_func": "do_unlinkat"}, "tracing_programs"),
        ("fexit", "on_fexit", {}, "tracing_programs"),
    ],
)
def test_missing_kernel_features_are_named(
    daemon: DaemonProcess, bpf_program: Callable[..., Path], type_: str, program: str,
    selector: dict[str, Any], feature: str,
) -> None:
    info = daemon.client().call("daemon.info")
    if info["features"][feature]:
        pytest.skip(f"this kernel has {feature}: tests/vm covers {type_}")
    assert type_ in info["types"]
    with pytest.raises(RpcError) as err:
        daemon.load(bpf_program("kernel_probes"), program, type_, selector=selector)
    assert err.value.code == 1400, err.value
    assert err.value.data["feature"] == feature
    assert err.value.message.startswith(f"unsupported by this kernel: {feature} (")
    assert err.value.data["reason"] == info["feature_notes"][feature]
    assert list(daemon.bpffs.glob("prog_*")) == []
