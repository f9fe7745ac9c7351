"""ctypes bindings for loading and running programs outside libbpf's object
flow: the relocated instructions of a loaded bpf_program (for the static
dispatcher), BPF_PROG_TEST_RUN, and freplace (BPF_PROG_TYPE_EXT) loading and
link creation. `BpfInsn` is the layout of struct bpf_insn; the instruction
encoding the dispatcher generates is `bpfman.dispatch.static`'s.

libbpf 1.1 facts these rely on (measured, tests/kernel/test_xdp.py):
``bpf_program__insns()``/``bpf_program__insn_cnt()`` called after
``bpf_object__load()`` return the instructions that were sent to the kernel:
CO-RE applied, subprograms appended behind the entry function with their
BPF_PSEUDO_CALL offsets resolved, map references as ``ld_imm64`` with
src_reg BPF_PSEUDO_MAP_FD (1) / BPF_PSEUDO_MAP_VALUE (2) and imm = the map fd
of this process. They stay valid until ``bpf_object__close()``.
"""

from __future__ import annotations

import ctypes
from ctypes import c_int, c_size_t, c_uint8, c_uint32, c_void_p

from bpfman.kernel._sys.libbpf import _bind

# --- struct bpf_insn --------------------------------------------------------------


class BpfInsn(ctypes.Structure):
    """struct bpf_insn: code, dst_reg:4 src_reg:4 (little endian), off, imm."""

    _fields_ = (
        ("code", c_uint8),
        ("regs", c_uint8),
        ("off", ctypes.c_int16),
        ("imm", ctypes.c_int32),
    )


BPF_INSN_SIZE = 8

bpf_program__insns = _bind("bpf_program__insns", c_void_p, (c_void_p,))
bpf_program__insn_cnt = _bind("bpf_program__insn_cnt", c_size_t, (c_void_p,))
bpf_program__flags = _bind("bpf_program__flags", c_uint32, (c_void_p,))
bpf_program__expected_attach_type = _bind(
    "bpf_program__expected_attach_type", c_int, (c_void_p,)
)


# --- BPF_PROG_TEST_RUN --------------------------------------------------------------


class BpfTestRunOpts(ctypes.Structure):
    """libbpf 1.1's struct bpf_test_run_opts (<bpf/bpf.h>)."""

    _fields_ = (
        ("sz", c_size_t),
        ("data_in", c_void_p),
        ("data_out", c_void_p),
        ("data_size_in", c_uint32),
        ("data_size_out", c_uint32),
        ("ctx_in", c_void_p),
        ("ctx_out", c_void_p),
        ("ctx_size_in", c_uint32),
        ("ctx_size_out", c_uint32),
        ("retval", c_uint32),
        ("repeat", c_int),
        ("duration", c_uint32),
        ("flags", c_uint32),
        ("cpu", c_uint32),
        ("batch_size", c_uint32),
    )


bpf_prog_test_run_opts = _bind(
    "bpf_prog_test_run_opts", c_int, (c_int, ctypes.POINTER(BpfTestRunOpts)), "neg"
)


# --- freplace (libxdp and TC freplace modes) -------------------------------------

BTF_KIND_FUNC = 12

bpf_program__set_expected_attach_type = _bind(
    "bpf_program__set_expected_attach_type", c_int, (c_void_p, c_int), "neg"
)
btf__find_by_name_kind = _bind(
    "btf__find_by_name_kind", c_int, (c_void_p, ctypes.c_char_p, c_uint32), "neg"
)


class BpfLinkCreateOpts(ctypes.Structure):
    """libbpf 1.1's struct bpf_link_create_opts (<bpf/bpf.h>); the trailing
    union (perf_event / kprobe_multi / tracing) is kept as 32 raw bytes."""

    _fields_ = (
        ("sz", c_size_t),
        ("flags", c_uint32),
        ("iter_info", c_void_p),
        ("iter_info_len", c_uint32),
        ("target_btf_id", c_uint32),
        ("_union", ctypes.c_uint64 * 4),
    )


bpf_link_create_opts = _bind(
    "bpf_link_create", c_int, (c_int, c_int, c_int, ctypes.POINTER(BpfLinkCreateOpts)), "neg"
)
