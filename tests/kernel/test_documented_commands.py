"""Every `bpfman` command shown to users, executed against a real daemon.

The command lines of every `--help` example, README.md, docs/*.md and the
examples' READMEs (tests/unit/test_cli_help.py checks that they parse) are run
here as they are written, with two substitutions a reader makes too: the
example ids (42, 7...) become ids of programs and links this test loaded, and
the example object files become the test's compiled objects when they are the
same programs. The daemon runs in a network namespace of its own, holding
only `lo`: the interfaces and namespaces the docs name (eth0, blue...) do not
exist there, so those attaches reach the daemon, are validated, and end in a
precise "not found" instead of touching the machine's interfaces.

A command passes when the daemon did what it said, or answered with one of
its own errors (not found, refused, kernel feature missing...). It fails on a
usage error, a JSON-RPC protocol or invalid-params error (the daemon refusing
the shape of what the documented command sent), or a traceback.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from docs_support import PAGES, documented_commands, help_examples

from bpfman.client import RpcError
from bpfman.testing import DaemonProcess, running_daemon

ARCH = {"x86_64": "x86", "aarch64": "arm64"}.get(os.uname().machine, "x86")

BPFMAN = str(Path(sys.executable).with_name("bpfman"))
#: JSON-RPC's own error codes: the daemon refused the request's shape
PROTOCOL_ERRORS = {-32700, -32600, -32601, -32602}
#: program type -> (test object, program name), for the types the host loads
LOADABLE = {
    "tracepoint": ("tp_counter", "count_getpid"),
    "xdp": ("xdp_counter", "xdp_counter"),
    "tc": ("tc_chain", "tc_chain"),
    "tcx": ("tc_chain", "tc_chain"),
    "cgroup_skb": ("cgroup_net", "skb_count"),
    "sk_lookup": ("sk_lookup_steer", "steer"),
    "netfilter": ("nf_count", "nf_count"),
    "perf_event": ("perf_counter", "count_samples"),
    "uprobe": ("uprobe_counter", "count_entry"),
    "uretprobe": ("uprobe_counter", "count_return"),
}
#: program names in the docs -> the test object holding a program of that name
OBJECTS = {"count_getpid": "tp_counter", "count_getppid": "tp_counter",
           "xdp_counter": "xdp_counter", "skb_count": "cgroup_net"}
#: run here, not by the daemon: executed, but only a clean exit is asked of them
LOCAL = ("completion", "image build")


def all_commands() -> list[tuple[str, str]]:
    return [*((p.name, c) for p in PAGES for c in documented_commands(p)),
            *(("--help", line) for line in help_examples())]


COMMANDS = all_commands()


@pytest.fixture(scope="module")
def daemon_in_netns() -> Iterator[DaemonProcess]:
    config = "[images]\ntimeout_seconds = 3\n"  # the docs' registries are not reachable
    with running_daemon(config, prefix=["unshare", "--net"]) as d:
        yield d


class Substitutions:
    """Fresh programs and links for one command's example ids."""

    def __init__(self, d: DaemonProcess, build: Callable[..., Path]) -> None:
        self.d = d
        self.build = build

    def program(self, kind: str = "tracepoint") -> int:
        obj, name = LOADABLE.get(kind, (None, None))
        if obj is None:
            return 999999  # a type this kernel cannot load: the daemon says so
        # uprobe objects need the target architecture for their PT_REGS macros
        arch = {f"__TARGET_ARCH_{ARCH}": "1"} if obj == "uprobe_counter" else {}
        try:
            return int(self.d.load(self.build(obj, **arch), name, kind)["program_id"])
        except RpcError:
            return 999999

    def link(self, movable: bool = False) -> int:
        """A tracepoint link, or (`movable`: one `link update --priority`
        applies to) an XDP link on the daemon namespace's own `lo`."""
        if movable:
            link = self.d.attach(self.program("xdp"), iface="lo", priority=50)
        else:
            link = self.d.attach(self.program(), tracepoint="syscalls/sys_enter_getpid")
        return int(link["link_id"])

    def apply(self, argv: list[str]) -> list[str]:
        out = list(argv)
        at = 0
        while at < len(out) and out[at].startswith("-"):  # global options and values
            at += 2 if out[at] in ("-o", "--output", "--socket") else 1
        command, rest = out[at], at + 1
        if command == "attach":
            out[rest] = str(self.program(out[rest + 1]))
        elif command in ("detach", "unload"):
            make = self.link if command == "detach" else self.program
            while rest < len(out) and out[rest].isdigit():
                out[rest] = str(make())
                rest += 1
        elif command == "get":
            what = out[rest] if not out[rest].isdigit() else "program"
            rest += 0 if out[rest].isdigit() else 1
            out[rest] = str(self.link() if what == "link" else self.program())
        elif command in ("link", "map") and out[rest] in ("get", "update", "list", "delete",
                                                          "dump"):
            out[rest + 1] = str(self.link(movable=out[rest] == "update") if command == "link"
                                else self.program())
        elif command == "load" and out[rest] == "file":
            names = [s.split(":")[1] for s in out if ":" in s and not s.startswith("-")]
            obj = next((OBJECTS[n] for n in names if n in OBJECTS), None)
            for k in range(rest, len(out) - 1):
                if out[k] in ("--path", "-p") and obj is not None:
                    out[k + 1] = str(self.build(obj))
        return out

    def clean(self) -> None:
        client = self.d.client()
        for p in client.call("program.list", {}):
            client.call("program.unload", {"program_id": p["program_id"]})


@pytest.mark.parametrize(("page", "line"), COMMANDS,
                         ids=[f"{p}:{c[7:60]}" for p, c in COMMANDS])
def test_documented_command_runs_against_a_real_daemon(
    page: str, line: str, daemon_in_netns: DaemonProcess,
    bpf_program: Callable[..., Path], tmp_path: Path,
) -> None:
    subs = Substitutions(daemon_in_netns, bpf_program)
    argv = shlex.split(line)[1:]
    try:
        argv = subs.apply(argv)
        cmd = [BPFMAN, "--socket", str(daemon_in_netns.socket), "-o", "json", *argv]
        if "events" in argv:  # a stream: it must still be running
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, cwd=tmp_path)
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(timeout=1.5)
            proc.kill()
            proc.wait()
            return
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd=tmp_path)
    finally:
        subs.clean()
    shown = f"{page}: {line}\n  ran: {' '.join(argv)}\n{done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr, shown
    assert done.returncode in (0, 1), shown  # 2: a usage error or no daemon
    if any(" ".join(argv).startswith(local) for local in LOCAL):
        return
    if done.returncode == 1:
        error = _error(done.stderr)
        assert error is not None, shown
        assert error.get("code") not in PROTOCOL_ERRORS, shown


def _error(stderr: str) -> dict[str, Any] | None:
    """The JSON error object the CLI prints under ``-o json`` (the last one,
    when a command made several calls)."""
    for text in reversed(stderr.strip().splitlines()):
        try:
            value = json.loads(text)
        except ValueError:
            continue
        if isinstance(value, dict) and "error" in value:
            return value["error"]
    return None


def test_the_commands_shown_to_users_are_all_here() -> None:
    assert len(COMMANDS) > 90
    kinds = {shlex.split(c)[1] for _, c in COMMANDS}
    assert {"load", "attach", "detach", "unload", "list", "get", "image", "map"} <= kinds
