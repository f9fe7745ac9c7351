"""The daemon works with exactly what packaging/bpfman.service leaves it.

systemd is not PID 1 on the test machines, so the unit itself cannot run here.
What of the sandbox can break the daemon's work is reproduced without systemd,
read from the unit file so the two cannot drift: the daemon runs as root under
``setpriv`` with its bounding and inheritable sets cut to the unit's
CapabilityBoundingSet, with no_new_privs (NoNewPrivileges=), the kernel's
memory-deny-write-execute (PR_SET_MDWE, what MemoryDenyWriteExecute= asks
for) and a seccomp filter built as systemd builds it from SystemCallFilter=,
SystemCallErrorNumber=, RestrictAddressFamilies= and RestrictNamespaces=.
Then every capability is exercised through the client: XDP in a network
namespace named by a non-root process's /proc/<pid>/ns/net, a tracepoint, a
uprobe in a non-root process's mount namespace, map reads, an object loaded by
an unprivileged caller (setfsuid as the caller) and by root from another
user's private file. A last test shows the list is not just sufficient but
used: without CAP_SYS_PTRACE the non-root process is out of reach.
"""

from __future__ import annotations

import errno
import json
import os
import platform
import shlex
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from packaging_support import unit_capabilities, unit_syscalls, unit_values
from xdp_support import attach as xdp_attach
from xdp_support import load as xdp_load

from bpfman import kernel
from bpfman.client import RpcError
from bpfman.kernel._sys.caps import CAPABILITIES
from bpfman.testing import TEST_RUN_ROOT, DaemonProcess, VethPair, call_as, running_daemon

