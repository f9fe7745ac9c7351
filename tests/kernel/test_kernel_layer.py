"""bpfman.kernel against the real host kernel (root): objects, pins, links,
maps, info and features, checked through observable effects (map counts,
pins on disk, bpftool's view).

Every test runs on a private bpffs mounted under /run/bpfman-test-*
(no dots in the path: bpffs refuses them) and unmounted at teardown, which
also drops anything a failing test left pinned.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import re
import struct
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bpfman import kernel
from bpfman.kernel import objects
from bpfman.kernel import pins as pins_module
from bpfman.kernel.bpffs import Bpffs
from bpfman.model.errors import (
    AttachTargetNotFound,
    BpfmanError,
    InvalidArgument,
    KernelError,
    KernelFeatureMissing,
    LinkNotFound,
    ProgramNotFound,
    StateDrift,
    VerifierRejected,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (bpf(2), mount)")

# The kernel's BPF preload pins these iterators into every new bpffs.
KERNEL_PINS = {"progs.debug", "maps.debug"}
KPROBE_PMU = Path("/sys/bus/event_source/devices/kprobe")
N = 25


def u32(value: int) -> bytes:
    return struct.pack("=I", value)  # native endianness, as the program sees it


def u64(value: int) -> bytes:
    return struct.pack("=Q", value)


# --- fixtures and helpers ----------------------------------------------------------


@pytest.fixture
def bpffs() -> Iterator[Bpffs]:
    root = Path(tempfile.mkdtemp(prefix="bpfman-test-", dir="/run"))
    assert "." not in str(root)
    mounted = False
    try:
        kernel.ensure_bpffs(root)
        mounted = True
        fs = Bpffs(root)
        fs.ensure_dirs()
        yield fs
    finally:
        if mounted and subprocess.run(["umount", str(root)]).returncode != 0:
            subprocess.run(["umount", "-l", str(root)], check=True)
        root.rmdir()


@pytest.fixture
def tp_object(bpf_program: Callable[..., Path]) -> Path:
    return bpf_program("tp_counter")


def pins_in(fs: Bpffs) -> set[str]:
    """Every pin under the bpffs (relative paths), the kernel's own excluded."""
    found = set()
    for dirpath, _dirs, files in os.walk(fs.root):
        for name in files:
            rel = str(Path(dirpath, name).relative_to(fs.root))
            if rel not in KERNEL_PINS:
                found.add(rel)
    return found


def program_ids(names: set[str] | None = None) -> set[int]:
    return {p.program_id for p in kernel.iter_programs() if names is None or p.name in names}


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Poll: releasing an unpinned link/program is deferred past an RCU grace
    period, so "gone" may take a moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def load(
    fs: Bpffs,
    path: Path,
    *names: str,
    global_data: dict[str, bytes] | None = None,
    reuse: Path | None = None,
    **program_options: Any,
) -> kernel.LoadedObject:
    return kernel.load_object(
        kernel.LoadOptions(
            path=path,
            programs=tuple(kernel.ProgramLoad(name, **program_options) for name in names),
            global_data=global_data or {},
            bpffs=fs,
            reuse_maps_dir=reuse,
        )
    )


def count(maps_dir: Path) -> int:
    raw = kernel.map_lookup(maps_dir / "counts", u32(0))
    assert raw is not None
    return int(struct.unpack("=Q", raw)[0])


def stopped_counting(maps_dir: Path) -> bool:
    before = count(maps_dir)
    os.getpid()
    return count(maps_dir) == before


def bpftool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bpftool", "-j", *args], capture_output=True, text=True)


def link_gone(kernel_link_id: int) -> bool:
    try:
        kernel.link_info(kernel_link_id)
    except LinkNotFound:
        return True
    return False


# --- inspecting objects -------------------------------------------------------------


