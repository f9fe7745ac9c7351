"""Files a caller names are read as that caller and can never stall the daemon.

Real FIFOs, devices and root-only files; the clients are real processes running
as uid 65534 (nobody) so the kernel checks access for a real unprivileged peer.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bpfman.authz.callerfiles import MAX_OBJECT_BYTES
from bpfman.client import RpcError
from bpfman.testing import DaemonProcess, call_as, running_daemon


@pytest.fixture
def loader() -> Iterator[DaemonProcess]:
    """A daemon where nobody may load, list and unload its own programs."""
    with running_daemon('[daemon]\nsocket_mode = "0666"\n\n[[authorization.rules]]\n'
                        'uids = [65534]\nscope = "own"\n'
                        'methods = ["program.load", "program.unload", "program.list"]\n'
                        'program_types = ["*"]\n') as d:
        os.chmod(d.root, 0o755)
        yield d


def as_nobody(d: DaemonProcess, method: str, params: dict[str, Any] | None = None
              ) -> dict[str, Any]:
    return call_as(d, method, params)


def load_params(path: Path | str) -> dict[str, Any]:
    return {"path": str(path), "programs": [{"name": "count_getpid", "type": "tracepoint"}]}


def test_a_fifo_is_refused_at_once_and_blocks_no_one(loader: DaemonProcess,
                                                     public_tmp_path: Path) -> None:
    fifo = public_tmp_path / "obj.o"
    os.mkfifo(fifo, 0o666)
    start = time.monotonic()
    with pytest.raises(RpcError) as refused:
        loader.client().call("program.load", load_params(fifo))
    assert time.monotonic() - start < 5
    assert "not a regular file" in refused.value.message
    assert refused.value.data["field"] == "path"
    # The lane is free: the next call answers at once.
    assert loader.client().call("program.list", {}) == []


@pytest.mark.parametrize("target", ["/dev/zero", "/proc/self/status", "/"])
def test_devices_proc_files_and_directories_are_refused(loader: DaemonProcess,
                                                        target: str) -> None:
    with pytest.raises(RpcError) as refused:
        loader.client().call("program.load", load_params(target))
    assert refused.value.data["field"] == "path"


def test_an_oversized_file_is_refused_before_reading(loader: DaemonProcess,
                                                     public_tmp_path: Path) -> None:
    big = public_tmp_path / "big.o"
    with open(big, "wb") as fh:
        fh.truncate(MAX_OBJECT_BYTES + 1)  # sparse: costs no disk
    with pytest.raises(RpcError) as refused:
        loader.client().call("program.load", load_params(big))
    assert "larger than" in refused.value.message


def test_the_file_is_read_with_the_callers_rights(loader: DaemonProcess, public_tmp_path: Path,
                                                  bpf_program: Callable[..., Path]) -> None:
    private = public_tmp_path / "root-only.o"
    shutil.copy(bpf_program("tp_counter"), private)
    private.chmod(0o600)
    denied = as_nobody(loader, "program.load", load_params(private))
    assert denied.get("code") == 1000, denied
    assert "Permission denied" in denied["message"]
    assert loader.client().call("program.list", {}) == []
    # Readable by everyone: the same file loads for nobody.
    private.chmod(0o644)
    loaded = as_nobody(loader, "program.load", load_params(private))
    assert "result" in loaded, loaded
    [prog] = loaded["result"]["programs"]
    assert as_nobody(loader, "program.unload", {"program_id": prog["program_id"]})["result"]


def test_root_loads_as_before_and_names_keep_their_object(loader: DaemonProcess,
                                                          bpf_program: Callable[..., Path]
                                                          ) -> None:
    client = loader.client()
    [prog] = client.call("program.load", load_params(bpf_program("tp_counter")))["programs"]
    try:
        maps = {m["name"] for m in client.call("map.list",
                                               {"program_id": prog["program_id"]})}
        assert "counts" in maps
    finally:
        client.call("program.unload", {"program_id": prog["program_id"]})
