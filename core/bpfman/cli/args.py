"""Argument types and the usage error shared by the command's modules."""

from __future__ import annotations

import argparse
import json
from typing import Any

import bpfman

VERSION_TEXT = f"bpfman {bpfman.__version__}"


class UsageError(Exception):
    """A command line the parser accepted but that makes no request."""


def key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


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
    if args.metadata:
        params["metadata"] = dict(args.metadata)
    if args.map_owner_id is not None:
        params["map_owner_id"] = args.map_owner_id
    return params
