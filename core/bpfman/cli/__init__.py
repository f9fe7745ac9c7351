"""The `bpfman` command: a thin client of the daemon's JSON-RPC API.

Every subcommand becomes one method call (`build_request`); the result is
printed as plain-text tables for people or, with ``-o json``, as the raw
result for scripts. `bpfman daemon ...` runs the daemon instead.

Attach options are generic so that a new program-type plugin needs no CLI
change: after ``attach PROGRAM_ID TYPE`` every ``--some-key value`` becomes
``params["some_key"]``. A value is an int when it looks like one, a bool
for ``true``/``false``, parsed JSON when it starts with ``[`` or ``{``, and a
string otherwise; an option without a value is ``true``; a repeated option
becomes a list.

Exit status: 0 success, 1 the daemon answered with an error, 2 usage error
or the daemon could not be reached.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any

import bpfman
from bpfman.cli import images as imagecli
from bpfman.cli.args import global_value as _global_value
from bpfman.cli.args import json_object as _json_object
from bpfman.cli.args import key_value as _key_value
from bpfman.cli.args import load_options
from bpfman.cli.args import program_selector as _program_selector
from bpfman.client import Client, DaemonUnreachable, RpcError, default_socket_path

_INT = re.compile(r"[+-]?\d+")


class UsageError(Exception):
    """A command line the parser accepted but that makes no request."""


# -- parsing -----------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    # Global options are accepted before or after the subcommand.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--socket", default=argparse.SUPPRESS,
        help=f"daemon socket (default $BPFMAN_SOCKET or {default_socket_path()})",
    )
    common.add_argument(
        "-o", "--output", choices=["table", "json"], default=argparse.SUPPRESS,
        help="table for people (default), json for scripts",
    )
    parser = argparse.ArgumentParser(
        prog="bpfman", parents=[common], description="Manage eBPF programs through bpfmand."
    )
    parser.add_argument("--version", action="version", version=VERSION_TEXT)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str, **kw: Any) -> argparse.ArgumentParser:
        if name in EXAMPLES:
            kw["epilog"] = (kw["epilog"] + "\n\n" if "epilog" in kw else "") + EXAMPLES[name]
        return sub.add_parser(name, parents=[common], help=help, description=help,
                              formatter_class=argparse.RawDescriptionHelpFormatter, **kw)

    load = command("load", "load programs from an ELF object")
    load_sub = load.add_subparsers(dest="source", required=True, metavar="SOURCE")
    lf = load_sub.add_parser("file", parents=[common], help="from a file on the daemon's host")
    lf.add_argument("-p", "--path", required=True, help="path of the ELF object")
    lf.add_argument(
        "--programs", nargs="+", required=True, type=_program_selector, metavar="TYPE:NAME",
        help="programs to load, e.g. tracepoint:handle_exec or fentry:on_open:do_sys_openat2",
    )
    lf.add_argument(
        "-g", "--global", dest="global_data", action="extend", nargs="+", type=_global_value,
        default=[], metavar="NAME=HEX", help="set a global variable before load",
    )
    _metadata_option(lf)
    lf.add_argument("--map-owner-id", type=int, help="share the maps of this program")
    imagecli.add_parsers(load_sub, command, common, _global_option, _metadata_option)

    attach = command(
        "attach", "attach a loaded program",
        epilog="TYPE options: `bpfman attach PROGRAM_ID TYPE --help` lists the type's"
        " parameters (from its plugin, typed and checked before sending); -m KEY=VALUE sets"
        " link metadata. For a type no installed plugin knows, any --key value pair is sent"
        " as params.key.",
    )
    attach.add_argument("program_id", type=int, metavar="PROGRAM_ID")
    attach.add_argument("type", metavar="TYPE", help="the program's type")
    attach.add_argument("options", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    detach = command("detach", "detach a link")
    detach.add_argument("link_id", type=int, metavar="LINK_ID")
    unload = command("unload", "unload a program (its links are detached first)")
    unload.add_argument("program_id", type=int, metavar="PROGRAM_ID")

    lst = command("list", "list programs, or links with `list links`")
    lst.add_argument("what", nargs="?", choices=["programs", "links"], default="programs")
    lst.add_argument("--all", action="store_true", help="include programs not managed here")
    lst.add_argument("--type", help="only this program type")
    lst.add_argument("--program-id", type=int, help="links: only those of this program")
    _metadata_option(lst)

    get = command("get", "show one program")
    get.add_argument("program_id", type=int, metavar="PROGRAM_ID")

    link = command("link", "links: get, list")
    link_sub = link.add_subparsers(dest="link_command", required=True, metavar="ACTION")
    lg = link_sub.add_parser("get", parents=[common], help="show one link")
    lg.add_argument("link_id", type=int, metavar="LINK_ID")
    ll = link_sub.add_parser("list", parents=[common], help="list links")
    ll.add_argument("--program-id", type=int)
    ll.add_argument("--type")
    lu = link_sub.add_parser(
        "update", parents=[common], help="change a link in place, e.g. --priority 60",
        epilog="Every --key value pair is merged over the link's params; "
        "--program-id N runs program N in the link's place.",
    )
    lu.add_argument("link_id", type=int, metavar="LINK_ID")
    lu.add_argument("options", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)

    command("dispatchers", "shared attach points and the order their programs run in")
    events = command("events", "print changes as they happen (loaded, attached, ...) until ^C")
    events.add_argument("--kind", action="append", default=[], help="only this kind (repeat)")

    maps = command("map", "read and write the maps of a managed program")
    map_sub = maps.add_subparsers(dest="map_command", required=True, metavar="ACTION")
    ml = map_sub.add_parser("list", parents=[common], help="maps of a program")
    ml.add_argument("program_id", type=int, metavar="PROGRAM_ID")
    for action, what in [("get", "one value"), ("delete", "delete one key")]:
        mk = map_sub.add_parser(action, parents=[common], help=what)
        mk.add_argument("program_id", type=int, metavar="PROGRAM_ID")
        mk.add_argument("map", metavar="MAP")
        mk.add_argument("key", metavar="KEY_HEX")
    mu = map_sub.add_parser("update", parents=[common], help="set one value")
    mu.add_argument("program_id", type=int, metavar="PROGRAM_ID")
    mu.add_argument("map", metavar="MAP")
    mu.add_argument("key", metavar="KEY_HEX")
    mu.add_argument("value", metavar="VALUE_HEX")
    md = map_sub.add_parser(
        "dump", parents=[common], help="entries (up to 4096; the API pages for more)"
    )
    md.add_argument("program_id", type=int, metavar="PROGRAM_ID")
    md.add_argument("map", metavar="MAP")

    command("plugins", "list the loaded plugins and their program types")
    command("info", "show the daemon's version, paths and kernel features")
    call = command("call", "call any method: bpfman call METHOD '{\"key\": 1}'")
    call.add_argument("method", metavar="METHOD")
    call.add_argument("params", nargs="?", type=_json_object, metavar="JSON")
    command("daemon", "run the daemon (see `bpfman daemon --help`)")
    completion = command("completion", "print a shell completion script",
                         epilog="Install: bpfman completion bash > "
                         "/etc/bash_completion.d/bpfman")
    completion.add_argument("shell", choices=["bash"])
    return parser


EXAMPLES = {
    "load": "examples:\n  bpfman load file --path /srv/counter.bpf.o --programs "
            "tracepoint:count_getpid -g target_pid=39300000 -m app=web",
    "attach": "examples:\n  bpfman attach 42 tracepoint --tracepoint syscalls/sys_enter_openat\n"
              "  bpfman attach 42 xdp --iface eth0 --priority 50 --proceed-on pass",
    "detach": "example:\n  bpfman detach 7",
    "unload": "example:\n  bpfman unload 42",
    "list": "examples:\n  bpfman list\n  bpfman list --all --type xdp\n  bpfman list links",
    "get": "example:\n  bpfman -o json get 42",
    "link": "examples:\n  bpfman link get 7\n  bpfman link update 7 --priority 60",
    "dispatchers": "example:\n  bpfman dispatchers",
    "events": "example:\n  bpfman -o json events --kind attached --kind detached",
    "map": "examples:\n  bpfman map list 42\n  bpfman map get 42 counts 00000000\n"
           "  bpfman map update 42 counts 00000000 0000000000000000",
    "plugins": "example:\n  bpfman plugins",
    "info": "example:\n  bpfman info",
    "call": "example:\n  bpfman call program.list '{\"type\": \"tracepoint\"}'",
    "completion": "example:\n  source <(bpfman completion bash)",
    **imagecli.EXAMPLES,
}


def bash_completion(parser: argparse.ArgumentParser) -> str:
    """A bash completion script for the commands, sub-actions and options."""
    words: dict[str, list[str]] = {}

    def walk(p: argparse.ArgumentParser, path: str) -> None:
        options = [o for a in p._actions for o in a.option_strings]
        subs: list[str] = []
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    subs.append(name)
                    walk(child, f"{path} {name}".strip())
        words[path] = subs + options

    walk(parser, "")
    cases = "\n".join(
        f'        "{path}") opts="{" ".join(sorted(set(w)))}" ;;' for path, w in words.items()
    )
    return f"""# bash completion for bpfman (generated by `bpfman completion bash`)
