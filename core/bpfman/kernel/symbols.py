"""Symbols: kernel functions (kprobes) and user-space files and functions (uprobes).

Kernel functions are looked up fresh on each call in /proc/kallsyms (what
exists) and, when tracefs is mounted, in its available_filter_functions
(what the tracing core can instrument), as bcc's kprobe helpers do.

User space goes through bcc's libbcc (Debian's python3-bpfcc, imported
lazily so that the rest of the kernel facade works without it):
`bcc_procutils_which_so` finds a library the way the dynamic loader does
(ld.so.cache, or the copy a process has mapped) and `bcc_resolve_symname`
turns a function name into the file offset a uprobe needs.
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bpfman.model.errors import AttachTargetNotFound, InvalidArgument, PermissionDenied

KALLSYMS = Path("/proc/kallsyms")
KPROBE_BLACKLIST = Path("/sys/kernel/debug/kprobes/blacklist")
# nm-style kallsyms types of code: global/local text and weak symbols.
_TEXT_TYPES = frozenset("tTwW")
# The library directories ld.so searches without a cache, for a container
# whose own ld.so.cache bcc cannot read.
_LIB_DIRS = (f"lib/{os.uname().machine}-linux-gnu", f"usr/lib/{os.uname().machine}-linux-gnu",
             "lib64", "usr/lib64", "lib", "usr/lib", "usr/local/lib")


# --- kernel -----------------------------------------------------------------------


def check_kernel_function(name: str, tracefs: Path | None = None) -> None:
    """Refuse a kernel function a kprobe cannot attach to.

    :param tracefs: the mounted tracefs, whose available_filter_functions
        (if present) must list `name`.
    :raises AttachTargetNotFound: not a code symbol of the running kernel,
        not traceable, or on the kprobe blacklist.
    """
    if not _kallsyms_has(name):
        raise AttachTargetNotFound(f"no kernel function {name} (see {KALLSYMS})", function=name)
    functions = tracefs / "available_filter_functions" if tracefs else None
    if functions is not None and functions.exists() and not _listed(functions, name):
        raise AttachTargetNotFound(
            f"kernel function {name} cannot be probed (not in {functions})", function=name
        )
    if KPROBE_BLACKLIST.exists() and _listed(KPROBE_BLACKLIST, name, column=1):
        raise AttachTargetNotFound(
            f"kernel function {name} is on the kprobe blacklist", function=name
        )


def _kallsyms_has(name: str) -> bool:
    for fields in _split_lines(KALLSYMS):
        # "<addr> <type> <name>[\t[module]]"
        if len(fields) >= 3 and fields[2] == name and fields[1] in _TEXT_TYPES:
            return True
    return False


def _listed(path: Path, name: str, column: int = 0) -> bool:
    return any(len(f) > column and f[column] == name for f in _split_lines(path))


def _split_lines(path: Path) -> Iterator[list[str]]:
    with open(path) as fh:
        for line in fh:
            yield line.split()


# --- user space -------------------------------------------------------------------


def _libbcc() -> Any:
    try:
        from bcc import libbcc
    except ImportError as exc:
        raise ImportError(
            "uprobe symbol resolution needs bcc's Python module (Debian: python3-bpfcc;"
            " scripts/setup.sh exposes it to the virtualenv)"
        ) from exc
    return libbcc


def check_process(pid: int, field: str = "pid") -> None:
    """:raises AttachTargetNotFound: no process `pid` (named `field` in the error)."""
    if not Path(f"/proc/{pid}").is_dir():
        raise AttachTargetNotFound(f"no process {pid} ({field})", **{field: pid})


def process_root(pid: int, field: str = "container_pid") -> Path:
    """``/proc/<pid>/root``: paths below it are resolved in that process's
    mount namespace, so they reach a container's own files.

    :raises AttachTargetNotFound: no process `pid`.
    :raises PermissionDenied: the daemon may not look into that process
        (ptrace access mode checks, e.g. a more privileged process).
    """
    check_process(pid, field)
    root = Path(f"/proc/{pid}/root")
    try:
        os.stat(root)
    except PermissionError:
        raise PermissionDenied(
            f"the daemon may not enter the mount namespace of process {pid} ({root})",
            **{field: pid},
        ) from None
    except FileNotFoundError:  # exited meanwhile
        raise AttachTargetNotFound(f"no process {pid} ({field})", **{field: pid}) from None
    return root


def resolve_user_target(target: str, container_pid: int | None = None) -> Path:
    """The file a uprobe on `target` instruments, as a path the daemon can open.

    :param target: an absolute path, or a library name (``c``, ``libc``,
        ``libc.so.6``) found the way the dynamic loader finds it.
    :param container_pid: resolve inside this process's mount namespace:
        the library it has mapped, else the one in its lib directories;
        the result is under ``/proc/<pid>/root``.
    :raises InvalidArgument: a relative path.
    :raises AttachTargetNotFound: no such file or library.
    """
    root = process_root(container_pid) if container_pid is not None else None
    if target.startswith("/"):
        path = root / target.lstrip("/") if root else Path(target)
    elif "/" in target or not target:
        raise InvalidArgument(
            f"target {target!r} must be an absolute path or a library name", field="target"
        )
    else:
        path = _find_library(target, container_pid, root)
    if not path.is_file():
        where = f" in the mount namespace of process {container_pid}" if root else ""
        raise AttachTargetNotFound(f"no file {target}{where}", target=target)
    return path


def _find_library(name: str, pid: int | None, root: Path | None) -> Path:
    # bcc wants the bare name: "libc.so.6" -> "c".
    bare = re.sub(r"\.so(\..*)?$", "", name).removeprefix("lib")
    libbcc = _libbcc()
    found = libbcc.lib.bcc_procutils_which_so(bare.encode(), pid or 0)
    if found:
        text = ctypes.cast(found, ctypes.c_char_p).value or b""
        libbcc.lib.bcc_procutils_free(found)
        path = Path(os.fsdecode(text))
        if root is None:
            return path
        # With a pid bcc prefers what the process mapped, but falls back to
        # the host's ld.so.cache: trust that only if the process maps it.
        if pid is not None and _maps_file(pid, path):
            return root / path.relative_to("/")
    if root is not None:
        for d in _LIB_DIRS:
            candidates = sorted((root / d).glob(f"lib{bare}.so*"), key=lambda p: len(p.name))
            if candidates:
                return candidates[0]
    raise AttachTargetNotFound(f"no library {name} (looked up as lib{bare}.so)", target=name)


def _maps_file(pid: int, path: Path) -> bool:
    try:
        with open(f"/proc/{pid}/maps") as fh:
            return any(line.rstrip("\n").endswith(f" {path}") for line in fh)
    except OSError:
        return False


def user_function_offset(path: Path, fn_name: str) -> int:
    """The file offset of function `fn_name` in the ELF file `path` (what a
    uprobe attaches to), from its symbol tables (debug files included).

    :raises AttachTargetNotFound: no such function symbol.
    """
    libbcc = _libbcc()
    sym = libbcc.bcc_symbol()
    rc = libbcc.lib.bcc_resolve_symname(
        os.fsencode(path), fn_name.encode(), 0, 0, None, ctypes.byref(sym)
    )
    if sym.module:
        libbcc.lib.bcc_procutils_free(sym.module)
    if rc < 0 or not sym.offset:
        raise AttachTargetNotFound(
            f"no function {fn_name} in {path}", function=fn_name, target=str(path)
        )
    return int(sym.offset)
