"""`bpfman attach ID TYPE ...`: options generated from the type's own params class.

Each program type's plugin declares its attach parameters as an attrs class
(`KindSpec.params_type`), the one the daemon validates with. The CLI builds
the type's options from that class: one ``--name`` per field (``proceed_on``
is ``--proceed-on``), typed (integers, booleans as ``--x/--no-x``, lists
taking several values as upstream's CLI does, choices from ``in_``
validators), with upstream's short flags, defaults and help, and validates
the result with the same class before sending anything. A third-party
plugin's type gets all of it with no change here.

Why the local plugin classes rather than the daemon's OpenRPC document: one
source, no extra call to the daemon (a caller granted only program.attach
can attach), and only this command pays for importing the plugins; the CLI's
other commands stay free of pluggy and attrs. The daemon validates again,
so a CLI whose plugins differ from the daemon's can only be less helpful,
never wrong: an unknown type falls back to plain ``--key value`` pairs.
"""

from __future__ import annotations

import argparse
import functools
import json
import types
import typing
from collections.abc import Sequence
from typing import Any

from bpfman.cli.args import metadata_pairs

# Upstream bpfman's short flags, for the fields that have them. Per type, the
# first field to claim a letter gets it; ``-o`` is offset where a type has
# one (as upstream's kprobe and uprobe), else the output format.
SHORT_FLAGS = {"iface": "-i", "priority": "-p", "direction": "-d", "netns": "-n",
               "tracepoint": "-t", "target": "-t", "fn_name": "-f", "offset": "-o",
               "pid": "-p", "container_pid": "-c"}


class AttachUsageError(Exception):
    """Bad options for the type (the message names the option)."""


def params_class(kind: str) -> type | None:
    """The attrs class of `kind`'s attach params, from the installed plugins."""
    return _installed().get(kind)


def installed_kinds() -> list[str]:
    """The program types of the installed plugins (the TYPEs `attach` knows)."""
    return sorted(_installed())


@functools.cache
def _installed() -> dict[str, type]:
    import logging

    from bpfman.plugins import build_plugin_manager

    # A plugin that fails to import is the daemon's to report, not the CLI's.
    logging.getLogger("bpfman.plugins").disabled = True
    return {kind: owner.spec.params_type
            for kind, owner in build_plugin_manager(()).kinds.items()}


def build_parser(kind: str, cls: type) -> argparse.ArgumentParser:
    import attrs

    parser = argparse.ArgumentParser(
        prog=f"bpfman attach PROGRAM_ID {kind}", add_help=True,
        description=f"attach parameters of type {kind} (validated as the daemon does)",
        epilog="-m KEY=VALUE (repeatable) sets link metadata; --socket and -o work here too.")
    parser.add_argument("-m", "--metadata", action="append", default=[], metavar="KEY=VALUE",
                        help="link metadata, k1=v1,k2=v2")
    parser.add_argument("--socket", help=argparse.SUPPRESS)
    taken = {"-h", "-m"}
    shorts: dict[str, str] = {}
    for field in attrs.fields(cls):
        short = SHORT_FLAGS.get(field.name)
        if short is not None and short not in taken:
            taken.add(short)
            shorts[field.name] = short
    output_flags = ["--output"] if "-o" in taken else ["-o", "--output"]
    parser.add_argument(*output_flags, dest="output", choices=("table", "json"),
                        help=argparse.SUPPRESS)
    hints = typing.get_type_hints(cls)
    for field in attrs.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        names = [flag] if field.name not in shorts else [shorts[field.name], flag]
        if field.name.replace("_", "-") != field.name:
            names.append("--" + field.name)  # the API's spelling works too
        doc = field.metadata.get("doc", "")
        required = field.default is attrs.NOTHING
        kwargs: dict[str, Any] = {"dest": field.name, "help": doc}
        inner, optional = _unwrap(hints.get(field.name, str))
        choices = _choices(field.validator)
        if typing.get_origin(inner) is typing.Literal:
            choices = list(typing.get_args(inner))
            inner = type(choices[0])
        if inner is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif typing.get_origin(inner) is list:
            # Several values after one flag (upstream) or the flag repeated.
            kwargs.update(nargs="+", action="extend", type=_scalar(typing.get_args(inner)[0]))
            if choices:
                kwargs["choices"] = choices
        elif inner in (int, str, float):
            kwargs["type"] = inner
            if choices:
                kwargs["choices"] = choices
        else:  # a nested structure: JSON on the command line
            kwargs["type"] = json.loads
            kwargs["metavar"] = "JSON"
        if required:
            kwargs["required"] = True
        else:
            kwargs["default"] = argparse.SUPPRESS  # unset: the daemon applies the default
            default = field.default
            if isinstance(default, attrs.Factory):  # type: ignore[arg-type]
                default = default.factory()
            shown = "none" if default is None and optional else json.dumps(default)
            kwargs["help"] = f"{doc} (default: {shown})".strip()
        action = parser.add_argument(*names, **kwargs)
        # Values a plugin lists for completion only (its own validator keeps
        # the say on what is accepted, and its message).
        hint = field.metadata.get("choices")
        if isinstance(hint, dict):  # one params class for several types
            hint = hint.get(kind)
        action.completions = choices or hint  # type: ignore[attr-defined]
    return parser


def parse(kind: str, tokens: Sequence[str]
          ) -> tuple[dict[str, Any], dict[str, str], dict[str, str]] | None:
    """(params, metadata, global options) for `kind`, or None when no installed
    plugin owns `kind`. ``--help`` prints the type's options and exits."""
    cls = params_class(kind)
    if cls is None:
        return None
    values = vars(build_parser(kind, cls).parse_args(list(tokens)))
    metadata: dict[str, str] = {}
    for item in values.pop("metadata"):
        try:
            metadata.update(metadata_pairs(item))  # k=v or upstream's k1=v1,k2=v2
        except argparse.ArgumentTypeError as exc:
            raise AttachUsageError(f"-m: {exc}") from None
    globals_ = {k: v for k in ("socket", "output") if (v := values.pop(k, None)) is not None}
    _validate(cls, values)
    return values, metadata, globals_


def _validate(cls: type, values: dict[str, Any]) -> None:
    from bpfman.model import convert

    try:
        convert.structure(values, cls)
    except Exception as exc:
        messages = []
        for error in convert.describe_errors(exc, prefix="$"):
            message, _, where = error.rpartition(" @ ")
            field = where.removeprefix("$").removeprefix(".").split(".")[0].split("[")[0]
            messages.append(f"--{field.replace('_', '-')}: {message}" if field else message)
        raise AttachUsageError("; ".join(messages)) from None


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """(the type without None, whether None was allowed)."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return (args[0] if len(args) == 1 else str), len(args) < len(typing.get_args(tp))
    return tp, False


def _scalar(tp: Any) -> Any:
    return tp if tp in (int, str, float) else str


def _choices(validator: Any) -> list[Any] | None:
    """The allowed values of an ``in_`` validator (also inside and_/deep_iterable)."""
    if validator is None:
        return None
    options = getattr(validator, "options", None)
    if options is not None and not isinstance(options, str):
        return sorted(options) if isinstance(options, set | frozenset) else list(options)
    for attr in ("_validators", "member_validator"):
        inner = getattr(validator, attr, None)
        for v in inner if isinstance(inner, tuple | list) else ([inner] if inner else []):
            found = _choices(v)
            if found:
                return found
    return None