_bpfman() {{
    local cur=${{COMP_WORDS[COMP_CWORD]}} path="" w opts
    for w in "${{COMP_WORDS[@]:1:COMP_CWORD-1}}"; do
        case "$w" in -*|[0-9]*) ;; *) path="${{path:+$path }}$w" ;; esac
    done
    case "$path" in
{cases}
        *) opts="" ;;
    esac
    COMPREPLY=($(compgen -W "$opts" -- "$cur"))
}}
complete -F _bpfman bpfman
"""


def _global_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-g", "--global", dest="global_data", action="extend", nargs="+", type=_global_value,
        default=[], metavar="NAME=HEX", help="set a global variable before load",
    )


def _metadata_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-m", "--metadata", action="extend", nargs="+", type=_key_value, default=[],
        metavar="KEY=VALUE", help="metadata label (repeatable)",
    )


def _is_option(token: str) -> bool:
    return token.startswith("-") and len(token) > 1 and not _INT.fullmatch(token)


def coerce_value(text: str) -> Any:
    """An option value as the daemon should see it (see the module docstring)."""
    if _INT.fullmatch(text):
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    if text[:1] in ("[", "{"):
        try:
            return json.loads(text)
        except ValueError:
            pass
    return text


def parse_attach_options(tokens: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``--key value`` tokens after the attach TYPE -> (params, metadata)."""
    params, metadata, _ = split_attach_options(tokens)
    return params, metadata


