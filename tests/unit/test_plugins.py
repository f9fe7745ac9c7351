"""The plugin manager: ownership, validation at registration, failures reported."""

from __future__ import annotations

import types

import attrs

from bpfman import KindSpec, hookimpl
from bpfman.plugins import build_plugin_manager


@attrs.frozen
class P:
    x: int


def kind_plugin(kind: str, marker: list[str] | None = None) -> types.SimpleNamespace:
    class Plugin:
        @hookimpl
        def bpfman_register_kinds(self) -> list[KindSpec]:
            return [KindSpec(name=kind, kernel_prog_type="tracepoint", params_type=P)]

        @hookimpl
        def bpfman_describe_link(self, link: object) -> str:
            if marker is not None:
                marker.append(kind)
            return f"{kind} link"

    return Plugin()


def test_entry_point_plugins_are_loaded() -> None:
    registry = build_plugin_manager()
    assert registry.kinds["tracepoint"].plugin_name == "tracepoint"


def test_disabled_plugin_is_not_loaded() -> None:
    registry = build_plugin_manager(disabled=("tracepoint",))
    assert "tracepoint" not in registry.kinds


def test_ownership_hooks_reach_only_the_owner() -> None:
    seen: list[str] = []
    registry = build_plugin_manager(
        extra={"a": kind_plugin("kind_a", seen), "b": kind_plugin("kind_b", seen)}
    )
    assert registry.call_owner("kind_b", "bpfman_describe_link", link=None) == "kind_b link"
    assert seen == ["kind_b"]


def test_duplicate_type_is_rejected_and_reported() -> None:
    registry = build_plugin_manager(
        extra={"first": kind_plugin("dup"), "second": kind_plugin("dup")}
    )
    assert registry.kinds["dup"].plugin_name == "first"
    [failure] = [f for f in registry.failures if f.name == "second"]
    assert "already owned by plugin 'first'" in failure.error


def test_misspelled_hook_is_rejected_at_startup() -> None:
    class Typo:
        @hookimpl
        def bpfman_atach(self) -> None: ...

    registry = build_plugin_manager(extra={"typo": Typo()})
    assert any(f.name == "typo" and "bpfman_atach" in f.error for f in registry.failures)
    assert "typo" not in registry.plugin_names()


def test_wrong_hook_signature_is_rejected() -> None:
    class BadArgs:
        @hookimpl
        def bpfman_detach(self, ctx: object, program: object, link: object, extra: object
                          ) -> None: ...

    registry = build_plugin_manager(extra={"bad": BadArgs()})
    assert any(f.name == "bad" for f in registry.failures)
