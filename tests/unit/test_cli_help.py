"""CLI polish: every command's --help has examples, and they and every command
line of the docs parse into requests (completion: test_cli_completion.py)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from docs_support import PAGES, documented_commands, help_examples

from bpfman.cli.args import program_selector
from bpfman.cli.main import main
from bpfman.cli.parser import build_parser
from bpfman.cli.render import render
from bpfman.cli.request import build_calls

ROOT = Path(__file__).parents[2]

COMMANDS = ["load", "attach", "detach", "unload", "list", "get", "link", "dispatchers",
            "events", "map", "plugins", "info", "call", "completion"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "example" in out and f"bpfman {command}" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("bpfman ")


def test_program_selector_with_attach_function() -> None:
    assert program_selector("fentry:on_open:do_sys_openat2") == {
        "type": "fentry", "name": "on_open", "attach_func": "do_sys_openat2"}
    assert program_selector("tracepoint:tp") == {"type": "tracepoint", "name": "tp"}


def test_dispatcher_table_with_and_without_proceed_on() -> None:
    rows = [{"attach_point": "tcx:0:v/ingress", "type": "tcx", "mode": "tcx", "program_id": None,
             "revision": 3, "links": [4], "slots": [
                 {"link_id": 4, "program_id": 9, "priority": 10, "proceed_on": []}]},
            {"attach_point": "xdp:0:v", "type": "xdp", "mode": "static", "program_id": 5,
             "revision": 1, "links": [1], "slots": [
                 {"link_id": 1, "program_id": 7, "priority": 50, "proceed_on": ["pass"]}]}]
    text = render("dispatcher.list", {}, rows, "table")
    lines = text.splitlines()
    assert lines[0] == "tcx v/ingress  mode tcx  dispatcher -  revision 3"
    assert lines[1].split() == ["priority", "10", "program", "9", "-", "link", "4"]
    assert lines[4].split() == ["priority", "50", "program", "7", "-", "link", "1",
                                "proceed-on", "pass"]


def parses(line: str) -> None:
    """`line` (``bpfman ...``) parses and makes its calls, or is a local command."""
    args = build_parser().parse_args(shlex.split(line)[1:])
    if args.command in ("load-from-image", "completion") or (
            args.command == "image" and args.image_command == "build"):
        return
    assert build_calls(args), line


def test_every_help_example_parses() -> None:
    lines = help_examples()
    assert len(lines) > 20
    for line in lines:
        parses(line)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_documented_command_parses(page: Path) -> None:
    for command in documented_commands(page):
        parses(command)


def test_the_cli_page_shows_upstreams_shapes() -> None:
    commands = documented_commands(ROOT / "docs" / "cli.md")
    for shape in ("get program", "get link", "list links -m", "--ignore-missing",
                  "image pull -i", "-a web"):
        assert any(shape in c for c in commands), shape
