"""The probe plugins without a kernel: registration, params, summaries, and
the store migration that gives programs their fentry/fexit target."""

from __future__ import annotations

import sqlite3
from importlib import resources
from pathlib import Path

import pytest

from bpfman.model import convert
from bpfman.model.records import LinkRecord, ProgramRecord
from bpfman.plugins import build_plugin_manager
from bpfman.store import Store
from bpfman_fentry.plugin import FentryParams
from bpfman_kprobe.plugin import KprobeParams
from bpfman_uprobe.plugin import UprobeParams

KINDS = {
    "kprobe": ("kprobe", "kprobe", ("kprobes",)),
    "kretprobe": ("kprobe", "kprobe", ("kprobes",)),
    "uprobe": ("uprobe", "kprobe", ("uprobes",)),
    "uretprobe": ("uprobe", "kprobe", ("uprobes",)),
    "fentry": ("fentry", "tracing", ("tracing_programs",)),
    "fexit": ("fentry", "tracing", ("tracing_programs",)),
}


def test_probe_kinds_are_registered() -> None:
    registry = build_plugin_manager()
    for kind, (plugin, prog_type, features) in KINDS.items():
        owner = registry.kinds[kind]
        assert owner.plugin_name == plugin
        assert owner.spec.kernel_prog_type == prog_type
        assert owner.spec.required_features == features


def test_params_are_validated_in_shape() -> None:
    assert convert.structure({"fn_name": "do_unlinkat"}, KprobeParams) == KprobeParams(
        "do_unlinkat", 0)
    assert convert.structure({"target": "libc", "fn_name": "malloc", "pid": 7},
                             UprobeParams).pid == 7
    assert convert.structure({}, FentryParams) == FentryParams()
    for data, cls in [({"fn_name": "no spaces"}, KprobeParams),
                      ({"fn_name": "f", "offset": -1}, KprobeParams),
                      ({"target": "libc", "pid": 0}, UprobeParams),
                      ({"target": ""}, UprobeParams),
                      ({"anything": 1}, FentryParams)]:
        with pytest.raises(Exception):  # noqa: B017 - cattrs groups the validator errors
            convert.structure(data, cls)


def link(kind: str, params: dict[str, object], details: dict[str, object]) -> LinkRecord:
    return LinkRecord(link_id=1, program_id=2, type=kind, params=params, attach_point="",
                      seq=1, pin_path="/fs/links/1", details=details)


def test_summaries() -> None:
    registry = build_plugin_manager()

    def hook(link: LinkRecord) -> str:
        return str(registry.call_owner(link.type, "bpfman_describe_link", link=link))

    assert hook(link=link("kprobe", {"fn_name": "f", "offset": 16}, {})) == "kprobe f+0x10"
    assert hook(link=link("kretprobe", {"fn_name": "f", "offset": 0}, {})) == "kretprobe f"
    uprobe = link("uretprobe", {"target": "libc", "fn_name": "malloc", "offset": 0,
                                "pid": None, "container_pid": 9},
                  {"path": "/proc/9/root/lib/libc.so.6", "file_offset": 4096})
    assert hook(link=uprobe) == ("uretprobe libc:malloc container_pid=9"
                                 " (/proc/9/root/lib/libc.so.6 @ 0x1000)")
    assert hook(link=link("fexit", {}, {"attach_func": "do_unlinkat"})) == "fexit do_unlinkat"


def test_migration_adds_attach_func_to_existing_programs(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    initial = resources.files("bpfman").joinpath("schema", "0001_initial.sql").read_text()
    with sqlite3.connect(db) as conn:  # a store as the first release left it
        conn.executescript(initial + "\nPRAGMA user_version=1;")
        conn.execute("INSERT INTO programs (program_id, name, type, path, pin_path,"
                     " map_owner_id, map_pin_dir, created_at)"
                     " VALUES (5, 'p', 'tracepoint', '/x.o', '/fs/prog_5', 5, '/fs/maps/5', 'now')")
    conn.close()
    store = Store(db)
    old = store.get_program(5)
    assert old is not None and old.attach_func is None
    with store.transaction():
        store.insert_program(ProgramRecord(
            program_id=6, name="t", type="fentry", path="/x.o", pin_path="/fs/prog_6",
            map_owner_id=6, map_pin_dir="/fs/maps/6", attach_func="do_unlinkat"))
    store.close()
    reopened = Store(db)
    new = reopened.get_program(6)
    assert new is not None and new.attach_func == "do_unlinkat"
    reopened.close()
