"""BPF ELF objects: what is in one (specs) and loading it (pinned result).

`inspect_object` opens an object with libbpf without loading it and reports
programs, maps and global variables (from the object's BTF DATASECs).
`load_object` loads the selected programs and pins them, plus the object's
maps, under the daemon's bpffs. It is atomic: on any failure every pin it
made is removed and nothing stays loaded. On success the bpf_object is
closed; the pins keep programs and maps alive.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import attrs

from bpfman.kernel import pins
from bpfman.kernel._sys import libbpf
from bpfman.kernel._sys import progload as _sp
from bpfman.kernel._sys.errors import SysError, describe_errno, errno_name, kernel_errors
from bpfman.kernel._sys.structs import (
    BTF_KIND_DATASEC,
    BTF_KIND_VAR,
    BpfMapInfo,
    BtfType,
    BtfVarSecinfo,
)
from bpfman.kernel.bpffs import Bpffs
from bpfman.kernel.features import probe_features
from bpfman.model.errors import (
    AttachTargetNotFound,
    InvalidArgument,
    KernelError,
    KernelFeatureMissing,
    PermissionDenied,
    VerifierRejected,
)

# Verifier log buffer per selected program: the first load uses the small
# one; a log truncated by it (ENOSPC) triggers one retry with the large one.
LOG_SIZE = 1 << 20
LOG_SIZE_RETRY = 16 << 20
# Internal maps libbpf fills itself: not settable as global data.
_NOT_GLOBAL_DATA = (".kconfig", ".ksyms")


# --- specs (no fds) -------------------------------------------------------------


@attrs.frozen
class ProgramSpec:
    name: str
    section: str
    kernel_type: str  # libbpf's prog type name: "tracepoint", "xdp", "sched_cls", ...


@attrs.frozen
class MapSpec:
    name: str
    type: str  # libbpf's map type name: "array", "hash", ...
    key_size: int
    value_size: int
    max_entries: int
    internal: bool  # .rodata/.data/.bss/.kconfig maps libbpf makes for globals


@attrs.frozen
class GlobalVar:
    name: str
    section: str  # ".rodata", ".data", ".bss" (or ".data.<name>" etc.)
    offset: int
    size: int


@attrs.frozen
class ObjectSpec:
    path: Path
    programs: tuple[ProgramSpec, ...]
    maps: tuple[MapSpec, ...]
    globals: dict[str, GlobalVar]


# --- load options and result ---------------------------------------------------


@attrs.frozen
class ProgramLoad:
    """One program to load.

    :param kernel_type: override the prog type libbpf derived from the
        section ("tracepoint", "kprobe", ...; libbpf's names).
    :param attach_func: fentry/fexit/freplace target function
        (bpf_program__set_attach_target).
    :param attach_program_pin: for freplace (ext) programs, the pin of the
        program whose function `attach_func` replaces.
    """

    name: str
    kernel_type: str | None = None
    attach_func: str | None = None
    attach_program_pin: Path | None = None


@attrs.frozen
class LoadOptions:
    """:param global_data: global variable name -> its new initial bytes.
    :param reuse_maps_dir: share maps with an earlier load: every non-internal
        map is taken from the pin of the same name in this directory, which
        must be `bpffs.maps_dir(owner_id)`."""

    path: Path = attrs.field(converter=Path)
    programs: tuple[ProgramLoad, ...]
    global_data: dict[str, bytes]
    bpffs: Bpffs
    reuse_maps_dir: Path | None = None
    #: the object's bytes, already read (as the caller) from `path`, which then
    #: only names the object: libbpf never opens the file itself.
    data: bytes | None = attrs.field(default=None, repr=False)
    #: False: refuse programs that call the helpers reading kernel or user
    #: memory, or use kernel symbols (kfuncs, __ksym variables); see
    #: `refuse_memory_reads`.
    kernel_reads: bool = True


@attrs.frozen
class LoadedObject:
    programs: dict[str, int]  # program name -> kernel program id
    map_owner_id: int
    maps_dir: Path
    map_ids: dict[str, int]  # libbpf map name -> kernel map id


# --- helpers ---------------------------------------------------------------------


def repin_maps(map_ids: list[int], directory: Path) -> list[str]:
    """Pin the maps with these ids in `directory` again, by the kernel's map
    names (a maps directory removed by hand, while the programs still hold
    the maps). Returns the pin names. The kernel keeps at most 15
    characters of a name: a longer map name comes back truncated.
    """
    names = []
    for map_id in sorted(set(map_ids)):
        with kernel_errors("bpf_map_get_fd_by_id", map_id=map_id):
            fd = libbpf.bpf_map_get_fd_by_id(map_id)
        try:
            info = BpfMapInfo()
            pins.object_info(fd, info, "bpf_obj_get_info_by_fd(map)")
            name = map_pin_name(info.name.decode(errors="replace"))
            pins.pin_fd(fd, directory / name)
            names.append(name)
        finally:
            os.close(fd)
    return names


def map_pin_name(map_name: str) -> str:
    """bpffs names may not contain '.', so internal maps such as
    "tp_count.rodata" are pinned as "tp_count_rodata"."""
    return map_name.replace(".", "_")


def _decode(raw: bytes | None) -> str:
    return raw.decode(errors="replace") if raw else ""


def _check_readable(path: Path) -> None:
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise InvalidArgument(
            f"cannot read BPF object {path}: {exc.strerror}", field="path", path=str(path)
        ) from exc
    if magic != b"\x7fELF":
        raise InvalidArgument(
            f"{path} is not an ELF file (not a BPF object)", field="path", path=str(path)
        )


def _open_mem(path: Path, data: bytes) -> int:
    # The name bpf_object__open_file would give (the file name up to its first
    # dot): the internal maps (.rodata, .data, .bss) are named after it.
    name = os.fsencode(path.name.split(".", 1)[0])
    opts = libbpf.BpfObjectOpenOpts(sz=ctypes.sizeof(libbpf.BpfObjectOpenOpts),
                                    object_name=name)
    return int(libbpf.bpf_object__open_mem(data, len(data), ctypes.byref(opts)))


@contextmanager
def _opened(path: Path, data: bytes | None = None) -> Iterator[int]:
    """Open the object without loading (from `data` when given, else from the
    file); closed when the block ends."""
    if data is None:
        _check_readable(path)
    elif data[:4] != b"\x7fELF":
        raise InvalidArgument(
            f"{path} is not an ELF file (not a BPF object)", field="path", path=str(path)
        )
    with libbpf.captured_messages() as messages:
        try:
            obj = (libbpf.bpf_object__open_file(os.fsencode(path), None) if data is None
                   else _open_mem(path, data))
        except SysError as exc:
            said = messages[-1].strip() if messages else describe_errno(exc.errno or 0)
            raise InvalidArgument(
                f"{path} is not a loadable BPF object: {said}",
                field="path",
                path=str(path),
                libbpf_log=messages,
            ) from exc
    try:
        yield obj
    finally:
        libbpf.bpf_object__close(obj)


def _programs(obj: int) -> Iterator[int]:
    prog = libbpf.bpf_object__next_program(obj, None)
    while prog:
        yield prog
        prog = libbpf.bpf_object__next_program(obj, prog)


def _maps(obj: int) -> Iterator[int]:
    m = libbpf.bpf_object__next_map(obj, None)
    while m:
        yield m
        m = libbpf.bpf_object__next_map(obj, m)


def _btf_type(btf: int, type_id: int) -> BtfType:
    return BtfType.from_address(libbpf.btf__type_by_id(btf, type_id))


def _globals(obj: int) -> dict[str, GlobalVar]:
    """Variables of every DATASEC that has an internal map (so its initial
    value can be set). libbpf has already fixed up offsets at open time."""
    btf = libbpf.bpf_object__btf(obj)
    if not btf:
        return {}
    found: dict[str, GlobalVar] = {}
    ambiguous: set[str] = set()
    for type_id in range(1, libbpf.btf__type_cnt(btf)):
        sec = _btf_type(btf, type_id)
        if sec.kind != BTF_KIND_DATASEC:
            continue
        section = _decode(libbpf.btf__name_by_offset(btf, sec.name_off))
        if section in _NOT_GLOBAL_DATA or not _internal_map(obj, section):
            continue
        # The btf_var_secinfo array follows the 12-byte btf_type.
        base = ctypes.addressof(sec) + ctypes.sizeof(BtfType)
        for i in range(sec.vlen):
            info = BtfVarSecinfo.from_address(base + i * ctypes.sizeof(BtfVarSecinfo))
            var = _btf_type(btf, info.type)
            if var.kind != BTF_KIND_VAR:
                continue
            name = _decode(libbpf.btf__name_by_offset(btf, var.name_off))
            if name in found:
                ambiguous.add(name)  # two static variables with one name
            found[name] = GlobalVar(name, section, int(info.offset), int(info.size))
    for name in ambiguous:
        del found[name]
    return found


def _internal_map(obj: int, section: str) -> int | None:
    # libbpf finds an internal map by its ELF section name when it starts with '.'.
    m = libbpf.bpf_object__find_map_by_name(obj, section.encode())
    return m if m and libbpf.bpf_map__is_internal(m) else None


# Sections newer than the system's libbpf (1.1 predates netfilter, Linux
# 6.4): section -> (prog type, expected attach type), set by the loader.
_NEWER_SECTIONS = {"netfilter": (32, 45)}


def _newer_section(prog: int) -> tuple[int, int] | None:
    if libbpf.bpf_program__type(prog) != 0:  # libbpf knew the section
        return None
    return _NEWER_SECTIONS.get(_decode(libbpf.bpf_program__section_name(prog)))


def _program_spec(prog: int) -> ProgramSpec:
    newer = _newer_section(prog)
    prog_type = newer[0] if newer else libbpf.bpf_program__type(prog)
    return ProgramSpec(
        name=_decode(libbpf.bpf_program__name(prog)),
        section=_decode(libbpf.bpf_program__section_name(prog)),
        kernel_type=libbpf.prog_type_name(prog_type),
    )


def _map_spec(m: int) -> MapSpec:
    return MapSpec(
        name=_decode(libbpf.bpf_map__name(m)),
        type=libbpf.map_type_name(libbpf.bpf_map__type(m)),
        key_size=int(libbpf.bpf_map__key_size(m)),
        value_size=int(libbpf.bpf_map__value_size(m)),
        max_entries=int(libbpf.bpf_map__max_entries(m)),
        internal=bool(libbpf.bpf_map__is_internal(m)),
    )


def inspect_object(path: Path | str, data: bytes | None = None) -> ObjectSpec:
    """Programs, maps and global variables of a BPF ELF object (not loaded).

    :raises InvalidArgument: (field "path") unreadable, not ELF, or not a
        BPF object libbpf can open.
    """
    path = Path(path)
    with _opened(path, data) as obj:
        return ObjectSpec(
            path=path,
            programs=tuple(_program_spec(p) for p in _programs(obj)),
            maps=tuple(_map_spec(m) for m in _maps(obj)),
            globals=_globals(obj),
        )


# --- loading ---------------------------------------------------------------------


class _LogTruncated(Exception):
    """The verifier log did not fit: retry the whole load with a bigger buffer."""


def load_object(options: LoadOptions) -> LoadedObject:
    """Load the selected programs of an object and pin them (see module doc).

    :raises InvalidArgument: bad path, program name, kernel_type, global data
        or map owner (the `field` names which).
    :raises VerifierRejected: with the verifier log lines.
    :raises KernelFeatureMissing: the kernel refuses this program type
        (fentry/freplace under lockdown).
    :raises KernelError: any other load or pin failure.
    """
    _validate(options)
    try:
        return _load(options, LOG_SIZE)
    except _LogTruncated:
        return _load(options, LOG_SIZE_RETRY)


def _validate(options: LoadOptions) -> None:
    if not options.programs:
        raise InvalidArgument("select at least one program to load", field="programs")
    names = [p.name for p in options.programs]
    if len(set(names)) != len(names):
        raise InvalidArgument("a program is selected twice", field="programs")
    if options.reuse_maps_dir is not None:
        _reused_owner_id(options)


def _reused_owner_id(options: LoadOptions) -> int:
    reuse = Path(options.reuse_maps_dir or "")
    if reuse.name.isdigit() and options.bpffs.maps_dir(int(reuse.name)) == reuse:
        return int(reuse.name)
    raise InvalidArgument(
        f"{reuse} is not a maps directory of {options.bpffs.root}",
        field="map_owner_id",
        maps_dir=str(reuse),
    )


def _load(options: LoadOptions, log_size: int) -> LoadedObject:
    # `fds` closes at the end in any case; `undo` (pins) only on failure.
    with _opened(options.path, options.data) as obj, ExitStack() as fds, ExitStack() as undo:
        by_name = {_decode(libbpf.bpf_program__name(p)): p for p in _programs(obj)}
        selected = _select_programs(options, by_name, fds)
        logs = {name: ctypes.create_string_buffer(log_size) for name in selected}
        for name, prog in selected.items():
            # Level 0 + buffer: libbpf loads without a log and retries with
            # level 1 only when the load fails, so success costs nothing.
            libbpf.bpf_program__set_log_buf(prog, logs[name], log_size)
        _apply_global_data(obj, options.global_data)
        for m in _maps(obj):
            # No libbpf auto-pinning (LIBBPF_PIN_BY_NAME to /sys/fs/bpf):
            # every pin path comes from bpffs.py.
            libbpf.bpf_map__set_pin_path(m, None)
        if options.reuse_maps_dir is not None:
            _reuse_maps(obj, options.reuse_maps_dir)

        if not options.kernel_reads:
            refuse_memory_reads(obj, selected)
        _load_programs(obj, options, selected, logs)

        program_ids: dict[str, int] = {}
        for name, prog in selected.items():
            fd = libbpf.bpf_program__fd(prog)
            program_id = pins.program_id_of_fd(fd)
            pin = options.bpffs.program_pin(program_id)
            pins.pin_fd(fd, pin)
            undo.callback(pins.remove_pin, pin)
            program_ids[name] = program_id

        map_ids = {_decode(libbpf.bpf_map__name(m)): _map_id(m) for m in _maps(obj)}
        if options.reuse_maps_dir is not None:
            owner_id = _reused_owner_id(options)
            maps_dir = options.reuse_maps_dir
        else:
            owner_id = program_ids[options.programs[0].name]
            maps_dir = options.bpffs.maps_dir(owner_id)
            _pin_maps(obj, options.bpffs, owner_id, undo)
        undo.pop_all()
        return LoadedObject(
            programs=program_ids, map_owner_id=owner_id, maps_dir=maps_dir, map_ids=map_ids
        )


def _select_programs(
    options: LoadOptions, by_name: dict[str, int], fds: ExitStack
) -> dict[str, int]:
    types = libbpf.prog_types_by_name()
    selected: dict[str, int] = {}
    for i, want in enumerate(options.programs):
        prog = by_name.get(want.name)
        if prog is None:
            raise InvalidArgument(
                f"no program {want.name!r} in {options.path}"
                f" (available: {', '.join(sorted(by_name)) or 'none'})",
                field=f"programs[{i}].name",
                available=sorted(by_name),
            )
        newer = _newer_section(prog)
        if newer is not None:
            libbpf.bpf_program__set_type(prog, newer[0])
            _sp.bpf_program__set_expected_attach_type(prog, newer[1])
        if want.kernel_type is not None and newer is None:
            prog_type = types.get(want.kernel_type)
            if prog_type is None or prog_type == 0:
                raise InvalidArgument(
                    f"unknown kernel program type {want.kernel_type!r}",
                    field=f"programs[{i}].kernel_type",
                    known=sorted(t for t in types if t != "unspec"),
                )
            libbpf.bpf_program__set_type(prog, prog_type)
        if want.attach_func is not None or want.attach_program_pin is not None:
            _set_attach_target(prog, want, i, fds)
        selected[want.name] = prog
    for name, prog in by_name.items():
        libbpf.bpf_program__set_autoload(prog, name in selected)
    return selected


def _set_attach_target(prog: int, want: ProgramLoad, index: int, fds: ExitStack) -> None:
    """fentry/fexit/freplace target. libbpf keeps the target program's fd
    and uses it at load time, so it stays open in `fds` until then."""
    func = want.attach_func.encode() if want.attach_func else None

    def not_found(_exc: SysError) -> AttachTargetNotFound:
        return AttachTargetNotFound(
            f"no BTF function {want.attach_func!r} to attach {want.name!r} to",
            function=want.attach_func,
            field=f"programs[{index}].attach_func",
        )

    target_fd = 0
    if want.attach_program_pin is not None:
        target_fd = fds.enter_context(pins.open_pinned(want.attach_program_pin, "prog"))
    on = {errno.ENOENT: not_found, errno.ESRCH: not_found}
    with libbpf.captured_messages(), kernel_errors(
        "bpf_program__set_attach_target", on, program=want.name
    ):
        libbpf.bpf_program__set_attach_target(prog, target_fd, func)


def _apply_global_data(obj: int, global_data: dict[str, bytes]) -> None:
    if not global_data:
        return
    variables = _globals(obj)
    # Edit a copy of each section's initial value, then hand it back.
    images: dict[str, tuple[int, bytearray]] = {}
    for name, value in global_data.items():
        var = variables.get(name)
        if var is None:
            raise InvalidArgument(
                f"no global variable {name!r} in the object"
                f" (available: {', '.join(sorted(variables)) or 'none'})",
                field=f"global_data.{name}",
                available=sorted(variables),
            )
        if len(value) != var.size:
            raise InvalidArgument(
                f"global {name!r} is {var.size} bytes, got {len(value)}",
                field=f"global_data.{name}",
                expected_size=var.size,
                size=len(value),
            )
        if var.section not in images:
            m = _internal_map(obj, var.section)
            assert m is not None  # _globals only lists sections with a map
            size = ctypes.c_size_t()
            data = libbpf.bpf_map__initial_value(m, ctypes.byref(size))
            if not data:
                raise KernelError("bpf_map__initial_value", errno.EINVAL, section=var.section)
            images[var.section] = (m, bytearray(ctypes.string_at(data, size.value)))
        images[var.section][1][var.offset : var.offset + var.size] = value
    for section, (m, image) in images.items():
        buf = (ctypes.c_char * len(image)).from_buffer(image)
        with kernel_errors("bpf_map__set_initial_value", section=section):
            libbpf.bpf_map__set_initial_value(m, buf, len(image))


def _reuse_maps(obj: int, maps_dir: Path) -> None:
    for m in _maps(obj):
        if libbpf.bpf_map__is_internal(m):
            continue  # globals belong to each load, never shared
        spec = _map_spec(m)
        pin = maps_dir / map_pin_name(spec.name)
        if not pins.pin_exists(pin):
            raise InvalidArgument(
                f"map owner has no map {spec.name!r} to share (no pin {pin})",
                field="map_owner_id",
                map=spec.name,
            )
        with pins.open_pinned(pin, "map") as fd:
            _check_compatible(spec, fd, pin)
            with kernel_errors("bpf_map__reuse_fd", map=spec.name):
                libbpf.bpf_map__reuse_fd(m, fd)  # dups fd; ours is closed on exit


def _check_compatible(spec: MapSpec, fd: int, pin: Path) -> None:
    info = BpfMapInfo()
    pins.object_info(fd, info, "bpf_obj_get_info_by_fd(map)")
    theirs = (libbpf.map_type_name(info.type), info.key_size, info.value_size, info.max_entries)
    ours = (spec.type, spec.key_size, spec.value_size, spec.max_entries)
    if theirs != ours:
        raise InvalidArgument(
            f"map {spec.name!r} cannot be shared: the owner's is"
            f" (type, key, value, max_entries)={theirs}, this object's is {ours}",
            field="map_owner_id",
            map=spec.name,
            pin=str(pin),
        )


# Helpers that read kernel or user memory. The kernel offers them to every
# program type loaded with CAP_PERFMON (bpf_base_func_proto), which the daemon
# holds; the rest are tracing-only and listed for completeness.
MEMORY_READING_HELPERS = {
    4: "bpf_probe_read", 6: "bpf_trace_printk", 35: "bpf_get_current_task",
    45: "bpf_probe_read_str", 112: "bpf_probe_read_user", 113: "bpf_probe_read_kernel",
    114: "bpf_probe_read_user_str", 115: "bpf_probe_read_kernel_str",
    149: "bpf_snprintf_btf", 153: "bpf_per_cpu_ptr", 154: "bpf_this_cpu_ptr",
    158: "bpf_get_current_task_btf", 175: "bpf_task_pt_regs", 177: "bpf_trace_vprintk",
}
_BPF_CALL = 0x85  # BPF_JMP | BPF_CALL


class _Insn(ctypes.Structure):
    _fields_ = (("code", ctypes.c_uint8), ("regs", ctypes.c_uint8),
                ("off", ctypes.c_int16), ("imm", ctypes.c_int32))


def refuse_memory_reads(obj: int, selected: dict[str, int]) -> None:
    """Raise PermissionDenied if a selected program could read memory that is
    not its own: a call to a helper in MEMORY_READING_HELPERS, or any kernel
    symbol (the object's ``.ksyms`` section: kfuncs, kernel variables).

    Why not drop CAP_PERFMON for the load instead: the kernel ties its
    pointer-arithmetic rules to it too, so ordinary packet parsing
    (``data_end - data``) would be refused."""
    btf = libbpf.bpf_object__btf(obj)
    try:
        ksyms = bool(btf) and libbpf.btf__find_by_name_kind(
            btf, b".ksyms", BTF_KIND_DATASEC) >= 0
    except SysError:  # ENOENT: no such section
        ksyms = False
    if ksyms:
        raise PermissionDenied("the object uses kernel symbols (__ksym: kfuncs or kernel"
                               " variables), which only callers granted a tracing type may load")
    for name, prog in selected.items():
        count = libbpf.bpf_program__insn_cnt(prog)
        insns = ctypes.cast(libbpf.bpf_program__insns(prog), ctypes.POINTER(_Insn))
        for i in range(count):
            insn = insns[i]
            # src_reg 0: a helper call (1 is a call of a subprogram, 2 a kfunc).
            if insn.code == _BPF_CALL and insn.regs >> 4 == 0 and (
                    insn.imm in MEMORY_READING_HELPERS):
                helper = MEMORY_READING_HELPERS[insn.imm]
                raise PermissionDenied(
                    f"program {name!r} calls {helper}, which reads memory that is not its"
                    f" own: only callers granted a tracing type may load it",
                    program=name, helper=helper)


def _load_programs(
    obj: int,
    options: LoadOptions,
    selected: dict[str, int],
    logs: dict[str, ctypes.Array[ctypes.c_char]],
) -> None:
    with libbpf.captured_messages() as messages:
        try:
            libbpf.bpf_object__load(obj)
            return
        except SysError as exc:
            err = exc.errno or errno.EIO
    for name, buf in logs.items():
        text = buf.value.decode(errors="replace")
        if not text:
            continue  # only the program that failed to verify has a log
        lines = text.splitlines()
        if err == errno.ENOSPC:
            if len(buf) < LOG_SIZE_RETRY:
                raise _LogTruncated()
            # The kernel keeps the tail of an overflowing log (the part
            # that names the failure); say that the head is gone.
            lines.insert(0, f"(verifier log truncated to its last {len(buf)} bytes)")
        raise VerifierRejected(name, err, lines)
    _raise_load_error(options, selected, err, messages)


# prog type name -> KernelFeatures field a refusal (EPERM, no log) points at.
_FEATURE_OF_TYPE = {"ext": "ext_programs", "tracing": "tracing_programs",
                    "lsm": "lsm_programs"}


def _raise_load_error(
    options: LoadOptions, selected: dict[str, int], err: int, messages: list[str]
) -> None:
    said = "; ".join(line.strip() for line in messages[-3:] if line.strip())
    if err == errno.ESRCH and any("find kernel BTF type ID" in line for line in messages):
        # fentry/fexit target named in the section does not exist in vmlinux.
        raise AttachTargetNotFound(f"attach target not found: {said}", libbpf_log=messages)
    types = {libbpf.prog_type_name(libbpf.bpf_program__type(p)) for p in selected.values()}
    if err in (errno.EPERM, errno.EINVAL, errno.ENOTSUP, 524):  # 524: kernel ENOTSUPP
        features = probe_features()
        for kernel_type in sorted(types):
            feature = _FEATURE_OF_TYPE.get(kernel_type)
            if feature and not features.as_dict().get(feature, True):
                raise KernelFeatureMissing(
                    feature, features.notes.get(feature, f"{kernel_type} programs refused")
                )
    message = f"loading {options.path} failed: {errno_name(err)} ({describe_errno(err)})"
    if said:
        message = f"{message}; libbpf: {said}"
    raise KernelError("program load", err, message, libbpf_log=messages)


def _map_id(m: int) -> int:
    info = BpfMapInfo()
    pins.object_info(libbpf.bpf_map__fd(m), info, "bpf_obj_get_info_by_fd(map)")
    return int(info.id)


def _pin_maps(obj: int, bpffs: Bpffs, owner_id: int, undo: ExitStack) -> None:
    maps_dir = bpffs.maps_dir(owner_id)
    maps_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    undo.callback(pins.remove_pin_dir, maps_dir)
    for m in _maps(obj):
        name = _decode(libbpf.bpf_map__name(m))
        pins.pin_fd(libbpf.bpf_map__fd(m), bpffs.map_pin(owner_id, map_pin_name(name)))


__all__ = [
    "GlobalVar",
    "LoadOptions",
    "LoadedObject",
    "MapSpec",
    "ObjectSpec",
    "ProgramLoad",
    "ProgramSpec",
    "inspect_object",
    "load_object",
    "map_pin_name",
]
