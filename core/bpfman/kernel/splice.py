"""Kernel side of the static multi-prog dispatcher (see `bpfman.dispatch`).

`relocated_program` reopens the ELF object a program was loaded from, makes
libbpf use the very maps the loaded program uses (so state is shared), loads
it (which verifies it standalone once more) and hands back its relocated
instructions. `load_program_insns` loads raw instructions as one program,
and `test_run` runs a program with BPF_PROG_TEST_RUN.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import attrs

from bpfman.kernel import pins
from bpfman.kernel._sys import libbpf
from bpfman.kernel._sys import progload as _sp
from bpfman.kernel._sys.errors import SysError, describe_errno, errno_name, kernel_errors
from bpfman.kernel._sys.structs import BpfMapInfo, BpfProgLoadOpts
from bpfman.kernel.info import program_info_of_fd
from bpfman.kernel.objects import _maps, _opened, _programs, map_pin_name
from bpfman.model.errors import InvalidArgument, KernelError, VerifierRejected

LOG_SIZE = 4 << 20


@attrs.frozen
class RelocatedProgram:
    """Instructions of one loaded component, ready to splice.

    :ivar insns: the final instructions (8 bytes each) with map fds of this
        process embedded; valid while the `relocated_program` block is open.
    :ivar prog_flags: libbpf's load flags (BPF_F_XDP_HAS_FRAGS...).
    :ivar gpl_compatible: what the kernel recorded for the loaded program.
    """

    name: str
    insns: bytes
    prog_type: int
    expected_attach_type: int
    prog_flags: int
    gpl_compatible: bool


def _name(raw: bytes | None) -> str:
    return raw.decode(errors="replace") if raw else ""


@contextmanager
def relocated_program(path: Path | str, name: str, program_pin: Path | str,
                      map_pin_dir: Path | str | None = None) -> Iterator[RelocatedProgram]:
    """Reopen `path`, reuse the maps of the program pinned at `program_pin`
    (loaded from that object under `name`), load and yield its instructions.

    Maps are matched first by pin in `map_pin_dir` (when the pinned map is
    one the program uses), then by kernel map name among the program's maps.
    Maps the program does not use are created afresh and freed on exit.

    :raises InvalidArgument: the object is gone or no longer has `name`.
    :raises VerifierRejected: the reopened program no longer verifies.
    """
    with reloaded(path, name, program_pin, map_pin_dir) as (prog, gpl):
        count = int(_sp.bpf_program__insn_cnt(prog))
        address = _sp.bpf_program__insns(prog)
        insns = ctypes.string_at(address, count * _sp.BPF_INSN_SIZE)
        yield RelocatedProgram(
            name=name,
            insns=insns,
            prog_type=int(libbpf.bpf_program__type(prog)),
            expected_attach_type=int(_sp.bpf_program__expected_attach_type(prog)),
            prog_flags=int(_sp.bpf_program__flags(prog)),
            gpl_compatible=gpl,
        )


@contextmanager
def reloaded(path: Path | str, name: str, program_pin: Path | str,
             map_pin_dir: Path | str | None = None,
             configure: Callable[[int], None] | None = None) -> Iterator[tuple[int, bool]]:
    """Reopen and load program `name` of `path` sharing the maps of the
    program pinned at `program_pin` (see `relocated_program`); `configure`
    gets the libbpf bpf_program before load (set type, attach target...).
    Yields (bpf_program, the loaded program's gpl_compatible) while the
    object is open."""
    path = Path(path)
    with pins.open_pinned(program_pin, "prog") as loaded_fd, ExitStack() as stack:
        loaded = program_info_of_fd(loaded_fd)
        used: dict[str, int] = {}  # kernel map name -> fd (held in `stack`)
        used_ids: dict[int, int] = {}
        for map_id in loaded.map_ids:
            with kernel_errors("bpf_map_get_fd_by_id", map_id=map_id):
                fd = libbpf.bpf_map_get_fd_by_id(map_id)
            stack.callback(os.close, fd)
            info = BpfMapInfo()
            pins.object_info(fd, info, "bpf_obj_get_info_by_fd(map)")
            used[_name(info.name)] = fd
            used_ids[map_id] = fd
        try:
            obj = stack.enter_context(_opened(path))
        except InvalidArgument as exc:
            raise InvalidArgument(
                f"cannot re-read {path} to build a dispatcher: {exc.message}",
                field="program", path=str(path)) from exc
        prog = None
        for p in _programs(obj):
            keep = _name(libbpf.bpf_program__name(p)) == name
            libbpf.bpf_program__set_autoload(p, keep)
            if keep:
                prog = p
        if prog is None:
            raise InvalidArgument(f"{path} no longer has a program {name!r}",
                                  field="program", path=str(path))
        for m in _maps(obj):
            libbpf.bpf_map__set_pin_path(m, None)
            map_name = _name(libbpf.bpf_map__name(m))
            fd = _pinned_used_map(map_pin_dir, map_name, used_ids, stack)
            if fd is None:
                fd = used.get(map_name[:15])
            if fd is not None:
                with kernel_errors("bpf_map__reuse_fd", map=map_name):
                    libbpf.bpf_map__reuse_fd(m, fd)
        if configure is not None:
            configure(prog)
        log = ctypes.create_string_buffer(LOG_SIZE)
        libbpf.bpf_program__set_log_buf(prog, log, LOG_SIZE)
        with libbpf.captured_messages() as messages:
            try:
                libbpf.bpf_object__load(obj)
            except SysError as exc:
                err = exc.errno or errno.EIO
                lines = log.value.decode(errors="replace").splitlines()
                if lines:
                    raise VerifierRejected(name, err, lines) from exc
                said = "; ".join(m.strip() for m in messages[-3:])
                raise KernelError("program load", err,
                                  f"reloading {name!r} from {path} failed: {errno_name(err)}"
                                  f" ({describe_errno(err)}); libbpf: {said}") from exc
        yield prog, loaded.gpl_compatible


def _pinned_used_map(map_pin_dir: Path | str | None, map_name: str,
                     used_ids: dict[int, int], stack: ExitStack) -> int | None:
    if map_pin_dir is None:
        return None
    pin = Path(map_pin_dir) / map_pin_name(map_name)
    if not pins.pin_exists(pin):
        return None
    fd = stack.enter_context(pins.open_pinned(pin, "map"))
    info = BpfMapInfo()
    pins.object_info(fd, info, "bpf_obj_get_info_by_fd(map)")
    return fd if int(info.id) in used_ids else None


def load_program_insns(prog_type: int, name: str, insns: bytes, *, license: str = "GPL",
                       prog_flags: int = 0, expected_attach_type: int = 0) -> int:
    """Load raw instructions as one program (no BTF); returns its fd.

    :raises VerifierRejected: with the verifier's log.
    """
    if len(insns) % _sp.BPF_INSN_SIZE:
        raise InvalidArgument("instructions must be a multiple of 8 bytes", field="insns")
    buf = ctypes.create_string_buffer(insns, len(insns))
    opts = BpfProgLoadOpts(sz=ctypes.sizeof(BpfProgLoadOpts), prog_flags=prog_flags,
                           expected_attach_type=expected_attach_type)
    args = (prog_type, name.encode()[:15], license.encode(), buf, len(insns) // 8)
    try:
        return int(libbpf.bpf_prog_load(*args, ctypes.byref(opts)))
    except SysError as first:
        log = ctypes.create_string_buffer(LOG_SIZE)
        opts.log_buf = ctypes.cast(log, ctypes.c_char_p)
        opts.log_size = LOG_SIZE
        opts.log_level = 1
        try:
            return int(libbpf.bpf_prog_load(*args, ctypes.byref(opts)))
        except SysError as exc:
            lines = log.value.decode(errors="replace").splitlines()
            if lines:
                raise VerifierRejected(name, exc.errno or errno.EINVAL, lines) from exc
            with kernel_errors("program load", program=name):
                raise first from None
    raise AssertionError("unreachable")


@attrs.frozen
class TestRunResult:
    retval: int
    duration_ns: int  # mean per repetition, as the kernel measured it
    data_out: bytes


def test_run_fd(prog_fd: int, data: bytes, *, repeat: int = 1) -> TestRunResult:
    """BPF_PROG_TEST_RUN on a program fd with packet `data`."""
    data_in = ctypes.create_string_buffer(bytes(data), len(data))
    out = ctypes.create_string_buffer(len(data) + 4096)
    opts = _sp.BpfTestRunOpts(
        sz=ctypes.sizeof(_sp.BpfTestRunOpts),
        data_in=ctypes.addressof(data_in), data_size_in=len(data),
        data_out=ctypes.addressof(out), data_size_out=len(out), repeat=repeat,
    )
    with kernel_errors("bpf_prog_test_run"):
        _sp.bpf_prog_test_run_opts(prog_fd, ctypes.byref(opts))
    return TestRunResult(int(opts.retval), int(opts.duration),
                         out.raw[: opts.data_size_out])


def test_run(program: Path | str | int, data: bytes, *, repeat: int = 1) -> TestRunResult:
    """BPF_PROG_TEST_RUN on a program given by pin path or kernel id."""
    if isinstance(program, int):
        with kernel_errors("bpf_prog_get_fd_by_id", program_id=program):
            fd = libbpf.bpf_prog_get_fd_by_id(program)
        try:
            return test_run_fd(fd, data, repeat=repeat)
        finally:
            os.close(fd)
    with pins.open_pinned(program, "prog") as fd:
        return test_run_fd(fd, data, repeat=repeat)


test_run.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
test_run_fd.__test__ = False  # type: ignore[attr-defined]
TestRunResult.__test__ = False  # type: ignore[attr-defined]
