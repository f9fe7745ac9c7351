"""CLI polish: every command's --help has examples; completion covers commands."""

from __future__ import annotations

import subprocess

import pytest

from bpfman import cli

COMMANDS = ["load", "attach", "detach", "unload", "list", "get", "link", "dispatchers",
            "events", "map", "plugins", "info", "call", "completion"]


@pytest.mark.parametrize("command", COMMANDS)
def test_help_has_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "example" in out and f"bpfman {command}" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("bpfman ")


def test_bash_completion_completes_commands_and_options(tmp_path: object) -> None:
    script = cli.bash_completion(cli.build_parser())

    def complete(*words: str) -> set[str]:
        body = (script + f"\nCOMP_WORDS=(bpfman {' '.join(repr(w) for w in words)});"
                f" COMP_CWORD={len(words)}; _bpfman; echo \"${{COMPREPLY[@]}}\"")
        out = subprocess.run(["bash", "-c", body], capture_output=True, text=True, check=True)
        return set(out.stdout.split())

    assert {"load", "list", "link"} <= complete("l")
    assert complete("map", "") >= {"list", "get", "dump", "update", "delete"}
    assert complete("list", "--a") == {"--all"}
    assert "file" in complete("load", "")


def test_program_selector_with_attach_function() -> None:
    assert cli._program_selector("fentry:on_open:do_sys_openat2") == {
        "type": "fentry", "name": "on_open", "attach_func": "do_sys_openat2"}
    assert cli._program_selector("tracepoint:tp") == {"type": "tracepoint", "name": "tp"}
