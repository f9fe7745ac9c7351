"""The exception hierarchy and its JSON-RPC error codes.

Every error the daemon reports on purpose is a `BpfmanError`. Each class
carries its application code (`code`), which subclasses inherit, and `data()`
returns the structured detail sent as the JSON-RPC error's `data` member.
Codes are API: never renumber them. They sit outside JSON-RPC's reserved
range -32768..-32000; the protocol codes themselves live in `bpfman.rpc.jsonrpc`.
"""

from __future__ import annotations

import errno as _errno
from typing import Any, ClassVar


class BpfmanError(Exception):
    """Base of every error the daemon reports with an application code."""

    code: ClassVar[int] = 1
    #: Short machine-readable kind, sent as ``data.kind``.
    kind: ClassVar[str] = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def data(self) -> dict[str, Any]:
        return {"kind": self.kind, **self.details}


class InvalidArgument(BpfmanError):
    """The request is well-formed but asks for something impossible
    (priority out of range, unknown global symbol, bad ELF object)."""

    code = 1000
    kind = "invalid_argument"

    def __init__(self, message: str, *, field: str | None = None, **details: Any) -> None:
        if field is not None:
            details["field"] = field
        super().__init__(message, **details)


class InvalidParams(BpfmanError):
    """Params that do not fit their schema, found after the envelope was
    accepted (e.g. a program type's attach params). Same code as JSON-RPC's
    invalid params; ``data.errors`` lists each offending field path."""

    code = -32602
    kind = "invalid_params"

    def __init__(self, message: str, errors: list[str]) -> None:
        super().__init__(message, errors=errors)


class NotFound(BpfmanError):
    code = 1100
    kind = "not_found"


class ProgramNotFound(NotFound):
    kind = "program_not_found"

    def __init__(self, program_id: int) -> None:
        super().__init__(f"no program with id {program_id}", program_id=program_id)


class LinkNotFound(NotFound):
    kind = "link_not_found"

    def __init__(self, link_id: int) -> None:
        super().__init__(f"no link with id {link_id}", link_id=link_id)


class ImageNotFound(NotFound):
    """The image is not in the cache (pull_policy Never, image.remove)."""

    kind = "image_not_found"


class AttachTargetNotFound(NotFound):
    """The thing to attach to does not exist: a tracepoint, an interface,
    a kernel function, a binary."""

    kind = "attach_target_not_found"


class Conflict(BpfmanError):
    """The request conflicts with existing state (program still attached,
    attach point full, a foreign qdisc in the way)."""

    code = 1200
    kind = "conflict"


class StateDrift(BpfmanError):
    """The record exists but its kernel object or pin vanished behind our back."""

    code = 1300
    kind = "state_drift"


class KernelFeatureMissing(BpfmanError):
    """This kernel cannot do what was asked; `feature` names what is missing."""

    code = 1400
    kind = "kernel_feature_missing"

    def __init__(self, feature: str, reason: str, *, min_version: str | None = None) -> None:
        super().__init__(
            f"unsupported by this kernel: {feature} ({reason})",
            feature=feature,
            reason=reason,
            min_version=min_version,
        )


class PermissionDenied(BpfmanError):
    code = 1500
    kind = "permission_denied"


class KernelError(BpfmanError):
    """A kernel call failed; `op` names it and `errno` its symbolic errno."""

    code = 2000
    kind = "kernel_error"

    def __init__(self, op: str, err: int, message: str | None = None, **details: Any) -> None:
        name = _errno.errorcode.get(err, str(err))
        text = message or f"{op} failed: {name} ({_os_strerror(err)})"
        super().__init__(text, op=op, errno=name, **details)
        self.op = op
        self.errno = err


class VerifierRejected(KernelError):
    """The verifier refused a program; `data.verifier_log` holds its log lines."""

    code = 2001
    kind = "verifier_rejected"

    def __init__(self, program: str, err: int, log: list[str]) -> None:
        summary = _summarize_log(log)
        super().__init__(
            "program load",
            err,
            f"verifier rejected program {program!r}: {summary}",
            program=program,
            verifier_log=log,
        )
        self.log = log


class ImageError(BpfmanError):
    """A bytecode image is unusable: bad format, missing label, cache miss
    under the Never policy, corrupted cache entry."""

    code = 3000
    kind = "image_error"


class PullFailed(ImageError):
    """The registry could not be reached or answered badly; `url` says where,
    `reason` why (digest mismatch, unauthorized, timeout...)."""

    code = 3001
    kind = "pull_failed"


class SignatureRejected(ImageError):
    """Signature verification refused the image (bad signature, untrusted
    identity or key, or unsigned while unsigned images are not allowed)."""

    code = 3002
    kind = "signature_rejected"


class PluginFailed(BpfmanError):
    """A plugin raised something other than a BpfmanError."""

    code = 9000
    kind = "plugin_failed"

    def __init__(self, plugin: str, hook: str, cause: BaseException) -> None:
        super().__init__(
            f"plugin {plugin!r} failed in {hook}: {type(cause).__name__}: {cause}",
            plugin=plugin,
            hook=hook,
        )


def _os_strerror(err: int) -> str:
    import os

    try:
        return os.strerror(err)
    except ValueError:
        return "unknown error"


def _summarize_log(log: list[str]) -> str:
    """The last meaningful verifier line, plus the one before when it helps
    (the line naming the instruction usually precedes the reason)."""
    lines = [line for line in log if line.strip() and not line.startswith("processed ")]
    if not lines:
        return "no verifier log (check RLIMIT_MEMLOCK and capabilities)"
    last = lines[-1].strip()
    if len(lines) > 1 and len(last) < 40:
        return f"{lines[-2].strip()}: {last}"
    return last


def all_error_classes() -> list[type[BpfmanError]]:
    """Every error class, for documentation and the uniqueness test."""
    seen: list[type[BpfmanError]] = []
    stack: list[type[BpfmanError]] = [BpfmanError]
    while stack:
        cls = stack.pop()
        seen.append(cls)
        stack.extend(cls.__subclasses__())
    return seen
