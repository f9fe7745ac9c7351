"""ctypes mirrors in bpfman.kernel._sys.structs match the C layouts.

Expected values were produced by gcc (offsetof/sizeof) on x86_64 from
/usr/include/linux/{bpf,btf,perf_event}.h (linux-libc-dev 6.1),
/usr/include/bpf/bpf.h (libbpf 1.1.2) and glibc's <sys/vfs.h>. The kernel
ABI does not change, so a mismatch here is a bug in structs.py.
"""

from __future__ import annotations

import ctypes
import platform

import pytest

from bpfman.kernel._sys import structs

pytestmark = pytest.mark.skipif(
    platform.machine() != "x86_64", reason="expected layouts were measured on x86_64"
)

# name -> (sizeof, {field: offsetof})
EXPECTED: dict[str, tuple[int, dict[str, int]]] = {
    "BpfProgInfo": (232, {
        "type": 0, "id": 4, "tag": 8, "jited_prog_len": 16, "xlated_prog_len": 20,
        "jited_prog_insns": 24, "xlated_prog_insns": 32, "load_time": 40,
        "created_by_uid": 48, "nr_map_ids": 52, "map_ids": 56, "name": 64, "ifindex": 80,
        "netns_dev": 88, "netns_ino": 96, "nr_jited_ksyms": 104, "nr_jited_func_lens": 108,
        "jited_ksyms": 112, "jited_func_lens": 120, "btf_id": 128, "func_info_rec_size": 132,
        "func_info": 136, "nr_func_info": 144, "nr_line_info": 148, "line_info": 152,
        "jited_line_info": 160, "nr_jited_line_info": 168, "line_info_rec_size": 172,
        "jited_line_info_rec_size": 176, "nr_prog_tags": 180, "prog_tags": 184,
        "run_time_ns": 192, "run_cnt": 200, "recursion_misses": 208, "verified_insns": 216,
        "attach_btf_obj_id": 220, "attach_btf_id": 224,
    }),
    "BpfMapInfo": (88, {
        "type": 0, "id": 4, "key_size": 8, "value_size": 12, "max_entries": 16,
        "map_flags": 20, "name": 24, "ifindex": 40, "btf_vmlinux_value_type_id": 44,
        "netns_dev": 48, "netns_ino": 56, "btf_id": 64, "btf_key_type_id": 68,
        "btf_value_type_id": 72, "map_extra": 80,
    }),
    # "union" is the per-type union (offsetof raw_tracepoint in C).
    "BpfLinkInfo": (48, {"type": 0, "id": 4, "prog_id": 8, "union": 16}),
    "BpfFuncInfo": (8, {"insn_off": 0, "type_id": 4}),
    "BtfType": (12, {"name_off": 0, "info": 4, "size_or_type": 8}),
    "BtfVarSecinfo": (12, {"type": 0, "offset": 4, "size": 8}),
    "BtfVar": (4, {"linkage": 0}),
    # "flags" is the C bitfield word that follows read_format.
    "PerfEventAttr": (128, {
        "type": 0, "size": 4, "config": 8, "sample_period": 16, "sample_type": 24,
        "read_format": 32, "flags": 40, "wakeup_events": 48, "bp_type": 52, "config1": 56,
        "config2": 64, "branch_sample_type": 72, "sample_regs_user": 80,
        "sample_stack_user": 88, "clockid": 92, "sample_regs_intr": 96, "aux_watermark": 104,
        "sample_max_stack": 108, "_reserved_2": 110, "aux_sample_size": 112,
        "_reserved_3": 116, "sig_data": 120,
    }),
    "BpfProgLoadOpts": (104, {
        "sz": 0, "attempts": 8, "expected_attach_type": 12, "prog_btf_fd": 16,
        "prog_flags": 20, "prog_ifindex": 24, "kern_version": 28, "attach_btf_id": 32,
        "attach_prog_fd": 36, "attach_btf_obj_fd": 40, "fd_array": 48, "func_info": 56,
        "func_info_cnt": 64, "func_info_rec_size": 68, "line_info": 72, "line_info_cnt": 80,
        "line_info_rec_size": 84, "log_level": 88, "log_size": 92, "log_buf": 96,
    }),
    "Statfs": (120, {
        "f_type": 0, "f_bsize": 8, "f_blocks": 16, "f_bfree": 24, "f_bavail": 32,
        "f_files": 40, "f_ffree": 48, "f_fsid": 56, "f_namelen": 64, "f_frsize": 72,
        "f_flags": 80, "f_spare": 88,
    }),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_struct_size(name: str) -> None:
    size, _ = EXPECTED[name]
    assert ctypes.sizeof(getattr(structs, name)) == size


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_struct_offsets(name: str) -> None:
    cls = getattr(structs, name)
    _, offsets = EXPECTED[name]
    actual = {field: getattr(cls, field).offset for field in offsets}
    assert actual == offsets


def test_every_named_field_is_checked() -> None:
    # Padding and the one bitfield are checked separately; nothing else may
    # be added to a struct without an expected offset here.
    unchecked = {"_pad", "_pad_end", "_pad_gpl", "gpl_compatible"}
    for name, (_, offsets) in EXPECTED.items():
        fields = {f[0] for f in getattr(structs, name)._fields_} - unchecked
        assert fields == set(offsets), name


def test_gpl_compatible_is_bit_0_after_ifindex() -> None:
    info = structs.BpfProgInfo(gpl_compatible=1)
    raw = bytes(info)
    assert raw[84] == 1
    assert sum(raw) == 1


def test_btf_type_decodes_kind_and_vlen() -> None:
    t = structs.BtfType(info=(structs.BTF_KIND_DATASEC << 24) | 3)
    assert (t.kind, t.vlen) == (structs.BTF_KIND_DATASEC, 3)


def test_uapi_constants() -> None:
    # From linux/bpf.h, linux/perf_event.h, linux/magic.h and vmlinux BTF (TCX: 6.6+).
    assert ctypes.sizeof(structs.PerfEventAttr) == structs.PERF_ATTR_SIZE_VER7
    assert structs.PERF_TYPE_TRACEPOINT == 2
    assert structs.PERF_FLAG_FD_CLOEXEC == 8
    assert structs.BPF_FS_MAGIC == 0xCAFE4A11
    assert structs.TRACEFS_MAGIC == 0x74726163
    assert (structs.BPF_PROG_TYPE_TRACEPOINT, structs.BPF_PROG_TYPE_TRACING) == (5, 26)
    assert structs.BPF_PROG_TYPE_EXT == 28
    assert (structs.BPF_PERF_EVENT, structs.BPF_TRACE_FENTRY, structs.BPF_TCX_INGRESS) == (
        41, 24, 46,
    )
    assert {5, 6, 10, 21} == structs.PERCPU_MAP_TYPES
