"""Upstream bpfman's documented command lines (its CLI guide), run unchanged
through the real `bpfman` command against a real daemon; their effects are
checked through the API and the kernel.

A tracepoint program covers load, get, list (programs and links, every
filter), detach and unload with several ids; an XDP program on a veth in
namespaces the test creates covers the network attach shape with ``-n``.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from images.fixtures import AUTH_PASSWORD, AUTH_USER, auth_registry  # noqa: F401
from images.registry import LocalRegistry
from xdp_support import counts

from bpfman.cli.images import PASSWORD_ENV
from bpfman.testing import DaemonProcess, VethPair, running_daemon

BPFMAN = str(Path(sys.executable).with_name("bpfman"))  # the installed entry point
APP = "cliup-app"
MISSING = 4_000_000_001  # a program id and a link id that do not exist


def run(daemon: DaemonProcess, line: str, *, cwd: Path | None = None, code: int = 0,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """One command line, split as a shell would, with the daemon's socket."""
    out = subprocess.run([BPFMAN, *line.split(), "--socket", str(daemon.socket)], cwd=cwd,
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, **(env or {})})
    assert out.returncode == code, f"bpfman {line}: {out.returncode}\n{out.stdout}{out.stderr}"
    return out


def programs(daemon: DaemonProcess, **filters: Any) -> dict[int, dict[str, Any]]:
    return {p["program_id"]: p for p in daemon.client().call("program.list", filters)}


def links(daemon: DaemonProcess, **filters: Any) -> dict[int, dict[str, Any]]:
    return {x["link_id"]: x for x in daemon.client().call("link.list", filters)}


def ids_in(table: str) -> set[int]:
    """The first column's ids of a table."""
    return {int(line.split()[0]) for line in table.splitlines()[1:] if line.strip()}


def test_tracepoint_with_upstream_commands(daemon: DaemonProcess, bpf_program: Callable[..., Path],
                                          tmp_path: Path) -> None:
    obj = Path(shutil.copy(bpf_program("tp_counter"), tmp_path / "tp_counter.bpf.o"))
    # A relative --path, from the caller's directory; -a and a comma list -m.
    run(daemon, "load file --path tp_counter.bpf.o --programs tracepoint:count_getpid"
           f" tracepoint:count_getppid -a {APP} -m owner=cliup,env=test", cwd=tmp_path)
    loaded = programs(daemon)
    assert len(loaded) == 2
    getpid, getppid = sorted(loaded, key=lambda i: loaded[i]["name"] != "count_getpid")
    for p in loaded.values():
        assert p["path"] == str(obj)
        assert p["metadata"] == {"bpfman_application": APP, "owner": "cliup", "env": "test"}

    run(daemon, f"attach {getpid} tracepoint -t syscalls/sys_enter_getpid -m team=obs")
    run(daemon, f"attach {getppid} tracepoint -t syscalls/sys_enter_getppid")
    [link_a] = links(daemon, program_id=getpid)
    [link_b] = links(daemon, program_id=getppid)
    # The same program twice on one tracepoint: the kernel refuses; say so.
    err = run(daemon, f"attach {getpid} tracepoint -t syscalls/sys_enter_getpid", code=1).stderr
    assert ("the program is already attached to tracepoint syscalls/sys_enter_getpid"
            " (load another copy to run it twice)") in err, err
    assert "EEXIST" not in err
    # The link inherits the program's application.
    assert links(daemon)[link_a]["metadata"] == {"team": "obs", "bpfman_application": APP}

    shown = run(daemon, f"get program {getpid}").stdout
    assert str(getpid) in shown and "count_getpid" in shown
    assert run(daemon, f"get {getpid}").stdout == shown  # our short form, the same
    assert "syscalls/sys_enter_getpid" in run(daemon, f"get link {link_a}").stdout

    assert ids_in(run(daemon, f"list programs --application {APP}").stdout) == {getpid, getppid}
    assert ids_in(run(daemon, "list programs --application other").stdout) == set()
    assert ids_in(run(daemon, "list programs -m owner=cliup,env=test").stdout) == {getpid, getppid}
    assert ids_in(run(daemon, "list programs -m owner=cliup,env=prod").stdout) == set()
    assert ids_in(run(daemon, "list programs -p tracepoint").stdout) == {getpid, getppid}
    assert ids_in(run(daemon, "list programs -p xdp").stdout) == set()
    assert ids_in(run(daemon, "list program --metadata-selector owner=cliup").stdout) == {
        getpid, getppid}
    assert {getpid, getppid} <= ids_in(run(daemon, "list programs -a").stdout)
    assert ids_in(run(daemon, f"list links --application {APP}").stdout) == {link_a, link_b}
    assert ids_in(run(daemon, "list links -m team=obs").stdout) == {link_a}
    assert ids_in(run(daemon, "list link -p tracepoint").stdout) == {link_a, link_b}

    # detach: a missing id is an error that names it, unless --ignore-missing.
    err = run(daemon, f"detach {MISSING}", code=1).stderr
    assert f"no link with id {MISSING}" in err
    run(daemon, f"detach {link_a} {MISSING} --ignore-missing")
    assert set(links(daemon)) == {link_b}

    # unload stops at the first error and says where; the others are kept.
    err = run(daemon, f"unload {getppid} {MISSING} {getpid}", code=1).stderr
    assert f"no program with id {MISSING}" in err
    assert f"stopped at program {MISSING}; done: {getppid}; not tried: {getpid}" in err
    assert set(programs(daemon)) == {getpid} and links(daemon) == {}  # getppid's link went with it
    out = run(daemon, f"-o json unload {MISSING} {getpid} --ignore-missing").stdout
    assert json.loads(out) == [{"ok": True}]  # several ids: a list of what was done
    assert programs(daemon) == {}


