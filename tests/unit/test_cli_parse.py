"""The CLI's command line -> (method, params) mapping and its output (no daemon)."""

from __future__ import annotations

import base64
import json
import shlex
import sys
import types
from pathlib import Path
from typing import Any

import pytest

import bpfman
from bpfman.cli.args import UsageError
from bpfman.cli.main import main
from bpfman.cli.parser import build_parser
from bpfman.cli.rawopts import coerce_value, parse_attach_options
from bpfman.cli.render import format_error, render
from bpfman.cli.request import build_calls, build_request
from bpfman.client import RpcError


def request(*argv: str) -> tuple[str, dict[str, Any]]:
    return build_request(build_parser().parse_args(list(argv)))


def test_load_file() -> None:
    assert request(
        "load", "file", "--path", "/srv/x.bpf.o",
        "--programs", "tracepoint:on_exec", "xdp:pass",
        "-g", "GLOBAL_u8=01", "GLOBAL_u32=0x0A0B0C0D",
        "-m", "owner=acme", "--metadata", "env=prod",
        "--map-owner-id", "42",
    ) == ("program.load", {
        "path": "/srv/x.bpf.o",
        "programs": [{"type": "tracepoint", "name": "on_exec"}, {"type": "xdp", "name": "pass"}],
        "global_data": {"GLOBAL_u8": "01", "GLOBAL_u32": "0x0A0B0C0D"},
        "metadata": {"owner": "acme", "env": "prod"},
        "map_owner_id": 42,
    })


def test_load_file_minimal() -> None:
    assert request("load", "file", "-p", "/x.o", "--programs", "kprobe:k") == (
        "program.load", {"path": "/x.o", "programs": [{"type": "kprobe", "name": "k"}]},
    )


