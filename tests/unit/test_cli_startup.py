"""The CLI's start-up path imports nothing heavy (docs/performance.md,
"CLI start-up"): trio, pluggy, attrs and cattrs are the daemon's; `--version`
imports nothing else; a command line builds only its subcommand's parser."""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

import pytest
from docs_support import help_examples

from bpfman.cli.parser import build_parser, parser_for

HEAVY = ("trio", "pluggy", "attrs", "attr", "cattrs")


def test_the_cli_imports_no_daemon_stack() -> None:
    code = ("import sys; import bpfman.cli.main; from bpfman.client import Client; "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_the_plugin_api_is_still_there() -> None:
    from bpfman import KindSpec, hookimpl
    from bpfman.client import AsyncClient

    assert KindSpec.__name__ == "KindSpec" and hookimpl.project_name == "bpfman"

    assert AsyncClient.__module__ == "bpfman.client.trio_client"


def test_attach_options_do_not_load_the_kernel_layer() -> None:
    # `bpfman attach ID xdp --help` builds its options from the plugins' params
    # classes; those import `bpfman.dispatch`, which must not pull in the
    # kernel facade (ctypes, libbpf: a quarter of a second).
    code = ("import sys; import bpfman_xdp.params, bpfman_tc.params, bpfman.dispatch; "
            "print([m for m in ('bpfman.kernel', 'bpfman.context') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_version_imports_nothing_but_the_package() -> None:
    # `bpfman --version` answers before argparse, json or the client load.
    code = ("import sys; from bpfman.cli.main import main; main(['--version']); "
            "print([m for m in ('argparse', 'json', 'socket', 'bpfman.cli.parser') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.splitlines()[-1] == "[]", out.stdout


def test_list_imports_only_what_it_uses() -> None:
    # typing (annotations only), shutil (argparse's default help width),
    # threading (image pull progress) and the raw attach options are ~8 ms
    # of `bpfman list`; the daemon need not run for this.
    code = ("import sys; from bpfman.cli.main import main; "
            "main(['--socket', '/nonexistent/bpfman-startup.sock', 'list']); "
            "print([m for m in ('typing', 'shutil', 'threading', 'bpfman.cli.rawopts', "
            "'bpfman.cli.completion', 'bpfman.model.errors') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.splitlines()[-1] == "[]", out.stdout


def _command_lines() -> list[list[str]]:
    """Every --help example, and global options around a command."""
    lines = [shlex.split(line)[1:] for line in help_examples()]
    return [*lines,
            ["--socket", "/s", "list", "links"], ["--socket=/s", "-o", "json", "info"],
            ["-ojson", "map", "list", "3"], ["--output=table", "get", "link", "7"],
            ["list", "--socket", "/s", "-o", "json"], ["image", "list"],
            ["load", "file", "-p", "x.o", "--programs", "xdp:a"]]


@pytest.mark.parametrize("argv", _command_lines(), ids=" ".join)
def test_only_the_named_subcommand_is_built(argv: list[str]) -> None:
    # Building every subcommand's parser is a quarter of `bpfman list`'s
    # start-up: a plain command line builds its own and parses the same.
    parser = parser_for(argv)
    built = _commands(parser)
    assert built == {argv[_command_at(argv)]}, built
    assert parser.parse_args(argv) == build_parser().parse_args(argv)


@pytest.mark.parametrize("argv", [
    [], ["-h"], ["--help", "list"], ["lst"], ["--sock", "/s", "list"], ["-o=json", "list"],
    ["--", "list"], ["--version", "list"],
])
def test_anything_else_gets_the_whole_tree(argv: list[str]) -> None:
    # Top-level help, unknown words and abbreviations read as before.
    assert _commands(parser_for(argv)) == _commands(build_parser())


@pytest.mark.parametrize("argv", [
    ["list", "--bogus"], ["list", "nope"], ["attach"], ["map", "get", "1"],
    ["-o", "yaml", "list"], ["info", "extra"], ["list", "--help"], ["image", "--help"],
])
def test_errors_and_help_read_the_same(argv: list[str],
                                        capsys: pytest.CaptureFixture[str]) -> None:
    outputs = []
    for parser in (parser_for(argv), build_parser()):
        with pytest.raises(SystemExit) as exc:
            parser.parse_args(argv)
        outputs.append((exc.value.code, *capsys.readouterr()))
    assert outputs[0] == outputs[1]


def _commands(parser: argparse.ArgumentParser) -> set[str]:
    return {name for action in parser._actions
            if isinstance(action, argparse._SubParsersAction) for name in action.choices}


def _command_at(argv: list[str]) -> int:
    i = 0
    while argv[i].startswith("-"):
        i += 1 if "=" in argv[i] or argv[i].startswith("-oj") else 2
    return i