def test_xdp_with_upstream_commands(daemon: DaemonProcess, bpf_program: Callable[..., Path],
                                    tmp_path: Path, veth: VethPair) -> None:
    shutil.copy(bpf_program("xdp_counter"), tmp_path / "xdp_counter.bpf.o")
    run(daemon, f"load file -p xdp_counter.bpf.o --programs xdp:xdp_counter -a {APP}",
        cwd=tmp_path)
    [(program_id, program)] = programs(daemon).items()
    run(daemon, f"attach {program_id} xdp -i {veth.if_b} -p 100 --proceed-on pass drop"
           f" -n {veth.netns_b}")
    [(link_id, link)] = links(daemon).items()
    assert link["params"]["priority"] == 100
    assert link["params"]["proceed_on"] == ["pass", "drop"]
    assert veth.xdp_program_id() != 0
    assert veth.ping(3) == 3
    assert counts(program)[0] >= 3  # the program runs on the interface

    assert ids_in(run(daemon, f"list links --application {APP} -p xdp").stdout) == {link_id}
    assert ids_in(run(daemon, "list programs -p xdp").stdout) == {program_id}
    run(daemon, f"unload {program_id}")  # its link is detached first
    assert veth.xdp_program_id() == 0 and programs(daemon) == {} and links(daemon) == {}


def test_image_pull_and_load_image_with_registry_auth(
        auth_registry: LocalRegistry, bpf_program: Callable[..., Path]) -> None:  # noqa: F811
    config = (f'[[images.registries]]\nhost = "{auth_registry.host}"\nplain_http = true\n'
              "[signing]\nverify_enabled = false\n")
    url = f"{auth_registry.host}/cliup/tp-counter:v1"
    auth = base64.b64encode(f"{AUTH_USER}:{AUTH_PASSWORD}".encode()).decode()
    with running_daemon(config) as daemon:
        run(daemon, f"image build --path {bpf_program('tp_counter')} --tag {url} --push"
               f" --plain-http --username {AUTH_USER}", env={PASSWORD_ENV: AUTH_PASSWORD})
        # Without credentials the registry refuses; upstream's -r gets in.
        assert "401" in run(daemon, f"image pull -i {url} -p Always", code=1).stderr
        out = run(daemon, f"image pull -i {url} -p Always -r {auth}")
        assert [i["url"] for i in daemon.client().call("image.list")] == [url]
        run(daemon, f"load image -i {url} --programs tracepoint:count_getpid -p Always -r {auth}"
               f" -a {APP}")
        [program] = programs(daemon, metadata={"bpfman_application": APP}).values()
        assert program["name"] == "count_getpid" and program["image"].startswith(url)
        for text in (out.stdout, out.stderr, daemon.log_text()):
            assert AUTH_PASSWORD not in text and auth not in text


def test_netfilter_priority_taken_is_a_conflict(daemon: DaemonProcess, veth: VethPair,
                                                bpf_program: Callable[..., Path]) -> None:
    """The kernel keeps one BPF program per netfilter hook priority (EBUSY)."""
    obj = bpf_program("nf_count")
    for _ in range(2):
        run(daemon, f"load file --path {obj} --programs netfilter:nf_count")
    first, second = sorted(programs(daemon))
    hook = f"--family ipv4 --hook input --priority -10 --netns {veth.netns_b}"
    run(daemon, f"attach {first} netfilter {hook}")
    out = run(daemon, f"attach {second} netfilter {hook}", code=1)
    assert ("already runs at priority -10 on netfilter ipv4 input in this network namespace"
            in out.stderr), out.stderr
    assert len(links(daemon)) == 1


def test_type_filters_take_kernel_types(daemon: DaemonProcess,
                                        bpf_program: Callable[..., Path]) -> None:
    """`-p` takes our types or a kernel type covering several of them
    (upstream's `list -p tc` is tc and tcx: `-p sched_cls` here)."""
    obj = bpf_program("tc_chain")
    for kind in ("tc", "tcx"):
        run(daemon, f"load file --path {obj} --programs {kind}:tc_chain")
    kinds = {i: p["type"] for i, p in programs(daemon).items()}
    tc = {i for i, k in kinds.items() if k == "tc"}
    assert len(tc) == 1 and len(kinds) == 2
    assert ids_in(run(daemon, "list programs -p sched_cls").stdout) == set(kinds)
    assert ids_in(run(daemon, "list programs -p tc").stdout) == tc
    assert ids_in(run(daemon, "list programs -p probe").stdout) == set()
