"""Meta-tests: error codes are unique and documented, hooks are documented,
the plugin API surface is pinned."""

from __future__ import annotations

import inspect
from pathlib import Path

import bpfman
from bpfman import hookspecs
from bpfman.model.errors import BpfmanError, all_error_classes

DOCS = Path(__file__).parents[2] / "docs"


def test_error_codes_are_documented() -> None:
    api_doc = (DOCS / "api.md").read_text()
    for cls in all_error_classes():
        assert f"`{cls.code}`" in api_doc, f"{cls.__name__} ({cls.code}) not in docs/api.md"
        assert cls.__name__ in api_doc


def test_error_kinds_are_unique() -> None:
    kinds = [cls.kind for cls in all_error_classes()]
    assert len(kinds) == len(set(kinds))


def test_error_data_has_kind() -> None:
    assert BpfmanError("x", a=1).data() == {"kind": "error", "a": 1}


def test_every_hook_is_documented() -> None:
    guide = (DOCS / "plugins.md").read_text()
    for name, fn in inspect.getmembers(hookspecs, inspect.isfunction):
        if name.startswith("bpfman_"):
            signature = f"{name}({', '.join(inspect.signature(fn).parameters)})"
            assert signature in guide, f"{signature} missing from docs/plugins.md"
            assert fn.__doc__ and "versionadded" in fn.__doc__


def test_public_api_is_pinned() -> None:
    assert sorted(bpfman.__all__) == [
        "AttachPoint", "AttachTargetNotFound", "BpfmanError", "Conflict", "DispatcherRecord",
        "Drift", "HookContext", "InvalidArgument", "KernelError", "KernelFeatureMissing",
        "KindSpec", "LinkRecord", "NotFound", "ProgramRecord", "Reach", "__version__",
        "hookimpl",
    ]
    for name in bpfman.__all__:  # every lazy name resolves
        assert getattr(bpfman, name) is not None
