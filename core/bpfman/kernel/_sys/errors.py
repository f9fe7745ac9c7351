"""The one place where an errno becomes a `bpfman.model.errors` exception.

Bindings (libbpf.py, libc.py) raise `SysError`, a plain OSError that also
names the C function. Kernel-layer code wraps each step in
`kernel_errors(op, ...)`, which maps chosen errnos to domain errors and
everything else to `KernelError(op, errno)`. Domain errors raised inside
the block pass through untouched.
"""

from __future__ import annotations

import errno as _errno
import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from bpfman.model.errors import BpfmanError, KernelError

# libbpf's own error codes (enum libbpf_errno, 4000..4012); os.strerror
# knows nothing of them, so their text comes from libbpf_strerror(), which
# libbpf.py hands over when it loads (it imports this module, not the reverse).
LIBBPF_ERRNO_BASE = 4000
_libbpf_strerror: Callable[[int], str] | None = None


def use_libbpf_strerror(strerror: Callable[[int], str]) -> None:
    global _libbpf_strerror
    _libbpf_strerror = strerror


class SysError(OSError):
    """A failed C call: `errno` as usual plus `func`, the function name."""

    def __init__(self, err: int, func: str, detail: str | None = None) -> None:
        super().__init__(err, describe_errno(err))
        self.func = func
        self.detail = detail

    def __str__(self) -> str:
        extra = f": {self.detail}" if self.detail else ""
        return f"{self.func}: {errno_name(self.errno or 0)} ({self.strerror}){extra}"


def errno_name(err: int) -> str:
    fallback = f"LIBBPF_ERRNO_{err}" if err >= LIBBPF_ERRNO_BASE else str(err)
    return _errno.errorcode.get(err, fallback)


def describe_errno(err: int) -> str:
    if err >= LIBBPF_ERRNO_BASE and _libbpf_strerror is not None:
        return _libbpf_strerror(err)
    try:
        return os.strerror(err)
    except ValueError:
        return f"unknown error {err}"


Translator = Callable[[SysError], BpfmanError]


@contextmanager
def kernel_errors(
    op: str,
    on: Mapping[int, Translator] | None = None,
    **details: Any,
) -> Iterator[None]:
    """Translate a failed C call inside the block.

    :param op: what was being done, reported as ``KernelError.op``
        ("bpf_obj_pin", "program load", ...).
    :param on: errno -> factory for a domain error (ENOENT -> ProgramNotFound...).
    :param details: extra structured data attached to the KernelError.
    """
    try:
        yield
    except SysError as exc:
        err = exc.errno or _errno.EIO
        if on and err in on:
            raise on[err](exc) from exc
        message = f"{op} failed: {errno_name(err)} ({describe_errno(err)})"
        if exc.detail:
            message = f"{message}: {exc.detail}"
        raise KernelError(op, err, message, **details) from exc
