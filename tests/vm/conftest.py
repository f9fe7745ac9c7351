"""Wires the VM harness (bpfman_vm_harness.py) into any run that collects tests/vm.

Every test in this directory is marked `vm` and runs inside the 6.12 kernel VM; the
fixtures of tests/conftest.py apply unchanged inside it. See docs/testing.md.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest


def _harness() -> ModuleType:
    # Imported by path under a fixed name: tests/ is not a package, and the guest
    # imports the same name with `-p bpfman_vm_harness`, so both end up one module.
    name = "bpfman_vm_harness"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def pytest_configure(config: pytest.Config) -> None:
    _harness().ensure_registered(config)