@pytest.mark.parametrize("bad", [
    ["load", "file", "--path", "/x.o", "--programs", "no_type"],
    ["load", "file", "--path", "/x.o", "--programs", "xdp:p", "-g", "G=zz"],
    ["load", "file", "--path", "/x.o", "--programs", "xdp:p", "-m", "novalue"],
    ["load", "file", "--programs", "xdp:p"],
    ["attach", "notanumber", "xdp"],
    ["attach", "12"],
    ["list", "things"],
])
def test_usage_errors_exit_2(bad: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(bad) == 2
    assert "error" in capsys.readouterr().err


def test_attach_tracepoint() -> None:
    assert request("attach", "12", "tracepoint", "--tracepoint", "sched/sched_switch") == (
        "program.attach",
        {"program_id": 12, "params": {"tracepoint": "sched/sched_switch"}},
    )


def test_attach_generic_options_for_any_type() -> None:
    method, params = request(
        "attach", "7", "newtype",
        "--iface", "eth0", "--priority", "50", "--offset", "-8",
        "--proceed-on", "pass", "--proceed-on", "dispatcher_return",
        "--retprobe", "--direction=ingress", "--enabled", "false",
        "--ports", "[80, 443]", "--name", "007x",
        "-m", "team=net", "--metadata", "ticket=12",
    )
    assert method == "program.attach"
    assert params == {
        "program_id": 7,
        "params": {
            "iface": "eth0",
            "priority": 50,
            "offset": -8,
            "proceed_on": ["pass", "dispatcher_return"],
            "retprobe": True,
            "direction": "ingress",
            "enabled": False,
            "ports": [80, 443],
            "name": "007x",
        },
        "metadata": {"team": "net", "ticket": "12"},
    }


def test_attach_flag_before_metadata_is_a_flag() -> None:
    _, params = request("attach", "1", "x", "--retprobe", "-m", "a=b")
    assert params["params"] == {"retprobe": True}
    assert params["metadata"] == {"a": "b"}


def test_attach_keeps_global_options_anywhere() -> None:
    args = build_parser().parse_args(
        ["attach", "1", "x", "--key", "v", "-o", "json", "--socket=/tmp/s.sock"]
    )
    assert build_request(args) == ("program.attach", {"program_id": 1, "params": {"key": "v"}})
    assert args.output == "json" and args.socket == "/tmp/s.sock"


@pytest.mark.parametrize("tokens", [["-i", "eth0"], ["eth0"], ["--"], ["-m"], ["-o", "yaml"]])
def test_attach_rejects_what_it_cannot_map(tokens: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_attach_options(tokens)


@pytest.mark.parametrize(("text", "value"), [
    ("12", 12), ("-3", -3), ("+4", 4), ("0x10", "0x10"), ("eth0", "eth0"),
    ("true", True), ("false", False), ("True", "True"), ('{"a": 1}', {"a": 1}), ("[x", "[x"),
])
def test_coerce_value(text: str, value: Any) -> None:
    assert coerce_value(text) == value


def test_simple_commands() -> None:
    assert request("detach", "5") == ("program.detach", {"link_id": 5})
    assert request("unload", "9") == ("program.unload", {"program_id": 9})
    assert request("get", "9") == ("program.get", {"program_id": 9})
    assert request("link", "get", "5") == ("link.get", {"link_id": 5})
    assert request("link", "list", "--program-id", "9") == ("link.list", {"program_id": 9})
    assert request("plugins") == ("plugin.list", {})
    assert request("info") == ("daemon.info", {})


def test_list() -> None:
    assert request("list") == ("program.list", {})
    assert request("list", "--all", "--type", "xdp", "-m", "a=b") == (
        "program.list", {"type": "xdp", "all": True, "metadata": {"a": "b"}},
    )
    assert request("list", "links", "--program-id", "3") == ("link.list", {"program_id": 3})
    assert request("list", "links", "--type", "tc") == ("link.list", {"type": "tc"})
    with pytest.raises(UsageError):
        request("list", "links", "--all")
    with pytest.raises(UsageError):
        request("list", "--program-id", "3")


def test_call() -> None:
    assert request("call", "program.get", '{"program_id": 3}') == (
        "program.get", {"program_id": 3},
    )
    assert request("call", "rpc.discover") == ("rpc.discover", {})
    with pytest.raises(SystemExit):
        request("call", "x", "[1]")


def test_global_options_before_or_after_the_command() -> None:
    parser = build_parser()
    before = parser.parse_args(["--socket", "/a", "-o", "json", "list"])
    after = parser.parse_args(["list", "--socket", "/a", "-o", "json"])
    assert (before.socket, before.output) == (after.socket, after.output) == ("/a", "json")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert bpfman.__version__ in capsys.readouterr().out


@pytest.mark.parametrize(("argv", "expected"), [
    (["daemon"], []),
    (["daemon", "--socket", "/s", "--state-dir", "/d"], ["--socket", "/s", "--state-dir", "/d"]),
    (["--socket", "/s", "daemon", "--bpffs", "/b"], ["--socket", "/s", "--bpffs", "/b"]),
    (["-o", "json", "daemon"], []),
])
def test_daemon_gets_the_rest_of_argv(
    argv: list[str], expected: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("bpfman.daemon.main")
    fake.main = lambda rest: seen.append(rest) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bpfman.daemon.main", fake)
    import bpfman.daemon

    monkeypatch.setattr(bpfman.daemon, "main", fake, raising=False)
    assert main(argv) == 7
    assert seen == [expected]


def test_unreachable_daemon_names_the_socket(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "nobody.sock"
    assert main(["--socket", str(path), "list"]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and "daemon running" in err
    monkeypatch.setenv("BPFMAN_SOCKET", str(path))
    assert main(["info"]) == 2
    assert str(path) in capsys.readouterr().err


# -- output ------------------------------------------------------------------

PROGRAM = {
    "program_id": 12, "name": "on_exec", "type": "tracepoint", "managed": True,
    "path": "/x.o", "metadata": {"owner": "acme"}, "global_data": {}, "links": [3, 4],
    "kernel": {"program_id": 12, "kernel_type": "tracepoint", "tag": "ab12"},
}
FOREIGN = {"program_id": 99, "name": "sd_fw", "type": None, "managed": False, "links": [],
           "metadata": {}, "kernel": {"kernel_type": "cgroup_skb"}}


def test_program_table() -> None:
    text = render("program.list", {}, [PROGRAM, FOREIGN], "table")
    lines = text.splitlines()
    assert lines[0].split() == ["ID", "NAME", "TYPE", "OWNER", "LINKS", "METADATA"]
    assert lines[1].split() == ["12", "on_exec", "tracepoint", "bpfman", "3,4", "owner=acme"]
    assert lines[2].split() == ["99", "sd_fw", "cgroup_skb", "unmanaged", "-", "-"]
    # columns line up
    assert lines[1].index("on_exec") == lines[0].index("NAME")


def test_get_shows_key_value_lines_with_the_kernel_section() -> None:
    text = render("program.get", {"program_id": 12}, PROGRAM, "table")
    assert "program_id: 12" in text.splitlines()
    assert "metadata: owner=acme" in text
    assert "kernel:\n  program_id: 12\n  kernel_type: tracepoint" in text


def test_json_output_is_the_raw_result() -> None:
    assert json.loads(render("program.list", {}, [PROGRAM], "json")) == [PROGRAM]


def test_other_renders() -> None:
    link = {"link_id": 3, "program_id": 12, "type": "tracepoint", "summary": "sched/sched_switch",
            "metadata": {}, "params": {"tracepoint": "sched/sched_switch"}}
    assert render("link.list", {}, [link], "table").splitlines()[1].split() == [
        "3", "-", "12", "tracepoint", "sched/sched_switch", "-",
    ]
    assert "params:\n  tracepoint: sched/sched_switch" in render("link.get", {}, link, "table")
    assert render("program.detach", {"link_id": 3}, {"ok": True}, "table") == "detached link 3"
    plugin = {"name": "xdp", "module": "bpfman_xdp.plugin", "version": "1", "types": ["xdp"],
              "hooks": []}
    assert render("plugin.list", {}, [plugin], "table").splitlines()[1].split() == [
        "xdp", "1", "xdp", "bpfman_xdp.plugin",
    ]
    info = {"version": "0.1", "features": {"bpf_link": True, "tcx": False},
            "plugin_failures": [{"name": "bad", "error": "ImportError"}]}
    text = render("daemon.info", {}, info, "table")
    assert "features:\n  bpf_link: yes\n  tcx: no" in text
    assert "plugin_failures:\n  name: bad\n  error: ImportError" in text
    # an unknown method (bpfman call) prints JSON
    assert json.loads(render("x.y", {}, {"a": 1}, "table")) == {"a": 1}


def test_format_error_shows_what_to_fix() -> None:
    text = format_error(RpcError(-32602, "invalid params", {
        "errors": ["invalid value for type, expected int @ $.params.program_id"],
    }))
    assert text.splitlines() == [
        "error: invalid params",
        "  invalid value for type, expected int @ $.params.program_id",
    ]
    text = format_error(RpcError(2001, "verifier rejected program 'p': R0 !read_ok", {
        "kind": "verifier_rejected", "verifier_log": ["0: (b7) r1 = 0", "R0 !read_ok"],
    }))
    assert text.splitlines() == [
        "error: verifier rejected program 'p': R0 !read_ok",
        "verifier log:", "  0: (b7) r1 = 0", "  R0 !read_ok",
    ]
    text = format_error(RpcError(1400, "unsupported", {
        "feature": "tcx", "reason": "no", "min_version": "6.6",
    }))
    assert "missing kernel feature: tcx (needs kernel 6.6)" in text
    text = format_error(RpcError(2000, "bpf_link_create failed: EPERM", {
        "kind": "kernel_error", "op": "bpf_link_create", "errno": "EPERM",
    }))
    assert text.splitlines()[1:] == ["  op: bpf_link_create", "  errno: EPERM"]
    assert "incident ab12cd34" in format_error(
        RpcError(-32603, "internal error", {"incident": "ab12cd34"})
    )


# -- upstream bpfman's command shapes (its CLI guide), beside ours -------------

def calls(*argv: str) -> list[tuple[str, dict[str, Any]]]:
    return build_calls(build_parser().parse_args(list(argv)))


def test_programs_repeated_add_up() -> None:
    _, params = request("load", "file", "-p", "/x.o", "--programs", "xdp:a",
                        "--programs", "tc:b")
    assert [p["name"] for p in params["programs"]] == ["a", "b"]


def test_get_program_and_get_link() -> None:
    assert request("get", "program", "9") == ("program.get", {"program_id": 9})
    assert request("get", "link", "5") == ("link.get", {"link_id": 5})
    for bad in (["get", "links", "5"], ["get", "program", "x"], ["get", "5", "6"],
                ["get", "link", "5", "6"]):
        with pytest.raises(UsageError):
            request(*bad)


def test_unload_and_detach_take_several_ids() -> None:
    assert calls("unload", "9", "10") == [("program.unload", {"program_id": 9}),
                                          ("program.unload", {"program_id": 10})]
    assert calls("detach", "5", "6", "--ignore-missing") == [
        ("program.detach", {"link_id": 5}), ("program.detach", {"link_id": 6})]
    assert build_parser().parse_args(["unload", "1", "--ignore-missing"]).ignore_missing


def test_unload_help_says_links_are_detached(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["unload", "--help"]) == 0
    assert "links are detached first" in capsys.readouterr().out


def test_comma_separated_metadata_everywhere() -> None:
    _, load = request("load", "file", "-p", "/x.o", "--programs", "xdp:p",
                      "-m", "a=1,b=2", "c=3", "--metadata", "note=x,y")
    assert load["metadata"] == {"a": "1", "b": "2", "c": "3", "note": "x,y"}
    _, attach = request("attach", "3", "tracepoint", "-t", "sched/sched_switch",
                        "-m", "a=1,b=2")
    assert attach["metadata"] == {"a": "1", "b": "2"}
    _, raw = request("attach", "3", "nosuchtype", "--x", "1", "-m", "a=1,b=2")
    assert raw["metadata"] == {"a": "1", "b": "2"}
    _, listing = request("list", "programs", "-m", "a=1,b=2")
    assert listing["metadata"] == {"a": "1", "b": "2"}


def test_application_is_metadata(capsys: pytest.CaptureFixture[str]) -> None:
    _, load = request("load", "file", "-p", "/x.o", "--programs", "xdp:p", "-a", "web")
    assert load["metadata"] == {"bpfman_application": "web"}
    assert capsys.readouterr().err == ""
    _, load = request("load", "file", "-p", "/x.o", "--programs", "xdp:p", "--application",
                      "web", "-m", "bpfman_application=shop")
    assert load["metadata"] == {"bpfman_application": "shop"}  # --metadata's, as upstream
    assert "--application web ignored" in capsys.readouterr().err
    _, image = request("load", "image", "-i", "r.io/x:v1", "--programs", "xdp:p", "-a", "web")
    assert image["metadata"] == {"bpfman_application": "web"}


def test_list_with_upstream_flags() -> None:
    assert request("list", "programs", "-p", "xdp", "--application", "web",
                   "-m", "env=prod,team=net", "-a") == ("program.list", {
                       "type": "xdp", "all": True, "metadata": {
                           "env": "prod", "team": "net", "bpfman_application": "web"}})
    assert request("list", "program", "--metadata-selector", "a=b") == (
        "program.list", {"metadata": {"a": "b"}})
    assert request("list", "links", "--application", "web", "-p", "tc") == (
        "link.list", {"type": "tc", "metadata": {"bpfman_application": "web"}})
    assert request("list", "link", "-m", "a=b") == ("link.list", {"metadata": {"a": "b"}})
    assert request("list", "-m", "a=b", "links", "-m", "c=d") == (
        "link.list", {"metadata": {"a": "b", "c": "d"}})


def test_hidden_list_aliases_stay_out_of_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["list", "--help"]) == 0
    usage = capsys.readouterr().out
    assert "{programs,links}" in usage and "program," not in usage


def test_relative_path_is_made_absolute(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    _, params = request("load", "file", "--path", "counter.bpf.o", "--programs", "xdp:p")
    assert params["path"] == str(tmp_path / "counter.bpf.o")
    _, params = request("load", "file", "--path", "../y/z.o", "--programs", "xdp:p")
    assert params["path"] == str(tmp_path.parent / "y" / "z.o")


def test_image_pull_upstream_form() -> None:
    auth = base64.b64encode(b"alice:s3cret:x").decode()
    assert request("image", "pull", "-i", "r.io/x:v1", "-p", "Always", "-r", auth) == (
        "image.pull", {"url": "r.io/x:v1", "pull_policy": "Always", "username": "alice",
                       "password": "s3cret:x"})
    assert request("load", "image", "-i", "r.io/x:v1", "--programs", "xdp:p", "-p", "Never",
                   "-r", auth)[1]["image"] == {
        "url": "r.io/x:v1", "pull_policy": "Never", "username": "alice",
        "password": "s3cret:x"}
    for bad in (["image", "pull"], ["image", "pull", "r.io/a:1", "-i", "r.io/b:1"],
                ["image", "pull", "-i", "r.io/x:v1", "-r", auth, "--username", "bob"]):
        with pytest.raises(UsageError):
            request(*bad)


def test_a_bad_registry_auth_is_never_echoed(capsys: pytest.CaptureFixture[str]) -> None:
    secret = base64.b64encode(b"no-colon-here").decode()
    for value in (secret, "not base64 at all!"):
        assert main(["image", "pull", "-i", "r.io/x:v1", "-r", value]) == 2
        err = capsys.readouterr().err
        assert "USER:PASSWORD" in err and value not in err


def test_attach_takes_upstream_short_flags() -> None:
    assert request("attach", "3", "kprobe", "-f", "do_unlinkat", "-o", "8")[1]["params"] == {
        "fn_name": "do_unlinkat", "offset": 8}
    assert request("attach", "3", "uprobe", "-f", "malloc", "-t", "libc", "-p", "1234",
                   "-c", "5678")[1]["params"] == {
        "fn_name": "malloc", "target": "libc", "pid": 1234, "container_pid": 5678}
    assert request("attach", "3", "tracepoint", "-t", "sched/sched_switch")[1]["params"] == {
        "tracepoint": "sched/sched_switch"}
    # -o is the offset where the type has one; --output still works there.
    args = build_parser().parse_args(["attach", "3", "kprobe", "-f", "f", "--output", "json"])
    build_request(args)
    assert args.output == "json"
    args = build_parser().parse_args(["attach", "3", "tracepoint", "-t", "a/b", "-o", "json"])
    build_request(args)
    assert args.output == "json"


# Upstream's CLI guide (args.rs), one line per shape with every documented flag.
UPSTREAM_LINES = [
    "bpfman load file --programs xdp:xdp_pass -p /srv/xdp_pass.bpf.o -g GLOBAL_u8=01"
    " GLOBAL_u32=0A0B0C0D -a app1 -m owner=acme,env=dev --map-owner-id 4",
    "bpfman load file --programs fentry:test_fentry:do_unlinkat"
    " fexit:test_fexit:do_unlinkat -p /srv/fentry.bpf.o",
    "bpfman load image --programs tc:stats -i quay.io/bpfman-bytecode/go-tc-counter:latest"
    " -r dXNlcjpwdw== -p Always -g GLOBAL_u8=01 -a app1 -m owner=acme --map-owner-id 4",
    "bpfman unload 42",
    "bpfman attach 42 xdp -i eth0 -p 35 --proceed-on pass drop -n /var/run/netns/x -m owner=acme",
    "bpfman attach 42 tc -d ingress -i eth0 -p 40 --proceed-on pipe dispatcher_return"
    " -n /var/run/netns/x -m a=b",
    "bpfman attach 42 tcx -d egress -i eth0 -p 50 -n /var/run/netns/x -m a=b",
    "bpfman attach 42 tracepoint -t syscalls/sys_enter_openat -m a=b",
    "bpfman attach 42 kprobe -f try_to_wake_up -o 0 -m a=b",
    "bpfman attach 42 kretprobe -f try_to_wake_up",
    "bpfman attach 42 uprobe -f malloc -o 0 -t libc -p 1234 -c 5678 -m a=b",
    "bpfman attach 42 uretprobe -f malloc -t /usr/lib/libc.so.6",
    "bpfman attach 42 fentry -m a=b",
    "bpfman attach 42 fexit",
    "bpfman detach 7",
    "bpfman list programs -p xdp --application app1 -m owner=acme,env=dev -a",
    "bpfman list links --application app1 -p tc -m owner=acme",
    "bpfman list program",
    "bpfman list link",
    "bpfman get program 42",
    "bpfman get link 7",
    "bpfman image pull -i quay.io/bpfman-bytecode/xdp_pass:latest -r dXNlcjpwdw== -p IfNotPresent",
]


@pytest.mark.parametrize("line", UPSTREAM_LINES)
def test_upstream_command_lines_parse_unchanged(line: str) -> None:
    assert calls(*shlex.split(line)[1:])