def test_inspect_object_lists_programs_maps_and_globals(tp_object: Path) -> None:
    spec = kernel.inspect_object(tp_object)
    assert spec.path == tp_object
    assert [(p.name, p.section, p.kernel_type) for p in spec.programs] == [
        ("count_getpid", "tracepoint/syscalls/sys_enter_getpid", "tracepoint"),
        ("count_getppid", "tracepoint/syscalls/sys_enter_getppid", "tracepoint"),
    ]
    counts = next(m for m in spec.maps if m.name == "counts")
    assert (counts.type, counts.key_size, counts.value_size, counts.max_entries) == (
        "array", 4, 8, 1,
    )
    assert not counts.internal
    internal = {m.name.rpartition(".")[2] for m in spec.maps if m.internal}
    assert internal == {"rodata", "data", "bss"}
    assert spec.globals == {
        "target_pid": kernel.GlobalVar("target_pid", ".rodata", 0, 4),
        "increment": kernel.GlobalVar("increment", ".rodata", 8, 8),
        "enabled": kernel.GlobalVar("enabled", ".data", 0, 4),
        "last_tgid": kernel.GlobalVar("last_tgid", ".bss", 0, 4),
    }


@pytest.mark.parametrize("kind", ["text", "non_bpf_elf", "missing", "directory"])
def test_inspect_object_rejects_what_is_not_a_bpf_object(tmp_path: Path, kind: str) -> None:
    path = {
        "text": tmp_path / "notes.txt",
        "non_bpf_elf": Path("/bin/true"),
        "missing": tmp_path / "absent.o",
        "directory": tmp_path,
    }[kind]
    if kind == "text":
        path.write_text("not an object\n")
    with pytest.raises(InvalidArgument) as caught:
        kernel.inspect_object(path)
    assert caught.value.details["field"] == "path"


# --- load, attach, count, detach, unload ---------------------------------------------------


def test_load_attach_count_detach_unload(bpffs: Bpffs, tp_object: Path) -> None:
    loaded = load(bpffs, tp_object, "count_getpid", global_data={"target_pid": u32(os.getpid())})
    program_id = loaded.programs["count_getpid"]
    prog_pin = bpffs.program_pin(program_id)
    assert loaded.map_owner_id == program_id
    assert loaded.maps_dir == bpffs.maps_dir(program_id)
    assert set(loaded.map_ids) == {m.name for m in kernel.inspect_object(tp_object).maps}
    assert pins_in(bpffs) == {f"prog_{program_id}"} | {
        f"maps/{program_id}/{kernel.map_pin_name(name)}" for name in loaded.map_ids
    }
    assert kernel.program_id_of_pin(prog_pin) == program_id
    assert kernel.map_info(loaded.map_ids["counts"]).name == "counts"

    # Our info agrees with bpftool's.
    info = kernel.program_info(program_id)
    shown = json.loads(bpftool("prog", "show", "id", str(program_id)).stdout)
    assert (info.name, info.kernel_type, info.tag) == ("count_getpid", "tracepoint", shown["tag"])
    assert info.uid == 0 and info.gpl_compatible
    assert sorted(info.map_ids) == sorted(shown["map_ids"]) == sorted(loaded.map_ids.values())
    assert info.btf_id == shown["btf_id"]
    assert (info.xlated_size, info.jited_size) == (shown["bytes_xlated"], shown["bytes_jited"])
    assert info.memlock == shown["bytes_memlock"]
    assert info.verified_insns and info.verified_insns > 0
    assert info.loaded_at is not None
    loaded_at = datetime.fromisoformat(info.loaded_at).timestamp()
    assert abs(loaded_at - shown["loaded_at"]) < 2
    assert abs(loaded_at - datetime.now(UTC).timestamp()) < 60
    if Path("/proc/sys/kernel/bpf_stats_enabled").read_text().strip() == "0":
        assert (info.run_count, info.run_time_ns) == (None, None)

    link_pin = bpffs.link_pin(1)
    kernel_link_id = kernel.attach_tracepoint(prog_pin, "syscalls", "sys_enter_getpid", link_pin)
    assert kernel.link_id_of_pin(link_pin) == kernel_link_id
    link = kernel.link_info(kernel_link_id)
    assert (link.kernel_link_id, link.type, link.program_id) == (
        kernel_link_id, "perf_event", program_id,
    )

    assert count(loaded.maps_dir) == 0
    for _ in range(N):
        os.getpid()  # neither CPython nor glibc >= 2.25 caches getpid: N syscalls
    assert count(loaded.maps_dir) == N

    # Detach: unpinning the link stops the counting.
    assert kernel.remove_pin(link_pin) is True
    assert kernel.remove_pin(link_pin) is False
    assert wait_until(lambda: link_gone(kernel_link_id))
    # The kernel finishes detaching shortly after the link id is gone.
    assert wait_until(lambda: stopped_counting(loaded.maps_dir))
    counted = count(loaded.maps_dir)
    assert counted >= N
    for _ in range(N):
        os.getpid()
    assert count(loaded.maps_dir) == counted

    # Unload: unpinning program and maps frees the program.
    assert kernel.remove_pin(prog_pin)
    kernel.remove_pin_dir(loaded.maps_dir)
    kernel.remove_pin_dir(loaded.maps_dir)  # already gone: fine
    assert pins_in(bpffs) == set()
    assert wait_until(lambda: program_id not in program_ids())
    assert bpftool("prog", "show", "id", str(program_id)).returncode != 0
    with pytest.raises(ProgramNotFound):
        kernel.program_info(program_id)


