"""CLI polish: every command's --help has examples; completion covers commands."""

from __future__ import annotations

import subprocess

import pytest

from bpfman.cli.args import program_selector
from bpfman.cli.completion import bash_completion
from bpfman.cli.main import main
from bpfman.cli.parser import build_parser
from bpfman.cli.render import render

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


def test_bash_completion_completes_commands_and_options(tmp_path: object) -> None:
    script = bash_completion(build_parser())

    def complete(*words: str) -> set[str]:
        body = (script + f"\nCOMP_WORDS=(bpfman {' '.join(repr(w) for w in words)});"
                f" COMP_CWORD={len(words)}; _bpfman; echo \"${{COMPREPLY[@]}}\"")
        out = subprocess.run(["bash", "-c", body], capture_output=True, text=True, check=True)
        return set(out.stdout.split())

    assert {"load", "list", "link"} <= complete("l")
    assert complete("map", "") >= {"list", "get", "dump", "update", "delete"}
    assert complete("list", "--al") == {"--all"}
    assert "file" in complete("load", "")


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
    assert "4:9@10" in text and "1:7@50[pass]" in text