def split_attach_options(
    tokens: Sequence[str],
) -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """Like `parse_attach_options`, also returning the global options found
    among them (``--socket``, ``-o/--output`` keep their meaning anywhere)."""
    values: dict[str, list[Any]] = {}
    metadata: dict[str, str] = {}
    globals_: dict[str, str] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        name, sep, inline = token.partition("=")
        if name in ("--socket", "-o", "--output"):
            value = inline if sep else (tokens[i + 1] if i + 1 < len(tokens) else "")
            if not value:
                raise UsageError(f"{name} needs a value")
            if name != "--socket" and value not in ("table", "json"):
                raise UsageError(f"{name}: choose table or json, not {value!r}")
            globals_["socket" if name == "--socket" else "output"] = value
            i += 1 if sep else 2
            continue
        if token in ("-m", "--metadata"):
            if i + 1 >= len(tokens):
                raise UsageError(f"{token} needs KEY=VALUE")
            try:
                key, value = _key_value(tokens[i + 1])
            except argparse.ArgumentTypeError as exc:
                raise UsageError(str(exc)) from None
            metadata[key] = value
            i += 2
            continue
        if not token.startswith("--") or len(token) == 2:
            raise UsageError(
                f"unexpected {token!r}: attach options are --name value pairs "
                "(e.g. --tracepoint sched/sched_switch)"
            )
        name, sep, inline = token[2:].partition("=")
        if sep:
            value = coerce_value(inline)
            i += 1
        elif i + 1 < len(tokens) and not _is_option(tokens[i + 1]):
            value = coerce_value(tokens[i + 1])
            i += 2
        else:
            value = True
            i += 1
        values.setdefault(name.replace("-", "_"), []).append(value)
    params = {k: v[0] if len(v) == 1 else v for k, v in values.items()}
    return params, metadata, globals_


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
        raise _PrintCompletion()
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


