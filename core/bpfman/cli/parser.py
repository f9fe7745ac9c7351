"""The argparse tree of the `bpfman` command, with the examples each `--help` shows."""

from __future__ import annotations

import argparse
import sys

from bpfman.cli import VERSION_TEXT
from bpfman.cli import images as imagecli
from bpfman.cli.args import add_application_option, add_metadata_option
from bpfman.cli.args import global_value as _global_value
from bpfman.cli.args import json_object as _json_object
from bpfman.cli.args import program_selector as _program_selector
from bpfman.cli.render import columns
from bpfman.client import default_socket_path

# typing only for annotations: the CLI's start-up is timed (docs/performance.md)
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole tree, or with `only` (see `parser_for`) the top level and
    that one subcommand: a command line naming it parses the same."""
    # Global options are accepted before or after the subcommand.
    common = _Parser(add_help=False)
    common.add_argument(
        "--socket", default=argparse.SUPPRESS,
        help=f"daemon socket (default $BPFMAN_SOCKET or {default_socket_path()})",
    )
    common.add_argument(
        "-o", "--output", choices=["table", "json"], default=argparse.SUPPRESS,
        help="table for people (default), json for scripts",
    )
    parser = _Parser(
        prog="bpfman", parents=[common], description="Manage eBPF programs through bpfmand."
    )
    parser.add_argument("--version", action="version", version=VERSION_TEXT)
    sub: Any = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if only is not None:
        sub = _OnlyOne(sub, only)

    def command(name: str, help: str, **kw: Any) -> argparse.ArgumentParser:
        if name in EXAMPLES:
            kw["epilog"] = (kw["epilog"] + "\n\n" if "epilog" in kw else "") + EXAMPLES[name]
        return sub.add_parser(name, parents=[common], help=help, description=help,
                              formatter_class=argparse.RawDescriptionHelpFormatter, **kw)

    load = command("load", "load programs from an ELF object")
    load_sub = load.add_subparsers(dest="source", required=True, metavar="SOURCE")
    lf = load_sub.add_parser("file", parents=[common], help="from a file on the daemon's host")
    lf.add_argument("-p", "--path", required=True,
                    help="path of the ELF object (a relative one is taken from here)")
    lf.add_argument(
        "--programs", nargs="+", action="extend", required=True, type=_program_selector,
        metavar="TYPE:NAME",
        help="programs to load, e.g. tracepoint:handle_exec or fentry:on_open:do_sys_openat2",
    )
    lf.add_argument(
        "-g", "--global", dest="global_data", action="extend", nargs="+", type=_global_value,
        default=[], metavar="NAME=HEX", help="set a global variable before load",
    )
    _metadata_option(lf)
    add_application_option(lf)
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

    detach = command("detach", "detach links")
    detach.add_argument("link_ids", type=int, nargs="+", metavar="LINK_ID",
                        help="links to detach, in order (the first failure stops)")
    _ignore_missing_option(detach, "link")
    unload = command(
        "unload", "unload programs; each one's links are detached first (no need to detach)")
    unload.add_argument("program_ids", type=int, nargs="+", metavar="PROGRAM_ID",
                        help="programs to unload, in order (the first failure stops)")
    _ignore_missing_option(unload, "program")

    lst = command(
        "list", "list programs, or links with `list links`",
        epilog="-a/--all, --application and -m as upstream's `bpfman list programs`;"
        " -p takes our type names (tc, tcx, kprobe, ...) or a kernel type"
        " (sched_cls, probe, tracing, ...).")
    # `program` and `link`: upstream's hidden aliases.
    lst.add_argument("what", nargs="?", choices=["programs", "links", "program", "link"],
                     default="programs", metavar="{programs,links}")
    lst.add_argument("-a", "--all", action="store_true",
                     help="programs: include those not managed here")
    lst.add_argument("-p", "--program-type", "--type", dest="type", metavar="TYPE",
                     help="only this program type")
    lst.add_argument("--program-id", type=int, help="links: only those of this program")
    add_application_option(lst, "--application")
    add_metadata_option(lst, "-m", "--metadata-selector", "--metadata",
                        help="only those with all these labels, k1=v1,k2=v2 (repeatable)",
                        several=False)

    get = command("get", "show one program, or one link with `get link ID`",
                  usage="bpfman get [-h] [--socket SOCKET] [-o {table,json}] [program|link] ID")
    get.add_argument("target", nargs="+", metavar="[program|link] ID",
                     help="a program id (`get program ID` or `get ID`), or `link ID`")

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


def parser_for(argv: Sequence[str]) -> argparse.ArgumentParser:
    """The parser `argv` needs: building every subcommand's parser takes 6
    to 9 ms, one about 2 (docs/performance.md), so when the command word is plain
    (only exact global options before it, no -h) only that subcommand is
    built. Anything else (--help, abbreviations, an unknown word) gets the
    whole tree, so usage errors and help read the same."""
    i = 0
    while i < len(argv) and argv[i].startswith("-"):
        token = argv[i]
        if token in ("--socket", "-o", "--output"):
            i += 2
        elif token.startswith(("--socket=", "--output=")) or (
                token.startswith("-o") and token[2:] in ("table", "json")):
            i += 1
        else:
            return build_parser()
    if i >= len(argv):
        return build_parser()
    parser = build_parser(only=argv[i])
    if argv[i] not in _command_names(parser):
        return build_parser()  # not a command: the error lists them all
    return parser


def _command_names(parser: argparse.ArgumentParser) -> set[str]:
    return {name for action in parser._actions
            if isinstance(action, argparse._SubParsersAction) for name in action.choices}


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser (its subparsers are too) whose help formatter gets
    the width from `os` directly, as `shutil.get_terminal_size` would:
    argparse makes a formatter for every `add_argument`, and its own way
    imports shutil (with bz2, lzma, zlib): 2-3 ms of `bpfman list`."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        return self.formatter_class(prog=self.prog, width=_help_width())


def _help_width() -> int:
    """What argparse takes by default: the terminal's columns less 2."""
    return (columns(sys.__stdout__) or 80) - 2


