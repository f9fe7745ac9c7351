"""A parsed command line -> the one JSON-RPC call it asks for."""

from __future__ import annotations

import argparse
import os

from bpfman.cli import images as imagecli
from bpfman.cli.args import UsageError, load_options, metadata_dict

# typing only for annotations: the CLI's start-up is timed (docs/performance.md)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    Call = tuple[str, dict[str, Any]]


def build_calls(args: argparse.Namespace) -> list[Call]:
    """The calls a parsed command line asks for, in order: one, except for
    `unload` and `detach` with several ids (one call per id)."""
    if args.command == "unload":
        return [("program.unload", {"program_id": i}) for i in args.program_ids]
    if args.command == "detach":
        return [("program.detach", {"link_id": i}) for i in args.link_ids]
    return [build_request(args)]


def build_request(args: argparse.Namespace) -> Call:
    """The (method, params) of a one-call command line (see `build_calls`)."""
    cmd = args.command
    if cmd in ("unload", "detach"):
        calls = build_calls(args)
        if len(calls) != 1:
            raise UsageError(f"{cmd} with several ids is several calls")
        return calls[0]
    image_request = imagecli.build_request(args)
    if image_request is not None:
        return image_request
    if cmd == "load":
        # The daemon needs an absolute path; a relative one means from here.
        return "program.load", {"path": os.path.abspath(args.path), "programs": args.programs,
                                **load_options(args)}
    if cmd == "attach":
        from bpfman.cli import attachopts  # imports the plugins: only this command pays
        from bpfman.cli.rawopts import split_attach_options

        try:
            typed = attachopts.parse(args.type, args.options)
        except attachopts.AttachUsageError as exc:
            raise UsageError(str(exc)) from None
        attach_params, metadata, globals_ = (
            typed if typed is not None else split_attach_options(args.options))
        for key, value in globals_.items():
            setattr(args, key, value)
        params = {"program_id": args.program_id, "params": attach_params}
        if metadata:
            params["metadata"] = metadata
        return "program.attach", params
    if cmd == "get":
        return _get(args.target)
    if cmd == "list":
        params = _drop_none(type=args.type)
        metadata = metadata_dict(args.metadata, args.application)
        if metadata:
            params["metadata"] = metadata
        if args.what in ("links", "link"):
            if args.all:
                raise UsageError("--all applies to programs, not links")
            return "link.list", {**params, **_drop_none(program_id=args.program_id)}
        if args.program_id is not None:
            raise UsageError("--program-id applies to `list links`")
        if args.all:
            params["all"] = True
        return "program.list", params
    if cmd == "link" and args.link_command == "get":
        return "link.get", {"link_id": args.link_id}
    if cmd == "link" and args.link_command == "update":
        from bpfman.cli.rawopts import split_attach_options

        update, metadata, globals_ = split_attach_options(args.options)
        for key, value in globals_.items():
            setattr(args, key, value)
        params = {"link_id": args.link_id, "params": update}
        if "program_id" in update:  # --program-id N swaps the program, not a param
            params["program_id"] = update.pop("program_id")
        if metadata:
            params["metadata"] = metadata
        return "link.update", params
    if cmd == "link":
        return "link.list", _drop_none(program_id=args.program_id, type=args.type)
    if cmd == "completion":
        raise PrintCompletion()
    if cmd == "events":
        return "events.subscribe", {"kinds": args.kind}
    if cmd == "dispatchers":
        return "dispatcher.list", {}
    if cmd == "map":
        params = {"program_id": args.program_id}
        if args.map_command != "list":
            params["map"] = args.map
        if args.map_command in ("get", "delete", "update"):
            params["key"] = args.key
        if args.map_command == "update":
            params["value"] = args.value
        if args.map_command == "dump":
            params["limit"] = 4096
        return f"map.{args.map_command}", params
    if cmd == "plugins":
        return "plugin.list", {}
    if cmd == "info":
        return "daemon.info", {}
    if cmd == "call":
        return args.method, args.params if args.params is not None else {}
    raise UsageError(f"unknown command {cmd!r}")


class PrintCompletion(Exception):
    """`bpfman completion`: handled locally, no daemon involved."""


def _get(target: list[str]) -> Call:
    """`get ID`, `get program ID` (upstream) or `get link ID` (upstream)."""
    what, ident = ("program", target[0]) if len(target) == 1 else (target[0], target[1])
    if len(target) > 2 or what not in ("program", "link"):
        raise UsageError("expected ID, `program ID` or `link ID`")
    if not ident.isdigit():
        raise UsageError(f"{what} id must be a number, not {ident!r}")
    if what == "link":
        return "link.get", {"link_id": int(ident)}
    return "program.get", {"program_id": int(ident)}


def _drop_none(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}
