"""Test modules are imported by basename (pytest's default import mode with
rootdir-relative names): two tiers with the same file name break collection."""

from __future__ import annotations

import collections
from pathlib import Path

TESTS = Path(__file__).parents[1]


def test_test_module_names_are_unique() -> None:
    names = collections.Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert [n for n, count in names.items() if count > 1] == []
