"""The CLI against a real daemon: closed pipes, errors under -o json, and an
attach that needs no grant beyond program.attach."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from bpfman.testing import NOBODY, running_daemon

CLI = [sys.executable, "-m", "bpfman"]


def test_a_closed_pipe_is_a_quiet_exit(daemon) -> None:
    """`bpfman info | head -1`, made deterministic: the reader is gone before
    the CLI writes anything."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        out = subprocess.run([*CLI, "--socket", str(daemon.socket), "info"], stdout=write_end,
                             stderr=subprocess.PIPE, text=True, timeout=60)
    finally:
        os.close(write_end)
    assert out.stderr == "", out.stderr  # no BrokenPipeError traceback
    assert out.returncode == 141  # what a C tool killed by SIGPIPE reports


def test_errors_are_json_under_o_json(daemon, tmp_path: Path) -> None:
    out = subprocess.run([*CLI, "--socket", str(daemon.socket), "-o", "json", "get", "4000000"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    error = json.loads(out.stderr)["error"]
    assert error["code"] == 1100 and "4000000" in error["message"], error
    gone = subprocess.run([*CLI, "--socket", str(tmp_path / "none.sock"), "-o", "json", "list"],
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 2
    assert "is the daemon running" in json.loads(gone.stderr)["error"]["message"]


def test_attach_needs_only_the_attach_grant(bpf_program: Callable[..., Path],
                                            public_tmp_path: Path) -> None:
    config = ('[daemon]\nsocket_mode = "0666"\n\n[[authorization.rules]]\nuids = [65534]\n'
              'scope = "own"\nmethods = ["program.load", "program.attach", "program.unload"]\n'
              'program_types = ["tracepoint"]\n')
    with running_daemon(config) as d:
        os.chmod(d.root, 0o755)
        obj = Path(shutil.copy(bpf_program("tp_counter"), public_tmp_path))

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([*CLI, "--socket", str(d.socket), "-o", "json", *args],
                                  capture_output=True, text=True, timeout=60, user=NOBODY,
                                  group=NOBODY, extra_groups=[])

        loaded = cli("load", "file", "--path", str(obj), "--programs",
                     "tracepoint:count_getpid")
        assert loaded.returncode == 0, loaded.stderr
        program_id = json.loads(loaded.stdout)["programs"][0]["program_id"]
        attached = cli("attach", str(program_id), "tracepoint", "--tracepoint",
                       "syscalls/sys_enter_getpid")
        assert attached.returncode == 0, attached.stderr
        assert cli("unload", str(program_id)).returncode == 0
