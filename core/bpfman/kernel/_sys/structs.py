"""ctypes mirrors of the kernel UAPI and libbpf structs this package passes.

Layouts follow /usr/include/linux/{bpf,btf,perf_event}.h (linux-libc-dev 6.1)
and /usr/include/bpf/bpf.h (libbpf 1.1). Every struct that carries its own
size (``info_len``, ``attr.size``, ``opts.sz``) is forward/backward
compatible, so mirroring the 6.1 layout is enough on newer kernels: the
kernel only fills what we declare. tests/unit/test_kernel_structs.py pins
sizes and offsets to the C compiler's values.
"""

from __future__ import annotations

import ctypes
from ctypes import (
    c_char,
    c_char_p,
    c_int,
    c_int32,
    c_long,
    c_size_t,
    c_uint8,
    c_uint16,
    c_uint32,
    c_uint64,
    c_void_p,
)

BPF_OBJ_NAME_LEN = 16
BPF_TAG_SIZE = 8


class BpfProgInfo(ctypes.Structure):
    """struct bpf_prog_info (BPF_OBJ_GET_INFO_BY_FD on a program fd)."""

    _fields_ = (
        ("type", c_uint32),
        ("id", c_uint32),
        ("tag", c_uint8 * BPF_TAG_SIZE),
        ("jited_prog_len", c_uint32),
        ("xlated_prog_len", c_uint32),
        ("jited_prog_insns", c_uint64),
        ("xlated_prog_insns", c_uint64),
        ("load_time", c_uint64),  # ns since boot (CLOCK_BOOTTIME)
        ("created_by_uid", c_uint32),
        ("nr_map_ids", c_uint32),
        ("map_ids", c_uint64),
        ("name", c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", c_uint32),
        # gpl_compatible:1 plus 31 bits of padding; ctypes bitfields on u32
        # match the C layout on every Linux ABI we run on.
        ("gpl_compatible", c_uint32, 1),
        ("_pad_gpl", c_uint32, 31),
        ("netns_dev", c_uint64),
        ("netns_ino", c_uint64),
        ("nr_jited_ksyms", c_uint32),
        ("nr_jited_func_lens", c_uint32),
        ("jited_ksyms", c_uint64),
        ("jited_func_lens", c_uint64),
        ("btf_id", c_uint32),
        ("func_info_rec_size", c_uint32),
        ("func_info", c_uint64),
        ("nr_func_info", c_uint32),
        ("nr_line_info", c_uint32),
        ("line_info", c_uint64),
        ("jited_line_info", c_uint64),
        ("nr_jited_line_info", c_uint32),
        ("line_info_rec_size", c_uint32),
        ("jited_line_info_rec_size", c_uint32),
        ("nr_prog_tags", c_uint32),
        ("prog_tags", c_uint64),
        ("run_time_ns", c_uint64),
        ("run_cnt", c_uint64),
        ("recursion_misses", c_uint64),
        ("verified_insns", c_uint32),
        ("attach_btf_obj_id", c_uint32),
        ("attach_btf_id", c_uint32),
        ("_pad_end", c_uint32),
    )


class BpfMapInfo(ctypes.Structure):
    """struct bpf_map_info."""

    _fields_ = (
        ("type", c_uint32),
        ("id", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("name", c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", c_uint32),
        ("btf_vmlinux_value_type_id", c_uint32),
        ("netns_dev", c_uint64),
        ("netns_ino", c_uint64),
        ("btf_id", c_uint32),
        ("btf_key_type_id", c_uint32),
        ("btf_value_type_id", c_uint32),
        ("_pad", c_uint32),
        ("map_extra", c_uint64),
    )


class BpfLinkInfo(ctypes.Structure):
    """struct bpf_link_info; the per-type union is kept as raw bytes because
    only the common header is read (its size is the 6.1 union's)."""

    _fields_ = (
        ("type", c_uint32),
        ("id", c_uint32),
        ("prog_id", c_uint32),
        ("_pad", c_uint32),
        ("union", c_uint8 * 32),
    )


class BpfFuncInfo(ctypes.Structure):
    """struct bpf_func_info (one record of prog_info.func_info)."""

    _fields_ = (("insn_off", c_uint32), ("type_id", c_uint32))


class BtfType(ctypes.Structure):
    """struct btf_type; `size_or_type` is the C union of size and type."""

    _fields_ = (
        ("name_off", c_uint32),
        ("info", c_uint32),
        ("size_or_type", c_uint32),
    )

    @property
    def kind(self) -> int:
        return int(self.info >> 24) & 0x1F

    @property
    def vlen(self) -> int:
        return int(self.info) & 0xFFFF


class BtfVarSecinfo(ctypes.Structure):
    """struct btf_var_secinfo: one variable of a DATASEC."""

    _fields_ = (("type", c_uint32), ("offset", c_uint32), ("size", c_uint32))


class BtfVar(ctypes.Structure):
    """struct btf_var: follows a BTF_KIND_VAR btf_type."""

    _fields_ = (("linkage", c_uint32),)


BTF_KIND_VAR = 14
BTF_KIND_DATASEC = 15
BTF_VAR_STATIC = 0


class PerfEventAttr(ctypes.Structure):
    """struct perf_event_attr up to sig_data (PERF_ATTR_SIZE_VER7).

    The bitfield word is one u64 `flags`; PERF_ATTR_FLAG_* give the bits we
    set, which keeps the layout obvious and testable.
    """

    _fields_ = (
        ("type", c_uint32),
        ("size", c_uint32),
        ("config", c_uint64),
        ("sample_period", c_uint64),  # union with sample_freq
        ("sample_type", c_uint64),
        ("read_format", c_uint64),
        ("flags", c_uint64),
        ("wakeup_events", c_uint32),  # union with wakeup_watermark
        ("bp_type", c_uint32),
        ("config1", c_uint64),  # union: kprobe_func / uprobe_path / bp_addr
        ("config2", c_uint64),  # union: probe_offset / kprobe_addr / bp_len
        ("branch_sample_type", c_uint64),
        ("sample_regs_user", c_uint64),
        ("sample_stack_user", c_uint32),
        ("clockid", c_int32),
        ("sample_regs_intr", c_uint64),
        ("aux_watermark", c_uint32),
        ("sample_max_stack", c_uint16),
        ("_reserved_2", c_uint16),
        ("aux_sample_size", c_uint32),
        ("_reserved_3", c_uint32),
        ("sig_data", c_uint64),
    )


PERF_ATTR_SIZE_VER7 = 128
PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_FLAG_PID_CGROUP = 1 << 2
PERF_FLAG_FD_CLOEXEC = 1 << 3
# perf_event_attr bitfield word: `freq` (sample_period holds a frequency) is bit 10.
PERF_ATTR_FLAG_FREQ = 1 << 10


class BpfProgLoadOpts(ctypes.Structure):
    """libbpf's struct bpf_prog_load_opts (bpf/bpf.h, libbpf 1.1)."""

    _fields_ = (
        ("sz", c_size_t),
        ("attempts", c_int),
        ("expected_attach_type", c_uint32),
        ("prog_btf_fd", c_uint32),
        ("prog_flags", c_uint32),
        ("prog_ifindex", c_uint32),
        ("kern_version", c_uint32),
        ("attach_btf_id", c_uint32),
        ("attach_prog_fd", c_uint32),
        ("attach_btf_obj_fd", c_uint32),
        ("fd_array", c_void_p),
        ("func_info", c_void_p),
        ("func_info_cnt", c_uint32),
        ("func_info_rec_size", c_uint32),
        ("line_info", c_void_p),
        ("line_info_cnt", c_uint32),
        ("line_info_rec_size", c_uint32),
        ("log_level", c_uint32),
        ("log_size", c_uint32),
        ("log_buf", c_char_p),
    )


class Statfs(ctypes.Structure):
    """glibc struct statfs on 64-bit Linux (every field a long but f_fsid)."""

    _fields_ = (
        ("f_type", c_long),
        ("f_bsize", c_long),
        ("f_blocks", c_long),
        ("f_bfree", c_long),
        ("f_bavail", c_long),
        ("f_files", c_long),
        ("f_ffree", c_long),
        ("f_fsid", c_int * 2),
        ("f_namelen", c_long),
        ("f_frsize", c_long),
        ("f_flags", c_long),
        ("f_spare", c_long * 4),
    )


BPF_FS_MAGIC = 0xCAFE4A11
TRACEFS_MAGIC = 0x74726163
DEBUGFS_MAGIC = 0x64626720

# enum bpf_prog_type / bpf_attach_type values used directly (UAPI, stable).
BPF_PROG_TYPE_SOCKET_FILTER = 1
BPF_PROG_TYPE_KPROBE = 2
BPF_PROG_TYPE_SCHED_CLS = 3
BPF_PROG_TYPE_TRACEPOINT = 5
BPF_PROG_TYPE_PERF_EVENT = 7
BPF_PROG_TYPE_TRACING = 26
BPF_PROG_TYPE_EXT = 28
BPF_PROG_TYPE_LSM = 29
BPF_TRACE_FENTRY = 24
BPF_LSM_MAC = 27
BPF_PERF_EVENT = 41
BPF_TCX_INGRESS = 46  # 6.6+, absent from the 6.1 headers

# enum bpf_map_type values whose lookups return one value per possible CPU.
PERCPU_MAP_TYPES = frozenset({5, 6, 10, 21})  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH,
#                                               PERCPU_CGROUP_STORAGE
