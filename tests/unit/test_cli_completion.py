"""Shell completion (bpfman.cli.completion): the engine with word lists, then
the script `bpfman completion bash` prints, run by a real bash against the
installed `bpfman` (its call-back, the installed plugins, the third-party
test plugin's type)."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bpfman.cli.completion import DIRS, FILES, NOSPACE, WORDS, complete, event_kinds
from bpfman.cli.main import main
from bpfman.model.requests import EVENT_KINDS

BIN = Path(sys.executable).parent  # .venv/bin: bpfman is installed there


def words(*argv: str) -> list[str]:
    reply = complete(list(argv))
    assert reply.mode in (WORDS, NOSPACE), reply
    return reply.words


def test_commands_subcommands_and_options() -> None:
    assert {"load", "load-from-image", "list", "link"} == set(words("l"))
    assert {"list", "get", "dump", "update", "delete"} <= set(words("map", ""))
    assert words("list", "--al") == ["--all"]
    assert set(words("load", "")) == {"file", "image"}
    assert "__complete" not in words("")
    assert {"--path", "-p", "--programs", "--map-owner-id"} <= set(words("load", "file", ""))


def test_program_types_after_attach_id_include_the_third_party_plugin() -> None:
    types = words("attach", "42", "")
    assert {"xdp", "tc", "tcx", "tracepoint", "kprobe", "uprobe"} <= set(types)
    assert "raw_tracepoint" in types  # tests/thirdparty: no CLI change for it
    assert words("attach", "42", "x") == ["xdp"]
    assert words("attach", "42", "raw") == ["raw_tracepoint"]
    assert words("attach", "") == []  # the program id: free
    assert "xdp" in words("list", "-p", "")
    assert "raw_tracepoint" in words("load-from-image", "-i", "quay.io/x:1", "")


def test_a_types_parameters_long_and_short() -> None:
    xdp = set(words("attach", "42", "xdp", ""))
    assert {"-i", "--iface", "-p", "--priority", "--proceed-on", "-n", "--netns",
            "-m", "--metadata"} <= xdp
    assert "--direction" not in xdp and "--proceed_on" not in xdp  # API spelling: accepted only
    assert set(words("attach", "42", "xdp", "--pr")) == {"--priority", "--proceed-on"}
    assert set(words("attach", "42", "tc", "-")) >= {"-d", "--direction", "--proceed-on"}
    assert words("attach", "42", "raw_tracepoint", "--") == ["--help", "--metadata", "--name"]
    assert words("attach", "42", "nosuchtype", "--") == []


def test_enum_values_after_an_option_with_choices() -> None:
    assert words("attach", "1", "tc", "--direction", "") == ["ingress", "egress"]
    assert words("attach", "1", "tcx", "-d", "e") == ["egress"]
    xdp = words("attach", "1", "xdp", "-i", "eth0", "--proceed-on", "")
    assert xdp == ["aborted", "drop", "pass", "tx", "redirect", "dispatcher_return"]
    # a list: several values after one flag, each offered once
    assert "pass" not in words("attach", "1", "xdp", "--proceed-on", "pass", "")
    assert "ok" in words("attach", "1", "tc", "--proceed-on", "")
    assert words("attach", "1", "netfilter", "--family", "") == ["ipv4", "ipv6"]
    # one params class, three types: each type's own hooks
    assert words("attach", "1", "cgroup_skb", "--attach-type", "") == ["ingress", "egress"]
    assert words("attach", "1", "cgroup_sock_addr", "--attach-type", "conn") == [
        "connect4", "connect6"]
    assert "ingress" not in words("attach", "1", "cgroup_sock", "--attach-type", "")
    assert words("attach", "1", "perf_event", "--event", "cpu-c") == ["cpu-cycles", "cpu-clock"]
    # after the list's values, an option is an option again
    assert words("attach", "1", "xdp", "--proceed-on", "pass", "--pri") == ["--priority"]


def test_options_given_once_are_not_offered_again() -> None:
    offered = set(words("attach", "1", "xdp", "-i", "eth0", "-p", "3", "--proceed-on", "pass",
                        "-m", "a=b", ""))
    assert {"--proceed-on", "-m", "--netns"} <= offered  # lists, -m: again
    assert not {"-i", "--iface", "-p", "--priority"} & offered
    assert words("list", "-a", "--a") == ["--application"]
    assert "--metadata" in words("load", "file", "-p", "x", "-m", "a=b", "-")
    assert words("events", "--kind", "attached", "--k") == ["--kind"]


def test_free_values_get_nothing() -> None:
    assert words("attach", "1", "xdp", "--priority", "") == []
    assert words("attach", "1", "xdp", "-p", "") == []
    assert words("attach", "1", "tracepoint", "--tracepoint", "") == []
    assert words("load", "file", "-m", "") == []
    assert words("load", "file", "--map-owner-id", "") == []
    assert words("detach", "") == []
    assert words("link", "update", "7", "--") == []  # the link's type is the daemon's


def test_iface_offers_this_hosts_interfaces_unless_another_netns() -> None:
    assert "lo" in words("attach", "1", "xdp", "--iface", "l")
    assert words("attach", "1", "xdp", "-n", "/run/netns/x", "--iface", "") == []


def test_file_names_after_path_options() -> None:
    for argv in (["load", "file", "--path", "co"], ["load", "file", "-p", "co"],
                 ["image", "build", "--path", "co"], ["image", "build", "-f", "co"],
                 ["--socket", "co"], ["attach", "1", "uprobe", "-t", "co"]):
        reply = complete(argv)
        assert (reply.mode, reply.text) == (FILES, "co"), argv
    assert complete(["image", "build", "--oci-layout", "o"]).mode == DIRS
    assert complete(["load", "image", "-p", ""]).mode == WORDS  # there -p is the policy
    assert words("load", "image", "-p", "") == ["Always", "IfNotPresent", "Never"]


def test_the_daemons_own_options() -> None:
    assert {"--config", "--state-dir", "--bpffs", "--log-level"} <= set(words("daemon", "--"))
    assert words("daemon", "--log-level", "") == ["debug", "info", "warning", "error"]
    assert complete(["--socket", "s", "daemon", "--config", "/etc/b"]).mode == FILES
    assert complete(["daemon", "--state-dir", "/var"]).mode == DIRS


def test_type_prefixes_after_programs() -> None:
    reply = complete(["load", "file", "--path", "x.o", "--programs", "tr"])
    assert reply.mode == NOSPACE and reply.words == ["tracepoint:"]
    assert "raw_tracepoint:" in words("load", "image", "-i", "x", "--programs", "")
    # bash splits "xdp:" at the colon (COMP_WORDBREAKS): nothing after it is known
    assert words("load", "file", "--programs", "xdp", ":", "") == []
    # a second selector after the first
    assert "xdp:" in words("load", "file", "--programs", "tracepoint", ":", "tp", "x")


def test_program_names_from_the_object_given_by_path(bpf_program: Callable[..., Path]) -> None:
    obj = str(bpf_program("tp_counter"))  # count_getpid, count_getppid: tracepoints
    prefixes = complete(["load", "file", "--path", obj, "--programs", ""])
    assert (prefixes.mode, prefixes.words) == (NOSPACE, ["tracepoint:"])
    assert words("load", "file", "-p", obj, "--programs", "tracepoint", ":", "") == [
        "count_getpid", "count_getppid"]
    assert words("load", "file", "-p", obj, "--programs", "tracepoint:count_getpid",
                 "tracepoint:count_getpp") == ["tracepoint:count_getppid"]
    assert words("load", "file", "-p", obj, "--programs", "xdp:") == []
    xdp = str(bpf_program("xdp_counter"))
    assert words("load", "file", "-p", xdp, "--programs", "xdp:") == ["xdp:xdp_counter"]
    # an object that is not there (yet): every type, no names
    assert "kprobe:" in words("load", "file", "-p", "/nonexistent.o", "--programs", "")


def test_event_kinds_output_and_pull_policy() -> None:
    assert event_kinds() == list(EVENT_KINDS)
    assert words("events", "--kind", "") == list(EVENT_KINDS)
    assert words("events", "--kind", "a") == ["attached"]
    assert words("events", "--kind=a") == ["--kind=attached"]
    assert words("events", "--kind", "=", "a") == ["attached"]  # as bash splits it
    assert words("events", "--kind", "=", "") == list(EVENT_KINDS)
    assert words("-o", "") == ["table", "json"]
    assert words("list", "-o", "j") == ["json"]
    assert words("image", "pull", "--pull-policy", "") == ["Always", "IfNotPresent", "Never"]
    assert words("list", "") == ["programs", "links"]  # not the hidden aliases
    assert words("get", "") == ["program", "link"]
    assert words("get", "link", "") == []
    assert words("call", "program.l") == ["program.list", "program.load"]
    assert words("call", "daemon.info", "{") == []  # the JSON params: free


def test_the_hidden_call_back_prints_mode_then_candidates(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["__complete", "attach", "1", "tc", "-d", ""]) == 0
    assert capsys.readouterr().out == "words\ningress\negress\n"
    assert main(["__complete", "load", "file", "-p", "x"]) == 0
    assert capsys.readouterr().out == "files\nx\n"


# -- a real bash, the printed script, the installed bpfman ---------------------------------


def bash(script: str, cwd: Path | None = None) -> str:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env,
                         cwd=cwd, check=True, timeout=60)
    return out.stdout


def bash_complete(*argv: str, cwd: Path | None = None) -> list[str]:
    """COMPREPLY for `bpfman ARGV` (the last word is the one being completed)."""
    quoted = " ".join("'" + w.replace("'", "'\\''") + "'" for w in ("bpfman", *argv))
    return bash("source <(bpfman completion bash); "
                f"COMP_WORDS=({quoted}); COMP_CWORD={len(argv)}; _bpfman; "
                'printf "%s\\n" "${COMPREPLY[@]}"', cwd).splitlines()


def test_bash_sources_the_script_and_completes() -> None:
    assert bash_complete("attach", "1", "x") == ["xdp"]
    types = bash_complete("attach", "1", "")
    assert {"xdp", "tc", "tracepoint", "raw_tracepoint"} <= set(types)
    assert bash_complete("attach", "1", "raw_tracepoint", "--n") == ["--name"]
    assert bash_complete("attach", "1", "tc", "--direction", "") == ["ingress", "egress"]
    assert bash_complete("attach", "1", "xdp", "--proceed-on", "d") == [
        "drop", "dispatcher_return"]
    assert bash_complete("events", "--kind", "de") == ["detached"]
    assert bash_complete("events", "--kind", "=", "de") == ["detached"]
    assert bash_complete("image", "pull", "--pull-policy", "I") == ["IfNotPresent"]
    assert bash_complete("list", "-o", "") == ["table", "json"]
    assert bash_complete("attach", "1", "xdp", "--priority", "") == [""]  # nothing
    assert {"load", "list", "link"} <= set(bash_complete("l"))


def test_bash_completes_file_names_and_type_prefixes(
        tmp_path: Path, bpf_program: Callable[..., Path]) -> None:
    (tmp_path / "counter.bpf.o").write_bytes(b"")
    (tmp_path / "counter.c").write_text("")
    (tmp_path / "objs").mkdir()
    assert sorted(bash_complete("load", "file", "--path", "cou", cwd=tmp_path)) == [
        "counter.bpf.o", "counter.c"]
    assert bash_complete("image", "build", "-f", "counter.b", cwd=tmp_path) == [
        "counter.bpf.o"]
    assert bash_complete("image", "build", "--oci-layout", "", cwd=tmp_path) == ["objs"]
    # "xdp:" as bash hands it over: split at the colon, the prefix kept whole
    assert bash_complete("load", "file", "--programs", "xd") == ["xdp:"]
    assert bash_complete("load", "file", "--programs", "tracepoint", ":", "") == [""]
    obj = str(bpf_program("tp_counter"))
    assert bash_complete("load", "file", "-p", obj, "--programs", "tracepoint", ":",
                         "count_getpp") == ["count_getppid"]


PLUGIN = '''
from typing import Literal

import attrs

from bpfman import KindSpec, hookimpl


@attrs.frozen
class Params:
    target: str = attrs.field(metadata={"doc": "where"})
    speed: Literal["fast", "slow"] = attrs.field(default="fast", metadata={"doc": "how"})


@hookimpl
def bpfman_register_kinds():
    return [KindSpec(name="clicomp_demo", kernel_prog_type="raw_tracepoint",
                     params_type=Params, description="a type installed later")]
'''


def test_a_plugin_installed_after_the_script_was_written(tmp_path: Path) -> None:
    """The script is sourced first; then a plugin is installed (a package and
    its dist-info with a bpfman.plugins entry point on PYTHONPATH): its type,
    options and values complete with no step more."""
    site = tmp_path / "site"
    (site / "bpfman_clicomp_demo").mkdir(parents=True)
    (site / "bpfman_clicomp_demo" / "__init__.py").write_text(PLUGIN)
    info = site / "bpfman_clicomp_demo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bpfman-clicomp-demo\n"
                                   "Version: 0.1\n")
    (info / "entry_points.txt").write_text("[bpfman.plugins]\nclicomp_demo = bpfman_clicomp_demo\n")
    show = 'printf "%s\\n" "${COMPREPLY[@]}"; echo --'
    out = bash(
        "source <(bpfman completion bash); "
        f"COMP_WORDS=(bpfman attach 1 clicomp); COMP_CWORD=3; _bpfman; {show}; "
        f"export PYTHONPATH={site}; "
        f"COMP_WORDS=(bpfman attach 1 clicomp); COMP_CWORD=3; _bpfman; {show}; "
        f"COMP_WORDS=(bpfman attach 1 clicomp_demo --); COMP_CWORD=4; _bpfman; {show}; "
        f"COMP_WORDS=(bpfman attach 1 clicomp_demo --speed ''); COMP_CWORD=5; _bpfman; {show}")
    before, after, options, values, _ = out.split("--\n")
    assert before.split() == []
    assert after.split() == ["clicomp_demo"]
    assert options.split() == ["--help", "--metadata", "--target", "--speed"]
    assert values.split() == ["fast", "slow"]


def test_bash_under_set_u_and_past_the_last_word() -> None:
    out = bash("set -u; source <(bpfman completion bash); "
               "COMP_WORDS=(bpfman attach 1 tcx --direction); COMP_CWORD=5; _bpfman; "
               'printf "%s\n" "${COMPREPLY[@]}"')
    assert out.split() == ["ingress", "egress"]


def test_bash_uses_the_command_as_typed(tmp_path: Path) -> None:
    # a bpfman not on PATH, completed by the path it was typed with
    out = bash("source <(bpfman completion bash); PATH=/usr/bin:/bin; "
               f"COMP_WORDS=({BIN}/bpfman attach 1 tcx -d ''); COMP_CWORD=5; _bpfman; "
               'printf "%s\\n" "${COMPREPLY[@]}"')
    assert out.split() == ["ingress", "egress"]


def typed_then_tab(line: str, cwd: Path, expect: str) -> str:
    """What an interactive bash (readline, a terminal) shows after `line` and
    TAB, the completion script sourced first: the word breaks at ':' and
    '=', no space after ``TYPE:``, a '/' after a directory are readline's."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: an interactive bash on the terminal
        os.chdir(cwd)
        os.environ.update(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                          PS1="$ ", TERM="dumb")
        os.execvp("bash", ["bash", "--norc", "--noprofile", "-i"])
    seen = b""

    def until(text: bytes, seconds: float = 30) -> None:
        nonlocal seen
        deadline = time.monotonic() + seconds
        while text not in seen and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.1)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break

    try:
        os.write(fd, b"source <(bpfman completion bash); echo sourced-$((6*7))\n")
        until(b"sourced-42")
        seen = b""
        os.write(fd, line.encode() + b"\t")
        until(expect.encode())
        until(b"\0", 0.3)  # whatever follows it (a space, or none)
        return seen.decode(errors="replace")
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(fd)


