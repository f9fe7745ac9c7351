"""Test helpers for pybpfman and for plugin authors (a pytest11 plugin).

Real kernel, real daemon, no fakes: compile BPF C sources with clang, run an
isolated daemon on its own socket, state dir and bpffs, build network
namespaces and veth pairs that are removed even when a test fails.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import socket as _socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

CLANG = os.environ.get("BPFMAN_CLANG", "clang")


def compile_bpf(source: Path, out_dir: Path, *, defines: dict[str, str] | None = None) -> Path:
    """Compile one BPF C source into an ELF object (cached by content hash).

    Uses the libbpf headers from libbpf-dev and the multiarch include path that
    Debian needs for <asm/types.h>.
    """
    source = Path(source)
    text = source.read_bytes()
    flags = [f"-D{k}={v}" for k, v in sorted((defines or {}).items())]
    key = hashlib.sha256(text + " ".join(flags).encode()).hexdigest()[:16]
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{source.name.removesuffix('.c').removesuffix('.bpf')}-{key}.bpf.o"
    if out.exists():
        return out
    if shutil.which(CLANG) is None:
        raise RuntimeError("clang is not installed (apt-get install clang)")
    arch_include = f"/usr/include/{os.uname().machine}-linux-gnu"
    tmp = out.with_suffix(".tmp")
    subprocess.run(
        [CLANG, "-O2", "-g", "-target", "bpf", "-Wall", "-Werror",
         "-I", arch_include, "-I", str(source.parent), *flags,
         "-c", str(source), "-o", str(tmp)],
        check=True, capture_output=True, text=True,
    )
    tmp.rename(out)
    return out


# ---------------------------------------------------------------------------
# A real daemon on an isolated socket, state dir and bpffs
# ---------------------------------------------------------------------------


# libbpf rewrites '.' in pin paths: keep the test bpffs under a dot-free dir.
TEST_RUN_ROOT = Path("/run/bpfman-test")


def markdown_blocks(page: Path, section: str | None = None) -> list[str]:
    """The indented (4-space) code blocks of a Markdown page, dedented, in
    order; only those under the ``## section`` heading if one is named. For
    tests that run the docs as a reader would."""
    text = page.read_text()
    if section is not None:
        text = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks, current = [], []
    for line in [*text.splitlines(), "."]:  # a non-blank end flushes a block at the end
        if line.startswith("    ") or (current and not line.strip()):
            current.append(line[4:])
        elif current:
            blocks.append("\n".join(current).strip())
            current = []
    return [b for b in blocks if b]


def import_file(name: str, path: Path) -> ModuleType:
    """The module in file `path`, imported once under `name` (for files outside
    any package, such as tests/vm's harness or bench/; one name, one module,
    whoever imports it first)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def default_start_timeout() -> float:
    """Seconds to wait for a daemon to listen: 30 on real hardware; inside the
    test VM (software-emulated, Python over 9p) start-up takes about a minute."""
    if value := os.environ.get("BPFMAN_DAEMON_START_TIMEOUT"):
        return float(value)
    return 300.0 if os.environ.get("BPFMAN_IN_VM") == "1" else 30.0


