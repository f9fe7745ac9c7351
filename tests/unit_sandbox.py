"""Run a command inside an approximation of packaging/bpfman.service's sandbox,
without systemd (tests/kernel/test_unit_capabilities.py).

    setpriv --bounding-set=... --inh-caps=-all --no-new-privs -- \\
        python unit_sandbox.py SPEC_JSON CMD...

SPEC_JSON: {"allow": [syscalls], "families": [AF numbers], "netns": CLONE_NEWNET,
"rw": [paths], "umask": UMask=}. In order, as root with the capabilities setpriv left:

1. the daemon's bpffs (``--bpffs`` in CMD) is mounted on the host, as the
   unit's ``ExecStartPre=+`` does;
2. a mount namespace of its own (slave: host mounts still propagate in), with
   everything read-only (ProtectSystem=strict, ProtectHome=read-only) except
   /dev and /proc (left alone by systemd), /proc/sys read-only
   (ProtectKernelTunables=), and writable: the daemon's socket directory,
   state directory and bpffs (RuntimeDirectory=, StateDirectory=) and the
   unit's other ReadWritePaths= (``rw``);
3. PR_SET_MDWE (MemoryDenyWriteExecute=);
4. a seccomp filter as systemd builds it: SystemCallFilter= answering EPERM
   (SystemCallErrorNumber=), this architecture only (SystemCallArchitectures=
   native, libseccomp's default), socket() only for RestrictAddressFamilies=,
   setns() only into network namespaces (RestrictNamespaces=net);
5. UMask=, then exec CMD.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import sys

_libc = ctypes.CDLL(None, use_errno=True)
AT_FDCWD, AT_RECURSIVE = -100, 0x8000
MOUNT_ATTR_RDONLY = 1
MS_BIND, MS_REC, MS_SLAVE = 4096, 16384, 1 << 19
CLONE_NEWNS = 0x00020000
SYS_MOUNT_SETATTR = 442  # the same number on every architecture
BPF_FS_MAGIC = 0xCAFE4A11


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        sys.exit(f"unit_sandbox: {what}: {os.strerror(err)}")


class _MountAttr(ctypes.Structure):
    _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]


def _enc(text: str | None) -> bytes | None:
    return text.encode() if text is not None else None


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None = None) -> None:
    enc = _enc
    _check(_libc.mount(enc(source), target.encode(), enc(fstype), ctypes.c_ulong(flags),
                       enc(data)), f"mount {target}")


def _set_readonly(path: str, readonly: bool) -> None:
    attr = _MountAttr(MOUNT_ATTR_RDONLY if readonly else 0, 0 if readonly else MOUNT_ATTR_RDONLY)
    _check(_libc.syscall(SYS_MOUNT_SETATTR, AT_FDCWD, path.encode(), AT_RECURSIVE,
                         ctypes.byref(attr), ctypes.sizeof(attr)), f"mount_setattr {path}")


def _option(cmd: list[str], name: str) -> str | None:
    return cmd[cmd.index(name) + 1] if name in cmd[:-1] else None


def _is_bpffs(path: str) -> bool:
    buf = (ctypes.c_long * 32)()  # struct statfs; f_type comes first
    return _libc.statfs(path.encode(), buf) == 0 and buf[0] == BPF_FS_MAGIC


def file_system(cmd: list[str], rw: list[str]) -> None:
    bpffs = _option(cmd, "--bpffs")
    if bpffs:  # 1. on the host, before the namespace exists
        os.makedirs(bpffs, mode=0o700, exist_ok=True)
        if not _is_bpffs(bpffs):
            _mount("bpffs", bpffs, "bpf", 0, "mode=0700")
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")  # 2.
    _mount(None, "/", None, MS_REC | MS_SLAVE)
    _set_readonly("/", True)
    for path in ("/dev", "/proc"):
        _set_readonly(path, False)
    _mount("/proc/sys", "/proc/sys", None, MS_BIND | MS_REC)
    _set_readonly("/proc/sys", True)
    socket_path = _option(cmd, "--socket")
    writable = [*rw, _option(cmd, "--state-dir"), bpffs,
                os.path.dirname(socket_path) if socket_path else None]
    for path in writable:
        if path and os.path.isdir(path):
            _mount(path, path, None, MS_BIND | MS_REC)
            _set_readonly(path, False)


def seccomp(allow: list[str], families: list[int], netns: int) -> None:
    sc = ctypes.CDLL("libseccomp.so.2")
    sc.seccomp_init.restype = ctypes.c_void_p
    sc.seccomp_init.argtypes = [ctypes.c_uint32]
    sc.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    sc.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                          ctypes.c_uint, ctypes.c_void_p]
    sc.seccomp_load.argtypes = [ctypes.c_void_p]

    class Cmp(ctypes.Structure):  # struct scmp_arg_cmp
        _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                    ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]

    allow_action, eq = 0x7FFF0000, 4  # SCMP_ACT_ALLOW, SCMP_CMP_EQ
    ctx = sc.seccomp_init(0x00050000 | errno.EPERM)  # SCMP_ACT_ERRNO(EPERM)

    def add(name: str, *cmps: Cmp) -> None:
        nr = sc.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            return  # no such call on this architecture
        arr = (Cmp * max(len(cmps), 1))(*cmps)
        if sc.seccomp_rule_add_array(ctx, allow_action, nr, len(cmps), arr) != 0:
            sys.exit(f"unit_sandbox: seccomp_rule_add {name}")

    for name in allow:
        if name not in ("socket", "setns"):
            add(name)
    for family in families:
        add("socket", Cmp(0, eq, family, 0))
    add("setns", Cmp(1, eq, netns, 0))
    if sc.seccomp_load(ctx) != 0:
        sys.exit("unit_sandbox: seccomp_load failed")


def main() -> None:
    spec, cmd = json.loads(sys.argv[1]), sys.argv[2:]
    file_system(cmd, spec["rw"])
    _check(_libc.prctl(65, 1, 0, 0, 0), "PR_SET_MDWE")  # PR_MDWE_REFUSE_EXEC_GAIN
    seccomp(spec["allow"], spec["families"], spec["netns"])
    os.umask(spec["umask"])
    os.execv(cmd[0], cmd)


if __name__ == "__main__":
    main()
