"""Fixtures shared by every tier. The tier of a test is its directory:
tests/unit (no privileges), tests/kernel (root, host kernel), tests/vm (the
full-featured kernel in a VM, see tests/vm/conftest.py)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bpfman.testing import compile_bpf

PROGRAMS = Path(__file__).parent / "programs"
TESTS = Path(__file__).parent

# The VM harness is a plugin of every run, so a test marked `vm` anywhere goes
# through the VM (or is skipped with the reason), never runs on the host.
sys.path.insert(0, str(TESTS / "vm"))
pytest_plugins = ["bpfman_vm_harness"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath))
        if TESTS / "kernel" in path.parents:
            item.add_marker(pytest.mark.kernel)
            if os.geteuid() != 0:
                item.add_marker(pytest.mark.skip(reason="kernel tier needs root"))


@pytest.fixture(scope="session")
def bpf_program(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """Compile ``tests/programs/<name>.bpf.c`` (cached): ``bpf_program("tp_counter")``."""
    out = tmp_path_factory.mktemp("bpf")

    def build(name: str, **defines: str) -> Path:
        return compile_bpf(PROGRAMS / f"{name}.bpf.c", out, defines=defines)

    return build
