"""`bpfman attach ID TYPE ...`: options generated from each type's params class
(bpfman.attachopts), for built-in and third-party types alike."""

from __future__ import annotations

import pytest

from bpfman.cli.main import main
from bpfman.cli.parser import build_parser
from bpfman.cli.request import build_request


def request(*argv: str) -> dict:
    method, params = build_request(build_parser().parse_args(list(argv)))
    assert method == "program.attach"
    return params


def test_the_help_example_works() -> None:
    got = request("attach", "42", "xdp", "--iface", "eth0", "--priority", "50",
                  "--proceed-on", "pass")
    assert got["params"] == {"iface": "eth0", "priority": 50, "proceed_on": ["pass"]}


def test_upstream_shapes_short_flags_and_lists() -> None:
    got = request("attach", "42", "xdp", "-i", "eth0", "-p", "100", "--proceed-on", "drop",
                  "pass", "-m", "owner=me")
    assert got == {"program_id": 42, "metadata": {"owner": "me"},
                   "params": {"iface": "eth0", "priority": 100, "proceed_on": ["drop", "pass"]}}
    tc = request("attach", "7", "tc", "-i", "eth0", "-d", "egress", "--proceed-on", "ok",
                 "--proceed-on", "pipe", "-n", "/run/netns/x")
    assert tc["params"] == {"iface": "eth0", "direction": "egress",
                            "proceed_on": ["ok", "pipe"], "netns": "/run/netns/x"}


def test_values_are_checked_before_sending(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--socket", "/nonexistent", "attach", "42", "xdp", "-i", "eth0",
                     "--proceed-on", "passs"]) == 2
    err = capsys.readouterr().err
    assert "unknown proceed_on action(s) ['passs']" in err and "dispatcher_return" in err
    assert main(["--socket", "/nonexistent", "attach", "42", "perf_event",
                     "--event", "bogus"]) == 2
    assert "invalid choice: 'bogus'" in capsys.readouterr().err
    assert main(["--socket", "/nonexistent", "attach", "42", "xdp"]) == 2
    assert "-i/--iface" in capsys.readouterr().err


def test_type_help_lists_its_parameters(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["attach", "42", "xdp", "--help"]) == 0
    out = capsys.readouterr().out
    for text in ("-i IFACE, --iface IFACE", "--proceed-on", "(default: 50)", "-n NETNS"):
        assert text in out, text


def test_a_third_party_type_gets_options_too() -> None:
    assert request("attach", "3", "raw_tracepoint", "--name", "sys_enter")["params"] == {
        "name": "sys_enter"}


def test_a_type_no_plugin_knows_takes_key_value_pairs() -> None:
    assert request("attach", "3", "nosuchtype", "--foo", "1", "--bar", "x")["params"] == {
        "foo": 1, "bar": "x"}