def test_interactive_bash_on_a_terminal(tmp_path: Path, bpf_program: Callable[..., Path]
                                        ) -> None:
    (tmp_path / "objects").mkdir()
    obj = bpf_program("tp_counter")
    (tmp_path / "objects" / "tp.bpf.o").write_bytes(obj.read_bytes())
    cases = [
        ("bpfman attach 1 xd", "bpfman attach 1 xdp "),
        ("bpfman attach 1 raw_tr", "bpfman attach 1 raw_tracepoint "),
        ("bpfman attach 1 tc --direction in", "--direction ingress "),
        ("bpfman attach 1 xdp --proceed-on dispatcher_r", "--proceed-on dispatcher_return "),
        ("bpfman events --kind=atta", "bpfman events --kind=attached "),
        ("bpfman load file --path obj", "--path objects/"),
        ("bpfman load file --path objects/tp.bpf.o --programs tr",
         "--programs tracepoint:"),
        ("bpfman load file -p objects/tp.bpf.o --programs tracepoint:count_getpp",
         "--programs tracepoint:count_getppid "),
    ]
    for line, expect in cases:
        shown = typed_then_tab(line, tmp_path, expect)
        assert expect in shown, (line, shown)
    # no space after TYPE: (the name follows)
    assert "tracepoint: " not in typed_then_tab(
        "bpfman load file --programs tracep", tmp_path, "tracepoint:")