class DaemonProcess:
    """`bpfman daemon` in a subprocess with its own socket, state and bpffs.

    Stopping it unmounts its bpffs, which releases every program it pinned,
    so nothing it loaded survives the test even if the test failed.
    """

    def __init__(self, root: Path, config_text: str = "", log_level: str = "debug") -> None:
        self.root = root
        self.log_level = log_level  # debug for tests; benchmarks run the default, info
        self.socket = root / "bpfman.sock"
        self.state_dir = root / "state"
        self.bpffs = root / "fs"
        self.config = root / "bpfman.toml"
        self.log = root / "daemon.log"
        self.config.write_text(config_text)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float | None = None, env: dict[str, str] | None = None,
              prefix: list[str] | None = None) -> None:
        """Start it; `prefix` runs it under a wrapper (e.g. ``setpriv ...``)."""
        if timeout is None:
            timeout = default_start_timeout()
        cmd = [*(prefix or []), sys.executable, "-m", "bpfman", "daemon",
               "--config", str(self.config), "--socket", str(self.socket),
               "--state-dir", str(self.state_dir), "--bpffs", str(self.bpffs),
               "--log-level", self.log_level]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         env={**os.environ, **(env or {})})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log_text()}")
            with contextlib.suppress(OSError), _socket.socket(_socket.AF_UNIX) as s:
                s.connect(str(self.socket))
                return
            time.sleep(0.05)
        raise RuntimeError(f"daemon did not listen within {timeout}s:\n{self.log_text()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        code = self.proc.returncode
        self.proc = None
        return code

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def client(self) -> Any:
        from bpfman.client import Client

        return Client(str(self.socket))

    def load(self, path: Path | str, name: str, type: str, *,
             selector: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
        """Load program `name` of the object at `path` as `type`; `selector`:
        more keys of its program entry (``attach_func``...), `extra`: more
        ``program.load`` params (``global_data``, ``metadata``...)."""
        params = {"path": str(path),
                  "programs": [{"name": name, "type": type, **(selector or {})}], **extra}
        [program] = self.client().call("program.load", params)["programs"]
        return dict(program)

    def attach(self, program: int | dict[str, Any], **params: Any) -> dict[str, Any]:
        """Attach a loaded program (its id, or its ``load`` reply) with `params`."""
        program_id = program if isinstance(program, int) else program["program_id"]
        return dict(self.client().call("program.attach",
                                       {"program_id": program_id, "params": params}))

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run the `bpfman` CLI against this daemon."""
        proc = subprocess.run(
            [sys.executable, "-m", "bpfman", "--socket", str(self.socket), *args],
            capture_output=True, text=True, timeout=60,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"bpfman {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout}\n{proc.stderr}")
        return proc

    def cleanup(self) -> None:
        """Stop the daemon and unmount its bpffs (dropping every pin)."""
        self.stop()
        if self.bpffs.is_dir():
            subprocess.run(["umount", "-l", str(self.bpffs)], capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running_daemon(config_text: str = "", log_level: str = "debug",
                   prefix: list[str] | None = None) -> Iterator[DaemonProcess]:
    """A started daemon (under the wrapper command `prefix`, if given),
    cleaned up on exit whatever happened."""
    TEST_RUN_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="d", dir=TEST_RUN_ROOT))
    daemon = DaemonProcess(root, config_text, log_level)
    try:
        daemon.start(prefix=prefix)
        yield daemon
    except BaseException:
        sys.stderr.write(f"--- daemon log ({daemon.log}) ---\n{daemon.log_text()}\n")
        raise
    finally:
        daemon.cleanup()


NOBODY = 65534
_CALL_AS = """
import json, sys
from bpfman.client import Client, RpcError
try:
    print(json.dumps({"result": Client(sys.argv[3]).call(sys.argv[1], json.loads(sys.argv[2]))}))
except RpcError as e:
    print(json.dumps({"code": e.code, "message": e.message, "data": e.data}))
"""


def call_as(d: DaemonProcess, method: str, params: dict[str, Any] | None = None, *,
            uid: int = NOBODY, gid: int = NOBODY,
            extra_groups: list[int] | None = None) -> dict[str, Any]:
    """Call `method` from a real process running as `uid` (with only
    `extra_groups` as supplementary groups), so the daemon sees that peer:
    ``{"result": ...}`` or the error as ``{"code", "message", "data"}``."""
    out = subprocess.run(
        [sys.executable, "-c", _CALL_AS, method, json.dumps(params or {}), str(d.socket)],
        user=uid, group=gid, extra_groups=extra_groups or [], capture_output=True, text=True,
        timeout=60,
        check=True,
    )
    return json.loads(out.stdout)



@pytest.fixture
def public_tmp_path() -> Iterator[Path]:
    """A fresh directory every user can reach (tmp_path's parents are root-only):
    for files an unprivileged client names, since the daemon reads them with
    the client's rights."""
    path = Path(tempfile.mkdtemp(prefix="bpfman-test-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def daemon() -> Iterator[DaemonProcess]:
    """A real bpfman daemon for one test (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to run the daemon")
    with running_daemon() as d:
        yield d


# ---------------------------------------------------------------------------
# Network namespaces and veth pairs made by the test, removed by the test
# ---------------------------------------------------------------------------

_NS_COUNTER = 0


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class VethPair:
    """Two network namespaces joined by one veth pair, each end addressed.

    Traffic between ``ip_a`` and ``ip_b`` stays inside the two namespaces;
    nothing is attached to the machine's own interfaces.
    """

    def __init__(self, tag: str) -> None:
        global _NS_COUNTER
        _NS_COUNTER += 1
        n = f"{os.getpid() % 10000}{_NS_COUNTER}"
        self.ns_a, self.ns_b = f"bpfman-{tag}-a{n}", f"bpfman-{tag}-b{n}"
        self.if_a, self.if_b = f"va{n}"[:15], f"vb{n}"[:15]
        subnet = 1 + _NS_COUNTER % 250
        self.ip_a, self.ip_b = f"10.231.{subnet}.1", f"10.231.{subnet}.2"

    @property
    def netns_a(self) -> str:
        """The path form the API takes (``netns`` attach parameter)."""
        return f"/var/run/netns/{self.ns_a}"

    @property
    def netns_b(self) -> str:
        return f"/var/run/netns/{self.ns_b}"

    def create(self) -> None:
        _ip("netns", "add", self.ns_a)
        _ip("netns", "add", self.ns_b)
        _ip("link", "add", self.if_a, "netns", self.ns_a, "type", "veth",
            "peer", "name", self.if_b, "netns", self.ns_b)
        for ns, ifname, addr in ((self.ns_a, self.if_a, self.ip_a),
                                 (self.ns_b, self.if_b, self.ip_b)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", ifname)
            _ip("-n", ns, "link", "set", ifname, "up")
            _ip("-n", ns, "link", "set", "lo", "up")

    def destroy(self) -> None:
        # Deleting a namespace deletes the veth end inside it (and the peer).
        for ns in (self.ns_a, self.ns_b):
            _ip("netns", "del", ns, check=False)

    def exec(self, ns: str, *cmd: str, timeout: float = 30,
             check: bool = False) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True,
                              text=True, timeout=timeout, check=check)

    def xdp_program_id(self) -> int:
        """Id of the XDP program interface B runs now (0 for none), as the
        kernel reports it through netlink (`ip -j link show`)."""
        out = subprocess.run(["ip", "-n", self.ns_b, "-j", "link", "show", self.if_b],
                             capture_output=True, text=True, check=True).stdout
        [link] = json.loads(out)
        return int(link.get("xdp", {}).get("prog", {}).get("id", 0))

    def ping(self, count: int = 3, *, from_a: bool = True) -> int:
        """Ping across the pair; returns the number of replies received."""
        ns, dst = (self.ns_a, self.ip_b) if from_a else (self.ns_b, self.ip_a)
        out = self.exec(ns, "ping", "-c", str(count), "-i", "0.01", "-W", "1", "-q", dst)
        for line in out.stdout.splitlines():
            if "received" in line:
                return int(line.split(",")[1].split()[0])
        return 0

    def send_udp(self, count: int, *, port: int = 9999, from_a: bool = True,
                 payload: bytes = b"x" * 32) -> None:
        """Send `count` UDP datagrams across the pair (nobody needs to listen)."""
        ns, dst = (self.ns_a, self.ip_b) if from_a else (self.ns_b, self.ip_a)
        script = ("import socket,sys\n"
                  "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                  f"[s.sendto({payload!r},({dst!r},{port})) for _ in range({count})]\n")
        self.exec(ns, sys.executable, "-c", script, check=True)


@contextlib.contextmanager
def veth_pair(tag: str = "t") -> Iterator[VethPair]:
    """A `VethPair`, destroyed on exit whatever happened."""
    pair = VethPair(tag)
    try:
        pair.create()
        yield pair
    finally:
        pair.destroy()


@pytest.fixture
def veth() -> Iterator[VethPair]:
    """Two fresh namespaces joined by a veth pair (needs root)."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create network namespaces")
    with veth_pair() as pair:
        yield pair


# ---------------------------------------------------------------------------
# The plugin contract: what every program type must do, on a real kernel
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ContractCase:
    """One program of a type and how to attach it, for `PluginContract`."""

    path: Path
    name: str
    type: str
    params: dict[str, Any]
    global_data: dict[str, str] = dataclasses.field(default_factory=dict)


class PluginContract:
    """The checks every program-type plugin passes, against a real daemon.

    A plugin's test module subclasses this and provides a ``contract_case``
    fixture; pytest then runs every ``test_`` method for that type::

        class TestRawTracepoint(PluginContract):
            @pytest.fixture
            def contract_case(self, bpf_program):
                return ContractCase(bpf_program("raw_tp"), "count", "raw_tracepoint",
                                    {"name": "sys_enter"})

    Checked: load pins the program and program.get shows it with live kernel
    facts; attach pins the link, link.get and program.get show it; detach
    removes the pin and a second detach is LinkNotFound; unload removes the
    program's pin and program.get then finds nothing; a link pin removed
    behind the daemon's back is reported by daemon.reconcile and the link is
    gone from link.list.
    """

    @staticmethod
    def _load(d: DaemonProcess, case: ContractCase) -> dict[str, Any]:
        [prog] = d.client().call("program.load", {
            "path": str(case.path), "programs": [{"name": case.name, "type": case.type}],
            "global_data": case.global_data})["programs"]
        return prog

    @staticmethod
    def _attach(d: DaemonProcess, prog: dict[str, Any], case: ContractCase) -> dict[str, Any]:
        return d.client().call("program.attach", {"program_id": prog["program_id"],
                                                  "params": case.params})

    @staticmethod
    def _error_kind(d: DaemonProcess, method: str, params: dict[str, Any]) -> str:
        from bpfman.client import RpcError

        try:
            d.client().call(method, params)
        except RpcError as exc:
            return str((exc.data or {}).get("kind"))
        raise AssertionError(f"{method} {params} succeeded")

    def test_load_attach_detach_unload(self, daemon: DaemonProcess,
                                       contract_case: ContractCase) -> None:
        c = daemon.client()
        prog = self._load(daemon, contract_case)
        program_id = prog["program_id"]
        assert Path(prog["pin_path"]).exists()
        got = c.call("program.get", {"program_id": program_id})
        assert got["managed"] and got["type"] == contract_case.type and got["kernel"]
        link = self._attach(daemon, prog, contract_case)
        assert Path(link["pin_path"]).exists()
        assert c.call("link.get", {"link_id": link["link_id"]})["program_id"] == program_id
        assert link["link_id"] in c.call("program.get", {"program_id": program_id})["links"]
        c.call("program.detach", {"link_id": link["link_id"]})
        assert not Path(link["pin_path"]).exists()
        assert self._error_kind(daemon, "program.detach",
                                {"link_id": link["link_id"]}) == "link_not_found"
        c.call("program.unload", {"program_id": program_id})
        assert not Path(prog["pin_path"]).exists()
        assert self._error_kind(daemon, "program.get",
                                {"program_id": program_id}) == "program_not_found"

    def test_a_link_pin_lost_is_reconciled(self, daemon: DaemonProcess,
                                           contract_case: ContractCase) -> None:
        c = daemon.client()
        prog = self._load(daemon, contract_case)
        link = self._attach(daemon, prog, contract_case)
        pin = Path(link["pin_path"])
        shutil.rmtree(pin) if pin.is_dir() else pin.unlink()  # a per-CPU set is a directory
        drifts = c.call("daemon.reconcile")
        assert any(x["subject"] == f"link {link['link_id']}" for x in drifts), drifts
        assert link["link_id"] not in [x["link_id"] for x in c.call("link.list")]
        c.call("program.unload", {"program_id": prog["program_id"]})
        assert c.call("program.list") == []
