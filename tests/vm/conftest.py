"""Wires the VM harness (bpfman_vm_harness.py) into any run that collects tests/vm,
and gives its tests one daemon per module (`module_daemon`).

Every test in this directory is marked `vm` and runs inside the 6.12 kernel VM; the
fixtures of tests/conftest.py apply unchanged inside it. See docs/testing.md.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from bpfman.testing import DaemonProcess, import_file, running_daemon


def _harness() -> ModuleType:
    # Imported by path under a fixed name: tests/ is not a package, and the guest
    # imports the same name with `-p bpfman_vm_harness`, so both end up one module.
    return import_file("bpfman_vm_harness", Path(__file__).with_name("bpfman_vm_harness.py"))


def pytest_configure(config: pytest.Config) -> None:
    _harness().ensure_registered(config)


@pytest.fixture(scope="module")
def _module_daemon_process() -> Iterator[DaemonProcess]:
    # running_daemon() waits as long as a daemon start takes in the VM.
    with running_daemon() as daemon:
        yield daemon


@pytest.fixture
def module_daemon(_module_daemon_process: DaemonProcess) -> Iterator[DaemonProcess]:
    """One real daemon shared by the tests of a module (under qemu's software emulation
    a daemon takes about a minute to start, measured 65 s), stopped and its bpffs
    unmounted after the module's last test.

    Each test finds it empty: after every test, all programs are unloaded and no link
    pin may remain. The daemon's log tail goes to the test's captured stderr (shown
    when it fails)."""
    daemon = _module_daemon_process
    yield daemon
    sys.stderr.write(f"--- daemon log (tail) ---\n{daemon.log_text()[-6000:]}\n")
    client = daemon.client()
    for prog in client.call("program.list", {}):
        client.call("program.unload", {"program_id": prog["program_id"]})
    assert list((daemon.bpffs / "links").iterdir()) == []