NOBODY = 65534
ARCH = {"x86_64": "x86", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
N = 25

UNIT_SANDBOX = Path(__file__).parents[1] / "unit_sandbox.py"

# An unprivileged process that calls libc's getpid() on request (for uprobes).
GETPID_LOOP = """
import os, sys
print("ready", flush=True)
for line in sys.stdin:
    for _ in range(int(line)):
        os.getpid()
    print("done", flush=True)
"""

def sandbox(caps: list[str]) -> list[str]:
    """The command prefix that leaves root exactly `caps` (setpriv spelling)
    inside the rest of the unit's sandbox as tests/unit_sandbox.py builds it."""
    keep = ",".join(["-all", *(f"+{c}" for c in caps)])
    assert unit_values("NoNewPrivileges") == ["yes"]
    assert unit_values("MemoryDenyWriteExecute") == ["yes"]
    assert unit_values("SystemCallErrorNumber") == ["EPERM"]
    assert unit_values("RestrictNamespaces") == ["net"]
    assert unit_values("ProtectSystem") == ["strict"]
    # /run/bpfman is the test daemon's own directory instead (see unit_sandbox.py).
    rw = [p.lstrip("-") for p in unit_values("ReadWritePaths")[0].split()
          if not p.lstrip("-").startswith("/run/bpfman")]
    spec = {"allow": sorted(unit_syscalls()), "netns": 0x40000000,  # CLONE_NEWNET
            "families": [int(getattr(socket, f)) for f in
                         unit_values("RestrictAddressFamilies")[0].split()],
            "rw": rw, "umask": int(unit_values("UMask")[0], 8)}
    return [shutil.which("setpriv") or "setpriv", f"--bounding-set={keep}", "--inh-caps=-all",
            "--no-new-privs", "--", sys.executable, str(UNIT_SANDBOX), json.dumps(spec)]


def cap_mask(caps: list[str]) -> int:
    return sum(1 << CAPABILITIES.index(f"CAP_{c.upper()}") for c in caps)


def status_field(pid: int, field: str) -> str:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no {field} in /proc/{pid}/status")


def sandboxed_daemon(caps: list[str]) -> Iterator[DaemonProcess]:
    rules = ('[daemon]\nsocket_mode = "0666"\n\n[[authorization.rules]]\n'
             f'uids = [{NOBODY}]\nmethods = ["program.load", "program.unload"]\n')
    with running_daemon(rules, prefix=sandbox(caps)) as d:
        os.chmod(d.root, 0o755)  # the unprivileged client reaches the socket
        yield d


@pytest.fixture
def unit_daemon() -> Iterator[DaemonProcess]:
    yield from sandboxed_daemon(unit_capabilities())


@pytest.fixture
def nobody_process() -> Iterator[subprocess.Popen[str]]:
    """A non-root process (uid nobody) in a mount namespace of its own."""
    proc = subprocess.Popen(
        ["unshare", "--mount", "--propagation", "private", "setpriv", f"--reuid={NOBODY}",
         f"--regid={NOBODY}", "--clear-groups", sys.executable, "-c", GETPID_LOOP],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc
    finally:
        proc.kill()
        proc.wait(10)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()


@pytest.fixture
def nobody_in_netns(veth: VethPair) -> Iterator[int]:
    """The pid of a non-root process inside namespace B of `veth`."""
    proc = subprocess.Popen(["ip", "netns", "exec", veth.ns_b, "setpriv", f"--reuid={NOBODY}",
                             f"--regid={NOBODY}", "--clear-groups", "sleep", "120"])
    try:
        deadline = 100
        while Path(f"/proc/{proc.pid}/comm").read_text().strip() != "sleep" and deadline:
            deadline -= 1
            subprocess.run(["sleep", "0.05"])
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(10)


def map_u64(prog: dict[str, Any], name: str, slot: int = 0) -> int:
    raw = kernel.map_lookup(Path(prog["map_pin_dir"]) / name, struct.pack("<I", slot))
    assert raw is not None
    return struct.unpack("<Q", raw[:8])[0]






def test_sandbox_harness_applies_what_it_claims(tmp_path: Path) -> None:
    # The wrapper really does what the test claims, before trusting it below:
    # MDWE and no_new_privs set, a call outside the filter gets EPERM (uselib:
    # EFAULT or ENOSYS otherwise), a family outside the list too (AF_PACKET),
    # bpf(2) is let through (EINVAL for a bad command, not EPERM); the file
    # system is read-only but for the daemon's directories, /proc/sys too.
    probe = (
        "import ctypes, socket, sys; l = ctypes.CDLL(None, use_errno=True)\n"
        "print(l.prctl(66, 0, 0, 0, 0), l.prctl(39, 0, 0, 0, 0))\n"
        "l.syscall(134, None); print(ctypes.get_errno())\n"
        "l.syscall(321, 9999, None, 0); print(ctypes.get_errno())\n"
        "def err(f, *a):\n"
        " try:\n  f(*a); return 0\n"
        " except OSError as e:\n  return e.errno\n"
        "print(err(socket.socket, socket.AF_PACKET, socket.SOCK_RAW))\n"
        "print(err(open, sys.argv[2] + '/probe', 'w'))\n"
        "print(err(open, '/var/tmp/trust-e-probe', 'w'))\n"
        "print(err(open, '/proc/sys/kernel/perf_event_max_sample_rate', 'w'))\n")
    out = subprocess.run([*sandbox(unit_capabilities()), sys.executable, "-c", probe,
                          "--state-dir", str(tmp_path)],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "1", str(errno.EPERM), str(errno.EINVAL),
                                  str(errno.EPERM), "0", str(errno.EROFS),
                                  str(errno.EROFS)], out.stdout
    assert not Path("/var/tmp/trust-e-probe").exists()


def test_daemon_holds_exactly_the_units_capabilities(unit_daemon: DaemonProcess) -> None:
    assert unit_daemon.proc is not None
    pid = unit_daemon.proc.pid
    # Intersected with ours: root on the CI machines itself lacks CAP_SYS_RESOURCE
    # (the daemon then keeps the hard memlock limit, which only old kernels need).
    want = cap_mask(unit_capabilities()) & int(status_field(os.getpid(), "CapBnd"), 16)
    assert want & ~cap_mask(["sys_resource"]) == cap_mask(unit_capabilities()) & ~cap_mask(
        ["sys_resource"]), "the test machine's root lacks a capability the unit grants"
    assert int(status_field(pid, "CapEff"), 16) == want
    assert int(status_field(pid, "CapBnd"), 16) == want
    assert status_field(pid, "NoNewPrivs") == "1"
    assert status_field(pid, "Seccomp") == "2"  # a filter
    assert int(status_field(pid, "Umask"), 8) == int(unit_values("UMask")[0], 8)
    assert os.readlink(f"/proc/{pid}/ns/mnt") != os.readlink("/proc/self/ns/mnt")
    assert unit_daemon.client().call("daemon.info")


def test_xdp_in_a_namespace_named_by_a_nonroot_pid(
    unit_daemon: DaemonProcess, veth: VethPair, nobody_in_netns: int,
    bpf_program: Callable[..., Path],
) -> None:
    # setns (CAP_SYS_ADMIN) into /proc/<pid>/ns/net of a process that is not
    # root's (CAP_SYS_PTRACE), XDP through the dispatcher (CAP_NET_ADMIN, CAP_BPF).
    dropper = xdp_load(unit_daemon, bpf_program("xdp_verdict"), "xdp_dropper")
    link = xdp_attach(unit_daemon, dropper, veth, priority=10,
                      netns=f"/proc/{nobody_in_netns}/ns/net")
    assert veth.xdp_program_id() != 0
    assert veth.ping(3) == 0
    unit_daemon.client().call("program.detach", {"link_id": link["link_id"]})
    assert veth.ping(3) == 3


def test_tracepoint_counts(unit_daemon: DaemonProcess, bpf_program: Callable[..., Path]) -> None:
    # tracefs mounted by the daemon if needed (CAP_SYS_ADMIN), perf_event_open (CAP_PERFMON).
    prog = unit_daemon.load(bpf_program("tp_counter"), "count_getpid", "tracepoint",
                global_data={"target_pid": struct.pack("<I", os.getpid()).hex()})
    unit_daemon.attach(prog, tracepoint="syscalls/sys_enter_getpid")
    before = map_u64(prog, "counts")
    for _ in range(N):
        os.getpid()
    assert map_u64(prog, "counts") - before == N


def test_uprobe_in_a_nonroot_process_mount_namespace(
    unit_daemon: DaemonProcess, nobody_process: subprocess.Popen[str],
    bpf_program: Callable[..., Path],
) -> None:
    # /proc/<pid>/maps and /proc/<pid>/root of a process that is not root's.
    obj = bpf_program("uprobe_counter", **{f"__TARGET_ARCH_{ARCH}": "1"})
    prog = unit_daemon.load(obj, "count_entry", "uprobe")
    pid = nobody_process.pid
    link = unit_daemon.attach(prog, target="libc", fn_name="getpid", pid=pid,
                  container_pid=pid)
    assert f"/proc/{pid}/root/" in link["summary"], link["summary"]
    assert nobody_process.stdin is not None and nobody_process.stdout is not None
    nobody_process.stdin.write(f"{N}\n")
    assert nobody_process.stdout.readline().strip() == "done"
    assert map_u64(prog, "entry_counts") == N
    # With libbcc (and LLVM) mapped now: systemd's seccomp form of
    # MemoryDenyWriteExecute= refuses any mprotect(PROT_EXEC), which text
    # relocations or an executable stack would need (PR_SET_MDWE is laxer).
    assert unit_daemon.proc is not None
    maps = Path(f"/proc/{unit_daemon.proc.pid}/maps").read_text().splitlines()
    libs = sorted({line.split()[-1] for line in maps if ".so" in line.split()[-1]})
    assert any("libbcc" in lib for lib in libs), libs
    for lib in libs:
        dynamic = subprocess.run(["readelf", "-dW", lib], capture_output=True, text=True,
                                 check=True).stdout
        headers = subprocess.run(["readelf", "-lW", lib], capture_output=True, text=True,
                                 check=True).stdout
        stack = [h for h in headers.splitlines() if "GNU_STACK" in h]
        assert "TEXTREL" not in dynamic and stack and "RWE" not in stack[0], lib


def test_unprivileged_caller_loads_as_itself(
    unit_daemon: DaemonProcess, bpf_program: Callable[..., Path], public_tmp_path: Path,
) -> None:
    # The daemon opens the caller's file with the caller's fsuid/fsgid/groups
    # (CAP_SETUID, CAP_SETGID): readable for nobody loads, root-only does not.
    obj = Path(shutil.copy(bpf_program("xdp_counter"), public_tmp_path / "xdp.o"))
    obj.chmod(0o644)
    selector = [{"name": "xdp_counter", "type": "xdp"}]
    reply = call_as(unit_daemon, "program.load", {"path": str(obj), "programs": selector})
    assert "result" in reply, reply
    [prog] = reply["result"]["programs"]
    secret = Path(shutil.copy(obj, public_tmp_path / "secret.o"))
    secret.chmod(0o600)
    denied = call_as(unit_daemon, "program.load", {"path": str(secret), "programs": selector})
    assert "Permission denied" in denied.get("message", ""), denied
    # A root caller reads even another user's private file: CAP_DAC_READ_SEARCH
    # (root is an ordinary user to file permissions without it).
    theirs = Path(shutil.copy(obj, public_tmp_path / "theirs.o"))
    os.chown(theirs, NOBODY, NOBODY)
    theirs.chmod(0o600)
    unit_daemon.load(theirs, "xdp_counter", "xdp")
    unloaded = call_as(unit_daemon, "program.unload", {"program_id": prog["program_id"]})
    assert "code" not in unloaded, unloaded


def test_without_sys_ptrace_nonroot_namespaces_are_out_of_reach(
    nobody_process: subprocess.Popen[str], bpf_program: Callable[..., Path],
) -> None:
    # Why CAP_SYS_PTRACE is in the list: root without it may not look into a
    # non-root process (ptrace access mode checks on /proc/<pid>/root).
    caps = [c for c in unit_capabilities() if c != "sys_ptrace"]
    for d in sandboxed_daemon(caps):
        obj = bpf_program("uprobe_counter", **{f"__TARGET_ARCH_{ARCH}": "1"})
        prog = d.load(obj, "count_entry", "uprobe")
        with pytest.raises(RpcError) as err:
            d.attach(prog, target="libc", fn_name="getpid", container_pid=nobody_process.pid)
        assert "mount namespace" in err.value.message, err.value.message


def test_everyday_work_with_maps(unit_daemon: DaemonProcess, veth: VethPair,
                                 bpf_program: Callable[..., Path],
                                 public_tmp_path: Path) -> None:
    c = unit_daemon.client()
    [xdp] = c.call("program.load", {"path": str(bpf_program("xdp_counter")),
                                    "programs": [{"name": "xdp_counter", "type": "xdp"}]}
                   )["programs"]
    c.call("program.attach", {"program_id": xdp["program_id"],
                              "params": {"iface": veth.if_b, "netns": veth.netns_b}})
    assert veth.ping(3) == 3
    counted = c.call("map.get", {"program_id": xdp["program_id"], "map": "xdp_counts",
                                 "key": "00000000"})["value"]
    assert int.from_bytes(bytes.fromhex(counted)[:8], "little") >= 3
    obj = Path(shutil.copy(bpf_program("xdp_counter"), public_tmp_path))
    mine = call_as(unit_daemon, "program.load", {"path": str(obj), "programs": [
        {"name": "xdp_counter", "type": "xdp"}]})
    assert "result" in mine, mine
    for prog in (xdp, mine["result"]["programs"][0]):
        c.call("program.unload", {"program_id": prog["program_id"]})


def test_exec_start_pre_mounts_the_bpffs_once() -> None:
    # The unit's own ExecStartPre= command, run as written but for the path:
    # it mounts a bpffs (mode 0700) and, run again (a restart), mounts nothing.
    [pre] = [v for v in unit_values("ExecStartPre") if "mount -t bpf" in v]
    argv = shlex.split(pre.removeprefix("+"))
    TEST_RUN_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="pre", dir=TEST_RUN_ROOT))
    target = root / "fs"
    argv = [a.replace("/run/bpfman/fs", str(target)) for a in argv]
    try:
        for _ in range(2):
            subprocess.run(argv, check=True, timeout=30)
        # mountinfo: "... mount-point options ... - fstype source ..."; stacked
        # mounts would each have a line.
        mounts = [line.split(" - ")[1].split()[0]
                  for line in Path("/proc/self/mountinfo").read_text().splitlines()
                  if line.split()[4] == str(target)]
        assert mounts == ["bpf"]
        assert target.stat().st_mode & 0o777 == 0o700
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)
        shutil.rmtree(root, ignore_errors=True)
