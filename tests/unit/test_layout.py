"""Test modules are imported by basename (pytest's default import mode with
rootdir-relative names): two tiers with the same file name break collection."""

from __future__ import annotations

import collections
from pathlib import Path

TESTS = Path(__file__).parents[1]


def test_test_module_names_are_unique() -> None:
    names = collections.Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, count in names.items() if count > 1] == []


def test_the_architecture_page_names_real_folders_and_modules() -> None:
    """docs/architecture.md's tree: every name it lists under core/bpfman/
    exists, and every package of the core is listed."""
    import re

    root = TESTS.parent
    page = (root / "docs" / "architecture.md").read_text()
    tree = page.split("## The folders are the layers", 1)[1].split("##", 1)[0]
    core = root / "core" / "bpfman"
    listed = set(re.findall(r"^      (\w+(?:/|\.py))", tree, re.M))
    for name in listed:
        assert (core / name.rstrip("/")).exists(), name
    packages = {p.parent.name + "/" for p in core.glob("*/__init__.py")}
    assert packages <= listed, packages - listed