def test_global_data_changes_what_is_counted(bpffs: Bpffs, tp_object: Path) -> None:
    pid = u32(os.getpid())
    by_five = load(bpffs, tp_object, "count_getpid",
                   global_data={"target_pid": pid, "increment": u64(5)})
    disabled = load(bpffs, tp_object, "count_getpid",
                    global_data={"target_pid": pid, "enabled": u32(0)})  # .data
    for link_id, loaded in enumerate((by_five, disabled), start=1):
        kernel.attach_tracepoint(
            bpffs.program_pin(loaded.programs["count_getpid"]),
            "syscalls", "sys_enter_getpid", bpffs.link_pin(link_id),
        )
    for _ in range(N):
        os.getpid()
    assert count(by_five.maps_dir) == 5 * N
    assert count(disabled.maps_dir) == 0
    # The .bss variable the program writes is readable through its pinned map.
    bss = next(name for name in by_five.map_ids if name.endswith(".bss"))
    last = kernel.map_lookup(by_five.maps_dir / kernel.map_pin_name(bss), u32(0))
    assert last == pid


def test_two_loads_share_maps_through_reuse_maps_dir(bpffs: Bpffs, tp_object: Path) -> None:
    pid = u32(os.getpid())
    owner = load(bpffs, tp_object, "count_getpid", global_data={"target_pid": pid})
    pins_before = pins_in(bpffs)
    user = load(bpffs, tp_object, "count_getppid", global_data={"target_pid": pid},
                reuse=owner.maps_dir)
    user_id = user.programs["count_getppid"]
    # Only the program is new: the shared maps stay pinned once, in the owner's dir.
    assert pins_in(bpffs) - pins_before == {f"prog_{user_id}"}
    assert (user.map_owner_id, user.maps_dir) == (owner.map_owner_id, owner.maps_dir)
    assert user.map_ids["counts"] == owner.map_ids["counts"]
    rodata = next(name for name in owner.map_ids if name.endswith(".rodata"))
    assert user.map_ids[rodata] != owner.map_ids[rodata]  # globals are per load
    kernel.attach_tracepoint(bpffs.program_pin(owner.programs["count_getpid"]),
                             "syscalls", "sys_enter_getpid", bpffs.link_pin(1))
    kernel.attach_tracepoint(bpffs.program_pin(user_id),
                             "syscalls", "sys_enter_getppid", bpffs.link_pin(2))
    for _ in range(N):
        os.getpid()
    for _ in range(3):
        os.getppid()
    assert count(owner.maps_dir) == N + 3


def test_kernel_type_override(bpffs: Bpffs, tp_object: Path) -> None:
    # A tracepoint-section program loaded as a kprobe program (its body is valid for both).
    loaded = load(bpffs, tp_object, "count_getpid", kernel_type="kprobe")
    assert kernel.program_info(loaded.programs["count_getpid"]).kernel_type == "kprobe"


