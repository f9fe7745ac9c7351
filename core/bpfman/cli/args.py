"""Argument types and the usage error shared by the command's modules."""

from __future__ import annotations

import argparse
import json
import sys

from bpfman.model import APPLICATION_KEY

# typing only for annotations: the CLI's start-up is timed (docs/performance.md)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any


class UsageError(Exception):
    """A command line the parser accepted but that makes no request."""


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def metadata_pairs(text: str) -> list[tuple[str, str]]:
    """``k1=v1,k2=v2`` (upstream's comma list) or one ``KEY=VALUE``.

    A piece without ``=`` continues the previous value, so ``note=a,b``
    keeps its comma.
    """
    pairs: list[tuple[str, str]] = []
    for piece in text.split(","):
        if "=" not in piece and pairs:
            key, value = pairs[-1]
            pairs[-1] = (key, f"{value},{piece}")
        else:
            pairs.append(key_value(piece))
    return pairs


class MetadataAction(argparse.Action):
    """``-m k=v,... [k=v ...]``, repeatable: a flat list of (key, value)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        items = list(getattr(namespace, self.dest, None) or [])
        for pairs in values if self.nargs is not None else [values]:
            items.extend(pairs)
        setattr(namespace, self.dest, items)


def add_metadata_option(parser: argparse.ArgumentParser, *flags: str,
                        help: str = "metadata labels, k1=v1,k2=v2 (repeatable)",
                        several: bool = True) -> None:
    """``-m``; `several`: also ``-m k=v k2=v2`` (not where a positional may follow)."""
    parser.add_argument(*(flags or ("-m", "--metadata")), dest="metadata",
                        action=MetadataAction, nargs="+" if several else None,
                        type=metadata_pairs, default=[], metavar="KEY=VALUE", help=help)


def add_application_option(parser: argparse.ArgumentParser, *flags: str) -> None:
    parser.add_argument(*(flags or ("-a", "--application")), dest="application",
                        metavar="NAME", help=f"short for -m {APPLICATION_KEY}=NAME")


def metadata_dict(pairs: Sequence[tuple[str, str]], application: str | None) -> dict[str, str]:
    """The metadata of -m pairs and -a/--application; when both set the
    application key, -m wins (as upstream) with a warning."""
    metadata = dict(pairs)
    if application is not None:
        given = metadata.setdefault(APPLICATION_KEY, application)
        if given != application:
            print(f"bpfman: warning: --application {application} ignored: --metadata sets "
                  f"{APPLICATION_KEY}={given}", file=sys.stderr)
    return metadata


def registry_auth(text: str) -> tuple[str, str]:
    """Upstream's ``-r/--registry-auth``: base64 of ``user:password``. The
    value is never echoed back (it is a credential)."""
    import base64  # only this option pays for it
    import binascii

    try:
        decoded = base64.b64decode(text, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise argparse.ArgumentTypeError("expected base64 of USER:PASSWORD") from None
    user, sep, password = decoded.partition(":")
    if not sep or not user:
        raise argparse.ArgumentTypeError("expected base64 of USER:PASSWORD")
    return user, password


def global_value(text: str) -> tuple[str, str]:
    name, value = key_value(text)
    try:
        bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: {value!r} is not hex bytes") from None
    return name, value


def program_selector(text: str) -> dict[str, str]:
    """TYPE:NAME, or TYPE:NAME:FUNCTION for fentry/fexit (the kernel function
    the program attaches to is fixed at load time)."""
    kind, sep, rest = text.partition(":")
    name, _, func = rest.partition(":")
    if not sep or not kind or not name:
        raise argparse.ArgumentTypeError(f"expected TYPE:NAME[:FUNCTION], got {text!r}")
    selector = {"type": kind, "name": name}
    if func:
        selector["attach_func"] = func
    return selector


def json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("params must be a JSON object")
    return value


def load_options(args: argparse.Namespace) -> dict[str, Any]:
    """The optional program.load params both `load file` and `load image` take."""
    params: dict[str, Any] = {}
    if args.global_data:
        params["global_data"] = dict(args.global_data)
    metadata = metadata_dict(args.metadata, getattr(args, "application", None))
    if metadata:
        params["metadata"] = metadata
    if getattr(args, "map_owner_id", None) is not None:
        params["map_owner_id"] = args.map_owner_id
    return params