class _PrintCompletion(Exception):
    """`bpfman completion`: handled locally, no daemon involved."""


def _drop_none(**kw: Any) -> dict[str, Any]:
    return {k: v for k, v in kw.items() if v is not None}


# -- output ------------------------------------------------------------------


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        padded = [c.ljust(w) for c, w in zip(row[:-1], widths[:-1], strict=True)]
        lines.append("  ".join([*padded, row[-1]]).rstrip())
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if value is None or value == [] or value == {}:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ",".join(_cell(v) for v in value)
    if isinstance(value, dict):
        return ",".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def format_fields(obj: dict[str, Any], indent: int = 0) -> str:
    """``key: value`` lines; nested objects become indented sections."""
    pad = " " * indent
    lines = []
    for key, value in obj.items():
        if isinstance(value, dict) and value and key not in ("metadata", "global_data"):
            lines.append(f"{pad}{key}:")
            lines.append(format_fields(value, indent + 2))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{pad}{key}:")
            for item in value:
                lines.append(format_fields(item, indent + 2))
        else:
            lines.append(f"{pad}{key}: {_cell(value)}")
    return "\n".join(lines)


def _program_rows(programs: list[dict[str, Any]]) -> str:
    rows = []
    for p in programs:
        kind = p.get("type")
        if kind is None:  # not ours: show the kernel's type, marked
            kind = f"({(p.get('kernel') or {}).get('kernel_type', '?')})"
        rows.append([p["program_id"], p["name"], kind, p.get("links"), p.get("metadata")])
    return format_table(["ID", "NAME", "TYPE", "LINKS", "METADATA"], rows)


def _chain_cell(dispatcher: dict[str, Any]) -> str:
    """link:program@priority[proceed-on] per slot, or the bare link ids."""
    slots = dispatcher.get("slots")
    if not slots:
        return " ".join(str(x) for x in dispatcher["links"])
    cells = []
    for x in slots:
        cell = f"{x.get('link_id')}:{x.get('program_id')}"
        if x.get("priority") is not None:
            cell += f"@{x['priority']}"
        if x.get("proceed_on"):
            cell += f"[{','.join(x['proceed_on'])}]"
        cells.append(cell)
    return " ".join(cells)


def _link_rows(links: list[dict[str, Any]]) -> str:
    rows = [
        [x["link_id"], x["program_id"], x["type"], x.get("summary"), x.get("metadata")]
        for x in links
    ]
    return format_table(["ID", "PROGRAM", "TYPE", "ATTACHED TO", "METADATA"], rows)


def _plugin_rows(plugins: list[dict[str, Any]]) -> str:
    rows = [[p["name"], p.get("version"), p.get("types"), p.get("module")] for p in plugins]
    return format_table(["NAME", "VERSION", "TYPES", "MODULE"], rows)