def test_program_info_has_the_full_name(bpffs: Bpffs, bpf_program: Callable[..., Path]) -> None:
    # The kernel keeps 15 bytes of the name; the rest comes from the program's BTF.
    loaded = load(bpffs, bpf_program("xdp_verdict"), "xdp_dispatcher_return")
    program_id = loaded.programs["xdp_dispatcher_return"]
    assert kernel.program_info(program_id).name == "xdp_dispatcher_return"
    assert program_id in {p.program_id for p in kernel.iter_programs()
                          if p.name == "xdp_dispatcher_return"}


def test_attach_raw_tracepoint(bpffs: Bpffs, bpf_program: Callable[..., Path]) -> None:
    loaded = load(bpffs, bpf_program("raw_tp_counter"), "count_sys_enter",
                  global_data={"target_pid": u32(os.getpid())})
    prog_pin = bpffs.program_pin(loaded.programs["count_sys_enter"])
    with pytest.raises(AttachTargetNotFound):
        kernel.attach_raw_tracepoint(prog_pin, "no_such_raw_tracepoint", bpffs.link_pin(1))
    assert not kernel.pin_exists(bpffs.link_pin(1))
    kernel_link_id = kernel.attach_raw_tracepoint(prog_pin, "sys_enter", bpffs.link_pin(1))
    assert kernel.link_info(kernel_link_id).type == "raw_tracepoint"
    for _ in range(N):
        os.getpid()
    raw = kernel.map_lookup(loaded.maps_dir / "raw_counts", u32(0))
    assert raw == u64(N)


# --- atomic failures: the documented error, no pin, no program left -------------------


def _failure_cases(fs: Bpffs, program: Callable[..., Path], tmp: Path) -> dict[str, Any]:
    tp = program("tp_counter")
    not_elf = tmp / "garbage.o"
    not_elf.write_bytes(b"\x00" * 64)
    pid = {"target_pid": u32(os.getpid())}
    options = kernel.LoadOptions
    load_one = kernel.ProgramLoad
    return {
        "wrong_global_size": (
            options(tp, (load_one("count_getpid"),), {"target_pid": b"\x01"}, fs),
            InvalidArgument, "global_data.target_pid"),
        "unknown_global": (
            options(tp, (load_one("count_getpid"),), {"no_such_var": b"\x01"}, fs),
            InvalidArgument, "global_data.no_such_var"),
        "unknown_program": (
            options(tp, (load_one("count_getpid"), load_one("nope")), pid, fs),
            InvalidArgument, "programs[1].name"),
        "unknown_kernel_type": (
            options(tp, (load_one("count_getpid", kernel_type="bogus"),), pid, fs),
            InvalidArgument, "programs[0].kernel_type"),
        "not_elf": (
            options(not_elf, (load_one("count_getpid"),), {}, fs),
            InvalidArgument, "path"),
        "no_map_owner_pins": (
            options(tp, (load_one("count_getpid"),), pid, fs, reuse_maps_dir=fs.maps_dir(424242)),
            InvalidArgument, "map_owner_id"),
        "verifier_rejects": (
            options(program("bad_verifier"), (load_one("missing_null_check"),), {}, fs),
            VerifierRejected, None),
    }


FAILURES = ["wrong_global_size", "unknown_global", "unknown_program", "unknown_kernel_type",
            "not_elf", "no_map_owner_pins", "verifier_rejects"]


@pytest.mark.parametrize("case", FAILURES)
def test_failed_load_leaves_nothing(
    bpffs: Bpffs, bpf_program: Callable[..., Path], tmp_path: Path, case: str
) -> None:
    options, error, field = _failure_cases(bpffs, bpf_program, tmp_path)[case]
    names = {"count_getpid", "count_getppid", "missing_null_check"}
    before = program_ids(names)
    with pytest.raises(error) as caught:
        kernel.load_object(options)
    if field is not None:
        assert caught.value.details["field"] == field
    assert pins_in(bpffs) == set()
    assert not list(bpffs.maps_root.iterdir())
    assert program_ids(names) <= before
    if case == "verifier_rejects":
        rejected = caught.value
        assert isinstance(rejected, VerifierRejected)
        assert rejected.errno == errno.EACCES
        assert any("invalid mem access" in line for line in rejected.log)
        assert rejected.data()["program"] == "missing_null_check"
        assert "map_value_or_null" in rejected.message


