"""The VM test tier: run `vm`-marked tests inside Debian's 6.12 kernel under qemu.

The host kernel cannot load kprobes, fentry/fexit or freplace programs, so those tests
run in a VM booted with virtme-ng (qemu, software emulation). This module is a pytest
plugin with two halves, chosen by the BPFMAN_IN_VM environment variable:

Host (BPFMAN_IN_VM unset)
    Every test under tests/vm/ is marked `vm`. After collection the selected `vm` items
    are known; when the first one is reached, ONE VM boots and runs an inner pytest on
    exactly those node ids (same checkout, same venv, same conftest fixtures). Each vm
    item then replays the inner pytest's own reports (pass, failure with the inner
    traceback and captured output, skip with its reason), so the terminal, -x and
    --junitxml see them as ordinary results. The host never sets up their fixtures.
    If the VM cannot start (not root, no qemu, no kernel, no virtme-ng) every vm item is
    SKIPPED with the reason; if it boots but dies or times out, each unfinished item
    FAILS with the tail of the VM console log.

Guest (BPFMAN_IN_VM=1, set by the host's run script)
    Mounts bpffs/tracefs, runs only the selected node ids and appends every report,
    serialized with pytest's own report hooks (as pytest-xdist does), to a JSON-lines
    file in the shared --rwdir, flushed per line so a timeout keeps what finished.

Outside pytest, run_in_vm(command, rwdir=..., cwd=...) boots the same VM the same way
for one command and returns a VmBoot (bench/vm_dataplane.py uses it; check
vm_unavailable_reason() first); the pytest host half is built on it.

Environment knobs (host):
    BPFMAN_VM=0            skip the VM tier (each vm test SKIPPED, says so)
    BPFMAN_VM_KERNEL=PATH  kernel image to boot (default: newest /boot/vmlinuz-6.12.*-amd64)
    BPFMAN_VM_TIMEOUT=SEC  wall-clock limit for boot + inner run (default 900)
    BPFMAN_VM_MEMORY=SIZE  guest memory (default 2G)

Wiring: tests/vm/conftest.py imports this file as module `bpfman_vm_harness` and calls
`ensure_registered(config)`; the guest loads it with `-p bpfman_vm_harness` (PYTHONPATH set
by the run script), so it is active inside the VM whatever files were selected. One plugin
instance is registered under PLUGIN_NAME, so wiring it a second time (e.g. from
tests/conftest.py, to cover `vm`-marked tests outside tests/vm in runs that do not collect
tests/vm) is harmless.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from _pytest.reports import CollectReport, TestReport
from _pytest.runner import CallInfo

PLUGIN_NAME = "bpfman-vm-harness"
VM_DIR = Path(__file__).resolve().parent
RESULTS_DIR = VM_DIR / ".results"  # git-ignored: the last console log and junit.xml

ENV_IN_VM = "BPFMAN_IN_VM"
ENV_REPORTS = "BPFMAN_VM_REPORTS"
ENV_SELECT = "BPFMAN_VM_SELECT"
ENV_ENABLE = "BPFMAN_VM"
ENV_KERNEL = "BPFMAN_VM_KERNEL"
ENV_TIMEOUT = "BPFMAN_VM_TIMEOUT"
ENV_MEMORY = "BPFMAN_VM_MEMORY"

DEFAULT_TIMEOUT = 900.0
# A second, cached 9p export of the host root (see _run_script).
CACHED_ROOT_TAG = "bpfman_root"
CACHED_ROOT = "/run/bpfman-vm-root"
CACHED_ROOT_QEMU_OPTS = (
    f"-fsdev local,id={CACHED_ROOT_TAG},path=/,security_model=none,readonly=on,multidevs=remap"
    f" -device virtio-9p-pci,fsdev={CACHED_ROOT_TAG},mount_tag={CACHED_ROOT_TAG}"
)
CONSOLE_TAIL_LINES = 60
SETUP_HINT = "run scripts/vm-kernel.sh <venv> as root"


def in_vm() -> bool:
    return os.environ.get(ENV_IN_VM) == "1"


def is_vm_item(item: pytest.Item) -> bool:
    return item.get_closest_marker("vm") is not None


def pytest_configure(config: pytest.Config) -> None:
    # Entry point when loaded as a plugin module (`-p bpfman_vm_harness` in the guest).
    ensure_registered(config)


def ensure_registered(config: pytest.Config) -> None:
    """Register the host or guest half once, whichever conftest asks first."""
    if config.pluginmanager.has_plugin(PLUGIN_NAME):
        return
    plugin = GuestPlugin(config) if in_vm() else HostPlugin(config)
    config.pluginmanager.register(plugin, PLUGIN_NAME)


class _MarkVmTests:
    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        # tryfirst: the marker must exist before `-m vm` / `-m "not vm"` deselects.
        for item in items:
            if item.path.resolve().is_relative_to(VM_DIR) and not is_vm_item(item):
                item.add_marker(pytest.mark.vm)


# ---------------------------------------------------------------------------------------
# Guest half


def _mounted(mountpoint: str) -> bool:
    with open("/proc/self/mounts") as f:
        return any(line.split()[1] == mountpoint for line in f)


class GuestPlugin(_MarkVmTests):
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.select: set[str] | None = None
        if path := os.environ.get(ENV_SELECT):
            self.select = set(Path(path).read_text().splitlines())
        reports = os.environ.get(ENV_REPORTS)
        # Line-buffered: each report reaches the host even if the VM is killed later.
        self.out = open(reports, "a", buffering=1) if reports else None  # noqa: SIM115

    def pytest_sessionstart(self) -> None:
        # virtme-ng mounts tracefs but not bpffs; fixtures expect both like on a host.
        for fstype, where in (("bpf", "/sys/fs/bpf"), ("tracefs", "/sys/kernel/tracing")):
            if not _mounted(where):
                subprocess.run(["mount", "-t", fstype, fstype, where], check=True)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(  # type: ignore[override]
        self, config: pytest.Config, items: list[pytest.Item]
    ) -> None:
        super().pytest_collection_modifyitems(items)
        if self.select is None:
            return
        keep = [i for i in items if i.nodeid in self.select]
        dropped = [i for i in items if i.nodeid not in self.select]
        if dropped:
            config.hook.pytest_deselected(items=dropped)
        items[:] = keep

    def _write(self, report: TestReport | CollectReport) -> None:
        if self.out is None:
            return
        data = self.config.hook.pytest_report_to_serializable(config=self.config, report=report)
        self.out.write(json.dumps(data) + "\n")

    def pytest_runtest_logreport(self, report: TestReport) -> None:
        self._write(report)

    def pytest_collectreport(self, report: CollectReport) -> None:
        # Errors and module-level skips: the host explains its tests' missing reports.
        if report.failed or report.skipped:
            self._write(report)

    def pytest_unconfigure(self) -> None:
        if self.out is not None:
            self.out.close()


# ---------------------------------------------------------------------------------------
# Host half


def _newest_kernel() -> Path | None:
    def version(p: Path) -> tuple[int, ...]:
        return tuple(int(n) for n in re.findall(r"\d+", p.name))

    # Generic flavour only: -cloud-amd64 cannot mount the 9p root, -rt is not targeted.
    found = [p for p in Path("/boot").glob("vmlinuz-6.12.*-amd64")
             if not p.name.endswith(("-cloud-amd64", "-rt-amd64"))]
    return max(found, key=version) if found else None


def _vng() -> Path | None:
    venv_vng = Path(sys.prefix) / "bin" / "vng"
    if venv_vng.exists():
        return venv_vng
    found = shutil.which("vng")
    return Path(found) if found else None


def vm_unavailable_reason() -> str | None:
    """Why the VM cannot start here, or None when every prerequisite is present."""
    if os.environ.get(ENV_ENABLE, "1") == "0":
        return f"VM tier disabled ({ENV_ENABLE}=0)"
    if os.geteuid() != 0:
        return "VM tier needs root"
    if shutil.which("qemu-system-x86_64") is None:
        return f"qemu-system-x86_64 not found ({SETUP_HINT})"
    if shutil.which("busybox") is None:
        return f"busybox not found ({SETUP_HINT})"
    if _vng() is None:
        return f"virtme-ng (vng) not installed in {sys.prefix} ({SETUP_HINT})"
    kernel = _kernel_path()
    if kernel is None or not kernel.is_file():
        return f"no 6.12 kernel image {kernel or '/boot/vmlinuz-6.12.*-amd64'} ({SETUP_HINT})"
    moddir = Path("/lib/modules") / kernel.name.removeprefix("vmlinuz-")
    modules_dep = moddir / "modules.dep"
    if not modules_dep.is_file() or ".ko.xz" in modules_dep.read_text():
        return f"modules of {moddir.name} not decompressed/depmod'ed ({SETUP_HINT})"
    return None


def _kernel_path() -> Path | None:
    if env := os.environ.get(ENV_KERNEL):
        return Path(env)
    return _newest_kernel()


def _tail(path: Path, lines: int = CONSOLE_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"(no console log: {e})"
    # qemu pads some messages with screenfuls of blanks: keep them readable.
    return "\n".join(re.sub(r"^\s{40,}", "", line.rstrip())
                     for line in text.splitlines()[-lines:])


# ---------------------------------------------------------------------------------------
# Booting the VM and running one command in it: shared by HostPlugin and by bench/
# (bench/vm_dataplane.py), so that both boot it the same way.


@dataclass
class VmBoot:
    """What one boot running one command produced."""

    kernel_release: str = ""
    booted: bool = False  # the guest script started
    exit_status: int | None = None  # of the command; None: it did not finish
    error: str | None = None  # boot failure / timeout / stopped before the command ended
    timed_out: bool = False
    seconds: float = 0.0
    console_log: Path | None = None
    console_tail: str = ""


def guest_environment() -> dict[str, str]:
    """The environment a command gets inside the VM: the host's venv first on PATH (the
    guest PATH is the system one), no bytecode written into the read-only checkout."""
    venv_bin = Path(sys.prefix) / "bin"
    env = {
        ENV_IN_VM: "1",
        # The checkout is read-only inside the VM: no bytecode, caches under /tmp.
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONUNBUFFERED": "1",  # a killed VM still shows how far the command got
        "PYTHONPATH": str(VM_DIR),  # for `-p bpfman_vm_harness`
        "XDG_CACHE_HOME": "/tmp/bpfman-vm-cache",
        "PATH": f"{venv_bin}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "VIRTUAL_ENV": sys.prefix,
    }
    for name in ("BPFMAN_CLANG",):  # knobs of the fixtures that must match the host
        if name in os.environ:
            env[name] = os.environ[name]
    return env


def _cached_paths(cwd: Path) -> list[str]:
    """Host directories Python reads at start-up: stdlib, dist-packages, venv, checkout
    (outermost only: a bind mount covers what is inside it)."""
    candidates = sorted({sysconfig.get_paths()["stdlib"], "/usr/lib/python3",
                         sys.prefix, str(cwd)})
    kept: list[str] = []
    for path in candidates:
        if Path(path).is_dir() and not any(Path(path).is_relative_to(k) for k in kept):
            kept.append(path)
    return kept


def _guest_script(rwdir: Path, cwd: Path, env: dict[str, str], command: list[str],
                  what: str) -> str:
    exports = "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
    binds = " ".join(shlex.quote(p) for p in _cached_paths(cwd))
    return (
        "#!/bin/sh\n"
        f"touch {shlex.quote(str(rwdir / 'started'))}\n"
        # virtme's root 9p mount has no cache: every stat is a round trip to the host,
        # and Python start-up does thousands. Re-expose what Python reads through a
        # cached (cache=loose) 9p mount of the host root: imports got 2-3x faster.
        f"mkdir -p {CACHED_ROOT}\n"
        f"if mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=512000,cache=loose"
        f" {CACHED_ROOT_TAG} {CACHED_ROOT}; then\n"
        f"  for p in {binds}; do mount --bind \"{CACHED_ROOT}$p\" \"$p\"; done\n"
        "else echo 'vm: no cached 9p mount, running uncached (slower)'; fi\n"
        f"{exports}\n"
        # Where the time goes (boot vs the command), for the console log.
        f"echo \"vm: guest up $(cut -d' ' -f1 /proc/uptime)s, starting\" {shlex.quote(what)}\n"
        f"cd {shlex.quote(str(cwd))}\n"
        f"{shlex.join(command)}\n"
        f"echo $? > {shlex.quote(str(rwdir / 'exit_status'))}\n"
    )


def run_in_vm(command: list[str], *, rwdir: Path, cwd: Path,
              env: dict[str, str] | None = None, timeout: float | None = None,
              console_name: str = "console.log", what: str = "the command",
              announce: Callable[[str], None] | None = None) -> VmBoot:
    """Boot Debian's 6.12 kernel under qemu (TCG), run `command` in it as root from `cwd`
    and power off. `rwdir` (a host directory, no dots in its path) is writable inside the
    VM and is how results come back; the rest of the host's filesystem is read-only there.
    `env` defaults to guest_environment(). The console log is kept as
    tests/vm/.results/<console_name>. Call vm_unavailable_reason() first.

    A guest that dies before the command starts is booted once more: about one boot
    in ten under TCG oopsed within a second (int3 in enqueue_timer, from rcu_preempt),
    an emulator problem that says nothing about the code under test."""
    boot = _boot_once(command, rwdir=rwdir, cwd=cwd, env=env, timeout=timeout,
                      console_name=console_name, what=what, announce=announce)
    if boot.booted or boot.error is None or boot.timed_out:
        return boot
    if announce:
        announce(f"vm: {boot.error} (console {boot.console_log}); booting again")
    return _boot_once(command, rwdir=rwdir, cwd=cwd, env=env, timeout=timeout,
                      console_name=console_name, what=what, announce=announce)


def _boot_once(command: list[str], *, rwdir: Path, cwd: Path, env: dict[str, str] | None,
               timeout: float | None, console_name: str, what: str,
               announce: Callable[[str], None] | None) -> VmBoot:
    boot = VmBoot()
    kernel = _kernel_path()
    if kernel is None:
        boot.error = "no 6.12 kernel image"
        return boot
    boot.kernel_release = kernel.name.removeprefix("vmlinuz-")
    if timeout is None:
        timeout = float(os.environ.get(ENV_TIMEOUT, DEFAULT_TIMEOUT))
    script = rwdir / "run.sh"
    script.write_text(_guest_script(rwdir, cwd, env or guest_environment(), command, what))
    console = rwdir / console_name
    if announce:
        announce(f"vm: booting {kernel.name} under qemu (TCG) for {what}, timeout {timeout:.0f}s")
    # --verbose puts the kernel console in the log (boot failures); loglevel=4 keeps
    # only warnings and worse once the command runs, so its output stays readable.
    # --force-9p: bookworm has no virtiofsd; vng would wait for one before falling back.
    cmd = [str(_vng()), "--run", str(kernel), "--disable-kvm", "--force-9p", "--verbose",
           "--append", "loglevel=4",
           "--memory", os.environ.get(ENV_MEMORY, "2G"),
           "--rwdir", str(rwdir), "--cwd", str(cwd),
           f"--qemu-opts={CACHED_ROOT_QEMU_OPTS}",
           "--exec", f"sh {shlex.quote(str(script))}"]
    vng_env = dict(os.environ)
    # vng starts its helpers (virtme-run) by name from PATH.
    vng_env["PATH"] = f"{Path(sys.prefix) / 'bin'}:{vng_env.get('PATH', '/usr/bin:/bin')}"
    start = time.monotonic()
    status, timed_out = _run_with_timeout(cmd, vng_env, console, timeout)
    boot.seconds = time.monotonic() - start
    boot.console_log = _keep(console)
    boot.console_tail = _tail(boot.console_log)
    boot.booted = (rwdir / "started").exists()
    status_file = rwdir / "exit_status"
    if status_file.exists():
        with contextlib.suppress(ValueError):
            boot.exit_status = int(status_file.read_text().strip())
    boot.timed_out = timed_out
    if timed_out:
        boot.error = f"VM run timed out after {timeout:.0f}s ({ENV_TIMEOUT})"
    elif not boot.booted:
        boot.error = f"VM did not boot (vng exit status {status})"
    elif boot.exit_status is None:
        boot.error = f"VM stopped before {what} finished (vng exit status {status})"
    if announce:
        announce(f"vm: finished in {boot.seconds:.0f}s (exit status {boot.exit_status})")
    return boot


@dataclass
class VmRun:
    """What one VM session produced, as the host sees it."""

    reports: dict[str, list[TestReport]] = field(default_factory=dict)
    collect_reports: list[CollectReport] = field(default_factory=list)  # failed or skipped
    error: str | None = None  # boot failure / timeout / crash
    exit_status: int | None = None
    seconds: float = 0.0
    console_log: Path | None = None
    console_tail: str = ""
    kernel_release: str = ""
    error_shown_with: str | None = None


class HostPlugin(_MarkVmTests):
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.selected: list[pytest.Item] = []
        self.run: VmRun | None = None
        self.skip_reason: str | None = None
        self.checked = False

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.selected = [i for i in session.items if is_vm_item(i)]

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(
        self, item: pytest.Item, nextitem: pytest.Item | None
    ) -> bool | None:
        if not is_vm_item(item):
            return None
        if not self.checked:
            self.checked = True
            self.skip_reason = vm_unavailable_reason()
        if self.skip_reason is not None:
            reports = [self._skipped(item, self.skip_reason), self._passed(item, "teardown")]
        else:
            if self.run is None:  # the first vm item boots the one VM for all of them
                self.run = self._run_vm()
            reports = self._reports_for(item, self.run)
        ihook = item.ihook
        ihook.pytest_runtest_logstart(nodeid=item.nodeid, location=item.location)
        # Tear down host fixtures that no later item needs, as the normal protocol would;
        # without this, session fixtures of host tests leak when a vm test comes last.
        host_teardown = CallInfo.from_call(
            lambda: item.session._setupstate.teardown_exact(nextitem), when="teardown"
        )
        if host_teardown.excinfo is not None:
            reports.append(TestReport.from_item_and_call(item, host_teardown))
        for rep in reports:
            ihook.pytest_runtest_logreport(report=rep)
        ihook.pytest_runtest_logfinish(nodeid=item.nodeid, location=item.location)
        return True

    # -- reports -------------------------------------------------------------------------

    @staticmethod
    def _report(item: pytest.Item, when: str, outcome: str, longrepr: Any) -> TestReport:
        return TestReport(
            item.nodeid, item.location, {k: 1 for k in item.keywords},
            outcome, longrepr, when,  # type: ignore[arg-type]
        )

    def _passed(self, item: pytest.Item, when: str) -> TestReport:
        return self._report(item, when, "passed", None)

    def _skipped(self, item: pytest.Item, reason: str) -> TestReport:
        # Same shape as a skip marker's report: (path, 1-based line, "Skipped: ...").
        path, lineno, _ = item.reportinfo()
        return self._report(item, "setup", "skipped",
                            (str(path), (lineno or 0) + 1, f"Skipped: {reason}"))

    def _failed(self, item: pytest.Item, when: str, message: str) -> TestReport:
        return self._report(item, when, "failed", message)

    def _reports_for(self, item: pytest.Item, run: VmRun) -> list[TestReport]:
        inner = run.reports.get(item.nodeid, [])
        for rep in inner:
            rep.location = item.location
            if rep.failed:  # say where it failed: the traceback alone looks like the host's
                rep.sections.append(("VM", f"ran inside Linux {run.kernel_release} under qemu;"
                                           f" console log {run.console_log}"))
        if any(r.when == "teardown" for r in inner):
            return list(inner)
        if not inner:
            # Its module (or class) skipped or failed at collection inside the VM.
            for col in run.collect_reports:
                if item.nodeid.startswith(col.nodeid + "::"):
                    if col.skipped and isinstance(col.longrepr, tuple):
                        return [self._skipped(item, col.longrepr[2].removeprefix("Skipped: ")),
                                self._passed(item, "teardown")]
                    return [self._passed(item, "setup"),
                            self._failed(item, "call", "collection failed inside the VM:\n"
                                         f"{col.longrepr}"),
                            self._passed(item, "teardown")]
        # The item did not finish inside the VM: say why, with what the VM printed (the
        # console tail once, with the first such item, not once per test).
        if run.error and run.error_shown_with:
            why = (f"{run.error}; console log {run.console_log}"
                   f" (its tail is shown with {run.error_shown_with})")
        elif run.error:
            why = f"{run.error}; console log {run.console_log}, last lines:\n{run.console_tail}"
            run.error_shown_with = item.nodeid
        else:
            why = (f"not run inside the VM (inner pytest exit status {run.exit_status}); "
                   f"console log {run.console_log}, last lines:\n{run.console_tail}")
        if not inner:
            return [self._passed(item, "setup"), self._failed(item, "call", why),
                    self._passed(item, "teardown")]
        when = "teardown" if any(r.when == "call" for r in inner) else "call"
        return [*inner, self._failed(item, when, why)]

    # -- the VM --------------------------------------------------------------------------

    def _write_line(self, text: str) -> None:
        tr = self.config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None:
            tr.write_line(text)

    def _inner_pytest_args(self) -> list[str]:
        cfg = self.config
        verbose = "-" + "v" * max(1, cfg.option.verbose)  # -v at least: a readable log
        # --continue-on-collection-errors: a module that breaks only inside the VM fails its
        # own tests (see _reports_for), not the whole inner session.
        args = ["-p", "no:cacheprovider", "-p", "bpfman_vm_harness", verbose, "--color=no",
                "--continue-on-collection-errors",
                "--rootdir", str(cfg.rootpath)]
        if cfg.inipath is not None:
            args += ["-c", str(cfg.inipath)]
        if cfg.option.tbstyle != "auto":
            args.append(f"--tb={cfg.option.tbstyle}")
        if cfg.option.showlocals:
            args.append("-l")
        # Collect just the files that hold selected tests; the guest filters node ids.
        files = dict.fromkeys(str(i.path) for i in self.selected)
        return args + list(files)

    def _run_vm(self) -> VmRun:
        run = VmRun()
        # No dots in the name: tests may build bpffs paths under it (libbpf rewrites '.').
        rwdir = Path(tempfile.mkdtemp(prefix="bpfman_vm_"))
        try:
            (rwdir / "select.txt").write_text("".join(f"{i.nodeid}\n" for i in self.selected))
            (rwdir / "reports.jsonl").touch()
            env = {**guest_environment(),
                   ENV_REPORTS: str(rwdir / "reports.jsonl"),
                   ENV_SELECT: str(rwdir / "select.txt")}
            pytest_cmd = [str(Path(sys.prefix) / "bin" / "python"), "-m", "pytest",
                          "--junitxml", str(rwdir / "junit.xml"), *self._inner_pytest_args()]
            boot = run_in_vm(pytest_cmd, rwdir=rwdir, cwd=self.config.rootpath, env=env,
                             what=f"pytest ({len(self.selected)} test(s))",
                             announce=self._write_line)
            run.kernel_release, run.seconds = boot.kernel_release, boot.seconds
            run.console_log, run.console_tail = boot.console_log, boot.console_tail
            run.exit_status, run.error = boot.exit_status, boot.error
            if (rwdir / "junit.xml").exists():
                _keep(rwdir / "junit.xml")
            self._collect(run, rwdir)
        finally:
            shutil.rmtree(rwdir, ignore_errors=True)
        return run

    def _collect(self, run: VmRun, rwdir: Path) -> None:
        for line in _lines(rwdir / "reports.jsonl"):
            try:
                data = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a killed VM
            rep = self.config.hook.pytest_report_from_serializable(config=self.config, data=data)
            if isinstance(rep.longrepr, list):
                # JSON turned a skip's (path, line, reason) tuple into a list; the terminal
                # and junitxml reporters insist on the tuple.
                rep.longrepr = tuple(rep.longrepr)
            if isinstance(rep, TestReport):
                run.reports.setdefault(rep.nodeid, []).append(rep)
            elif isinstance(rep, CollectReport):
                run.collect_reports.append(rep)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.run is not None:
            terminalreporter.write_line(
                f"vm: one VM ran {len(self.selected)} test(s) in {self.run.seconds:.0f}s;"
                f" console log {self.run.console_log}")
        elif self.skip_reason is not None:
            terminalreporter.write_line(f"vm: tests skipped: {self.skip_reason}")


def _lines(path: Path) -> Iterator[str]:
    with contextlib.suppress(FileNotFoundError), path.open() as f:
        yield from (line for line in f if line.strip())


def _run_with_timeout(
    cmd: list[str], env: dict[str, str], console: Path, timeout: float
) -> tuple[int | None, bool]:
    """Run vng with its output in `console`; kill its whole process group on timeout."""
    # A pipe, not the file itself: qemu reopens /proc/self/fd/1 for each of its serial
    # outputs, and several writers on a regular file overwrite each other's bytes.
    with console.open("wb") as log:
        # Own session: qemu is vng's child, and a timeout must kill both.
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        assert proc.stdout is not None
        copier = threading.Thread(target=shutil.copyfileobj, args=(proc.stdout, log, 4096),
                                  daemon=True)
        copier.start()
        try:
            return proc.wait(timeout=timeout), False
        except subprocess.TimeoutExpired:
            return None, True
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
            copier.join(timeout=10)
            proc.stdout.close()


def _keep(path: Path) -> Path:
    """Copy a file out of the temp dir into tests/vm/.results/ (git-ignored), where the
    last run's console log and inner junit.xml stay for a look after the run."""
    try:
        RESULTS_DIR.mkdir(exist_ok=True)
        kept = RESULTS_DIR / path.name
        tmp = RESULTS_DIR / f".{path.name}.{os.getpid()}"
        shutil.copyfile(path, tmp)
        tmp.replace(kept)  # atomic: a concurrent run never sees half a file
        return kept
    except OSError:
        return path