_RENDERERS: dict[str, Callable[[Any, dict[str, Any]], str]] = {
    "program.load": lambda r, _p: _program_rows(r["programs"]),
    "program.list": lambda r, _p: _program_rows(r),
    "program.get": lambda r, _p: format_fields(r),
    "program.attach": lambda r, _p: format_fields(r),
    "program.detach": lambda _r, p: f"detached link {p['link_id']}",
    "program.unload": lambda _r, p: f"unloaded program {p['program_id']}",
    "link.list": lambda r, _p: _link_rows(r),
    "link.get": lambda r, _p: format_fields(r),
    "plugin.list": lambda r, _p: _plugin_rows(r),
    "link.update": lambda r, _p: format_fields(r),
    "dispatcher.list": lambda r, _p: format_table(
        ["ATTACH POINT", "TYPE", "MODE", "DISPATCHER", "REVISION", "CHAIN (in run order)"],
        [[d["attach_point"], d["type"], d["mode"], d["program_id"], d["revision"],
          _chain_cell(d)] for d in r]),
    "map.list": lambda r, _p: format_table(
        ["NAME", "ID", "TYPE", "KEY", "VALUE", "MAX"],
        [[m["name"], m["map_id"], m["type"], m["key_size"], m["value_size"], m["max_entries"]]
         for m in r]),
    "map.get": lambda r, _p: "(no such key: exit status 1)" if r["value"] is None else r["value"],
    "map.update": lambda r, _p: f"{r['key']} = {r['value']}",
    "map.delete": lambda r, _p: f"deleted {r['key']} (was {r['value']})",
    "map.dump": lambda r, _p: format_table(
        ["KEY", "VALUE"], [[e["key"], e["value"]] for e in r["entries"]]),
    "daemon.info": lambda r, _p: format_fields(r),
    **imagecli.RENDERERS,
}


def render(method: str, params: dict[str, Any], result: Any, output: str) -> str:
    renderer = _RENDERERS.get(method)
    if output == "json" or renderer is None:
        return json.dumps(result, indent=2)
    return renderer(result, params)


_SHOWN_DATA = {"kind", "errors", "feature", "reason", "min_version", "incident", "verifier_log"}


def format_error(err: RpcError) -> str:
    """``error: message`` and the parts of ``data`` a person needs to act."""
    lines = [f"error: {err.message}"]
    data = err.data if isinstance(err.data, dict) else {}
    for line in data.get("errors", []):
        lines.append(f"  {line}")
    if data.get("feature"):
        needs = f" (needs kernel {data['min_version']})" if data.get("min_version") else ""
        lines.append(f"  missing kernel feature: {data['feature']}{needs}")
    if data.get("incident"):
        lines.append(f"  incident {data['incident']}: see the daemon's log")
    for key, value in data.items():
        if key not in _SHOWN_DATA and value is not None:
            lines.append(f"  {key}: {_cell(value)}")
    if data.get("verifier_log"):
        lines.append("verifier log:")
        lines.extend(f"  {line}" for line in data["verifier_log"])
    return "\n".join(lines)


# -- main --------------------------------------------------------------------


def _split_daemon(argv: list[str]) -> list[str] | None:
    """The daemon's own argv when the command is `daemon`, else None.

    Done before argparse so the daemon parses its options itself; a global
    ``--socket`` given before `daemon` is passed on.
    """
    socket: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token in ("--socket", "-o", "--output"):
            if token == "--socket" and i + 1 < len(argv):
                socket = ["--socket", argv[i + 1]]
            i += 2
        elif token.startswith("-"):
            if token.startswith("--socket="):
                socket = ["--socket", token.partition("=")[2]]
            i += 1
        else:
            return [*socket, *argv[i + 1 :]] if token == "daemon" else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        code = _main(argv)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # `bpfman list | head -1`: the reader left. Quietly, with the status a
        # C tool killed by SIGPIPE gets; stdout goes nowhere so the final
        # flush at exit does not complain again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 128 + signal.SIGPIPE


VERSION_TEXT = f"bpfman {bpfman.__version__}"