class _OnlyOne:
    """Stands in for the top-level subparsers action: builds the parser of
    the one command asked for; every other command's building calls land on
    a `_Skipped` and cost nothing."""

    def __init__(self, sub: argparse._SubParsersAction, name: str) -> None:
        self._sub = sub
        self._name = name

    def add_parser(self, name: str, **kw: Any) -> Any:
        return self._sub.add_parser(name, **kw) if name == self._name else _Skipped()

    def __getattr__(self, name: str) -> Any:  # anything else: the real action's
        return getattr(self._sub, name)


class _Skipped:
    """A parser not built: any method, any arguments, returns another."""

    def __getattr__(self, _name: str) -> Callable[..., _Skipped]:
        return lambda *_args, **_kw: _Skipped()


EXAMPLES = {
    "load": "examples:\n  bpfman load file --path /srv/counter.bpf.o --programs "
            "tracepoint:count_getpid -g target_pid=39300000 -m app=web\n"
            "  bpfman load file -p counter.bpf.o --programs xdp:xdp_counter"
            " -a web -m env=prod,team=net\n"
            "  bpfman load image -i quay.io/bpfman-bytecode/xdp_pass:latest"
            " --programs xdp:pass -p IfNotPresent -a web",
    "attach": "examples:\n  bpfman attach 42 tracepoint --tracepoint syscalls/sys_enter_openat\n"
              "  bpfman attach 42 xdp --iface eth0 --priority 50 --proceed-on pass",
    "detach": "examples:\n  bpfman detach 7\n  bpfman detach 7 8 --ignore-missing",
    "unload": "examples:\n  bpfman unload 42\n  bpfman unload 42 43 --ignore-missing",
    "list": "examples:\n  bpfman list\n  bpfman list --all --type xdp\n"
            "  bpfman list programs -p xdp --application web -m env=prod,team=net\n"
            "  bpfman list links --application web",
    "get": "examples:\n  bpfman -o json get 42\n  bpfman get program 42\n  bpfman get link 7",
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


def _global_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-g", "--global", dest="global_data", action="extend", nargs="+", type=_global_value,
        default=[], metavar="NAME=HEX", help="set a global variable before load",
    )


def _metadata_option(parser: argparse.ArgumentParser) -> None:
    add_metadata_option(parser)


def _ignore_missing_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--ignore-missing", action="store_true",
                        help=f"a {what} id that does not exist is not an error")