def test_failure_after_pinning_unpins_everything(
    bpffs: Bpffs, tp_object: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_pin = pins_module.pin_fd
    calls: list[Path] = []

    def pin_then_fail(fd: int, path: Path | str) -> None:
        if len(calls) == 3:  # two programs and one map pinned, then a failure
            raise KernelError("bpf_obj_pin", errno.ENOSPC)
        calls.append(Path(path))
        real_pin(fd, path)

    monkeypatch.setattr(pins_module, "pin_fd", pin_then_fail)
    with pytest.raises(KernelError):
        load(bpffs, tp_object, "count_getpid", "count_getppid")
    assert len(calls) == 3
    assert pins_in(bpffs) == set()
    assert not list(bpffs.maps_root.iterdir())
    loaded_ids = {int(p.name.removeprefix("prog_")) for p in calls if p.name.startswith("prog_")}
    assert wait_until(lambda: not (loaded_ids & program_ids()))


def test_truncated_verifier_log_is_retried_with_a_bigger_buffer(
    bpffs: Bpffs, bpf_program: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(objects, "LOG_SIZE", 64)  # far too small: ENOSPC, then the retry
    with pytest.raises(VerifierRejected) as caught:
        load(bpffs, bpf_program("bad_verifier"), "missing_null_check")
    assert caught.value.errno == errno.EACCES  # the real error, not ENOSPC
    assert not caught.value.log[0].startswith("(verifier log truncated")
    assert any("invalid mem access" in line for line in caught.value.log)
    assert pins_in(bpffs) == set()


# --- attach failures --------------------------------------------------------------------


def test_attach_tracepoint_failures_pin_nothing(bpffs: Bpffs, tp_object: Path,
                                                bpf_program: Callable[..., Path]) -> None:
    loaded = load(bpffs, tp_object, "count_getpid")
    prog_pin = bpffs.program_pin(loaded.programs["count_getpid"])
    link_pin = bpffs.link_pin(7)

    with pytest.raises(AttachTargetNotFound) as missing:
        kernel.attach_tracepoint(prog_pin, "syscalls", "sys_enter_no_such_call", link_pin)
    assert missing.value.details["tracepoint"] == "syscalls/sys_enter_no_such_call"
    for category, name in (("../..", "x"), ("syscalls", "a/b"), ("", "x")):
        with pytest.raises(InvalidArgument):
            kernel.attach_tracepoint(prog_pin, category, name, link_pin)
    with pytest.raises(StateDrift):
        kernel.attach_tracepoint(bpffs.program_pin(999999), "syscalls", "sys_enter_getpid",
                                 link_pin)
    probes = load(bpffs, bpf_program("kernel_probes"), "on_entry")
    with pytest.raises(InvalidArgument) as wrong_type:
        kernel.attach_tracepoint(bpffs.program_pin(probes.programs["on_entry"]),
                                 "syscalls", "sys_enter_getpid", link_pin)
    assert wrong_type.value.details["field"] == "program"
    assert not kernel.pin_exists(link_pin)

    # Pinning the new link fails (the path is taken): the link must not survive.
    link_pin.mkdir()
    with pytest.raises(KernelError) as taken:
        kernel.attach_tracepoint(prog_pin, "syscalls", "sys_enter_getpid", link_pin)
    assert taken.value.errno == errno.EEXIST
    link_pin.rmdir()
    program_id = loaded.programs["count_getpid"]
    assert wait_until(lambda: not [
        ln for ln in json.loads(bpftool("link", "show").stdout or "[]")
        if ln.get("prog_id") == program_id
    ])
    assert not any(p.startswith("links/") for p in pins_in(bpffs))


@pytest.mark.skipif(KPROBE_PMU.exists(), reason="kprobes work here: tests/vm attaches them")
def test_kprobe_attach_reports_the_missing_feature(
    bpffs: Bpffs, bpf_program: Callable[..., Path]
) -> None:
    # The kprobe program type loads; only attaching needs CONFIG_KPROBES.
    loaded = load(bpffs, bpf_program("kernel_probes"), "on_entry")
    link_pin = bpffs.link_pin(1)
    with pytest.raises(KernelFeatureMissing) as caught:
        kernel.attach_kprobe(bpffs.program_pin(loaded.programs["on_entry"]),
                             "do_unlinkat", 0, False, link_pin)
    assert caught.value.details["feature"] == "kprobes"
    assert not kernel.pin_exists(link_pin)
    with pytest.raises(InvalidArgument):
        kernel.attach_kprobe(bpffs.program_pin(1), "do_unlinkat", 8, True, link_pin)


def test_fentry_load_reports_the_missing_feature(
    bpffs: Bpffs, bpf_program: Callable[..., Path]
) -> None:
    if kernel.probe_features().tracing_programs:
        pytest.skip("fentry loads here: tests/vm covers it")
    with pytest.raises(KernelFeatureMissing) as caught:
        load(bpffs, bpf_program("kernel_probes"), "on_fentry", attach_func="do_unlinkat")
    assert caught.value.details["feature"] == "tracing_programs"
    assert "EPERM" in caught.value.details["reason"]
    assert pins_in(bpffs) == set()


def test_freplace_load_reports_the_missing_feature(
    bpffs: Bpffs, bpf_program: Callable[..., Path]
) -> None:
    if kernel.probe_features().ext_programs:
        pytest.skip("freplace loads here: tests/vm covers it")
    obj = bpf_program("freplace")
    target = load(bpffs, obj, "with_decision")
    target_pin = bpffs.program_pin(target.programs["with_decision"])
    pins_before = pins_in(bpffs)
    with pytest.raises(AttachTargetNotFound) as missing:
        load(bpffs, obj, "replacement", attach_func="no_such_function",
             attach_program_pin=target_pin)
    assert missing.value.details["field"] == "programs[0].attach_func"
    with pytest.raises(KernelFeatureMissing) as refused:
        load(bpffs, obj, "replacement", attach_func="decide", attach_program_pin=target_pin)
    assert refused.value.details["feature"] == "ext_programs"
    assert pins_in(bpffs) == pins_before


# --- maps -----------------------------------------------------------------------------


def test_map_element_access(bpffs: Bpffs, bpf_program: Callable[..., Path]) -> None:
    loaded = load(bpffs, bpf_program("map_kinds"), "noop")
    by_key = loaded.maps_dir / "by_key"
    # by_key asks libbpf to pin it by name (default /sys/fs/bpf); the loader
    # pins only where bpffs.py says.
    assert not Path("/sys/fs/bpf/by_key").exists()
    assert kernel.pin_exists(by_key)
    assert list(kernel.map_keys(by_key)) == []
    assert kernel.map_lookup(by_key, u32(1)) is None
    for key in (1, 2, 3):
        kernel.map_update(by_key, u32(key), u64(key * 100))
    assert sorted(kernel.map_keys(by_key)) == sorted([u32(1), u32(2), u32(3)])
    assert kernel.map_lookup(by_key, u32(2)) == u64(200)
    assert kernel.map_delete(by_key, u32(2)) is True
    assert kernel.map_delete(by_key, u32(2)) is False
    assert kernel.map_lookup(by_key, u32(2)) is None
    with pytest.raises(InvalidArgument):
        kernel.map_lookup(by_key, b"\x01")
    with pytest.raises(InvalidArgument):
        kernel.map_update(by_key, u32(1), u32(1))

    # Per-CPU: one 8-byte-aligned slot per possible CPU, concatenated.
    per_cpu = loaded.maps_dir / "per_cpu"
    value = kernel.map_lookup(per_cpu, u32(0))
    assert value is not None
    cpus = len(value) // 8
    assert cpus >= (os.cpu_count() or 1)  # possible CPUs >= online CPUs
    slots = b"".join(u32(cpu) + b"\0" * 4 for cpu in range(cpus))
    kernel.map_update(per_cpu, u32(1), slots)
    assert kernel.map_lookup(per_cpu, u32(1)) == slots
    with pytest.raises(KernelError) as array_delete:
        kernel.map_delete(per_cpu, u32(0))  # array elements cannot be deleted
    assert array_delete.value.errno == errno.EINVAL

    with pytest.raises(InvalidArgument):  # a program pin is not a map
        kernel.map_lookup(bpffs.program_pin(loaded.programs["noop"]), u32(0))
    with pytest.raises(StateDrift):
        kernel.map_lookup(loaded.maps_dir / "absent", u32(0))


# --- features and system ------------------------------------------------------------------


def _bpftool_prog_types() -> dict[str, bool]:
    out = subprocess.run(["bpftool", "feature", "probe", "kernel"],
                         capture_output=True, text=True).stdout
    return {m[1]: m[2] is None
            for m in re.finditer(r"eBPF program_type (\w+) is (NOT )?available", out)}


def _forced_lockdown() -> bool:
    try:
        with gzip.open("/proc/config.gz", "rt") as fh:
            return any(line.startswith("CONFIG_LOCK_DOWN_KERNEL_FORCE_") and "=y" in line
                       and "NONE" not in line for line in fh)
    except OSError:
        return False


FD_TARGET_FEATURES = ("cgroup_programs", "sk_lookup", "netfilter_programs")


def test_fd_target_features_agree_with_bpftool_and_the_config() -> None:
    features = kernel.probe_features()
    reference = _bpftool_prog_types()
    assert features.cgroup_programs == reference["cgroup_skb"]
    assert features.sk_lookup == reference["sk_lookup"]
    # bpftool 7.1 predates netfilter programs: the kernel config is the oracle.
    try:
        with gzip.open("/proc/config.gz", "rt") as fh:
            nf_link = "CONFIG_NETFILTER_BPF_LINK=y\n" in fh.readlines()
    except OSError:
        pytest.skip("no /proc/config.gz to check netfilter links against")
    assert features.netfilter_programs == nf_link


def test_probe_features_agrees_with_the_host() -> None:
    features = kernel.probe_features()
    assert features is not None and kernel.probe_features().as_dict() == features.as_dict()
    as_dict = features.as_dict()
    assert set(as_dict) == {"bpf_syscall", "ext_programs", "tracing_programs", "kprobes",
                            "uprobes", "tcx", "bpf_link_perf_event", "bpf_stats_enabled",
                            "lsm_programs", *FD_TARGET_FEATURES}
    assert all(isinstance(v, bool) for v in as_dict.values())
    assert features.bpf_syscall and features.bpf_link_perf_event
    # An independent oracle: bpftool's own probes.
    reference = _bpftool_prog_types()
    assert features.ext_programs == reference["ext"]
    assert features.tracing_programs == reference["tracing"]
    assert features.kprobes == (KPROBE_PMU / "type").exists()
    assert features.uprobes == Path("/sys/bus/event_source/devices/uprobe/type").exists()
    for name, supported in as_dict.items():
        if not supported:
            assert features.notes.get(name), f"no note explains why {name} is false"
    if not features.ext_programs and _forced_lockdown():
        # This host (KERNEL-LAB.md): lockdown=integrity refuses EXT/TRACING loads.
        assert "EPERM" in features.notes["ext_programs"]
        assert "lockdown=integrity" in features.notes["ext_programs"]
        assert "EPERM" in features.notes["tracing_programs"]
    release = tuple(int(x) for x in re.findall(r"\d+", kernel.kernel_release())[:2])
    if release >= (6, 6):
        assert features.tcx


def test_ensure_bpffs_is_idempotent(bpffs: Bpffs) -> None:
    def mounts() -> int:
        return sum(line.split()[1] == str(bpffs.root)
                   for line in Path("/proc/self/mounts").read_text().splitlines())

    assert mounts() == 1
    kernel.ensure_bpffs(bpffs.root)
    assert mounts() == 1


def test_ensure_tracefs_returns_a_mounted_tracefs() -> None:
    root = kernel.ensure_tracefs()
    assert (root / "events" / "syscalls" / "sys_enter_getpid" / "id").is_file()
    assert kernel.ensure_tracefs() == root


def test_unknown_ids_raise_not_found() -> None:
    with pytest.raises(ProgramNotFound):
        kernel.program_info(2**32 - 2)
    with pytest.raises(LinkNotFound):
        kernel.link_info(2**32 - 2)
    with pytest.raises(BpfmanError):
        kernel.map_info(2**32 - 2)
