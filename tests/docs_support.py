"""The `bpfman` command lines shown to users: every `--help` example, and the
indented code blocks of README.md, docs/*.md and the examples' READMEs.
tests/unit/test_cli_help.py parses them; tests/kernel/test_documented_commands.py
runs them against a real daemon."""

from __future__ import annotations

from pathlib import Path

from bpfman.cli.parser import EXAMPLES

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")),
         *sorted((ROOT / "examples").glob("*/README.md"))]


def help_examples() -> list[str]:
    """Every `bpfman ...` line of the commands' --help examples."""
    return [line.strip() for text in EXAMPLES.values() for line in text.splitlines()
            if line.strip().startswith("bpfman ")]


def documented_commands(page: Path) -> list[str]:
    """The `bpfman` command lines of a page's indented code blocks, joined
    across ``\\`` continuations, without comments or shell redirections;
    lines with ``<placeholders>`` left out."""
    found, lines = [], page.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("    ") and line.strip().startswith("bpfman "):
            command = line.strip()
            while command.endswith("\\") and i + 1 < len(lines):
                i += 1
                command = command[:-1] + " " + lines[i].strip()
            command = command.split(" #")[0].split(" > ")[0].split(" | ")[0].strip()
            if "<" not in command:
                found.append(command)
        i += 1
    return found