def _main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--version"]:  # before building every subcommand's parser
        print(VERSION_TEXT)
        return 0
    daemon_argv = _split_daemon(argv)
    if daemon_argv is not None:
        # The client side never imports the daemon's stack.
        from bpfman.daemon import main as daemon_main

        return daemon_main.main(daemon_argv)

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if args.command == "attach" and {"-h", "--help"} & set(args.options):
            from bpfman.cli import attachopts

            if attachopts.params_class(args.type) is None:
                parser.parse_args(["attach", "--help"])  # prints the attach help, exits 0
        if imagecli.is_local(args):  # image build, load-from-image: not one call
            return imagecli.run_local(args, getattr(args, "socket", None)
                                      or default_socket_path(), getattr(args, "output", "table"))
        method, params = build_request(args)
    except _PrintCompletion:
        print(bash_completion(parser), end="")
        return 0
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else 2
    except UsageError as exc:
        print(f"bpfman {args.command}: error: {exc}", file=sys.stderr)
        return 2
    socket_path = getattr(args, "socket", None) or default_socket_path()
    # `call` is the raw escape hatch: its result is always printed as JSON.
    output = "json" if args.command == "call" else getattr(args, "output", "table")
    errors_as = getattr(args, "output", "table")  # JSON errors only when asked for
    try:
        with Client(socket_path) as client:
            if method == "events.subscribe":
                return _print_events(client, params["kinds"], output)
            try:
                result = imagecli.call_with_progress(client, method, params)
            except RpcError:
                if method == "program.attach":
                    # Explain a type mismatch if we may look (only after a
                    # failure: attach alone needs no program.get grant).
                    with contextlib.suppress(RpcError):
                        _check_type(client, args.program_id, args.type)
                raise
    except RpcError as exc:
        _print_error(errors_as, format_error(exc), exc.code, exc.message, exc.data)
        return 1
    except DaemonUnreachable as exc:
        hint = (
            "is your user in the socket's group?"
            if isinstance(exc.cause, PermissionError)
            else "is the daemon running? (bpfman daemon, or systemctl start bpfman.socket)"
        )
        _print_error(errors_as, f"error: {exc}\n  {hint}", None, f"{exc}; {hint}", None)
        return 2
    except OSError as exc:
        message = f"lost the connection to the daemon at {socket_path}: {exc}"
        _print_error(errors_as, f"error: {message}", None, message, None)
        return 2
    text = render(method, params, result, output)
    if text:
        print(text)
    # A missing key is an answer, not an error, for the API; for a shell it
    # is a failed lookup (`bpfman map get ... || ...`).
    if method == "map.get" and result.get("value") is None:
        return 1
    return 0


def _print_error(output: str, text: str, code: int | None, message: str, data: Any) -> None:
    """An error for people, or under ``-o json`` one JSON object (on stderr,
    like the text): ``{"error": {"code", "message", "data"}}``."""
    if output == "json":
        text = json.dumps({"error": {"code": code, "message": message, "data": data}})
    print(text, file=sys.stderr)


def _print_events(client: Client, kinds: list[str], output: str) -> int:
    try:
        for event in client.events(kinds):
            if output == "json":
                print(json.dumps(event), flush=True)
            else:
                print(f"{event['time']}  {event['kind']:<9} program={event['program_id']}"
                      f" link={event['link_id']} {event['type'] or ''} {event['detail']}",
                      flush=True)
    except KeyboardInterrupt:
        return 0
    print("error: the daemon closed the event stream", file=sys.stderr)
    return 1


def _check_type(client: Client, program_id: int, kind: str) -> None:
    # The API takes the type from the loaded program; the CLI repeats it
    # (as upstream does), so catch a mismatch before the params confuse anyone.
    program = client.call("program.get", {"program_id": program_id})
    actual = program.get("type")
    if actual is not None and actual != kind:
        raise RpcError(
            1000, f"program {program_id} has type {actual}, not {kind}",
            {"program_id": program_id, "type": actual},
        )


__all__ = ["build_parser", "build_request", "main", "parse_attach_options"]
