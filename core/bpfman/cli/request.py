"""A parsed command line -> the one JSON-RPC call it asks for."""

from __future__ import annotations

import argparse
from typing import Any

from bpfman.cli import images as imagecli
from bpfman.cli.args import UsageError, load_options
from bpfman.cli.rawopts import split_attach_options


def build_request(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """The (method, params) a parsed command line asks for."""
    cmd = args.command
    image_request = imagecli.build_request(args)
    if image_request is not None:
        return image_request
    if cmd == "load":
        return "program.load", {"path": args.path, "programs": args.programs,
                                **load_options(args)}
    if cmd == "attach":
        from bpfman.cli import attachopts  # imports the plugins: only this command pays

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
    if cmd == "detach":
        return "program.detach", {"link_id": args.link_id}
    if cmd == "unload":
        return "program.unload", {"program_id": args.program_id}
    if cmd == "get":
        return "program.get", {"program_id": args.program_id}
    if cmd == "list" and args.what == "links":
        if args.all or args.metadata:
            raise UsageError("--all and --metadata apply to programs, not links")
        return "link.list", _drop_none(program_id=args.program_id, type=args.type)
    if cmd == "list":
        if args.program_id is not None:
            raise UsageError("--program-id applies to `list links`")
        params = _drop_none(type=args.type)
        if args.all:
            params["all"] = True
        if args.metadata:
            params["metadata"] = dict(args.metadata)
        return "program.list", params
    if cmd == "link" and args.link_command == "get":
        return "link.get", {"link_id": args.link_id}
    if cmd == "link" and args.link_command == "update":
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


def _drop_none(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}
